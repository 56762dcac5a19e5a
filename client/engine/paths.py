"""Each peer's two paths over time: their actions performed (probes direct or through the relay, events),
liveness, the route in use and its changes, and connecting again once a lost relay is back. Pure."""

from __future__ import annotations

import logging
import math

from client.engine.carrier import Carrier
from client.engine.clock import PeerClock
from client.engine.drops import Drop, Drops
from client.engine.events import PathChanged
from client.engine.messaging import Messenger
from client.engine.outputs import Emit, Log, Output
from client.engine.path import Action, Answer, Changed, Ignored, Moved, PathState, PathTiming, Probe, Spent
from client.engine.path_events import change_reason, direct_path_event, relay_path_event
from client.engine.peer import RECONNECTING_SUFFIX, Peer
from client.engine.routes import Route
from client.engine.server_link import ServerLink
from protocol import Hello, HelloAck, Keepalive

LIVENESS_PERIODS = 3
"""Keepalive periods of silence after which a path to an extended peer counts as lost."""
MIN_KEEPALIVE = 1.0
"""Seconds: the shortest keepalive period :meth:`PathKeeper.keep_closer` goes down to."""

# The active check of a direct path in use (:meth:`client.engine.path.Path.check`). Keepalive-paced liveness
# (3 silent periods, 6-30 s) is right for an idle path, whose loss costs nothing until it is used, but a
# path carrying a ping every 0.1 s or a TCP stream loses everything sent while it is dead. So while traffic
# goes out on the direct path, the peer must answer on it (a hello-ack to our probe, an ack to our data)
# at least every CHECK_QUIET s; when it has not, probes go out every CHECK_INTERVAL s, and none answered
# within CHECK_DEADLINE s loses the path: the route falls to the relay, kept warm by its keepalives, and the
# background probing (direct_retry) brings direct back. A cut is noticed CHECK_DEADLINE to CHECK_QUIET +
# CHECK_DEADLINE after it happens (1-1.5 s), depending on when the last answer came; later on a loaded
# host, where the check's probes wait for late ticks (see Path.check).
#
# Others' numbers, for the same job at Internet scale: ICE consent freshness (RFC 7675) checks every 5 s
# (randomised) and gives a path up after 30 s without a response; Tailscale's magicsock pings the path in
# use every 3 s while the peer is active (heartbeatInterval) and trusts it alone for 6.5 s after a pong
# (trustUDPAddrDuration), sending by both the path and DERP after that. Both bound their overhead and false
# alarms over many peers on long, lossy paths at the cost of seconds of loss; ours is a lab with RTTs in
# milliseconds and a handful of peers, and a switch is to cost a few packets. Still, a lossy path must not
# be lost: CHECK_DEADLINE / CHECK_INTERVAL = 20 probes, all of which a path losing 30 % each way (a round
# trip gets through with p = 0.49) loses with p = 0.51^20, about 1.4e-6 a check (at two checks a second,
# once in about four days of traffic, if the losses are independent), and an ack of our data counts as an
# answer too. A check is mostly one probe answered at once; a dead path costs 20 sealed hellos (about 2 KB).
# The deadline is still several round trips of a path a few hundred milliseconds long.
CHECK_QUIET = 0.5
"""Seconds since the peer's last answer on the direct path after which traffic sent on it calls for a check."""
CHECK_DEADLINE = 1.0
"""Seconds a check waits for an answer before the direct path counts as lost."""
CHECK_INTERVAL = 0.05
"""Seconds between a check's probes."""


