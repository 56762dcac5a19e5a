"""When each peer next needs a tick: a heap, so that a datagram or a tick touches only the peers it concerns.

Pure. Lazy, as :class:`client.engine.delivery.Sender`'s timers: a peer is rescheduled only when its wakeup
moves *earlier*; a later one leaves the earlier entry, which fires early (the peer's tick then finds nothing
to do and reschedules it). A flood moves its peer's wakeup later with every ack, so this keeps the heap at
about one entry per peer instead of one per datagram.
"""

from __future__ import annotations

import heapq
import math


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
