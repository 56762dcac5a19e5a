"""When each peer next needs a tick (:class:`PeerClock`, a heap) and which peers an entry point touched
(:class:`Touched`), so that a datagram, a send or a tick works on the peers it concerns and no others.

Pure. Lazy, as :class:`client.engine.delivery.Sender`'s timers: a peer is rescheduled only when its wakeup
moves *earlier*; a later one leaves the earlier entry, which fires early (the peer's tick then finds nothing
to do and reschedules it). A flood moves its peer's wakeup later with every ack, so this keeps the heap at
about one entry per peer instead of one per datagram.
"""

from __future__ import annotations

import heapq
import math

from client.engine.peer import Peer


class PeerClock:
    """Peer id -> the time it is due, with the earliest found in O(log n)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._at: dict[str, float] = {}  # each peer's live entry; heap entries that differ are stale

    def schedule(self, peer: str, at: float) -> None:
        """``peer`` has something to do at ``at`` (``math.inf``: nothing), unless due earlier already."""
        if at < self._at.get(peer, math.inf):
            self._at[peer] = at
            heapq.heappush(self._heap, (at, peer))

    def cancel(self, peer: str) -> None:
        """``peer`` is forgotten: nothing is due for it (its heap entries are stale from now on)."""
        self._at.pop(peer, None)

    def next(self) -> float:
        """When the earliest peer is due (``math.inf`` if none is)."""
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def due(self, now: float) -> list[str]:
        """The peers due by ``now``, each taken off the clock (schedule them again after their tick)."""
        peers: list[str] = []
        while self.next() <= now:
            _, peer = heapq.heappop(self._heap)
            del self._at[peer]
            peers.append(peer)
        return peers


class Touched:
    """The peers an entry point touched, to be looked at when it ends; every peer after a change of what
    they all depend on (``shared``: our relay, our registration), or when told (``everyone``)."""

    def __init__(self, shared: object) -> None:
        self._peers: dict[str, Peer] = {}
        self._shared = shared
        self.everyone = False

    def add(self, peer: Peer) -> Peer:
        self._peers[peer.id] = peer
        return peer

    def discard(self, peer_id: str) -> None:
        """A peer forgotten during the entry point: nothing to look at."""
        self._peers.pop(peer_id, None)

    def take(self, peers: dict[str, Peer], shared: object) -> list[Peer]:
        """The peers to look at now (``peers`` is every peer), and start over."""
        everyone = self.everyone or shared != self._shared
        self.everyone, self._shared = False, shared
        taken = list(peers.values()) if everyone else list(self._peers.values())
        self._peers.clear()
        return taken
