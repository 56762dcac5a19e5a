"""The messages only protocol v2 carries (the others are shared with the text grammar, in messages.py).

Plain data, like every message: no crypto here (``Sealed.box`` is ciphertext someone else made and opens).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Retry:
    """S -> C: "echo this cookie": the request was not processed; send it again with ``cookie`` in it."""

    cookie: bytes


@dataclass(frozen=True)
class PresenceQuery:
    """C -> S: is ``peer_id`` online? Asked by ``from_id`` (answered only to authenticated peers)."""

    from_id: str
    peer_id: str


@dataclass(frozen=True)
class PresenceReport:
    """S -> C: whether ``peer_id`` is online, and ``age_ms`` since the server last heard it (None: never or
    forgotten)."""

    peer_id: str
    online: bool
    age_ms: int | None = None


@dataclass(frozen=True)
class StatsQuery:
    """C -> S: the server's counters, please."""


@dataclass(frozen=True)
class StatsReport:
    """S -> C: the server's counters, ``(name, value)`` in the server's order."""

    counters: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Sealed:
    """C -> C between v2 clients: the sender ``id``'s AEAD ``box`` (ciphertext and tag), sealed under the nonce
    made of its ``boot`` and ``counter``; it opens to the v2 encoding of one frame (see PROTOCOL.md)."""

    id: str
    boot: int
    counter: int
    box: bytes
