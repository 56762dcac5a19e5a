"""The peers one agent knows, bounded: at most ``max_peers``, and an idle one (see :meth:`Peer.busy`) is
forgotten once it has been idle for ``peer_idle`` seconds, or first when room is needed. Pure.

Who may add a peer is the core's business (our server's punch, a local connect); this only keeps the count
and says which peer goes. Finding the oldest idle peer walks the table, at most ``max_peers`` of them, and
only when it is full and an introduction comes (introductions we did not ask for are rate-limited): no
datagram from a stranger ever gets here.
"""

from __future__ import annotations

from client.engine.bounds import Bounds
from client.engine.path import PathTiming
from client.engine.peer import Peer


class PeerTable:
    """Peer id -> :class:`Peer`, within :class:`Bounds`."""

    def __init__(self, bounds: Bounds, timing: PathTiming) -> None:
        self.bounds = bounds
        self.timing = timing
        self.peers: dict[str, Peer] = {}

    @property
    def full(self) -> bool:
        return len(self.peers) >= self.bounds.max_peers

    def add(self, peer_id: str, now: float) -> Peer:
        """A new peer (the caller made room: see :attr:`full`)."""
        peer = self.peers[peer_id] = Peer.new(peer_id, self.timing, now)
        return peer

    def remove(self, peer_id: str) -> None:
        del self.peers[peer_id]

    def expiry(self, peer: Peer, relay_up: bool) -> float | None:
        """When ``peer`` is to be forgotten if nothing happens, or ``None`` while it is busy."""
        return None if peer.busy(relay_up) else peer.active + self.bounds.peer_idle

    def oldest_idle(self, relay_up: bool) -> Peer | None:
        """The idle peer active longest ago (the first to go when room is needed), or ``None``."""
        idle = (peer for peer in self.peers.values() if not peer.busy(relay_up))
        return min(idle, key=_active, default=None)


def _active(peer: Peer) -> float:
    return peer.active
