"""The signal server's peer table: who is registered at which address, and since when.

A pure state machine: no I/O, no clocks. Every call that depends on time takes ``now``, a monotonic
timestamp in seconds (``time.monotonic()`` in production, plain numbers in tests); wall-clock time is
derived only for display (see :mod:`server.state`), so a clock step can never expire a peer.

Rules:

- ``register`` stores the address the server saw and the candidates the peer sent (``None`` for a
  seed-era client, which sends none). The same id from a new address *moves*; a new id from
  an address another id holds *replaces* that id (a UDP address is one socket at a time, so the old entry
  is stale or the same client renamed itself). A refresh stores the candidates it carries, so a client
  re-registers to announce a TURN relay it gained, changed or lost.
- A peer not seen for ``ttl`` seconds is expired: ``lookup`` and ``touch`` ignore it at once (lazily),
  and ``expire`` removes it. Only ``expire`` removes expired peers, so every expiry is reported once.
  ``expire`` costs O(1) plus the peers it removes, not O(table): the table is kept in ``last_seen`` order
  (every update re-inserts its peer at the end; ``now`` never goes backwards), so the expired peers are a
  prefix of it. The server calls it before every register, which a flood of sources must not make O(n).
- At most ``max_peers`` entries (default 1024); a new id beyond that is refused with ``FULL``. Expired
  entries still take room until ``expire`` runs, so call it before ``register``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from protocol import Candidates, Endpoint

DEFAULT_TTL = 120.0
DEFAULT_MAX_PEERS = 1024


@dataclass(frozen=True)
class Peer:
    """One registered peer; times are monotonic seconds."""

    id: str
    addr: Endpoint
    registered_at: float
    """When this id registered at its current address (a move resets it, a refresh does not)."""
    last_seen: float
    """When a datagram last proved it present (register, keepalive or connect from its address)."""
    candidates: Candidates | None = None
    """What it sent with ``register``; ``None`` for a seed-era client."""

    @property
    def extended(self) -> bool:
        """Whether it speaks the natlab extension (``punch ... relay=``, ``data``, ``ack``)."""
        return self.candidates is not None

    @property
    def relay(self) -> Endpoint | None:
        """Its TURN relayed address, if it announced one."""
        return self.candidates.relay if self.candidates is not None else None


class Outcome(enum.Enum):
    NEW = "new"
    REFRESHED = "refreshed"
    MOVED = "moved"
    FULL = "full"


@dataclass(frozen=True)
class Registration:
    """The result of :meth:`PeerTable.register`."""

    outcome: Outcome
    peer: Peer | None = None
    """The stored peer; ``None`` when ``FULL``."""
    previous: Endpoint | None = None
    """The address the id moved from (``MOVED`` only)."""
    replaced: str | None = None
    """The id that held this address before and was dropped for it."""
    relay_changed: bool = False
    """Whether the stored relay differs from this id's previous one (none before a ``NEW`` one)."""


class PeerTable:
    """Peers by id, with an address index for keepalives. ``version`` counts every change."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_peers: int = DEFAULT_MAX_PEERS) -> None:
        if ttl <= 0 or max_peers < 1:
            raise ValueError("ttl must be > 0 and max_peers >= 1")
        self.ttl = ttl
        self.max_peers = max_peers
        self.version = 0
        self._peers: dict[str, Peer] = {}
        self._by_addr: dict[Endpoint, str] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def register(self, peer_id: str, addr: Endpoint, now: float, candidates: Candidates | None = None) -> Registration:
        """Store ``peer_id`` at ``addr`` with ``candidates`` (``None``: a seed-era client)."""
        old = self._peers.get(peer_id)
        if old is not None and not self._live(old, now):
            old = None  # an expired entry is re-registered as new; it already holds a slot
        elif old is None and len(self._peers) >= self.max_peers and addr not in self._by_addr:
            return Registration(Outcome.FULL)  # (taking over another id's address frees its slot)
        if old is not None and old.addr == addr:
            peer = replace(old, last_seen=now, candidates=candidates)
            outcome = Outcome.REFRESHED
        else:
            peer = Peer(peer_id, addr, registered_at=now, last_seen=now, candidates=candidates)
            outcome = Outcome.NEW if old is None else Outcome.MOVED
        replaced = self._by_addr.get(addr)
        if replaced == peer_id:
            replaced = None
        elif replaced is not None:
            del self._peers[replaced]
        self._remove(peer_id)
        self._peers[peer_id] = peer
        self._by_addr[addr] = peer_id
        self.version += 1
        previous = old.addr if outcome is Outcome.MOVED and old is not None else None
        relay_changed = peer.relay != (old.relay if old is not None else None)
        return Registration(outcome, peer, previous, replaced, relay_changed)

    def lookup(self, peer_id: str, now: float) -> Peer | None:
        """The live peer registered as ``peer_id``, if any."""
        peer = self._peers.get(peer_id)
        return peer if peer is not None and self._live(peer, now) else None

    def touch(self, addr: Endpoint, now: float) -> Peer | None:
        """Refresh the live peer registered at ``addr``, if any, and return it."""
        peer_id = self._by_addr.get(addr)
        peer = self.lookup(peer_id, now) if peer_id is not None else None
        if peer is None:
            return None
        peer = replace(peer, last_seen=now)
        del self._peers[peer.id]  # re-inserted at the end: the table stays in last_seen order
        self._peers[peer.id] = peer
        self.version += 1
        return peer

    def expire(self, now: float) -> list[Peer]:
        """Remove the peers not seen for ``ttl`` seconds and return them."""
        gone = []
        for peer in self._peers.values():  # oldest last_seen first (see the module's rules)
            if self._live(peer, now):
                break
            gone.append(peer)
        for peer in gone:
            self._remove(peer.id)
        if gone:
            self.version += 1
        return gone

    def snapshot(self, now: float) -> list[Peer]:
        """The live peers, sorted by id."""
        return sorted((p for p in self._peers.values() if self._live(p, now)), key=lambda p: p.id)

    def _live(self, peer: Peer, now: float) -> bool:
        return now - peer.last_seen < self.ttl

    def _remove(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None and self._by_addr.get(peer.addr) == peer_id:
            del self._by_addr[peer.addr]
