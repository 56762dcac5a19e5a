"""The agent's core: pure, no sockets and no clocks. Datagrams, local requests and ticks in; outputs out.

Every entry point takes ``now`` (monotonic seconds) and returns a list of :data:`Output`: datagrams to
:class:`Send`, events to :class:`Emit` (log them, append them to the event log, stream them to chats) and
:class:`Log` lines that are not events. The asyncio shell (:mod:`client.daemon.agent`) performs them and calls
:meth:`AgentCore.tick` again at :meth:`AgentCore.wakeup`. Two cores and a fake server can so be joined in
memory and the whole exchange tested without a network or a sleep.

Errors a local caller can cause raise :class:`RequestError` (its message is the one to show the user);
anything a remote sends is at worst logged and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.engine.bounds import UNASKED_KEYLESS_PROBES, Bounds, TokenBucket
from client.engine.carrier import Carrier
from client.engine.clock import PeerClock, Touched
from client.engine.delivery import DeliveryConfig, HeldFrames
from client.engine.drops import Drop, Drops
from client.engine.errors import NoPathError, RequestError, WindowFullError, check_id
from client.engine.events import Disconnected, TurnAllocated, TurnFailed
from client.engine.messaging import Messenger, Sent
from client.engine.outputs import Emit, Log, Output, Send, SendRaw, TunnelIn
from client.engine.path import Answer, PathState, PathTiming
from client.engine.paths import CHECK_QUIET, PathKeeper
from client.engine.peer import Peer
from client.engine.peer_table import PeerTable
from client.engine.presence import Watch, on_report
from client.engine.routes import Route
from client.engine.sealing import INNER, NotAFrame, Sealer
from client.engine.server_link import ServerLink
from client.engine.signer import Random, Signer
from client.turn import outputs as turn
from client.turn.relay import Relay, RelayConfig
from protocol import (
    Ack,
    BareHello,
    Connect,
    Data,
    Endpoint,
    Err,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Message,
    Msg,
    Ok,
    PresenceReport,
    ProtocolError,
    Punch,
    Register,
    Retry,
    Sealed,
    message_name,
    parse,
)
from protocol.wireguard import is_wireguard
from trust import AuthError, Identity

__all__ = [
    "AgentCore",
    "CoreConfig",
    "Emit",
    "Log",
    "NoPathError",
    "Output",
    "RequestError",
    "Send",
    "SendRaw",
    "Sent",
    "TunnelIn",
    "WindowFullError",
    "check_id",
]


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs to know; times in seconds. ``relay`` None: no TURN, direct paths only."""

    id: str
    server: Endpoint
    timing: PathTiming = field(default_factory=PathTiming)
    keepalive: float = 10.0
    register_retry: float = 0.25
    relay: RelayConfig | None = None
    direct_retry: float = 1.0
    relay_head_start: float = 0.010
    """Seconds the direct path probes alone before relay probes start: when both would work, the relay's
    extra TURN traffic at connect time must not slow direct down (ICE paces relayed checks last, too)."""
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    identity: Identity = field(default_factory=Identity.generate)
    """Our keys (trust.keys): loaded from the host's key file by the agent, or ephemeral."""
    bounds: Bounds = field(default_factory=Bounds)
    wall_offset: float = 0.0
    """Wall-clock (Unix) seconds minus ``now``, measured by the shell at start (``time.time() - loop.time()``):
    proofs carry wall-clock timestamps, and sessions' boots are wall-clock ns."""
    random: Random = os.urandom
    """Random bytes for the first transaction id (a test may pass its own)."""


Handler = Callable[["AgentCore", Any, Endpoint, float, bool, bool], list[Output]]
"""A peer message's handler: (core, message, source, now, via_relay, sealed)."""
ReplyHandler = Callable[["AgentCore", Frame, Any, float], list[Output]]
"""A server frame's handler: (core, frame, its message, now)."""


