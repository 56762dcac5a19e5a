"""One peer as the agent core knows it: its direct path, its relay path, delivery, and what status shows.

Pure data and small decisions, no I/O. The direct path and the relay path are both :class:`Path` machines
(the relay one probes the peer's relayed address through our TURN allocation). The *route* is the path in
use: direct when confirmed, else the relay when confirmed (and our allocation is up), else none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from client.engine.path import Path, PathState, PathTiming
from client.engine.reliable import Conversation
from client.engine.routes import Route
from protocol import Endpoint
from trust import PeerSession

RELAYED_SUFFIX = "; relayed, still probing direct"
RECONNECTING_SUFFIX = "; connecting again"
"""Added to the reason a pair lost its paths while the agent connects again by itself."""


@dataclass
class PendingConnect:
    """A local connect waiting for the server's ``punch`` (re-sent until it comes, up to a deadline)."""

    started: float
    deadline: float
    next_send: float
    txid: int = 0
    """The connect's transaction id: its retransmissions keep it, and the server's answers carry it."""


@dataclass
class Peer:
    id: str
    path: Path
    relay: Path
    extended: bool = False
    """The server's punch carried candidates (or the peer sent data/ack): it speaks data/ack."""
    conversation: Conversation | None = None
    sent: int = 0
    received: int = 0
    pending: PendingConnect | None = None
    reasking: PendingConnect | None = None
    """Our connect, answered by our punch, repeated until the peer is heard: its punch may have been lost."""
    used: Route = Route.NONE
    """The route last reported (path_changed is emitted when it changes)."""
    first_message_ms: float | None = None
    asked: float | None = None
    """When a local connect last asked for a path (one already up or under way included)."""
    reconnect_at: float | None = None
    """When to connect again once our relay is back (the relay path in use died with our allocation)."""
    routed: tuple[object, ...] | None = None
    """What the route in use was last worked out from (:meth:`routing`): unchanged, so is the route."""
    active: float = 0.0
    """When the peer was last introduced, heard from on a path, or sent a message: what idleness counts from."""
    introduced: bool = False
    """Our server's punch named the peer (a local connect alone does not tell whether it has keys)."""
    session: PeerSession | None = None
    """The AEAD session with a keyed peer (its keys came in the punch): every datagram to and from it is
    sealed. ``None`` for a seed-era peer (introduced without keys) and before the punch."""
    online: bool | None = None
    """What our server last said of the peer's presence (``None``: not asked yet)."""
    last_seen: float | None = None
    """When (``now``'s clock) our server last heard the peer, as of its last presence report."""
    keepalive: float | None = None
    """Our keepalive period to this peer when shorter than the agent's: its direct path went silent once (a
    NAT on the way, most likely ours, forgets idle mappings sooner than our keepalives came), ``None``:
    the agent's period. See :meth:`client.engine.paths.PathKeeper.keep_closer`."""
    next_keepalive: float = math.inf
    """When the next keepalive of this peer's own period is due (``inf`` without one)."""

    @property
    def seed(self) -> bool:
        """A seed-era peer: introduced without keys, so it talks text, and nothing it sends is authenticated."""
        return self.introduced and self.session is None

    def routing(self, relay_up: bool) -> tuple[object, ...]:
        """Everything :meth:`route` and :meth:`path_name` depend on."""
        path, relay = self.path, self.relay
        return path.state, path.addr, path.proven, relay.state, relay.addr, relay_up

    @classmethod
    def new(cls, peer_id: str, timing: PathTiming, now: float = 0.0) -> Peer:
        return cls(peer_id, Path(peer_id, timing), Path(peer_id, timing), active=now)

    def busy(self, relay_up: bool) -> bool:
        """Whether forgetting the peer would lose something: a connect or a punch under way, a message
        unacknowledged or held, or (to an extended peer, whose paths are watched for liveness) a path in use.
        A seed-era peer's path is never found dead, so there only traffic (:attr:`active`) keeps it."""
        if self.pending is not None or PathState.PUNCHING in (self.path.state, self.relay.state):
            return True
        if self.conversation is not None and not self.conversation.settled:
            return True
        return self.extended and self.route(relay_up) is not None

    def route(self, relay_up: bool) -> tuple[Route, Endpoint] | None:
        """The path in use and where it sends, or ``None``: direct when confirmed, except that a confirmed
        relay keeps the traffic until the direct path is :attr:`~client.engine.path.Path.proven` (answered
        both ways: a path switch never moves traffic into a half-open path)."""
        path, relay = self.path, self.relay
        relayed = relay_up and relay.state is PathState.DIRECT and relay.addr is not None
        if path.state is PathState.DIRECT and path.addr is not None and (not relayed or path.proven):
            return Route.DIRECT, path.addr
        if relayed:
            return Route.RELAY, relay.addr  # type: ignore[return-value]
        return None

    def path_name(self, relay_up: bool) -> Route:
        route = self.route(relay_up)
        if route is not None:
            return route[0]
        if PathState.PUNCHING in (self.path.state, self.relay.state):
            return Route.PUNCHING
        return Route.NONE

    def reason(self, relay_up: bool) -> str | None:
        name = self.path_name(relay_up)
        if name is Route.DIRECT:
            return None
        if name is Route.RELAY:
            return None if self.path.reason is None else self.path.reason + RELAYED_SUFFIX
        if self.relay.reason is not None and self.relay.reason.startswith("relay lost"):
            return self.relay.reason
        return self.path.reason or self.relay.reason

    def started(self) -> float | None:
        """When the current connection attempt began, what time to first message counts from: the direct
        path's start, which every punch sets, else the relay path's (the peer's relay probe came before any
        punch); or our latest local connect, if later. Not the earlier of the two paths' starts: a relay path
        that stayed up since an earlier attempt ignores the punch and keeps that attempt's start; and a path
        that came up by itself (the peer's background probe) before our connect asked for none."""
        attempt = self.path.started if self.path.started is not None else self.relay.started
        times = [t for t in (attempt, self.asked) if t is not None]
        return max(times, default=None)

    def status(self, relay_up: bool, now: float | None = None) -> dict[str, Any]:
        """As status JSON shows the peer; ``now`` gives the presence's last-seen age (else it is ``None``)."""
        route = self.route(relay_up)
        addr = route[1] if route is not None else self.path.addr
        counters = {"delivered": 0, "retransmitted": 0, "duplicates": 0}
        if self.conversation is not None:
            counters = {k: v for k, v in self.conversation.counters().items() if k in counters}
        return {
            "id": self.id,
            "addr": None if addr is None else str(addr),
            "path": str(self.path_name(relay_up)),
            "reason": self.reason(relay_up),
            "time_to_direct_ms": self.path.time_to_direct_ms,
            "time_to_first_message_ms": self.first_message_ms,
            "relay": str(route[1]) if route is not None and route[0] is Route.RELAY else None,
            "sent": self.sent,
            **counters,
            "received": self.received,
            "seed": self.seed,
            "online": self.online,
            "last_seen_s": None if now is None or self.last_seen is None else round(max(0.0, now - self.last_seen), 1),
            "keepalive_s": self.keepalive,
        }
