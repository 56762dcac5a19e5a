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

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.engine.delivery import DeliveryConfig, WindowFull
from client.engine.events import event
from client.engine.outputs import Emit, Log, Output, Send, SendRaw
from client.engine.path import Action, Answer, Changed, Ignored, Moved, PathState, PathTiming, Probe
from client.engine.path_events import change_reason, direct_path_event, no_path_reason, relay_path_event
from client.engine.peer import DIRECT, NONE, RELAY, Peer, PendingConnect
from client.engine.reliable import Conversation, fits
from client.turn import outputs as turn
from client.turn.relay import Relay, RelayConfig
from protocol import (
    ID_RE,
    ID_SYNTAX,
    MAX_DATAGRAM,
    Ack,
    Candidates,
    Connect,
    Data,
    Endpoint,
    Err,
    Hello,
    HelloAck,
    Keepalive,
    Message,
    Msg,
    Ok,
    ProtocolError,
    Punch,
    Register,
    encode,
    parse,
)

__all__ = ["AgentCore", "CoreConfig", "Emit", "Log", "NoPathError", "Output", "RequestError", "Send", "SendRaw"]

LIVENESS_PERIODS = 3
"""Keepalive periods of silence after which a path to an extended peer counts as lost."""


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


class RequestError(ValueError):
    """A local request (connect, send, ...) that cannot be done; the message says why, for the user."""


