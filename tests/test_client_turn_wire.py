"""STUN/TURN wire helpers: golden packets (RFC 5769, hand-assembled, captured from coturn 4.6.1)."""

from __future__ import annotations

import hashlib
import random

import pytest

from client.turn.wire import (
    HEADER_LENGTH,
    binding_request,
    channel_data,
    data_indication,
    is_turn_datagram,
    long_term_key,
    parse_binding_response,
    parse_channel_data,
    parse_stun,
    send_indication,
)
from protocol import VERBS, Endpoint

TID = bytes(range(12))

# RFC 5769 section 2.2: a Binding success response, IPv4, short-term password "VOkJxbRl1RmTxUk/WvJxBt".
RFC5769_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
)
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")

# coturn 4.6.1 (-n --lt-cred-mech --user natlab:s3cret --realm natlab): a 438 to a Refresh with a bad nonce,
# and an Allocate success response signed with MD5("natlab:natlab:s3cret").
COTURN_438 = bytes.fromhex(
    "011400542112a442205c8de799c678dcd537d78100090010000004265374616c65206e6f6e636500001500106135616630"
    "6464663130376237636339001400066e61746c6162000080220014436f7475726e2d342e362e312027476f7273742780"
    "2800040be90f7a"
)
COTURN_ALLOCATED = bytes.fromhex(
    "010300582112a442fd43c1ea0feead1e4fdb5887001600080001e1025e12a44300200008000190ba5e12a443000d0004"
    "0000025880220014436f7475726e2d342e362e312027476f7273742700080014504b46b4a1611ad9732cc0179e7a62c5"
    "42a82231802800041eccb371"
)


def test_rfc5769_binding_response_gives_the_mapped_address() -> None:
    assert parse_binding_response(RFC5769_RESPONSE, RFC5769_TID) == Endpoint("192.0.2.1", 32853)
    message = parse_stun(RFC5769_RESPONSE)
    assert message.has_valid_integrity(b"VOkJxbRl1RmTxUk/WvJxBt")
    assert not message.has_valid_integrity(b"wrong")


def test_binding_response_for_another_transaction_is_refused() -> None:
    with pytest.raises(ValueError, match="another transaction"):
        parse_binding_response(RFC5769_RESPONSE, TID)


def test_binding_request_is_a_bare_header() -> None:
    request = binding_request(TID)
    assert request.tid == TID
    assert request.data == bytes.fromhex("000100002112a442") + TID


def test_corrupted_fingerprint_is_refused() -> None:
    corrupted = RFC5769_RESPONSE[:-1] + b"\x00"
    with pytest.raises(ValueError, match="fingerprint"):
        parse_stun(corrupted)


def test_coturn_438_phrase_loses_its_nul_byte() -> None:
    message = parse_stun(COTURN_438)
    assert message.name == "Refresh"
    assert message.error() == (438, "Stale nonce")
    assert message.octets("NONCE") == b"a5af0ddf107b7cc9"
    assert message.text("REALM") == "natlab"


def test_coturn_allocate_success_is_signed_with_the_long_term_key() -> None:
    message = parse_stun(COTURN_ALLOCATED)
    assert message.has_valid_integrity(long_term_key("natlab", "natlab", "s3cret"))
    assert not message.has_valid_integrity(long_term_key("natlab", "natlab", "other"))
    assert message.endpoint("XOR-RELAYED-ADDRESS") == Endpoint("127.0.0.1", 49168)
    assert message.endpoint("XOR-MAPPED-ADDRESS") == Endpoint("127.0.0.1", 45480)
    assert message.integer("LIFETIME") == 600


def test_long_term_key_is_md5_of_username_realm_password() -> None:
    assert long_term_key("natlab", "natlab", "s3cret") == hashlib.md5(b"natlab:natlab:s3cret").digest()


def test_send_indication_golden() -> None:
    # Type 0x0016, length 24; XOR-PEER-ADDRESS 192.0.2.1:32853; DATA "hello" padded to 8 bytes.
    expected = bytes.fromhex("001600182112a442000102030405060708090a0b001200080001a147e112a6430013000568656c6c6f000000")
    data = send_indication(Endpoint("192.0.2.1", 32853), b"hello", TID)
    assert data == expected
    message = parse_stun(data)
    assert (message.name, message.endpoint("XOR-PEER-ADDRESS"), message.data()) == (
        "Send", Endpoint("192.0.2.1", 32853), b"hello",
    )  # fmt: skip


def test_data_indication_round_trip_ipv6_and_empty_payload() -> None:
    peer = Endpoint("2001:db8::1", 9000)
    message = parse_stun(data_indication(peer, b"", TID))
    assert (message.name, message.endpoint("XOR-PEER-ADDRESS"), message.data()) == ("Data", peer, b"")


def test_channel_data_golden_and_padding_ignored() -> None:
    assert channel_data(0x4000, b"hi") == bytes.fromhex("40000002") + b"hi"
    assert parse_channel_data(bytes.fromhex("4fff0002") + b"hi\x00\x00") == (0x4FFF, b"hi")


@pytest.mark.parametrize("channel", [0x3FFF, 0x5000, 0x7FFF])
def test_channel_numbers_outside_rfc8656_range_are_refused(channel: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        channel_data(channel, b"x")


def test_truncated_channel_data_is_not_channel_data() -> None:
    with pytest.raises(ValueError, match="not a ChannelData"):
        parse_channel_data(bytes.fromhex("40000010") + b"short")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(binding_request(TID).data, True, id="stun-binding"),
        pytest.param(send_indication(Endpoint("192.0.2.1", 1), b"x", TID), True, id="stun-send"),
        pytest.param(channel_data(0x4000, b"hello"), True, id="channel-data"),
        pytest.param(channel_data(0x4000, b""), True, id="channel-data-empty"),
        pytest.param(b"\x00\x01\x00\x00" + b"\x00" * 16, False, id="stun-without-cookie"),
        pytest.param(b"A", False, id="one-byte"),
        pytest.param(b"", False, id="empty"),
        *(pytest.param(f"{verb} alice".encode(), False, id=f"natlab-{verb}") for verb in sorted(VERBS)),
    ],
)
def test_is_turn_datagram(data: bytes, expected: bool) -> None:
    assert is_turn_datagram(data) is expected


def test_mutated_packets_raise_only_value_error() -> None:
    """Byte flips, truncations and length edits of real packets: ``ValueError`` or a message, nothing else."""
    rng = random.Random(8656)
    originals = [RFC5769_RESPONSE, COTURN_438, COTURN_ALLOCATED, send_indication(Endpoint("192.0.2.1", 1), b"x")]
    for _ in range(3000):
        data = bytearray(rng.choice(originals))
        position = rng.randrange(HEADER_LENGTH, len(data))
        data[position] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(HEADER_LENGTH, len(data)) :]
            data[2:4] = (len(data) - HEADER_LENGTH).to_bytes(2, "big")
        try:
            message = parse_stun(bytes(data))
        except ValueError:
            continue
        message.error(), message.data(), message.endpoint("XOR-PEER-ADDRESS"), message.has_valid_integrity(b"k")
