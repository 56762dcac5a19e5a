"""The agent's core: pure, no sockets and no clocks. Datagrams, local requests and ticks in; outputs out.

Every entry point takes ``now`` (monotonic seconds) and returns a list of :data:`Output`: datagrams to
:class:`Send`, events to :class:`Emit` (log them, append them to the event log, stream them to chats) and
:class:`Log` lines that are not events. The asyncio shell (:mod:`client.agent`) performs them and calls
:meth:`AgentCore.tick` again at :meth:`AgentCore.wakeup`. Two cores and a fake server can so be joined in
memory and the whole exchange tested without a network or a sleep.

Errors a local caller can cause raise :class:`RequestError` (its message is the one to show the user);
anything a remote sends is at worst logged and dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.events import Event, event
from client.path import Action, Answer, Changed, Ignored, Moved, Path, PathState, PathTiming, Probe
from protocol import (
    ID_SYNTAX,
    MAX_DATAGRAM,
    Connect,
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

_ID_RE = re.compile(ID_SYNTAX + r"\Z")


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs to know; times in seconds."""

    id: str
    server: Endpoint
    timing: PathTiming = field(default_factory=PathTiming)
    keepalive: float = 10.0
    register_retry: float = 0.25


@dataclass(frozen=True)
class Send:
    """Send ``message`` to ``to`` from the agent's one UDP socket."""

    message: Message
    to: Endpoint


@dataclass(frozen=True)
class Emit:
    """An event happened (see :mod:`client.events`)."""

    event: Event


@dataclass(frozen=True)
class Log:
    """A log line that is not an event; ``level`` is a :mod:`logging` level."""

    level: int
    text: str


Output = Send | Emit | Log


class RequestError(ValueError):
    """A local request (connect, send, ...) that cannot be done; the message says why, for the user."""


class NoPathError(RequestError):
    """A message for a peer we have no direct path to; it was not sent."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"no path to {peer}: {reason}")
        self.peer = peer
        self.reason = reason


@dataclass
class PendingConnect:
    """A local connect waiting for the server's ``punch`` (re-sent until it comes, up to a deadline)."""

    started: float
    deadline: float
    next_send: float


@dataclass
class Peer:
    path: Path
    sent: int = 0
    received: int = 0
    pending: PendingConnect | None = None


def check_id(peer_id: str) -> str:
    """``peer_id`` if it is a valid protocol id, else :class:`RequestError`."""
    if not _ID_RE.match(peer_id):
        raise RequestError(f"invalid peer id {peer_id!r}: ids match {ID_SYNTAX}")
    return peer_id


