"""The datagrams of ``client linecheck``, pure: one table of kinds, each a fixed header padded with zeros.

Every datagram starts with the run's token (16 random bytes both ends were given), then its kind, then the
kind's fields in network byte order; the rest up to the datagram's size is zero padding. The echo answers a
request with a reply of exactly the request's length, so it never sends more than it was sent and the way
back carries the same bytes as the way out. Times are ``CLOCK_REALTIME`` nanoseconds (what the kernel stamps
received datagrams with): the lab's containers share the host's kernel and so its clock, which makes each
direction's one-way delay measurable.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass
from enum import IntEnum

TOKEN_BYTES = 16


class Kind(IntEnum):
    HELLO = 1
    """Sender -> echo, repeated until answered: the echo is up and the path open before any data counts."""
    HELLO_REPLY = 2
    DATA = 3
    """Sender -> echo: one numbered datagram of the measurement."""
    DATA_REPLY = 4
    """Echo -> sender: the datagram's numbers, and the echo's receipt number and times."""
    SUMMARY = 5
    """Sender -> echo, repeated until answered: how many were sent; the echo counts what it received."""
    SUMMARY_REPLY = 6
    DONE = 7
    """Sender -> echo: the run is over (the echo exits; if this is lost, it exits when idle)."""


@dataclass(frozen=True)
class Hello:
    token: bytes


@dataclass(frozen=True)
class HelloReply:
    token: bytes


@dataclass(frozen=True)
class Data:
    token: bytes
    seq: int
    """0, 1, 2, ... in sending order."""
    sent_ns: int


@dataclass(frozen=True)
class DataReply:
    token: bytes
    seq: int
    sent_ns: int
    receipt: int
    """The echo's count of data datagrams before this one (0, 1, 2, ... in its arrival order, duplicates too):
    the numbers of the replies, so the sender sees which replies the way back lost or doubled."""
    echo_received_ns: int
    echo_sent_ns: int


@dataclass(frozen=True)
class Summary:
    token: bytes
    count: int
    """How many data datagrams the sender sent (seq 0 .. count - 1)."""


@dataclass(frozen=True)
class SummaryReply:
    token: bytes
    count: int
    receipts: int
    """Data datagrams the echo received, duplicates included (= replies it sent)."""
    distinct: int
    """Distinct seqs below ``count`` among them."""
    lost_runs: int
    """Runs of consecutive seqs below ``count`` it never received (loss bursts)."""
    ahead: int
    """Datagrams that arrived before one sent earlier than them (see ``line_stats.Arrivals.ahead``)."""


@dataclass(frozen=True)
class Done:
    token: bytes


Message = Hello | HelloReply | Data | DataReply | Summary | SummaryReply | Done

KINDS: dict[Kind, tuple[type[Message], struct.Struct]] = {
    Kind.HELLO: (Hello, struct.Struct("!16sB")),
    Kind.HELLO_REPLY: (HelloReply, struct.Struct("!16sB")),
    Kind.DATA: (Data, struct.Struct("!16sBIQ")),
    Kind.DATA_REPLY: (DataReply, struct.Struct("!16sBIQIQQ")),
    Kind.SUMMARY: (Summary, struct.Struct("!16sBI")),
    Kind.SUMMARY_REPLY: (SummaryReply, struct.Struct("!16sBIIIII")),
    Kind.DONE: (Done, struct.Struct("!16sB")),
}
"""Kind -> (its class, its header: the token, the kind byte, then the class's fields after the token)."""
KIND_OF: dict[type[Message], Kind] = {cls: kind for kind, (cls, _) in KINDS.items()}

MIN_SIZE = 64
"""The smallest datagram the sender uses: room for the largest header (a data reply, 49 bytes)."""
MAX_SIZE = 65507
"""The largest UDP payload over IPv4."""


def header_size(kind: Kind) -> int:
    return KINDS[kind][1].size


def encode(message: Message, size: int = 0) -> bytes:
    """The datagram: header, then zeros up to ``size`` bytes (no padding when ``size`` is at most the header).

    ``ValueError`` when a field does not fit its header field (a seq or count beyond 32 bits, a wrong token).
    """
    kind = KIND_OF[type(message)]
    token, *fields = astuple(message)
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"token must be {TOKEN_BYTES} bytes, got {len(token)}")
    try:
        header = KINDS[kind][1].pack(token, kind, *fields)
    except struct.error as exc:
        raise ValueError(f"{kind.name.lower()}: {exc}") from None
    return header + bytes(max(0, size - len(header)))


def decode(data: bytes, token: bytes) -> Message:
    """The message in ``data``; ``ValueError`` saying why when it is not one of this run's (another token, an
    unknown kind, too short for its kind)."""
    if len(data) < TOKEN_BYTES + 1 or data[:TOKEN_BYTES] != token:
        raise ValueError("not this run's token")
    try:
        kind = Kind(data[TOKEN_BYTES])
    except ValueError:
        raise ValueError(f"unknown kind {data[TOKEN_BYTES]}") from None
    cls, header = KINDS[kind]
    if len(data) < header.size:
        raise ValueError(f"{kind.name.lower()} of {len(data)} bytes: its header needs {header.size}")
    _, _, *fields = header.unpack_from(data)
    return cls(token, *fields)