class PathKeeper:
    """Drives every peer's direct and relay :class:`~client.engine.path.Path` for one agent."""

    def __init__(
        self,
        me: str,
        *,
        timing: PathTiming,
        keepalive: float,
        direct_retry: float,
        carrier: Carrier,
        server: ServerLink,
        messenger: Messenger,
        drops: Drops,
        probe_bytes: int,
    ) -> None:
        self.me = me
        self.timing = timing
        self.keepalive = keepalive
        self.liveness = LIVENESS_PERIODS * keepalive
        self.direct_retry = direct_retry
        self.carrier = carrier
        self.server = server
        self.messenger = messenger
        self.drops = drops
        self.probe_bytes = probe_bytes
        """Bytes of one probe as the budget counts them (a sealed hello)."""
        self.changes = 0
        """Path state changes and moves performed so far: what a copy of the confirmed paths (the tunnel's
        inbound maps) compares to know it is up to date, in O(1)."""

    def perform(self, peer: Peer, actions: list[Action], now: float, via_relay: bool) -> list[Output]:
        """Turn a path's actions into datagrams (via the relay for the relay path), events and log lines."""
        me, out = self.me, list[Output]()
        path = peer.relay if via_relay else peer.path
        for action in actions:
            match action:
                case Probe(to):
                    out += self.carrier.to(peer, to, Hello(me), now, via_relay)
                case Answer(to):
                    out += self.carrier.to(peer, to, HelloAck(me), now, via_relay)
                case Changed(_, new):
                    self.changes += 1
                    if via_relay:
                        out += relay_path_event(path, new)
                    else:
                        out += direct_path_event(peer, new, relayed=self.carrier.can_send(peer))
                case Moved(old, new):
                    self.changes += 1
                    out.append(Log(logging.INFO, f"peer {path.peer} moved from {old} to {new}"))
                case Ignored(why):
                    out.append(Log(logging.INFO, f"ignoring {why}"))
                case Spent(probes):
                    self.drops.count(Drop.PROBE_BUDGET)
                    spent = f"{probes} probes, {probes * self.probe_bytes} bytes"
                    how = "relay path" if via_relay else "direct path"
                    out.append(Log(logging.INFO, f"{how} to {path.peer}: {spent} unanswered; waiting for its probes"))
        return out

    def shared_state(self) -> tuple[bool, bool, bool]:
        """What every peer's wakeup may depend on besides the peer (see :meth:`can_reconnect`)."""
        return self.carrier.relay_up, self.server.registered, self.server.reannouncing

    def settle(self, peers: list[Peer], now: float, clock: PeerClock) -> list[Output]:
        """After an entry point: the route changes of ``peers`` (those it touched), and when each is due."""
        out = self.routes(peers, now)
        for peer in peers:
            at = self.wakeup(peer)
            if peer.conversation is not None:
                at = min(at, peer.conversation.wakeup() or math.inf)
            clock.schedule(peer.id, at)
        return out

    def can_reconnect(self) -> bool:
        """Whether the server knows our (new) relay, so that a connect can bring a relay path up."""
        return self.carrier.relay_up and self.server.registered and not self.server.reannouncing

    def tick(self, peer: Peer, now: float) -> list[Output]:
        """Time passes for ``peer``: a reconnect due, probes, liveness."""
        out = self._tick_reconnect(peer, now)
        out += self.server.tick_pending(peer, now)
        out += self.perform(peer, peer.path.tick(now), now, via_relay=False)
        out += self.perform(peer, peer.relay.tick(now), now, via_relay=True)
        if now >= peer.next_keepalive:
            out += self._keepalive(peer, now)
            peer.next_keepalive = now + (peer.keepalive or self.keepalive)
        if peer.extended:
            relay_up = self.carrier.relay_up
            had_a_path = peer.path_name(relay_up) is not Route.NONE
            checked = peer.path.check(now, CHECK_QUIET, CHECK_DEADLINE, CHECK_INTERVAL, "direct")
            out += self.perform(peer, checked, now, via_relay=False)
            lost = peer.path.check_alive(now, self.liveness, "direct")
            if lost:
                out += self.keep_closer(peer, now)
            out += self.perform(peer, lost, now, via_relay=False)
            out += self.perform(peer, peer.relay.check_alive(now, self.liveness, "relay"), now, via_relay=True)
            if had_a_path and peer.path_name(relay_up) is Route.NONE:
                # The peer went silent on every path (its relay or ours died, or a NAT dropped us): keep
                # trying to connect again, as for a lost allocation, rather than leave the pair at none.
                peer.reconnect_at = now
        return out

    def wakeup(self, peer: Peer) -> float:
        """When :meth:`tick` has something to do for ``peer`` (connect, reconnect, probes, liveness), or
        ``math.inf``. Worked out after every datagram from the peer: no lists, no calls it can spare."""
        at = math.inf
        for connect in (peer.pending, peer.reasking):
            if connect is not None:
                at = min(at, connect.deadline, connect.next_send)
        if peer.reconnect_at is not None and peer.reconnect_at < at and self.can_reconnect():
            at = peer.reconnect_at
        for path in (peer.path, peer.relay):
            for t in (path.wakeup(), path.silent_until(self.liveness) if peer.extended else None):
                if t is not None and t < at:
                    at = t
        if peer.extended:
            check = peer.path.check_wakeup(CHECK_QUIET)
            if check is not None and check < at:
                at = check
        return min(at, peer.next_keepalive)

    def keep_closer(self, peer: Peer, now: float) -> list[Output]:
        """The direct path to ``peer`` went silent: from now on send it keepalives twice as often (down to
        :data:`MIN_KEEPALIVE`), on its own clock.

        The usual cause of a confirmed path falling silent while both ends run is a NAT that forgets an idle
        mapping sooner than keepalives come (RFC 4787 asks for 2 minutes; many home routers keep 30 s, some
        less): the peer's datagrams then meet a closed door at *our* NAT whenever we have not sent for a
        while, and only sending more often keeps it open. The pair connects again by itself meanwhile; each
        further loss halves the period again. A genuine outage shortens it too, at the cost of a few
        keepalives more."""
        period = peer.keepalive or self.keepalive
        shorter = min(period, max(MIN_KEEPALIVE, period / 2))
        if shorter == period:
            return []
        peer.keepalive = shorter
        peer.next_keepalive = now + shorter
        why = f"its direct path went silent (a NAT may forget idle mappings sooner than every {period:g} s)"
        return [Log(logging.INFO, f"keepalives to {peer.id} every {shorter:g} s from now: {why}")]

    def _tick_reconnect(self, peer: Peer, now: float) -> list[Output]:
        """A relay path lost with our allocation: connect again once the relay is back (and every two punch
        time-outs after that, until a path is up: the peer may need to get its relay back too)."""
        due = peer.reconnect_at is not None and now >= peer.reconnect_at and self.can_reconnect()
        if not due or peer.pending is not None or peer.path_name(self.carrier.relay_up) is not Route.NONE:
            return []
        peer.reconnect_at = now + 2 * self.timing.timeout
        why = peer.reason(self.carrier.relay_up)
        out = [
            Log(logging.INFO, f"relay is back: connecting to {peer.id} again"),
            *self.server.start_connect(peer, now),
        ]
        if why:
            # The connect starts both paths afresh, reasons too: status keeps saying why there is no path.
            peer.path.reason = why.removesuffix(RECONNECTING_SUFFIX) + RECONNECTING_SUFFIX
        return out

    def routes(self, peers: list[Peer], now: float) -> list[Output]:
        """Report route changes (path_changed), resend unacknowledged data on the new path, and keep
        probing direct in the background while relayed."""
        out: list[Output] = []
        relay_up = self.carrier.relay_up
        for peer in peers:
            routing = peer.routing(relay_up)
            if routing == peer.routed:
                continue  # nothing it depends on changed (most datagrams): neither did the route
            peer.routed = routing
            relayed = peer.route(relay_up) is not None and peer.path.state is not PathState.DIRECT
            peer.path.keep_probing(self.direct_retry if relayed else None, now)
            used = peer.path_name(relay_up)
            used = used if used in (Route.DIRECT, Route.RELAY) else Route.NONE
            if used is peer.used:
                continue
            old, peer.used = peer.used, used
            if used is not Route.NONE:
                peer.reconnect_at = None
            if old is not Route.NONE:
                reason = change_reason(old, used, peer.reason(relay_up))
                route = peer.route(relay_up)
                addr = None if route is None else str(route[1])
                out.append(Emit(PathChanged(peer.id, old, used, reason, addr)))
            if used is not Route.NONE:
                out += self.messenger.on_path_change(peer, now)
        return out

    def retry_failed_connects(self, peers: list[Peer], now: float) -> None:
        """A relay just came up: a peer that a connect left with no path at all (say, one made before the
        first allocation, towards a symmetric NAT) may be reachable now; connect again once registered."""
        for peer in peers:
            if peer.path.state is PathState.FAILED and peer.path_name(self.carrier.relay_up) is Route.NONE:
                peer.reconnect_at = now

    def relay_lost(self, peers: list[Peer], reason: str, now: float) -> list[Output]:
        """Our allocation is gone: so is every relay path (to be connected again when it is back)."""
        out: list[Output] = []
        for peer in peers:
            if peer.relay.state in (PathState.DIRECT, PathState.PUNCHING):
                if peer.used is Route.RELAY:
                    peer.reconnect_at = now  # once the relay is back
                out += self.perform(peer, peer.relay.lose(f"relay lost: {reason}", now), now, via_relay=True)
        return out

    def keepalives(self, peers: list[Peer], now: float) -> list[Output]:
        """A keepalive on every live path (of the peers on the agent's period; the others' come in :meth:`tick`)."""
        return [o for peer in peers if peer.keepalive is None for o in self._keepalive(peer, now)]

    def _keepalive(self, peer: Peer, now: float) -> list[Output]:
        """A keepalive on each live path to ``peer``."""
        out: list[Output] = []
        if peer.path.state is PathState.DIRECT and peer.path.addr is not None:
            out += self.carrier.to(peer, peer.path.addr, Keepalive(), now, via_relay=False)
        if peer.relay.state is PathState.DIRECT and peer.relay.addr is not None:
            out += self.carrier.to(peer, peer.relay.addr, Keepalive(), now, via_relay=True)
        return out
