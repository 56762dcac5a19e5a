"""Tunnel datagrams told apart from natlab's own on the agent's socket, and the /etc/hosts block (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from client.tunnel import hosts
from protocol import Frame, Hello, Keepalive, encode
from protocol.wireguard import MIN_SIZE, is_wireguard


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_every_wireguard_message_type_is_a_tunnel_datagram(kind: int) -> None:
    assert is_wireguard(bytes([kind, 0, 0, 0]) + bytes(MIN_SIZE - 4))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([4, 0, 0, 0]) + bytes(10),  # shorter than any WireGuard message
        bytes([5, 0, 0, 0]) + bytes(40),  # no such type
        bytes([0, 0, 0, 0]) + bytes(40),
        bytes([1, 1, 0, 8]) + bytes.fromhex("2112a442") + bytes(32),  # a STUN Binding success response
        bytes([0, 1, 0, 0]) + bytes.fromhex("2112a442") + bytes(32),  # a STUN Binding request
        bytes([0x40, 0, 0, 40]) + bytes(40),  # TURN ChannelData
    ],
)
def test_stun_turn_and_garbage_are_not(data: bytes) -> None:
    assert not is_wireguard(data)


def test_natlab_datagrams_are_never_tunnel_datagrams() -> None:
    """v2 frames start with 0xF5, text with a letter: neither is a WireGuard type byte."""
    text = encode(Hello("alice"))
    frame = encode(Frame(txid=7, message=Keepalive()))
    assert text[0:1].isalpha()
    assert frame[0] == 0xF5
    assert not is_wireguard(text.ljust(64, b"x"))
    assert not is_wireguard(frame.ljust(64, b"\0"))


def test_the_hosts_block_is_added_replaced_and_removed_leaving_the_rest() -> None:
    original = "127.0.0.1\tlocalhost\n198.18.1.10\tabc123\n"
    up = hosts.with_block(original, {"bob": IPv4Address("198.19.255.2"), "alice": IPv4Address("198.19.255.1")})
    assert up == (
        original + hosts.BEGIN + "\n198.19.255.1\talice.natlab\n198.19.255.2\tbob.natlab\n" + hosts.END + "\n"
    )
    again = hosts.with_block(up, {"alice": IPv4Address("198.19.255.1")})
    assert again == original + hosts.BEGIN + "\n198.19.255.1\talice.natlab\n" + hosts.END + "\n"
    assert hosts.without_block(again) == original
    assert hosts.without_block(original) == original
    assert hosts.with_block("no newline", {}).startswith("no newline\n")