class AgentCore:
    """One agent's protocol logic: the peers and their paths, on top of its collaborators: the server
    dialogue (:class:`ServerLink`), the routes and relay (:class:`Carrier`) and messages (:class:`Messenger`)."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        bounds = self.bounds = config.bounds
        self.drops = Drops()
        self.introductions = TokenBucket(bounds.intro_rate, bounds.intro_burst)
        self.held = HeldFrames(bounds.max_held)
        self.relay = None if config.relay is None else Relay(config.relay)
        self.sealer = Sealer(config.identity, config.id, config.wall_offset, remember=bounds.max_peers)
        self.carrier = Carrier(self.relay, self._turn, self.sealer.wire)
        signer = Signer(config.identity, config.wall_offset, config.random)
        self.server = ServerLink(
            config.id, config.server, config.register_retry, config.timing.timeout, self._relayed, signer=signer
        )
        self.messenger = Messenger(config.id, config.delivery, self.carrier, self.held)
        # Every path's probes per attempt, from the byte budget: a probe is a sealed hello (a seed-era peer's,
        # `hello <our id>` in text, is smaller: it gets fewer bytes than its budget).
        probe_bytes = self.sealer.size(Hello(config.id))
        self.paths = PathKeeper(
            config.id,
            timing=config.timing,
            keepalive=config.keepalive,
            direct_retry=config.direct_retry,
            carrier=self.carrier,
            server=self.server,
            messenger=self.messenger,
            drops=self.drops,
            probe_bytes=probe_bytes,
        )
        self._next_keepalive = 0.0
        self.watch = Watch()
        # Per-peer work is for the peers an entry point touched (a datagram: its sender), not every peer:
        # the clock knows when each is due; a change every peer depends on (our relay, registration) walks all.
        self.clock = PeerClock()
        self._touched = Touched(self.paths.shared_state())
        timing = dataclasses.replace(config.timing, probes=bounds.probes(probe_bytes))
        self.table = PeerTable(bounds, timing, self.clock, self._touched, self.drops, sealer=self.sealer)
        self.peers: dict[str, Peer] = self.table.peers
        self._forgets = 0  # local disconnects (see confirmed_version)
        self._channels: set[Endpoint] = set()
        """Relayed addresses the tunnel asked our allocation to bind a channel to (:meth:`relay_datagram`)."""

    @property
    def relay_up(self) -> bool:
        return self.carrier.relay_up

    @property
    def registered(self) -> bool:
        return self.server.registered

    # -- entry points --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin registering (and allocating a relay); call once when the socket is open."""
        self._next_keepalive = now + self.config.keepalive
        out = self.server.start(now)
        if self.relay is not None:
            out += self._turn(self.relay.start(now), now)
        return out

    def stop(self, now: float) -> list[Output]:
        """The agent is shutting down: release the relay allocation (the TURN server frees it at once and
        logs its usage, instead of holding it until the lifetime runs out)."""
        if self.relay is None:
            return []
        return [o for o in self._turn(self.relay.close(now), now) if isinstance(o, SendRaw)]

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Output]:
        """One datagram from ``source``. Bad input is logged and dropped; this never raises for it."""
        if self.relay is not None and self.relay.owns(data, source):
            out = self._turn(self.relay.receive(data, source, now), now)
        else:
            out = self._datagram(data, source, now, via_relay=False)
        return self._finish(out, now)

    def tick(self, now: float) -> list[Output]:
        """Time passes: registration, keepalives, the relay, connect retries, probes, liveness, delivery."""
        out = self.server.tick(now)
        due = self.clock.due(now)
        if now >= self._next_keepalive:
            self._next_keepalive = now + self.config.keepalive
            out += self.server.keepalive(now)
            out += self.paths.keepalives(list(self.peers.values()), now)
            out += self.server.ask_presence(self.watch.next(self.peers.values()), now)
            if self.relay is not None:
                out += self._turn(self.relay.check(now), now)
            due = list(self.peers)  # every keepalive period, every peer, whatever the clock says
        if self.relay is not None:
            out += self._turn(self.relay.tick(now), now)
        for peer_id in due:
            peer = self.peers.get(peer_id)
            if peer is None:
                continue  # forgotten after the list was taken (the clock forgets a forgotten peer's times)
            self._touched.add(peer)
            out += self.paths.tick(peer, now)
            out += self.messenger.tick(peer, now)
            out += self.table.expire(peer, now, self.relay_up)
        return self._finish(out, now)

    def wakeup(self) -> float:
        """When :meth:`tick` may next have something to do: never later than the earliest thing due, maybe
        earlier (a peer whose wakeup moved later is looked at the old time, see :class:`PeerClock`)."""
        times = [self._next_keepalive, self.server.wakeup() or math.inf, self.clock.next()]
        if self.relay is not None:
            times.append(self.relay.wakeup() or math.inf)
        return min(times)

    def _finish(self, out: list[Output], now: float) -> list[Output]:
        """After an entry point: route changes, wakeups (expiry included) and addresses of the peers it
        touched (all after a change of what they all depend on)."""
        peers = self._touched.take(self.peers, self.paths.shared_state())
        out += self.paths.settle(peers, now, self.clock)
        self.table.settle(peers, self.relay_up)
        return out

    def connect(self, peer_id: str, now: float) -> list[Output]:
        """A local request for a path: ask the server to introduce us, unless one is up or under way."""
        check_id(peer_id)
        if peer_id == self.config.id:
            raise RequestError("cannot connect to yourself")
        if not self.registered:
            raise RequestError(f"not registered with server {self.config.server} yet")
        out: list[Output] = []
        peer = self.peers.get(peer_id)
        if peer is None:
            peer, out = self.table.admit(peer_id, now, self.relay_up)
            if peer is None:
                raise RequestError(f"cannot connect to {peer_id}: {self.table.full()}")
        self._heard(peer, now)
        if peer.pending is None:  # a new request (not a repeat while ours waits): the first message counts from it
            peer.asked, peer.first_message_ms = now, None
        if peer.pending is not None or not self._wants_connect(peer):
            return self._finish(out, now)
        return self._finish(out + self.server.start_connect(peer, now), now)

    def _wants_connect(self, peer: Peer) -> bool:
        """Whether a local connect has anything to do: no path yet, or only a relay while direct was never
        tried since we last forgot the peer (the peer's relay probe of a connect it was told about can
        bring the relay path up on its own; a relay found next to a failed punch is already the answer)."""
        name = peer.path_name(self.relay_up)
        return name is Route.NONE or (name is Route.RELAY and peer.path.state is PathState.NONE)

    def connect_settled(self, peer_id: str) -> bool:
        """Whether a connect to ``peer_id`` has its outcome: a path (direct or relay), or none + reason."""
        peer = self.peers.get(peer_id)
        return peer is None or (peer.pending is None and peer.path_name(self.relay_up) is not Route.PUNCHING)

    def path_settled(self, peer_id: str) -> bool:
        """Whether the path to ``peer_id`` has settled: direct confirmed, or no path still punching (the
        direct punch gave up, and the relay, if any, is what is left). A relayed cone pair is not settled
        while its direct punch may still confirm."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return True
        if peer.pending is not None or (peer.reasking is not None and peer.path.state is PathState.NONE):
            return False  # our punch has not come yet (the peer's relay probe may come first): direct may follow
        punching = PathState.PUNCHING in (peer.path.state, peer.relay.state)
        if peer.path.state is PathState.DIRECT:
            # Confirmed by the peer's probe alone, while relayed: our check's answer moves it (milliseconds).
            return peer.path.proven or peer.path_name(self.relay_up) is not Route.RELAY
        return not punching

    def has_path(self, peer_id: str) -> bool:
        """Whether a message to ``peer_id`` can go now: a path (direct or relay) is in use."""
        peer = self.peers.get(peer_id)
        return peer is not None and peer.route(self.relay_up) is not None

    def disconnect(self, peer_id: str) -> list[Output]:
        """Forget the paths to a peer locally (state none); the peer itself is not told.

        Idempotent: forgetting a peer we never knew is done already (scenarios reset both sides blindly).
        """
        check_id(peer_id)
        peer = self.peers.get(peer_id)
        if peer is None:
            return []
        peer.pending = peer.reasking = None
        peer.reconnect_at = None
        self._forgets += 1
        peer.path.reset()
        peer.relay.reset()
        peer.path.keep_probing(None, 0.0)
        peer.used = Route.NONE
        return [Emit(Disconnected(peer_id))]

    def send(self, peer_id: str, text: str, now: float) -> Sent:
        """Send one chat message on the path in use; :class:`NoPathError` if there is none, and
        :class:`RequestError` for a text that cannot go (checked once, here).

        To an extended peer it goes as ``data`` (acknowledged, retransmitted): the result's ticket names it
        as its ``message_delivered`` or ``message_undelivered`` event will; to a seed-era peer as ``msg``
        (fire and forget, no ticket).
        """
        check_id(peer_id)
        peer = self.peers.get(peer_id)
        sent = self.messenger.send(peer_id, peer, text, now, self.relay_up)
        if peer is not None:
            peer.active = now
        if sent.ticket is not None:
            # Due no later than the new message's first retransmission (what else was due is scheduled).
            self.clock.schedule(peer_id, now + self.config.delivery.rto_initial)
        if peer is not None and peer.extended:
            check = peer.path.check_wakeup(CHECK_QUIET)  # traffic on the direct path: its active check
            if check is not None:
                self.clock.schedule(peer_id, check)
        return sent

    def peer_status(self, peer_id: str, now: float | None = None) -> dict[str, Any] | None:
        """One peer as status JSON shows it, or ``None`` if unknown (``now``: for the last-seen age)."""
        peer = self.peers.get(peer_id)
        return None if peer is None else peer.status(self.relay_up, now)

    def peer_statuses(self, now: float | None = None) -> list[dict[str, Any]]:
        return [s for peer_id in sorted(self.peers) if (s := self.peer_status(peer_id, now)) is not None]

    def dropped(self) -> dict[str, int]:
        """The ``dropped`` object of status JSON: what was dropped or forgotten, by reason (every reason, 0 too)."""
        self.drops.set(Drop.HELD_FULL, self.held.refused)  # the receivers count it where it happens
        return self.drops.as_json()

    def relay_datagram(self, to: Endpoint, data: bytes, now: float) -> list[Output]:
        """``data`` (a tunnel datagram) to a peer's relayed address ``to`` through our allocation, as our own
        relayed datagrams go; nothing while we have none. The first one binds a channel to ``to``: a tunnel's
        stream of datagrams then travels as ChannelData both ways (our own messages to the peer too), not as
        Send and Data indications, each a STUN message to encode and parse."""
        if self.relay is None:
            return []
        out: list[Output] = []
        if to not in self._channels:
            self._channels.add(to)
            out = self._turn(self.relay.bind(to, now), now)
        return out + self._turn(self.relay.send(to, data, now), now)

    def tunnel_sent(self, peer_id: str, now: float) -> bool:
        """A batch of tunnel datagrams went out to ``peer_id`` on its route (once per batch, not per datagram):
        on the direct path, that is traffic its active check watches (:meth:`PathKeeper.tick`). Whether the
        peer's wakeup moved earlier (the shell then re-arms its timer)."""
        peer = self.peers.get(peer_id)
        if peer is None or not peer.extended:
            return False
        route = peer.route(self.relay_up)
        if route is None or route[0] is not Route.DIRECT or not peer.path.note_sending(now):
            return False
        at = peer.path.check_wakeup(CHECK_QUIET)
        if at is None:
            return False
        before = self.clock.next()
        self.clock.schedule(peer_id, at)
        return self.clock.next() < before

    def route(self, peer_id: str) -> tuple[Route, Endpoint] | None:
        """The path in use to ``peer_id`` and where it sends (``None``: none, or an unknown peer)."""
        peer = self.peers.get(peer_id)
        return None if peer is None else peer.route(self.relay_up)

    def confirmed(self, peer_id: str) -> tuple[Endpoint | None, Endpoint | None]:
        """``peer_id``'s confirmed direct address and relayed address (``None`` where that path is not
        confirmed, or our allocation is down): the addresses its datagrams may come from."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return None, None
        direct = peer.path.addr if peer.path.state is PathState.DIRECT else None
        relayed = peer.relay.addr if self.relay_up and peer.relay.state is PathState.DIRECT else None
        return direct, relayed

    def confirmed_version(self) -> tuple[int, bool, int]:
        """Changes whenever :meth:`confirmed` may answer differently for some peer (a path confirmed, lost or
        moved, our relay up or down, a peer forgotten or a disconnect): a copy compares it in O(1)."""
        return self.paths.changes + self._forgets, self.relay_up, len(self.peers)

    def peer_box_key(self, peer_id: str) -> bytes | None:
        """The X25519 key our server's punch gave for ``peer_id`` (its WireGuard key), or ``None``."""
        peer = self.peers.get(peer_id)
        return None if peer is None or peer.session is None else peer.session.peer_public.box

    def relay_status(self) -> dict[str, Any]:
        """The top-level ``relay`` and ``turn`` fields of status JSON."""
        if self.relay is None:
            return {"relay": None, "turn": None}
        relayed = self.relay.relayed
        return {"relay": None if relayed is None else str(relayed), "turn": self.relay.status()}

    # -- datagrams -----------------------------------------------------------------------------------

    def _datagram(self, data: bytes, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        try:
            item = parse(data)
        except ProtocolError as exc:
            self.drops.count(Drop.MALFORMED)
            return [Log(logging.DEBUG, f"dropped datagram from {source}: {exc.reason}")]
        if type(item) is Frame:
            return self._frame(item, data, source, now, via_relay)
        message: Message = item  # type: ignore[assignment]
        why = self._unwanted(message, source)
        if why is not None:
            return self._drop(why, message, source)
        handler = _HANDLERS.get(type(message))
        return [] if handler is None else handler(self, message, source, now, via_relay, False)

    def _frame(self, frame: Frame, data: bytes, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """A v2 frame: a sealed peer datagram, or our server's answer (anything else is not for us)."""
        message = frame.message
        kind = type(message)
        if kind is Sealed:
            return self._sealed(frame, data, source, now, via_relay)
        handler = _REPLY_HANDLERS.get(kind)
        if handler is None:
            # A peer's frame outside a seal proves nothing; a request is for servers.
            return self._drop(Drop.UNSEALED if kind in INNER else Drop.NOT_FOR_AGENT, message, source)
        if via_relay or source != self.config.server:
            return self._drop(Drop.NOT_FROM_SERVER, message, source)
        return handler(self, frame, message, now)

    def _sealed(self, frame: Frame, data: bytes, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """A keyed peer's datagram (``data``, parsed: ``frame``): opened under its session (or dropped, counted
        by why), then handled as the same message in text would be, but authenticated."""
        sealed: Sealed = frame.message  # type: ignore[assignment]
        if sealed.id == self.config.id:
            return self._drop(Drop.OWN_ID, sealed, source)
        peer = self.peers.get(sealed.id)
        try:
            message = self.sealer.open(frame, sealed, peer, data)
        except AuthError as exc:
            return self._drop(Drop(exc.reason), sealed, source)
        except NotAFrame as exc:
            self.drops.count(Drop.MALFORMED)
            return [Log(logging.DEBUG, f"dropped sealed datagram from {sealed.id} at {source}: {exc}")]
        if type(message) is Keepalive:
            if peer is None:
                return self._drop(Drop.UNKNOWN_PEER, sealed, source)
            self._heard(peer, now, source, via_relay)
            return []
        return _HANDLERS[type(message)](self, message, source, now, via_relay, True)

    def _unwanted(self, message: Message, source: Endpoint) -> Drop | None:
        """Why a well-formed text message is not for us, or ``None``."""
        # By exact type, in sets: a chain of isinstance checks on unions costs more than the data's handling.
        kind = type(message)
        if kind in _FROM_PEERS:
            own = message.id == self.config.id  # type: ignore[union-attr]
            return Drop.OWN_ID if own else None
        if kind in _TO_SERVERS:
            return Drop.NOT_FOR_AGENT
        if kind in _FROM_SERVERS and source != self.config.server:
            return Drop.NOT_FROM_SERVER
        if kind in _TEXT_REPLIES:
            return Drop.UNMATCHED  # our server answers our v2 requests in v2: this answers nothing of ours
        return None

    def _drop(self, reason: Drop, message: Message, source: Endpoint) -> list[Output]:
        """Count a message not acted on; a debug line (a flood of them is what the counter is for)."""
        self.drops.count(reason)
        return [Log(logging.DEBUG, f"dropped {message_name(message)} from {source}: {reason}")]

    def _turn(self, outputs: list[turn.Output], now: float) -> list[Output]:
        """Perform what the relay says: datagrams to the TURN server, relayed datagrams, (re)allocation."""
        out: list[Output] = []
        for output in outputs:
            match output:
                case turn.Transmit(data, to):
                    out.append(SendRaw(data, to))
                case turn.Relayed(peer, payload):
                    if is_wireguard(payload):
                        out.append(TunnelIn(payload, peer))  # the tunnel's, not ours: see client.tunnel
                    else:
                        out += self._datagram(payload, peer, now, via_relay=True)
                case turn.Allocated(relayed):
                    self._channels.clear()  # a new allocation has no channels
                    self._touched.everyone = True
                    out.append(Emit(TurnAllocated(str(relayed))))
                    self.server.reannounce(now)
                    self.paths.retry_failed_connects(list(self.peers.values()), now)
                case turn.Failed(reason):
                    self._touched.everyone = True
                    out.append(Emit(TurnFailed(reason)))
                    self.server.reannounce(now)
                    out += self.paths.relay_lost(list(self.peers.values()), reason, now)
                case turn.Dropped(why) | turn.Denied(_, why):
                    self.drops.count(Drop.RELAY)
                    out.append(Log(logging.DEBUG, f"turn: {why}"))
        return out

    def _relayed(self) -> Endpoint | None:
        return None if self.relay is None else self.relay.relayed

    # -- message handlers ----------------------------------------------------------------------------

    def _on_punch(self, punch: Punch, keys: Keys | None, source: Endpoint, now: float) -> list[Output]:
        """Our server introduces ``punch.id`` at ``punch.addr``, with its keys (``None``: a seed-era peer)."""
        if punch.id == self.config.id:
            return [Log(logging.WARNING, f"ignoring punch to ourselves at {punch.addr}")]
        out: list[Output] = []
        peer = self.peers.get(punch.id)
        asked = peer is not None and (peer.pending is not None or peer.reasking is not None)
        if not asked and not self.introductions.take(now):
            # Someone made the server introduce us (the other side's connect): at most so many a second,
            # or whoever can make the server punch us would have us probe any address at their pace.
            return self._drop(Drop.INTRO_RATE, punch, source)
        if peer is None:
            peer, out = self.table.admit(punch.id, now, self.relay_up)
            if peer is None:
                return out
        try:
            self.sealer.introduce(peer, keys, now)  # before the first probe: it is sealed
        except AuthError as exc:
            return out + self._drop(Drop(exc.reason), punch, source)
        self._heard(peer, now)
        started = self.server.connect_started(peer)
        self.server.answered(peer, now)
        peer.extended = punch.candidates is not None or keys is not None
        before = peer.path.started
        probes = UNASKED_KEYLESS_PROBES if not asked and keys is None else None
        out += self.paths.perform(peer, peer.path.punch(punch.addr, now, started, probes=probes), now, via_relay=False)
        if peer.path.started != before:
            peer.first_message_ms = None
        relay = None if punch.candidates is None else punch.candidates.relay
        if relay is not None and self.relay_up:
            head_start = self.config.relay_head_start
            punched = peer.relay.punch(relay, now, started, head_start, probes)
            out += self.paths.perform(peer, punched, now, via_relay=True)
        return out

    def _on_text_punch(self, punch: Punch, source: Endpoint, now: float, via_relay: bool, sealed: bool) -> list[Output]:
        return self._on_punch(punch, None, source, now)  # no keys in text: a seed-era peer

    def _on_v2_punch(self, frame: Frame, punch: Punch, now: float) -> list[Output]:
        return self._on_punch(punch, frame.keys, self.config.server, now)

    def _on_ok(self, frame: Frame, ok: Ok, now: float) -> list[Output]:
        out = self.server.on_ok(frame.txid)
        return self._drop(Drop.UNMATCHED, ok, self.config.server) if out is None else out

    def _on_err(self, frame: Frame, err: Err, now: float) -> list[Output]:
        out = self.server.on_err(frame.txid, err, self.peers)
        if out is None:
            return self._drop(Drop.UNMATCHED, err, self.config.server)
        self._touched.everyone = True  # it may answer some peer's connect
        return out

    def _on_retry(self, frame: Frame, retry: Retry, now: float) -> list[Output]:
        out = self.server.on_retry(frame.txid, retry.cookie, self.peers, now)
        if out is None:
            return self._drop(Drop.UNMATCHED, retry, self.config.server)
        self._touched.everyone = True  # a connect resent now is due again later
        return out

    def _on_presence(self, frame: Frame, report: PresenceReport, now: float) -> list[Output]:
        peer = self.peers.get(report.peer_id)
        if not self.server.on_presence(frame.txid, report.peer_id) or peer is None:
            return self._drop(Drop.UNMATCHED, report, self.config.server)
        return on_report(peer, report, now)

    def _on_probe(
        self, message: Hello | HelloAck, source: Endpoint, now: float, via_relay: bool, sealed: bool
    ) -> list[Output]:
        out: list[Output] = []
        peer = self.peers.get(message.id)
        if peer is None:
            peer, out = self._admit_prober(message.id, now, authenticated=sealed)
            if peer is None:
                return out + self._drop(Drop.UNKNOWN_PEER, message, source)
        elif not sealed and not peer.seed:
            # A keyed peer's probes are sealed; one whose punch has not come yet probes again after it.
            return self._drop(Drop.UNSEALED, message, source)
        return out + self._probed(peer, message, source, now, via_relay)

    def _probed(
        self,
        peer: Peer,
        message: Hello | HelloAck,
        source: Endpoint,
        now: float,
        via_relay: bool,
        *,
        answer: bool = True,
    ) -> list[Output]:
        """A probe (or answer) from ``peer`` at ``source``: the path is confirmed there; a probe is answered
        (``answer``) with a hello-ack, which the seed's client does not know (our probes reach it anyway)."""
        self._heard(peer, now)
        started = self.server.connect_started(peer)
        if via_relay:
            # A relay probe proves less: the TURN permissions of an earlier attempt may carry it while the
            # peer's punch was lost. Our connect is answered, and repeated until the peer is heard direct.
            self.server.answered(peer, now)
        else:
            self.server.heard(peer)
        path = peer.relay if via_relay else peer.path
        if via_relay:
            peer.extended = True  # only an extended peer has a relay
        if isinstance(message, HelloAck):
            return self.paths.perform(peer, path.on_hello_ack(source, now, started), now, via_relay)
        actions = path.on_hello(source, now, started)
        if answer:
            return self.paths.perform(peer, actions, now, via_relay)
        return self.paths.perform(peer, [a for a in actions if not isinstance(a, Answer)], now, via_relay)

    def _on_bare_hello(
        self, message: BareHello, source: Endpoint, now: float, via_relay: bool, sealed: bool
    ) -> list[Output]:
        """The seed's probe names no one: it is the seed-era peer's whose punched address it came from."""
        seeds = [peer for peer in self.table.addresses.at(source, via_relay) if peer.seed]
        if not seeds:
            return self._drop(Drop.UNKNOWN_SOURCE, message, source)
        return [o for peer in seeds for o in self._probed(peer, Hello(peer.id), source, now, via_relay, answer=False)]

    def _on_msg(self, msg: Msg, source: Endpoint, now: float, via_relay: bool, sealed: bool) -> list[Output]:
        peer = self._sender(msg.id, source, via_relay, sealed)
        if isinstance(peer, Drop):
            return self._drop(peer, msg, source)
        self._heard(peer, now, source, via_relay)
        return self.messenger.on_msg(peer, msg, source)

    def _on_data(self, data: Data, source: Endpoint, now: float, via_relay: bool, sealed: bool) -> list[Output]:
        peer = self._sender(data.id, source, via_relay, sealed)
        if isinstance(peer, Drop):
            return self._drop(peer, data, source)
        peer.extended = True
        self._heard(peer, now, source, via_relay)
        return self.messenger.on_data(peer, data, source, now, via_relay)

    def _on_ack(self, ack: Ack, source: Endpoint, now: float, via_relay: bool, sealed: bool) -> list[Output]:
        peer = self._sender(ack.id, source, via_relay, sealed)
        if isinstance(peer, Drop):
            return self._drop(peer, ack, source)
        self._heard(peer, now, source, via_relay)
        if not via_relay and source == peer.path.addr:
            peer.path.prove(now)  # an answer to our data: the direct path works both ways
        return self.messenger.on_ack(peer, ack, now)

    def _on_keepalive(
        self, keepalive: Keepalive, source: Endpoint, now: float, via_relay: bool, sealed: bool
    ) -> list[Output]:
        # A text keepalive (a keyed peer's are sealed and name it). It kept a NAT mapping open on its way here,
        # and says a seed-era peer on that path is alive. It names no peer: the address book finds whose path
        # uses its source, in O(1) however many peers we know.
        peers = self.table.addresses.at(source, via_relay)
        seeds = [peer for peer in peers if peer.seed]
        if not seeds:
            return self._drop(Drop.UNSEALED if peers else Drop.UNKNOWN_SOURCE, keepalive, source)
        for peer in seeds:
            self._heard(peer, now, source, via_relay)
        return []

    # -- introductions -------------------------------------------------------------------------------

    def _admit_prober(self, peer_id: str, now: float, authenticated: bool) -> tuple[Peer | None, list[Output]]:
        """A probe from an id we do not know. Nothing proves who sent a text probe, so it admits no one (a
        stranger's 1,500 `hello <new id>` would be 1,500 peers): the race where the peer's probe comes before
        our punch is settled by its next probes, which it sends until ours answer.

        A sealed probe that opened under the session of a peer we forgot (its key was introduced by our
        server; see :mod:`client.engine.sealing`) is ``authenticated``: it brings the peer back, with its
        session, as an introduction we did not ask for (rate-limited, within the table's bounds)."""
        if not authenticated or not self.introductions.take(now):
            return None, []
        peer, out = self.table.admit(peer_id, now, self.relay_up)
        if peer is not None:
            self.sealer.restore(peer)
        return peer, out

    # -- helpers -------------------------------------------------------------------------------------

    def _sender(self, peer_id: str, source: Endpoint, via_relay: bool, sealed: bool) -> Peer | Drop:
        """The known peer a msg, data or ack comes from, or why it is dropped: an id we do not know, text for
        a peer that seals (or not yet introduced), or an address none of its paths uses (a stranger's data or
        ack must not reset or settle anything; a seed-era peer's text, which proves nothing, is taken only
        from its path)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return Drop.UNKNOWN_PEER
        if not sealed and not peer.seed:
            return Drop.UNSEALED
        if not (peer.relay if via_relay else peer.path).knows(source):
            return Drop.WRONG_SOURCE
        return peer

    def _heard(self, peer: Peer, now: float, source: Endpoint | None = None, via_relay: bool = False) -> None:
        """Something from or for ``peer``: it is active (not idle), and touched (its routes and wakeup are
        looked at when the entry point ends); ``source`` given, the path it came on is alive."""
        peer.active = now
        self._touched.add(peer)
        path = peer.relay if via_relay else peer.path
        if source is not None and path.addr == source:
            path.hear(now)


_HANDLERS: dict[type, Handler] = {
    Punch: AgentCore._on_text_punch,
    Hello: AgentCore._on_probe,
    BareHello: AgentCore._on_bare_hello,
    HelloAck: AgentCore._on_probe,
    Msg: AgentCore._on_msg,
    Data: AgentCore._on_data,
    Ack: AgentCore._on_ack,
    Keepalive: AgentCore._on_keepalive,
}
"""Message type -> handler, for the peer messages an agent acts on, in text (after
:meth:`AgentCore._unwanted`) or sealed, and a text punch."""

_REPLY_HANDLERS: dict[type, ReplyHandler] = {
    Punch: AgentCore._on_v2_punch,
    Ok: AgentCore._on_ok,
    Err: AgentCore._on_err,
    Retry: AgentCore._on_retry,
    PresenceReport: AgentCore._on_presence,
}
"""Message type -> handler, for the v2 frames our server sends us."""


_FROM_PEERS = frozenset((Hello, HelloAck, Msg, Data, Ack))
_TO_SERVERS = frozenset((Register, Connect))
_FROM_SERVERS = frozenset((Punch, Ok, Err))
_TEXT_REPLIES = frozenset((Ok, Err))
