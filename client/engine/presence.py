"""Presence: whether our server has heard the peers we care about lately, and the events when that changes.

Every keepalive period the agent asks its server (a presence query, with a proof: the server answers only
authenticated peers) about each peer it has a path or a chat with, and about each it last heard was offline
(so that it notices the peer come back after its path died), at most :data:`PER_PERIOD` a period. A report
turns into events: ``peer_offline`` when a peer is offline (first seen so, or after being online),
``peer_back`` when a peer reported offline is online again. Status shows the last answer (``online``) and
the age of what the server last heard (``last_seen_s``). Pure, time passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from client.engine.events import PeerBack, PeerOffline
from client.engine.outputs import Emit, Output
from client.engine.peer import Peer
from client.engine.routes import Route
from protocol import PresenceReport

PER_PERIOD = 4
"""Presence queries a keepalive period at most. The server limits requests per source IP (20 a second, 50 at
once, by default; agents behind one NAT share them), and remembers a bounded number of proofs (its replay
guard is sized for about one per peer per keepalive period): registers and connects must never wait for
presence. With more peers to watch, they take turns."""


class Watch:
    """Which peers to ask about this keepalive period: those with a path in use, messages either way, or last
    reported offline; at most :data:`PER_PERIOD`, the next ones (by id) the period after."""

    def __init__(self, per_period: int = PER_PERIOD) -> None:
        self.per_period = per_period
        self._after = ""  # the last id asked about: the next period starts after it

    def next(self, peers: Iterable[Peer]) -> list[str]:
        wanted = sorted(peer.id for peer in peers if _watched(peer))
        if len(wanted) <= self.per_period:
            return wanted
        later = [peer_id for peer_id in wanted if peer_id > self._after]
        turn = (later + wanted)[: self.per_period]
        self._after = turn[-1]
        return turn


def _watched(peer: Peer) -> bool:
    return peer.used is not Route.NONE or bool(peer.sent or peer.received) or peer.online is False


def on_report(peer: Peer, report: PresenceReport, now: float) -> list[Output]:
    """What our server said of ``peer``: remembered for status, and an event if it went or came back."""
    was = peer.online
    peer.online = report.online
    if report.age_ms is not None:
        peer.last_seen = now - report.age_ms / 1000
    if not report.online and was is not False:
        age = None if report.age_ms is None else round(report.age_ms / 1000, 1)
        return [Emit(PeerOffline(peer.id, age))]
    if report.online and was is False:
        return [Emit(PeerBack(peer.id))]
    return []