class NoPathError(RequestError):
    """A message for a peer we have no path to; it was not sent."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"no path to {peer}: {reason}")
        self.peer = peer
        self.reason = reason


class WindowFullError(RequestError):
    """Too many messages to this peer await acknowledgement; try again when some are settled."""


def check_id(peer_id: str) -> str:
    """``peer_id`` if it is a valid protocol id, else :class:`RequestError`."""
    if not ID_RE.match(peer_id):
        raise RequestError(f"invalid peer id {peer_id!r}: ids match {ID_SYNTAX}")
    return peer_id


Handler = Callable[["AgentCore", Any, Endpoint, float, bool], list[Output]]


class AgentCore:
    """One agent's protocol logic: registration, keepalives, connects, the TURN relay, and each :class:`Peer`."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.registered = False
        self.peers: dict[str, Peer] = {}
        self.relay = None if config.relay is None else Relay(config.relay)
        self._reregister = False
        self._last_register: Register | None = None  # the most recent register sent (with our candidates)
        self._next_register = 0.0
        self._next_keepalive = 0.0

    @property
    def relay_up(self) -> bool:
        return self.relay is not None and self.relay.allocated

    # -- entry points --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin registering (and allocating a relay); call once when the socket is open."""
        self._next_keepalive = now + self.config.keepalive
        self._next_register = now + self.config.register_retry
        out: list[Output] = [self._send_register()]
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
        return out + self._routes(now)

    def tick(self, now: float) -> list[Output]:
        """Time passes: registration, keepalives, the relay, connect retries, probes, liveness, delivery."""
        out: list[Output] = []
        if (not self.registered or self._reregister) and now >= self._next_register:
            self._next_register = now + self.config.register_retry
            out.append(self._send_register())
        if now >= self._next_keepalive:
            self._next_keepalive = now + self.config.keepalive
            out += self._keepalives(now)
        if self.relay is not None:
            out += self._turn(self.relay.tick(now), now)
        for peer in list(self.peers.values()):
            out += self._tick_reconnect(peer, now)
            out += self._tick_pending(peer, now)
            out += self._tick_paths(peer, now)
            out += self._tick_delivery(peer, now)
        return out + self._routes(now)

    def wakeup(self) -> float:
        """The earliest time :meth:`tick` has something to do."""
        times = [self._next_keepalive]
        if not self.registered or self._reregister:
            times.append(self._next_register)
        if self.relay is not None:
            times.append(self.relay.wakeup() or math.inf)
        for peer in self.peers.values():
            if peer.pending is not None:
                times += [peer.pending.deadline, peer.pending.next_send]
            if peer.reconnect_at is not None and self._can_reconnect():
                times.append(peer.reconnect_at)
            times += [t or math.inf for t in (peer.path.wakeup(), peer.relay.wakeup())]
            if peer.extended:
                limit = self._liveness()
                times += [t or math.inf for t in (peer.path.silent_until(limit), peer.relay.silent_until(limit))]
            if peer.conversation is not None:
                times.append(peer.conversation.wakeup() or math.inf)
        return min(times)

    def connect(self, peer_id: str, now: float) -> list[Output]:
        """A local request for a path: ask the server to introduce us, unless one is up or under way."""
        check_id(peer_id)
        if peer_id == self.config.id:
            raise RequestError("cannot connect to yourself")
        if not self.registered:
            raise RequestError(f"not registered with server {self.config.server} yet")
        peer = self._peer(peer_id)
        if peer.pending is not None or not self._wants_connect(peer):
            return []
        return self._start_connect(peer, now)

    def _wants_connect(self, peer: Peer) -> bool:
        """Whether a local connect has anything to do: no path yet, or only a relay while direct was never
        tried since we last forgot the peer (the peer's relay probe of a connect it was told about can
        bring the relay path up on its own; a relay found next to a failed punch is already the answer)."""
        name = peer.path_name(self.relay_up)
        return name == NONE or (name == RELAY and peer.path.state is PathState.NONE)

    def connect_settled(self, peer_id: str) -> bool:
        """Whether a connect to ``peer_id`` has its outcome: a path (direct or relay), or none + reason."""
        peer = self.peers.get(peer_id)
        return peer is None or (peer.pending is None and peer.path_name(self.relay_up) != "punching")

    def disconnect(self, peer_id: str) -> list[Output]:
        """Forget the paths to a peer locally (state none); the peer itself is not told.

        Idempotent: forgetting a peer we never knew is done already (scenarios reset both sides blindly).
        """
        check_id(peer_id)
        peer = self.peers.get(peer_id)
        if peer is None:
            return []
        peer.pending = None
        peer.reconnect_at = None
        peer.path.reset()
        peer.relay.reset()
        peer.path.keep_probing(None, 0.0)
        peer.used = NONE
        return [Emit(event("disconnected", peer=peer_id))]

    def send(self, peer_id: str, text: str, now: float) -> list[Output]:
        """Send one chat message on the path in use; :class:`NoPathError` if there is none.

        To an extended peer it goes as ``data`` (acknowledged, retransmitted; the ``message_sent`` event
        carries its ``epoch`` and ``seq``); to a seed-era peer as ``msg`` (fire and forget).
        """
        check_id(peer_id)
        _check_text(Msg(self.config.id, text))
        peer = self.peers.get(peer_id)
        if peer is None or peer.route(self.relay_up) is None:
            raise NoPathError(peer_id, no_path_reason(peer, self.relay_up))
        if not peer.extended:
            peer.sent += 1
            message = Msg(self.config.id, text)
            return [*self._to_peer(peer, message, now), Emit(event("message_sent", peer=peer_id, text=text))]
        if not fits(self.config.id, text):
            raise RequestError(f"message too long: its data datagram would exceed {MAX_DATAGRAM} bytes")
        try:
            data = self._conversation(peer).send(text, now)
        except WindowFull as exc:
            raise WindowFullError(f"cannot send to {peer_id}: {exc}") from None
        peer.sent += 1
        sent = event("message_sent", peer=peer_id, text=text, epoch=data.epoch, seq=data.seq)
        return [*self._to_peer(peer, data, now), Emit(sent)]

    def peer_status(self, peer_id: str) -> dict[str, Any] | None:
        """One peer as status JSON shows it, or ``None`` if unknown."""
        peer = self.peers.get(peer_id)
        return None if peer is None else peer.status(self.relay_up)

    def peer_statuses(self) -> list[dict[str, Any]]:
        return [s for peer_id in sorted(self.peers) if (s := self.peer_status(peer_id)) is not None]

    def relay_status(self) -> dict[str, Any]:
        """The top-level ``relay`` and ``turn`` fields of status JSON."""
        if self.relay is None:
            return {"relay": None, "turn": None}
        relayed = self.relay.relayed
        return {"relay": None if relayed is None else str(relayed), "turn": self.relay.status()}

    # -- datagrams -----------------------------------------------------------------------------------

    def _datagram(self, data: bytes, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        try:
            message = parse(data)
        except ProtocolError as exc:
            return [Log(logging.DEBUG, f"[client] dropped datagram from {source}: {exc.reason}")]
        why = self._unwanted(message, source)
        if why is not None:
            return [Log(logging.DEBUG, f"[client] dropped {_verb(message)} from {source}: {why}")]
        handler = _HANDLERS.get(type(message))
        return [] if handler is None else handler(self, message, source, now, via_relay)

    def _unwanted(self, message: Message, source: Endpoint) -> str | None:
        """Why a well-formed message is not for us, or ``None``."""
        if isinstance(message, Register | Connect):
            return "we are not a server"
        if isinstance(message, Punch | Ok | Err) and source != self.config.server:
            return "not from our server"
        if isinstance(message, Hello | HelloAck | Msg | Data | Ack) and message.id == self.config.id:
            return "it carries our own id (a reflection)"
        return None

    def _turn(self, outputs: list[turn.Output], now: float) -> list[Output]:
        """Perform what the relay says: datagrams to the TURN server, relayed datagrams, (re)allocation."""
        out: list[Output] = []
        for output in outputs:
            match output:
                case turn.Transmit(data, to):
                    out.append(SendRaw(data, to))
                case turn.Relayed(peer, payload):
                    out += self._datagram(payload, peer, now, via_relay=True)
                case turn.Allocated(relayed):
                    out += [Emit(event("turn_allocated", relay=str(relayed))), *self._reannounce(now)]
                    self._retry_failed_connects(now)
                case turn.Failed(reason):
                    out += [Emit(event("turn_failed", reason=reason)), *self._reannounce(now)]
                    out += self._relay_lost(reason, now)
                case turn.Dropped(why) | turn.Denied(_, why):
                    out.append(Log(logging.DEBUG, f"[client] turn: {why}"))
        return out

    def _reannounce(self, now: float) -> list[Output]:
        """Our relay changed: register again (with the new candidates) until the server says ok."""
        self._reregister = True
        self._next_register = now
        return []

    def _retry_failed_connects(self, now: float) -> None:
        """A relay just came up: a peer that a connect left with no path at all (say, one made before the
        first allocation, towards a symmetric NAT) may be reachable now; connect again once registered."""
        for peer in self.peers.values():
            if peer.path.state is PathState.FAILED and peer.path_name(self.relay_up) == NONE:
                peer.reconnect_at = now

    def _relay_lost(self, reason: str, now: float) -> list[Output]:
        """Our allocation is gone: so is every relay path (to be connected again when it is back)."""
        out: list[Output] = []
        for peer in self.peers.values():
            if peer.relay.state in (PathState.DIRECT, PathState.PUNCHING):
                if peer.used == RELAY:
                    peer.reconnect_at = now  # once the relay is back
                out += self._perform(peer, peer.relay.lose(f"relay lost: {reason}", now), now, via_relay=True)
        return out

    # -- message handlers ----------------------------------------------------------------------------

    def _on_punch(self, punch: Punch, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        if punch.id == self.config.id:
            return [Log(logging.WARNING, f"[client] ignoring punch to ourselves at {punch.addr}")]
        peer = self._peer(punch.id)
        started = None if peer.pending is None else peer.pending.started
        peer.pending = None
        peer.extended = punch.candidates is not None
        before = peer.path.started
        out = self._perform(peer, peer.path.punch(punch.addr, now, started), now, via_relay=False)
        if peer.path.started != before:
            peer.first_message_ms = None
        relay = None if punch.candidates is None else punch.candidates.relay
        if relay is not None and self.relay_up:
            head_start = self.config.relay_head_start
            out += self._perform(peer, peer.relay.punch(relay, now, started, head_start), now, via_relay=True)
        return out

    def _on_ok(self, ok: Ok, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        # The ok may answer an earlier register than the last one sent; the last one is in flight, so only
        # candidates that changed since it was sent still need announcing.
        self._reregister = self._last_register != self._register()
        if self.registered:
            return []
        self.registered = True
        return [Emit(event("registered", server=str(self.config.server)))]

    def _on_err(self, err: Err, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        reason = err.reason
        # `err` carries no request id: while unregistered it answers our register; otherwise it answers
        # the oldest connect still waiting for its punch (the seed's `err invalid peers`), if any.
        waiting = [(p.pending.started, peer_id) for peer_id, p in self.peers.items() if p.pending]
        if not self.registered or not waiting:
            return [Emit(event("server_error", reason=reason))]
        _, peer_id = min(waiting)
        return self._refuse(peer_id, reason)

    def _on_probe(self, message: Hello | HelloAck, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        # A probe from a peer we never heard of still counts: the other side got its punch first.
        peer = self._peer(message.id)
        started = None if peer.pending is None else peer.pending.started
        peer.pending = None
        path = peer.relay if via_relay else peer.path
        if via_relay:
            peer.extended = True  # only an extended peer has a relay
        if isinstance(message, Hello):
            return self._perform(peer, path.on_hello(source, now, started), now, via_relay)
        return self._perform(peer, path.on_hello_ack(source, now, started), now, via_relay)

    def _on_msg(self, msg: Msg, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        peer = self._peer(msg.id)
        self._hear(peer, source, now, via_relay)
        peer.received += 1
        return [Emit(event("message_received", peer=msg.id, text=msg.text, addr=str(source)))]

    def _on_data(self, data: Data, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        peer = self._peer(data.id)
        peer.extended = True
        self._hear(peer, source, now, via_relay)
        ack, texts = self._conversation(peer).on_data(data, now)
        out = [] if ack is None else self._reply(peer, ack, source, now, via_relay)
        peer.received += len(texts)
        return out + [Emit(event("message_received", peer=data.id, text=t, addr=str(source))) for t in texts]

    def _on_ack(self, ack: Ack, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        peer = self._peer(ack.id)
        self._hear(peer, source, now, via_relay)
        if peer.conversation is None:
            return []
        out: list[Output] = []
        for settled in peer.conversation.on_ack(ack, now):
            started = peer.started()
            if peer.first_message_ms is None and started is not None:
                peer.first_message_ms = round((now - started) * 1000, 1)
            fields = {"text": settled.text, "epoch": settled.epoch, "seq": settled.seq}
            out.append(Emit(event("message_delivered", peer=peer.id, **fields)))
        return out

    def _on_keepalive(self, keepalive: Keepalive, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        # It kept a NAT mapping open on its way here, and says the peer on that path is alive.
        for peer in self.peers.values():
            if (peer.relay if via_relay else peer.path).addr == source:
                self._hear(peer, source, now, via_relay)
        return []

    # -- helpers -------------------------------------------------------------------------------------

    def _register(self) -> Register:
        relayed = None if self.relay is None else self.relay.relayed
        return Register(self.config.id, Candidates(relayed))

    def _send_register(self) -> Send:
        self._last_register = self._register()
        return Send(self._last_register, self.config.server)

    def _liveness(self) -> float:
        return LIVENESS_PERIODS * self.config.keepalive

    def _hear(self, peer: Peer, source: Endpoint, now: float, via_relay: bool) -> None:
        path = peer.relay if via_relay else peer.path
        if path.addr == source:
            path.hear(now)

    def _start_connect(self, peer: Peer, now: float) -> list[Output]:
        peer.path.reset()
        peer.relay.reset()
        retry = self.config.register_retry
        peer.pending = PendingConnect(now, now + self.config.timing.timeout, now + retry)
        return [Send(Connect(self.config.id, peer.id), self.config.server)]

    def _keepalives(self, now: float) -> list[Output]:
        out: list[Output] = [Send(Keepalive(), self.config.server)]
        for peer in self.peers.values():
            if peer.path.state is PathState.DIRECT and peer.path.addr is not None:
                out.append(Send(Keepalive(), peer.path.addr))
            if peer.relay.state is PathState.DIRECT and peer.relay.addr is not None:
                out += self._via_relay(peer.relay.addr, Keepalive(), now)
        if self.relay is not None:
            out += self._turn(self.relay.check(now), now)
        return out

    def _can_reconnect(self) -> bool:
        """Whether the server knows our (new) relay, so that a connect can bring a relay path up."""
        return self.relay_up and self.registered and not self._reregister

    def _tick_reconnect(self, peer: Peer, now: float) -> list[Output]:
        """A relay path lost with our allocation: connect again once the relay is back (and every two punch
        time-outs after that, until a path is up: the peer may need to get its relay back too)."""
        due = peer.reconnect_at is not None and now >= peer.reconnect_at and self._can_reconnect()
        if not due or peer.pending is not None or peer.path_name(self.relay_up) != NONE:
            return []
        peer.reconnect_at = now + 2 * self.config.timing.timeout
        return [
            Log(logging.INFO, f"[client] relay is back: connecting to {peer.id} again"),
            *self._start_connect(peer, now),
        ]

    def _tick_pending(self, peer: Peer, now: float) -> list[Output]:
        pending = peer.pending
        if pending is None:
            return []
        if now >= pending.deadline:
            timeout = self.config.timing.timeout
            return self._refuse(peer.id, f"no answer to connect within {timeout:g} s")
        if now < pending.next_send:
            return []
        # Datagrams get lost: repeat the request until the punch comes (duplicate punches are ignored).
        pending.next_send = now + self.config.register_retry
        return [Send(Connect(self.config.id, peer.id), self.config.server)]

    def _tick_paths(self, peer: Peer, now: float) -> list[Output]:
        out = self._perform(peer, peer.path.tick(now), now, via_relay=False)
        out += self._perform(peer, peer.relay.tick(now), now, via_relay=True)
        if peer.extended:
            limit = self._liveness()
            had_a_path = peer.path_name(self.relay_up) != NONE
            out += self._perform(peer, peer.path.check_alive(now, limit, "direct"), now, via_relay=False)
            out += self._perform(peer, peer.relay.check_alive(now, limit, "relay"), now, via_relay=True)
            if had_a_path and peer.path_name(self.relay_up) == NONE:
                # The peer went silent on every path (its relay or ours died, or a NAT dropped us): keep
                # trying to connect again, as for a lost allocation, rather than leave the pair at none.
                peer.reconnect_at = now
        return out

    def _tick_delivery(self, peer: Peer, now: float) -> list[Output]:
        if peer.conversation is None:
            return []
        frames, given_up = peer.conversation.tick(now)
        out = [o for frame in frames for o in self._to_peer(peer, frame, now)]
        for settled in given_up:
            fields = {"text": settled.text, "reason": settled.reason, "epoch": settled.epoch, "seq": settled.seq}
            out.append(Emit(event("message_undelivered", peer=peer.id, **fields)))
        return out

    def _routes(self, now: float) -> list[Output]:
        """Report route changes (path_changed), resend unacknowledged data on the new path, and keep
        probing direct in the background while relayed."""
        out: list[Output] = []
        for peer in self.peers.values():
            relayed = peer.route(self.relay_up) is not None and peer.path.state is not PathState.DIRECT
            peer.path.keep_probing(self.config.direct_retry if relayed else None, now)
            used = peer.path_name(self.relay_up)
            used = used if used in (DIRECT, RELAY) else NONE
            if used == peer.used:
                continue
            old, peer.used = peer.used, used
            if used != NONE:
                peer.reconnect_at = None
            if old != NONE:
                reason = change_reason(old, used, peer.reason(self.relay_up))
                route = peer.route(self.relay_up)
                addr = None if route is None else str(route[1])
                out.append(Emit(event("path_changed", peer=peer.id, old=old, new=used, reason=reason, addr=addr)))
            if used != NONE and peer.conversation is not None:
                out += [o for frame in peer.conversation.on_path_change(now) for o in self._to_peer(peer, frame, now)]
        return out

    def _to_peer(self, peer: Peer, message: Message, now: float) -> list[Output]:
        """Send ``message`` on the path in use (nothing if there is none: retransmissions will come)."""
        route = peer.route(self.relay_up)
        if route is None:
            return []
        kind, addr = route
        return [Send(message, addr)] if kind == DIRECT else self._via_relay(addr, message, now)

    def _reply(self, peer: Peer, message: Message, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """Answer on the path in use, or else back the way the datagram came."""
        if peer.route(self.relay_up) is not None:
            return self._to_peer(peer, message, now)
        return self._via_relay(source, message, now) if via_relay else [Send(message, source)]

    def _via_relay(self, to: Endpoint, message: Message, now: float) -> list[Output]:
        """A datagram to a peer's relayed address always goes through our own allocation."""
        if self.relay is None:
            return []
        return self._turn(self.relay.send(to, encode(message), now), now)

    def _refuse(self, peer_id: str, reason: str) -> list[Output]:
        peer = self._peer(peer_id)
        peer.pending = None
        peer.path.reset(f"server: {reason}")
        return [Emit(event("server_error", reason=reason, peer=peer_id))]

    def _perform(self, peer: Peer, actions: list[Action], now: float, via_relay: bool) -> list[Output]:
        """Turn a path's actions into datagrams (via the relay for the relay path), events and log lines."""
        me, out = self.config.id, list[Output]()
        path = peer.relay if via_relay else peer.path
        for action in actions:
            match action:
                case Probe(to):
                    out += self._via_relay(to, Hello(me), now) if via_relay else [Send(Hello(me), to)]
                case Answer(to):
                    out += self._via_relay(to, HelloAck(me), now) if via_relay else [Send(HelloAck(me), to)]
                case Changed(_, new):
                    if via_relay:
                        out += relay_path_event(path, new)
                    else:
                        out += direct_path_event(peer, new, relayed=peer.route(self.relay_up) is not None)
                case Moved(old, new):
                    out.append(Log(logging.INFO, f"[client] peer {path.peer} moved from {old} to {new}"))
                case Ignored(why):
                    out.append(Log(logging.INFO, f"[client] ignoring {why}"))
        return out

    def _peer(self, peer_id: str) -> Peer:
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = self.peers[peer_id] = Peer.new(peer_id, self.config.timing)
        return peer

    def _conversation(self, peer: Peer) -> Conversation:
        if peer.conversation is None:
            peer.conversation = Conversation(self.config.id, self.config.delivery)
        return peer.conversation


_HANDLERS: dict[type, Handler] = {
    Punch: AgentCore._on_punch,
    Ok: AgentCore._on_ok,
    Err: AgentCore._on_err,
    Hello: AgentCore._on_probe,
    HelloAck: AgentCore._on_probe,
    Msg: AgentCore._on_msg,
    Data: AgentCore._on_data,
    Ack: AgentCore._on_ack,
    Keepalive: AgentCore._on_keepalive,
}
"""Message type -> handler, for the messages an agent acts on (after :meth:`AgentCore._unwanted`)."""


def _verb(message: Message) -> str:
    return encode(message).split(b" ", 1)[0].decode()


def _check_text(message: Msg) -> None:
    if not message.text.strip():
        raise RequestError("empty message")
    if "\n" in message.text or "\r" in message.text:
        raise RequestError("a message is one line (no line breaks)")
    size = len(encode(message))
    if size > MAX_DATAGRAM:
        raise RequestError(f"message too long: {size} bytes on the wire, at most {MAX_DATAGRAM}")
