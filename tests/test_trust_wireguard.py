"""trust.wireguard: WireGuard's keys are the identity's X25519 keys; UAPI requests and answers (pure)."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address

import nacl.bindings
import pytest

from trust import Identity
from trust.wireguard import (
    GET,
    UapiError,
    check_errno,
    parse_get,
    private_key,
    public_key,
    remove_peer,
    set_device,
    set_endpoint,
    set_peer,
    uapi_key,
    wg_key,
)


def test_the_wireguard_key_pair_is_the_identity_box_pair() -> None:
    """WireGuard's public key is Curve25519 of its private key: the identity's box public key, so the key
    in the registry (and in the server's punch) is the peer's WireGuard key."""
    identity = Identity.generate()
    private = private_key(identity)
    assert nacl.bindings.crypto_scalarmult_base(private) == public_key(identity.public) == identity.public.box
    assert wg_key(public_key(identity.public)) == base64.b64encode(identity.public.box).decode()
    assert len(wg_key(private)) == 44
    assert wg_key(private).endswith("=")


def test_uapi_keys_are_lowercase_hex_and_32_bytes() -> None:
    assert uapi_key(bytes(range(32))) == bytes(range(32)).hex()
    with pytest.raises(ValueError, match="expected 32 bytes, got 3"):
        uapi_key(b"abc")


def test_set_requests_are_the_documented_text() -> None:
    key = bytes([0xAB]) * 32
    assert set_device(key, 51820) == f"set=1\nprivate_key={'ab' * 32}\nlisten_port=51820\nreplace_peers=true\n\n"
    assert set_peer(key, ("127.0.0.1", 40001), IPv4Address("198.19.255.2")) == (
        f"set=1\npublic_key={'ab' * 32}\nendpoint=127.0.0.1:40001\nreplace_allowed_ips=true\n"
        "allowed_ip=198.19.255.2/32\npersistent_keepalive_interval=25\n\n"
    )
    assert remove_peer(key) == f"set=1\npublic_key={'ab' * 32}\nremove=true\n\n"
    assert set_endpoint(key, ("198.18.0.12", 40000)) == (
        f"set=1\npublic_key={'ab' * 32}\nupdate_only=true\nendpoint=198.18.0.12:40000\n\n"
    )
    assert GET == "get=1\n\n"


GET_ANSWER = (
    f"private_key={'11' * 32}\nlisten_port=51820\n"
    f"public_key={'ab' * 32}\nendpoint=127.0.0.1:40001\nlast_handshake_time_sec=1700000000\n"
    "last_handshake_time_nsec=500000000\ntx_bytes=1000\nrx_bytes=2000\npersistent_keepalive_interval=25\n"
    "allowed_ip=198.19.255.2/32\n"
    f"public_key={'cd' * 32}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
    "errno=0\n\n"
)


def test_get_answers_give_each_peer_handshake_and_bytes() -> None:
    peers = parse_get(GET_ANSWER)
    first = peers[bytes([0xAB]) * 32]
    assert (first.endpoint, first.last_handshake, first.rx_bytes, first.tx_bytes) == (
        "127.0.0.1:40001",
        1700000000.5,
        2000,
        1000,
    )
    second = peers[bytes([0xCD]) * 32]
    assert (second.endpoint, second.last_handshake, second.rx_bytes) == (None, 0.0, 0)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("errno=22\n\n", "wireguard-go refused the request: errno=22"),
        ("", "not a UAPI answer"),
        ("hello\n\n", "not a UAPI answer"),
    ],
)
def test_refused_or_garbled_answers_are_errors(answer: str, message: str) -> None:
    with pytest.raises(UapiError, match=message):
        check_errno(answer)


def test_a_garbled_peer_is_an_error() -> None:
    with pytest.raises(UapiError, match="garbled UAPI answer"):
        parse_get("public_key=zz\nerrno=0\n\n")
