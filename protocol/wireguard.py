"""WireGuard datagrams on the agent's socket: told apart from natlab's own by their first four bytes (pure).

The agent carries WireGuard's datagrams for its tunnel on the same UDP socket (and TURN allocation) as its own
probes and messages (PROTOCOL.md, "Tunnel datagrams"). Every WireGuard message starts with its type in one
byte, 1 (handshake initiation), 2 (handshake response), 3 (cookie reply) or 4 (transport data), then three
zero bytes. natlab's own datagrams never start so: a v2 frame starts with 0xF5, a text datagram with a
letter (UTF-8 text, never a control byte), and STUN/TURN from the TURN server (its own address, told apart
first anyway) starts with a first byte of 0 or 1 followed by a second byte that is not 0 for any STUN message
whose first byte is 1 (a success or error response: class bits set in the second byte), or with 0x40-0x7F
(ChannelData).
"""

from __future__ import annotations

TYPES = (1, 2, 3, 4)
"""WireGuard's message types: handshake initiation, handshake response, cookie reply, transport data."""
MIN_SIZE = 32
"""The smallest WireGuard message: a keepalive (transport data with nothing inside: 16-byte header + tag)."""
_RESERVED = b"\x00\x00\x00"


def is_wireguard(data: bytes) -> bool:
    """Whether ``data`` is shaped as a WireGuard message (type 1-4, three zero bytes, at least 32 bytes).
    Shape only: WireGuard itself authenticates what it accepts."""
    return 0 < data[0] < 5 and data[1:4] == _RESERVED and len(data) >= MIN_SIZE if data else False
