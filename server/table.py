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
- A peer not seen for ``ttl`` seconds (three keepalive intervals, :data:`DEFAULT_TTL`) is expired:
  ``lookup`` and ``touch`` ignore it at once (lazily), and ``expire`` removes it. Only ``expire`` removes
  expired peers, so every expiry is reported once. ``expire`` costs O(1) plus the peers it removes, not
  O(table): the table is kept in ``last_seen`` order (every update re-inserts its peer at the end; ``now``
  never goes backwards), so the expired peers are a prefix of it. The server calls it before every
  register, which a flood of sources must not make O(n).
- At most ``max_peers`` entries (default 1024); a new id beyond that is refused with ``FULL``. Expired
  entries still take room until ``expire`` runs, so call it before ``register``.
- Unkeyed ids (a seed-era ``register``, or a v2 id no key holds) may fill at most ``unkeyed_share`` of the
  table (default half, :data:`DEFAULT_UNKEYED_SHARE`): beyond that a new unkeyed id is refused with
  ``UNKEYED_FULL``, so ids that prove a key always find room however many throwaway ids came first.
- At most ``ids_per_ip`` ids (default 16) from one source (:func:`server.sources.source_ip`: an IPv4
  address or an IPv6 /64, whatever the port); beyond that a register is refused with ``QUOTA``. The lab
  puts at most two hosts behind one address (hairpin: alice and carol behind router-a). Ids of the
  server's registry (``in_registry``) neither count toward nor are refused by the quota: an attacker behind
  the same carrier-grade NAT address must not shut a keyed id out.
- A limit refuses only a register that would grow what it counts: a refresh, or a move within one source,
  never is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from protocol import Candidates, Endpoint, Keys
from server.sources import source_ip

DEFAULT_KEEPALIVE_INTERVAL = 10.0
"""Seconds between a client's keepalives (the agents' NATLAB_KEEPALIVE default)."""
MISSED_KEEPALIVES = 3
DEFAULT_TTL = MISSED_KEEPALIVES * DEFAULT_KEEPALIVE_INTERVAL
"""A peer is gone after three keepalives in a row did not arrive."""
DEFAULT_MAX_PEERS = 1024
DEFAULT_IDS_PER_IP = 16
DEFAULT_UNKEYED_SHARE = 0.5


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
    keys: Keys | None = None
    """The public keys it proved when it registered (protocol v2, which always carries them); ``None`` for a
    text client. A keyed peer's address is validated (it echoed a cookie there), so what the server sends
    it is not held to the amplification budget."""
    in_registry: bool = False
    """Its id is in the server's registry: exempt from the per-ip quota."""

    @property
    def keyed(self) -> bool:
        """Whether it proved a key (and so speaks v2); unkeyed ids hold a share of the table."""
        return self.keys is not None

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
    """Refused: the table holds ``max_peers``."""
    UNKEYED_FULL = "unkeyed_full"
    """Refused: unkeyed ids hold their whole share of the table."""
    QUOTA = "quota"
    """Refused: the source holds ``ids_per_ip`` ids already."""

    @property
    def refused(self) -> bool:
        return self in _REFUSALS


_REFUSALS = frozenset({Outcome.FULL, Outcome.UNKEYED_FULL, Outcome.QUOTA})


@dataclass(frozen=True)
class Registration:
    """The result of :meth:`PeerTable.register`."""

    outcome: Outcome
    peer: Peer | None = None
    """The stored peer; ``None`` when refused."""
    previous: Endpoint | None = None
    """The address the id moved from (``MOVED`` only)."""
    replaced: str | None = None
    """The id that held this address before and was dropped for it."""
    relay_changed: bool = False
    """Whether the stored relay differs from this id's previous one (none before a ``NEW`` one)."""


