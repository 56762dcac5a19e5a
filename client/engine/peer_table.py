"""The peers one agent knows, bounded, and everything kept per peer in step with them. Pure.

At most ``max_peers``; an idle peer (see :meth:`Peer.busy`) is forgotten once it has been idle for
``peer_idle`` seconds, or first when room is needed, and if no peer is idle a new one is refused. Who may be
added is the core's business (our server's punch, a local connect); this keeps the count, says which peer
goes, and keeps the indexes by peer (the clock, the entry point's touched peers, the paths' addresses, the
held frames) right as peers come and go. Finding the oldest idle peer walks the table, at most ``max_peers``
of them, and only when it is full and an introduction comes (introductions we did not ask for are
rate-limited): no datagram from a stranger ever gets here.
"""

from __future__ import annotations

import logging

from client.engine.addresses import AddressBook
from client.engine.bounds import Bounds
from client.engine.clock import PeerClock, Touched
from client.engine.drops import Drop, Drops
from client.engine.events import PeerForgotten
from client.engine.outputs import Emit, Log, Output
from client.engine.path import PathTiming
from client.engine.peer import Peer
from client.engine.sealing import Sealer


class PeerTable:
    """Peer id -> :class:`Peer`, within :class:`Bounds`; ``clock`` and ``touched`` are the core's."""

    def __init__(
        self,
        bounds: Bounds,
        timing: PathTiming,
        clock: PeerClock,
        touched: Touched,
        drops: Drops,
        *,
        sealer: Sealer,
    ) -> None:
        self.bounds = bounds
        self.timing = timing
        self.peers: dict[str, Peer] = {}
        self.addresses = AddressBook()
        self._clock = clock
        self._touched = touched
        self._drops = drops
        self._sealer = sealer

    def admit(self, peer_id: str, now: float, relay_up: bool) -> tuple[Peer | None, list[Output]]:
        """A new peer, touched, making room by forgetting the oldest idle peer if the table is full; ``None``
        (and a warning) if every peer is busy."""
        out: list[Output] = []
        if len(self.peers) >= self.bounds.max_peers:
            oldest = self._oldest_idle(relay_up)
            if oldest is None:
                self._drops.count(Drop.PEER_TABLE_FULL)
                return None, [Log(logging.WARNING, f"refused peer {peer_id}: {self.full()}")]
            out = self.forget(oldest, Drop.PEER_EVICTED, f"the peer table is full: making room for {peer_id}")
        peer = self.peers[peer_id] = Peer.new(peer_id, self.timing, now)
        return self._touched.add(peer), out

    def full(self) -> str:
        """Why a new peer is refused."""
        return f"the peer table is full ({self.bounds.max_peers} peers, none idle; NATLAB_MAX_PEERS)"

    def forget(self, peer: Peer, reason: Drop, why: str) -> list[Output]:
        """Forget an idle peer by ourselves (expired, or evicted to make room), and all we kept for it."""
        del self.peers[peer.id]
        self._clock.cancel(peer.id)
        self._touched.discard(peer.id)
        self.addresses.remove(peer.id)
        if peer.conversation is not None:
            peer.conversation.receiver.close()
        self._sealer.forget(peer)  # its session outlives it (bounded): a replay of its datagrams stays one
        self._drops.count(reason)
        return [Emit(PeerForgotten(peer.id, why))]

    def expire(self, peer: Peer, now: float, relay_up: bool) -> list[Output]:
        """Forget ``peer`` if it has been idle for ``peer_idle`` seconds by ``now``."""
        expiry = self._expiry(peer, relay_up)
        if expiry is None or now < expiry:
            return []
        return self.forget(peer, Drop.PEER_EXPIRED, f"idle for {self.bounds.peer_idle:g} s")

    def settle(self, peers: list[Peer], relay_up: bool) -> None:
        """After an entry point touched ``peers``: file them under their paths' addresses, and have each
        looked at again when it would expire."""
        for peer in peers:
            self.addresses.file(peer)
            expiry = self._expiry(peer, relay_up)
            if expiry is not None:
                self._clock.schedule(peer.id, expiry)

    def _expiry(self, peer: Peer, relay_up: bool) -> float | None:
        """When ``peer`` is to be forgotten if nothing happens, or ``None`` while it is busy."""
        return None if peer.busy(relay_up) else peer.active + self.bounds.peer_idle

    def _oldest_idle(self, relay_up: bool) -> Peer | None:
        """The idle peer active longest ago (the first to go when room is needed), or ``None``."""
        idle = (peer for peer in self.peers.values() if not peer.busy(relay_up))
        return min(idle, key=_active, default=None)


def _active(peer: Peer) -> float:
    return peer.active