class AgentCore:
    """One agent's protocol logic: registration, keepalives, connect requests and a :class:`Path` per peer."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.registered = False
        self.peers: dict[str, Peer] = {}
        self._next_register = 0.0
        self._next_keepalive = 0.0

    # -- entry points --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin registering; call once when the socket is open."""
        self._next_keepalive = now + self.config.keepalive
        self._next_register = now + self.config.register_retry
        return [Send(Register(self.config.id), self.config.server)]

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Output]:
        """One datagram from ``source``. Bad input is logged and dropped; this never raises for it."""
        try:
            message = parse(data)
        except ProtocolError as exc:
            return [Log(logging.DEBUG, f"[client] dropped datagram from {source}: {exc.reason}")]
        why = self._unwanted(message, source)
        if why is not None:
            return [Log(logging.DEBUG, f"[client] dropped {_verb(message)} from {source}: {why}")]
        handler = _HANDLERS.get(type(message))
        return [] if handler is None else handler(self, message, source, now)

    def _unwanted(self, message: Message, source: Endpoint) -> str | None:
        """Why a well-formed message is not for us, or ``None``."""
        if isinstance(message, Register | Connect):
            return "we are not a server"
        if isinstance(message, Punch | Ok | Err) and source != self.config.server:
            return "not from our server"
        if isinstance(message, Hello | HelloAck | Msg) and message.id == self.config.id:
            return "it carries our own id (a reflection)"
        return None

    def tick(self, now: float) -> list[Output]:
        """Time passes: registration retries, keepalives, connect retries, probes and punch time-outs."""
        out: list[Output] = []
        if not self.registered and now >= self._next_register:
            self._next_register = now + self.config.register_retry
            out.append(Send(Register(self.config.id), self.config.server))
        if now >= self._next_keepalive:
            self._next_keepalive = now + self.config.keepalive
            out.append(Send(Keepalive(), self.config.server))
            out += [Send(Keepalive(), addr) for addr in self._direct_addrs()]
        for peer in list(self.peers.values()):
            out += self._tick_pending(peer, now)
            out += self._perform(peer, peer.path.tick(now))
        return out

    def wakeup(self) -> float:
        """The earliest time :meth:`tick` has something to do."""
        times = [self._next_keepalive]
        if not self.registered:
            times.append(self._next_register)
        for peer in self.peers.values():
            if peer.pending is not None:
                times += [peer.pending.deadline, peer.pending.next_send]
            path_time = peer.path.wakeup()
            if path_time is not None:
                times.append(path_time)
        return min(times)

    def connect(self, peer_id: str, now: float) -> list[Output]:
        """A local request for a direct path: ask the server to introduce us, unless already under way."""
        check_id(peer_id)
        if peer_id == self.config.id:
            raise RequestError("cannot connect to yourself")
        if not self.registered:
            raise RequestError(f"not registered with server {self.config.server} yet")
        peer = self._peer(peer_id)
        if peer.pending is not None or peer.path.state in (PathState.DIRECT, PathState.PUNCHING):
            return []
        peer.path.reset()
        retry = self.config.register_retry
        peer.pending = PendingConnect(now, now + self.config.timing.timeout, now + retry)
        return [Send(Connect(self.config.id, peer_id), self.config.server)]

    def connect_settled(self, peer_id: str) -> bool:
        """Whether a connect to ``peer_id`` has its outcome: direct, failed, or refused (none + reason)."""
        peer = self.peers.get(peer_id)
        return peer is None or (peer.pending is None and peer.path.state is not PathState.PUNCHING)

    def disconnect(self, peer_id: str) -> list[Output]:
        """Forget the path to a peer locally (state none); the peer itself is not told.

        Idempotent: forgetting a peer we never knew is done already (scenarios reset both sides blindly).
        """
        check_id(peer_id)
        peer = self.peers.get(peer_id)
        if peer is None:
            return []
        peer.pending = None
        peer.path.reset()
        return [Emit(event("disconnected", peer=peer_id))]

    def send(self, peer_id: str, text: str) -> list[Output]:
        """Send one chat message over the direct path; :class:`NoPathError` if there is none."""
        check_id(peer_id)
        message = Msg(self.config.id, text)
        _check_text(message)
        peer = self.peers.get(peer_id)
        if peer is None or peer.path.state is not PathState.DIRECT or peer.path.addr is None:
            raise NoPathError(peer_id, _no_path_reason(peer))
        peer.sent += 1
        return [Send(message, peer.path.addr), Emit(event("message_sent", peer=peer_id, text=text))]

    def peer_status(self, peer_id: str) -> dict[str, Any] | None:
        """One peer as status JSON shows it, or ``None`` if unknown."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return None
        path = peer.path
        return {
            "id": peer_id,
            "addr": None if path.addr is None else str(path.addr),
            # A failed punch shows as path "none" with the reason, the status schema's values being
            # none|punching|direct (and relay later); the reason says why there is no path.
            "path": PathState.NONE.value if path.state is PathState.FAILED else path.state.value,
            "reason": path.reason,
            "time_to_direct_ms": path.time_to_direct_ms,
            "sent": peer.sent,
            "received": peer.received,
        }

    def peer_statuses(self) -> list[dict[str, Any]]:
        return [s for peer_id in sorted(self.peers) if (s := self.peer_status(peer_id)) is not None]

    # -- message handlers ----------------------------------------------------------------------------

    def _on_punch(self, punch: Punch, source: Endpoint, now: float) -> list[Output]:
        if punch.id == self.config.id:
            return [Log(logging.WARNING, f"[client] ignoring punch to ourselves at {punch.addr}")]
        peer = self._peer(punch.id)
        started = None if peer.pending is None else peer.pending.started
        peer.pending = None
        return self._perform(peer, peer.path.punch(punch.addr, now, started))

    def _on_ok(self, ok: Ok, source: Endpoint, now: float) -> list[Output]:
        if self.registered:
            return []
        self.registered = True
        return [Emit(event("registered", server=str(self.config.server)))]

    def _on_err(self, err: Err, source: Endpoint, now: float) -> list[Output]:
        reason = err.reason
        # `err` carries no request id: while unregistered it answers our register; otherwise it answers
        # the oldest connect still waiting for its punch (the seed's `err invalid peers`), if any.
        waiting = [(p.pending.started, peer_id) for peer_id, p in self.peers.items() if p.pending]
        if not self.registered or not waiting:
            return [Emit(event("server_error", reason=reason))]
        _, peer_id = min(waiting)
        return self._refuse(peer_id, reason)

    def _on_probe(self, message: Hello | HelloAck, source: Endpoint, now: float) -> list[Output]:
        # A probe from a peer we never heard of still counts: the other side got its punch first.
        peer = self._peer(message.id)
        started = None if peer.pending is None else peer.pending.started
        peer.pending = None
        if isinstance(message, Hello):
            return self._perform(peer, peer.path.on_hello(source, now, started))
        return self._perform(peer, peer.path.on_hello_ack(source, now, started))

    def _on_msg(self, msg: Msg, source: Endpoint, now: float) -> list[Output]:
        self._peer(msg.id).received += 1
        return [Emit(event("message_received", peer=msg.id, text=msg.text, addr=str(source)))]

    def _on_keepalive(self, keepalive: Keepalive, source: Endpoint, now: float) -> list[Output]:
        return []  # it only kept a NAT mapping open on its way here

    # -- helpers -------------------------------------------------------------------------------------

    def _tick_pending(self, peer: Peer, now: float) -> list[Output]:
        pending = peer.pending
        if pending is None:
            return []
        if now >= pending.deadline:
            timeout = self.config.timing.timeout
            return self._refuse(peer.path.peer, f"no answer to connect within {timeout:g} s")
        if now < pending.next_send:
            return []
        # Datagrams get lost: repeat the request until the punch comes (duplicate punches are ignored).
        pending.next_send = now + self.config.register_retry
        return [Send(Connect(self.config.id, peer.path.peer), self.config.server)]

    def _refuse(self, peer_id: str, reason: str) -> list[Output]:
        peer = self._peer(peer_id)
        peer.pending = None
        peer.path.reset(f"server: {reason}")
        return [Emit(event("server_error", reason=reason, peer=peer_id))]

    def _perform(self, peer: Peer, actions: list[Action]) -> list[Output]:
        """Turn a path's actions into datagrams, events and log lines."""
        me, path, out = self.config.id, peer.path, list[Output]()
        for action in actions:
            match action:
                case Probe(to):
                    out.append(Send(Hello(me), to))
                case Answer(to):
                    out.append(Send(HelloAck(me), to))
                case Changed(_, new):
                    out += self._path_event(path, new)
                case Moved(old, new):
                    out.append(Log(logging.INFO, f"[client] peer {path.peer} moved from {old} to {new}"))
                case Ignored(why):
                    out.append(Log(logging.INFO, f"[client] ignoring punch: {why}"))
        return out

    @staticmethod
    def _path_event(path: Path, new: PathState) -> list[Output]:
        addr = str(path.addr)
        if new is PathState.PUNCHING:
            return [Emit(event("punch_started", peer=path.peer, addr=addr))]
        if new is PathState.DIRECT:
            ms = path.time_to_direct_ms
            return [Emit(event("direct_confirmed", peer=path.peer, addr=addr, time_to_direct_ms=ms))]
        if new is PathState.FAILED:
            return [Emit(event("punch_failed", peer=path.peer, addr=addr, reason=path.reason))]
        return []

    def _peer(self, peer_id: str) -> Peer:
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = self.peers[peer_id] = Peer(Path(peer_id, self.config.timing))
        return peer

    def _direct_addrs(self) -> list[Endpoint]:
        return [
            p.path.addr for p in self.peers.values() if p.path.state is PathState.DIRECT and p.path.addr is not None
        ]


_HANDLERS: dict[type, Callable[[AgentCore, Any, Endpoint, float], list[Output]]] = {
    Punch: AgentCore._on_punch,
    Ok: AgentCore._on_ok,
    Err: AgentCore._on_err,
    Hello: AgentCore._on_probe,
    HelloAck: AgentCore._on_probe,
    Msg: AgentCore._on_msg,
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


def _no_path_reason(peer: Peer | None) -> str:
    if peer is None:
        return "not connected"
    if peer.path.reason:
        return peer.path.reason
    if peer.pending is not None or peer.path.state is PathState.PUNCHING:
        return "still punching"
    return "not connected"