class PeerTable:
    """Peers by id, with an address index for keepalives. ``version`` counts every change."""

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_peers: int = DEFAULT_MAX_PEERS,
        ids_per_ip: int = DEFAULT_IDS_PER_IP,
        unkeyed_share: float = DEFAULT_UNKEYED_SHARE,
    ) -> None:
        if ttl <= 0 or max_peers < 1 or ids_per_ip < 1 or not 0 < unkeyed_share <= 1:
            raise ValueError("ttl must be > 0, max_peers and ids_per_ip >= 1, unkeyed_share in (0, 1]")
        self.ttl = ttl
        self.max_peers = max_peers
        self.ids_per_ip = ids_per_ip
        self.max_unkeyed = max(1, int(max_peers * unkeyed_share))
        self.version = 0
        self._peers: dict[str, Peer] = {}
        self._by_addr: dict[Endpoint, str] = {}
        self._unkeyed = 0
        self._per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        """Whether ``peer_id`` has an entry (live, or expired and not yet removed by :meth:`expire`)."""
        return peer_id in self._peers

    def register(
        self,
        peer_id: str,
        addr: Endpoint,
        now: float,
        candidates: Candidates | None = None,
        *,
        keys: Keys | None = None,
        in_registry: bool = False,
    ) -> Registration:
        """Store ``peer_id`` at ``addr`` with ``candidates`` (``None``: a seed-era client) and the ``keys`` the
        request proved (``None``: unkeyed); ``in_registry`` exempts it from the per-ip quota. Whether the
        request may do so (keys, proofs, addresses) is the caller's to check first."""
        old = self._peers.get(peer_id)
        if old is not None and self._only_seen(old, now, (addr, candidates, keys, in_registry)):
            return Registration(Outcome.REFRESHED, self._seen(old, now))
        holder = self._by_addr.get(addr)
        displaced = self._peers[holder] if holder is not None and holder != peer_id else None
        leaving = [p for p in (old, displaced) if p is not None]
        refusal = self._refusal(leaving, source_ip(addr), keys is not None, in_registry)
        if refusal is not None:
            return Registration(refusal)
        if old is not None and not self._live(old, now):
            old = None  # an expired entry is re-registered as new
        if old is not None and old.addr == addr:
            peer = replace(old, last_seen=now, candidates=candidates, keys=keys, in_registry=in_registry)
            outcome = Outcome.REFRESHED
        else:
            peer = Peer(peer_id, addr, now, now, candidates, keys, in_registry)
            outcome = Outcome.NEW if old is None else Outcome.MOVED
        if displaced is not None:
            self._remove(displaced.id)
        self._remove(peer_id)
        self._insert(peer)
        self.version += 1
        previous = old.addr if outcome is Outcome.MOVED and old is not None else None
        relay_changed = peer.relay != (old.relay if old is not None else None)
        return Registration(outcome, peer, previous, displaced.id if displaced else None, relay_changed)

    def lookup(self, peer_id: str, now: float) -> Peer | None:
        """The live peer registered as ``peer_id``, if any."""
        peer = self._peers.get(peer_id)
        return peer if peer is not None and self._live(peer, now) else None

    def at(self, addr: Endpoint, now: float) -> Peer | None:
        """The live peer registered at ``addr``, if any."""
        peer_id = self._by_addr.get(addr)
        return self.lookup(peer_id, now) if peer_id is not None else None

    def touch(self, addr: Endpoint, now: float, keyed_too: bool = True) -> Peer | None:
        """Refresh the live peer registered at ``addr``, if any (if unkeyed, unless ``keyed_too``), and return
        it."""
        peer = self.at(addr, now)
        if peer is None or (peer.keyed and not keyed_too):
            return None
        return self._seen(peer, now)

    def _only_seen(self, old: Peer, now: float, stored: tuple[object, ...]) -> bool:
        """Whether registering ``old``'s id again at ``now`` with ``stored`` (address, candidates, keys, registry
        standing) changes nothing but its ``last_seen``: the same values, and ``old`` still alive. Most
        registers are these (clients re-register to stay present) and a refresh is never refused, so
        :meth:`register` takes the shortcut of a :meth:`touch` for them."""
        return (old.addr, old.candidates, old.keys, old.in_registry) == stored and self._live(old, now)

    def _seen(self, peer: Peer, now: float) -> Peer:
        """``peer`` seen at ``now``, re-inserted at the end: the table stays in ``last_seen`` order."""
        peer = replace(peer, last_seen=now)
        del self._peers[peer.id]
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

    def _refusal(self, leaving: list[Peer], source: str, keyed: bool, in_registry: bool) -> Outcome | None:
        """Which limit a new entry from ``source`` would break once ``leaving`` are gone, if any."""
        held = self._per_source.get(source, 0)
        counted = sum(source_ip(p.addr) == source and not p.in_registry for p in leaving)
        if not in_registry and _grows_past(held, held + 1 - counted, self.ids_per_ip):
            return Outcome.QUOTA
        if _grows_past(len(self._peers), len(self._peers) + 1 - len(leaving), self.max_peers):
            return Outcome.FULL
        unkeyed = self._unkeyed + (not keyed) - sum(not p.keyed for p in leaving)
        if _grows_past(self._unkeyed, unkeyed, self.max_unkeyed):
            return Outcome.UNKEYED_FULL
        return None

    def _insert(self, peer: Peer) -> None:
        self._peers[peer.id] = peer
        self._by_addr[peer.addr] = peer.id
        self._unkeyed += not peer.keyed
        if not peer.in_registry:
            source = source_ip(peer.addr)
            self._per_source[source] = self._per_source.get(source, 0) + 1

    def _remove(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        if self._by_addr.get(peer.addr) == peer_id:
            del self._by_addr[peer.addr]
        self._unkeyed -= not peer.keyed
        if not peer.in_registry:
            source = source_ip(peer.addr)
            held = self._per_source.pop(source) - 1
            if held:
                self._per_source[source] = held


def _grows_past(before: int, after: int, limit: int) -> bool:
    """A count would go from ``before`` to ``after``, above ``limit``: refused (a count never grows by refusing
    less, and one already above a limit that was lowered is not made worse by what does not grow it)."""
    return after > limit and after > before
