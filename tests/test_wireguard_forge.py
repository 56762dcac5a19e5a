"""The stranger's WireGuard handshake initiation (scenarios/wireguard_forge.py): shaped as WireGuard, its mac1
keyed by the responder, its sealed fields opened by the responder's key only. (That wireguard-go itself
answers it is checked in the lab: scenarios/test_tunnel.py.)"""

from __future__ import annotations

import nacl.exceptions
import nacl.public
import pytest

from protocol.wireguard import is_wireguard
from scenarios.wireguard_forge import SIZE, initiation, open_initiation, tai64n


def keypair() -> tuple[bytes, bytes]:
    secret = nacl.public.PrivateKey.generate()
    return bytes(secret), bytes(secret.public_key)


def test_an_initiation_opens_with_the_responders_key_and_names_the_initiator() -> None:
    (initiator_secret, initiator), (responder_secret, responder) = keypair(), keypair()
    message = initiation(initiator_secret, responder, now=1_700_000_000.5, sender=7)
    assert len(message) == SIZE
    assert message[:8] == b"\x01\x00\x00\x00\x07\x00\x00\x00"
    assert message[-16:] == bytes(16)  # mac2: no cookie
    assert is_wireguard(message)
    opened = open_initiation(responder_secret, message)
    assert opened.initiator == initiator
    assert opened.timestamp == tai64n(1_700_000_000.5)


def test_another_responder_finds_mac1_wrong() -> None:
    message = initiation(keypair()[0], keypair()[1])
    with pytest.raises(ValueError, match=r"^mac1 does not match the responder's key$"):
        open_initiation(keypair()[0], message)


def test_a_changed_byte_does_not_open() -> None:
    (initiator_secret, _), (responder_secret, responder) = keypair(), keypair()
    message = bytearray(initiation(initiator_secret, responder))
    message[50] ^= 1  # inside the sealed static key: mac1 fails first
    with pytest.raises(ValueError, match="mac1"):
        open_initiation(responder_secret, bytes(message))


def test_tai64n_counts_from_tai64s_epoch_label() -> None:
    assert tai64n(0.0) == bytes.fromhex("400000000000000a00000000")
    assert tai64n(1.25)[8:] == (250_000_000).to_bytes(4, "big")
    assert tai64n(2.0) > tai64n(1.999)  # later is greater, byte-wise: WireGuard's replay rule


def test_each_initiation_has_its_own_ephemeral_key() -> None:
    (initiator_secret, _), (_, responder) = keypair(), keypair()
    assert initiation(initiator_secret, responder)[8:40] != initiation(initiator_secret, responder)[8:40]


def test_a_seal_opened_with_the_wrong_secret_fails() -> None:
    (initiator_secret, _), (_, responder) = keypair(), keypair()
    message = initiation(initiator_secret, responder)
    with pytest.raises((ValueError, nacl.exceptions.CryptoError)):
        open_initiation(keypair()[0], message)
