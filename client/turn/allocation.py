"""The client's TURN allocation (RFC 8656 over UDP): a pure state machine, time passed in, no sockets.

The STUN codec is aioice's (:mod:`client.turn.wire` wraps it); aioice 0.8's own TURN client has no
CreatePermission and drops Data indications, hence this layer. Every entry point takes ``now`` (monotonic
seconds) and returns a list of :data:`Output` for the caller to perform, h11-style::

    turn = TurnAllocation(TurnConfig(Endpoint("198.18.0.20", 3478), "natlab", secret))
    turn.start(now)                        # Allocate: unauthenticated, 401 -> again with credentials
    turn.receive(data, source, now)        # a datagram for which turn_wire.is_turn_datagram(data) holds
    turn.tick(now)                         # at turn.wakeup(): retransmissions, time-outs and refreshes
    turn.permit("198.18.0.12", now)        # CreatePermission for a peer IP, refreshed every 240 s
    turn.refresh(now)                      # Refresh now (a liveness check; refreshes are automatic)
    turn.bind(peer, now)                   # optional ChannelBind: from then on ChannelData to/from peer
    turn.send_to_peer(peer, payload, now)  # a Send indication (ChannelData once bound); permits if needed
    turn.close(now)                        # Refresh LIFETIME=0

Outputs: :class:`Transmit` (send ``data`` to the TURN server from the agent's one socket),
:class:`Allocated` (our relayed and server-reflexive addresses), :class:`Refreshed`, :class:`Permitted`,
:class:`Bound`, :class:`Relayed` (a datagram ``peer`` sent to our relayed address: handle it as if it came
from ``peer`` directly), :class:`Denied` (one peer's permission or channel refused; the allocation stays),
:class:`Failed` (the allocation is gone; ``start`` again for a fresh one), :class:`Closed` and
:class:`Dropped` (a datagram ignored, with why: a log line).

``permit``, ``bind`` and ``send_to_peer`` raise :class:`TurnError` unless allocated; ``receive`` never raises
(it drops datagrams not from ``config.server``, and answers whose MESSAGE-INTEGRITY does not check out).

States (the :data:`TRANSITIONS` table)::

    idle ──start──▶ allocating ──granted──▶ allocated ──close──▶ closing ──answer or time-out──▶ closed
                     │    │                     │
                     │    └───────▶ failed ◀────┘   (an error or time-out that ends the allocation)
                     └──close──▶ closed
    failed or closed ──start──▶ allocating

Requests are retransmitted on RFC 8489's schedule (:class:`Retransmit`); one never answered fails the
allocation ("turn: no response from 198.18.0.20:3478 within 39.5 s"). An error response fails it with its
code and reason phrase ("turn: Allocate failed: 486 Allocation Quota Reached"; a refused CreatePermission
or ChannelBind is only :class:`Denied`), except:

* 401 to a request sent before we knew REALM and NONCE: learn them, send it again signed;
* 438 Stale Nonce: send it again with the new NONCE (up to :data:`MAX_STALE_NONCE` times in a row);
* 437 to an Allocate: an allocation of ours is left on the server (the agent restarted on its port, or gave
  up on an unanswered request): delete it with Refresh LIFETIME=0 and allocate again, retrying 437s for
  ``mismatch_grace`` seconds, as coturn lets go of a deleted allocation only about a second later.

Permissions, channels and credentials belong to one allocation: ``start`` forgets them.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from aioice import stun

from client.turn.wire import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    CLASS_ERROR,
    CLASS_INDICATION,
    CLASS_REQUEST,
    UDP,
    StunMessage,
    channel_data,
    encode,
    is_channel_data,
    long_term_key,
    new_transaction_id,
    parse_channel_data,
    parse_stun,
    send_indication,
)
from protocol import Endpoint

MAX_STALE_NONCE = 3
"""438 Stale Nonce answers in a row that one request may retry after."""


class TurnState(enum.StrEnum):
    """Where the allocation stands; the value is what status JSON shows."""

    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class Trigger(enum.Enum):
    START = "start"
    GRANTED = "granted"
    FAIL = "fail"
    CLOSE = "close"
    DONE = "done"


_S = TurnState

TRANSITIONS: dict[tuple[TurnState, Trigger], TurnState] = {
    **{(state, Trigger.START): _S.ALLOCATING for state in (_S.IDLE, _S.FAILED, _S.CLOSED)},
    (_S.ALLOCATING, Trigger.GRANTED): _S.ALLOCATED,
    (_S.ALLOCATING, Trigger.FAIL): _S.FAILED,
    (_S.ALLOCATED, Trigger.FAIL): _S.FAILED,
    # Nothing granted yet, so nothing to delete (a grant in flight expires, or is cleared after a 437).
    (_S.ALLOCATING, Trigger.CLOSE): _S.CLOSED,
    (_S.ALLOCATED, Trigger.CLOSE): _S.CLOSING,
    (_S.CLOSING, Trigger.DONE): _S.CLOSED,
}
"""(state, trigger) -> next state. A pair missing from the table is a bug in the caller."""


class TurnError(RuntimeError):
    """A call the allocation's state does not allow (e.g. sending with no allocation): the caller's fault."""


@dataclass(frozen=True)
class Retransmit:
    """When to resend an unanswered request (RFC 8489 section 6.2.1), in seconds.

    Sends at 0, rto, 3 rto, 7 rto, ... (``rc`` in all), then waits ``rm`` * rto for the answer. The
    default gives up after 39.5 s; ``Retransmit(rc=5, rm=4)`` after 9.5 s.
    """

    rto: float = 0.5
    rc: int = 7
    rm: int = 16

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.rc < 1 or self.rm < 1:
            raise ValueError(f"invalid retransmission schedule {self}")

    def offsets(self) -> tuple[float, ...]:
        """When each transmission goes out, relative to the first."""
        return tuple(self.rto * (2**i - 1) for i in range(self.rc))

    @property
    def give_up(self) -> float:
        """When the request counts as unanswered, relative to the first transmission."""
        return self.offsets()[-1] + self.rm * self.rto


class Transaction:
    """One request's retransmissions, time passed in: the same bytes each time, then a deadline."""

    def __init__(self, tid: bytes, data: bytes, now: float, timing: Retransmit) -> None:
        self.tid = tid
        self.data = data
        self.deadline = now + timing.give_up
        self._sends = [now + offset for offset in timing.offsets()[1:]]

    def due(self, now: float) -> bool:
        """Whether to resend now; after a stall, once rather than a burst of catch-up copies."""
        due = bool(self._sends) and self._sends[0] <= now
        self._sends = [t for t in self._sends if t > now]
        return due

    def wakeup(self) -> float:
        return self._sends[0] if self._sends else self.deadline


@dataclass(frozen=True)
class TurnConfig:
    """The TURN server, long-term credentials and timings (seconds; lifetimes as the RFC's integers)."""

    server: Endpoint
    username: str
    password: str
    lifetime: int = 600
    retransmit: Retransmit = field(default_factory=Retransmit)
    permission_refresh: float = 240.0  # permissions last 300 s (RFC 8656 section 9)
    channel_refresh: float = 540.0  # channel bindings last 600 s (RFC 8656 section 12)
    max_queued: int = 16  # datagrams per peer held until its permission is installed
    mismatch_grace: float = 3.0  # coturn answers 437 for about a second after deleting an allocation
    software: str | None = "natlab"


@dataclass(frozen=True)
class Transmit:
    """Send ``data`` to ``to`` (the TURN server) from the agent's one UDP socket."""

    data: bytes
    to: Endpoint


@dataclass(frozen=True)
class Allocated:
    """The allocation is granted: peers reach us at ``relayed``; the server sees us at ``mapped``."""

    relayed: Endpoint
    mapped: Endpoint | None
    lifetime: int


@dataclass(frozen=True)
class Refreshed:
    lifetime: int


@dataclass(frozen=True)
class Permitted:
    """The server now relays datagrams from (and to) ``peer_ip``, any port."""

    peer_ip: str


@dataclass(frozen=True)
class Bound:
    """``channel`` is bound to ``peer``: datagrams to and from it now travel as ChannelData."""

    peer: Endpoint
    channel: int


@dataclass(frozen=True)
class Relayed:
    """``payload`` arrived from ``peer`` at our relayed address."""

    peer: Endpoint
    payload: bytes


@dataclass(frozen=True)
class Denied:
    """A permission or channel for ``peer`` (an IP, or ip:port for a channel) was refused."""

    peer: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """The allocation failed or is gone; ``reason`` says why (also in ``TurnAllocation.reason``)."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The allocation is deleted (or its deletion went unanswered)."""


@dataclass(frozen=True)
class Dropped:
    """A datagram ignored, with why (worth a debug log line)."""

    why: str


Output = Transmit | Allocated | Refreshed | Permitted | Bound | Relayed | Denied | Failed | Closed | Dropped


class _Job(enum.Enum):
    """What a request is for; the value is its STUN method."""

    ALLOCATE = "allocate"
    REFRESH = "refresh"
    CLEAR = "clear"  # Refresh LIFETIME=0 of a stale allocation of ours, before allocating again
    CLOSE = "close"
    PERMISSION = "permission"
    CHANNEL = "channel"


_METHODS: dict[_Job, int] = {
    _Job.ALLOCATE: stun.Method.ALLOCATE,
    _Job.REFRESH: stun.Method.REFRESH,
    _Job.CLEAR: stun.Method.REFRESH,
    _Job.CLOSE: stun.Method.REFRESH,
    _Job.PERMISSION: stun.Method.CREATE_PERMISSION,
    _Job.CHANNEL: stun.Method.CHANNEL_BIND,
}


@dataclass
class _Request:
    job: _Job
    attributes: dict[str, object]  # without the credentials, so that a retry can sign with a new NONCE
    txn: Transaction
    signed: bool
    stale: int = 0
    peer_ip: str | None = None
    peer: Endpoint | None = None

    def label(self) -> str:
        if self.job is _Job.PERMISSION:
            return f"CreatePermission for {self.peer_ip}"
        if self.job is _Job.CHANNEL:
            return f"ChannelBind for {self.peer}"
        return "Allocate" if self.job is _Job.ALLOCATE else "Refresh"


@dataclass
class _Permission:
    installed: bool = False
    refresh_at: float = math.inf  # inf while a request is in flight
    queue: list[tuple[Endpoint, bytes]] = field(default_factory=list)


@dataclass
class _Channel:
    number: int
    bound: bool = False
    refresh_at: float = math.inf


def refresh_delay(lifetime: int) -> float:
    """When to refresh an allocation granted for ``lifetime`` s: a minute early, or at half-time if short.

    A minute covers the whole default retransmission schedule (39.5 s).
    """
    return lifetime - 60.0 if lifetime >= 120 else lifetime / 2


def _ip(host: str) -> str:
    return str(ipaddress.ip_address(host))


class TurnAllocation:
    """One allocation on one TURN server, and its permissions and channels."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.state = TurnState.IDLE
        self.reason: str | None = None
        self.relayed: Endpoint | None = None
        self.mapped: Endpoint | None = None
        self.lifetime: int | None = None
        self._realm: str | None = None
        self._nonce: bytes | None = None
        self._key: bytes | None = None
        self._mismatch_until: float | None = None  # set once we have deleted a stale allocation of ours
        self._allocate_at = math.inf  # when to try Allocate again after that deletion
        self._requests: dict[bytes, _Request] = {}
        self._refresh_at = math.inf
        self._permissions: dict[str, _Permission] = {}
        self._channels: dict[Endpoint, _Channel] = {}
        self._by_number: dict[int, Endpoint] = {}
        self._next_channel = CHANNEL_MIN

    def _fire(self, trigger: Trigger) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise TurnError(f"turn: {trigger.value} not allowed in state {self.state}")
        self.state = new

    # -- entry points --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Request a fresh allocation (first, or again after failure or close)."""
        self._fire(Trigger.START)
        self._forget()
        self.reason = None
        self._realm = self._nonce = self._key = None
        self._mismatch_until = None
        return [self._request(_Job.ALLOCATE, self._allocate_attributes(), now)]

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Output]:
        """One STUN or ChannelData datagram from ``source``; bad input is dropped, never raised."""
        if source != self.config.server:
            return [Dropped(f"TURN datagram from {source}, not from our server {self.config.server}")]
        if is_channel_data(data):
            return self._on_channel_data(data)
        try:
            message = parse_stun(data)
        except ValueError as exc:
            return [Dropped(f"bad STUN datagram: {exc}")]
        return self._on_stun(message, now)

    def tick(self, now: float) -> list[Output]:
        """Time passes: retransmissions, time-outs, and refreshes of allocation, permissions and channels."""
        out: list[Output] = []
        for request in list(self._requests.values()):
            if request.txn.tid not in self._requests:
                continue  # forgotten by an earlier time-out in this tick
            if now >= request.txn.deadline:
                del self._requests[request.txn.tid]
                out += self._on_timeout(request)
            elif request.txn.due(now):
                out.append(Transmit(request.txn.data, self.config.server))
        if self.state is TurnState.ALLOCATING and now >= self._allocate_at:
            self._allocate_at = math.inf
            out.append(self._request(_Job.ALLOCATE, self._allocate_attributes(), now))
        if self.state is TurnState.ALLOCATED:
            out += self._refreshes(now)
        return out

    def wakeup(self) -> float | None:
        """When :meth:`tick` next has something to do, or ``None``."""
        times = [request.txn.wakeup() for request in self._requests.values()]
        if self.state is TurnState.ALLOCATING:
            times.append(self._allocate_at)
        if self.state is TurnState.ALLOCATED:
            times += [self._refresh_at, *(p.refresh_at for p in self._permissions.values())]
            times += [c.refresh_at for c in self._channels.values()]
        return min((t for t in times if t != math.inf), default=None)

    def permit(self, peer_ip: str, now: float) -> list[Output]:
        """Let ``peer_ip`` (any port) send to our relayed address, and keep the permission refreshed."""
        self._require_allocated()
        peer_ip = _ip(peer_ip)
        if peer_ip in self._permissions:
            return []
        self._permissions[peer_ip] = _Permission()
        return [self._permission_request(peer_ip, now)]

    def refresh(self, now: float) -> list[Output]:
        """Refresh the allocation now (unless a Refresh is in flight): a server gone away is noticed soon."""
        self._require_allocated()
        if any(r.job is _Job.REFRESH for r in self._requests.values()):
            return []
        self._refresh_at = math.inf
        return [self._request(_Job.REFRESH, {"LIFETIME": self.config.lifetime}, now)]

    def revoke(self, peer_ip: str) -> None:
        """Stop refreshing the permission and channels of ``peer_ip``: the server expires them."""
        peer_ip = _ip(peer_ip)
        self._permissions.pop(peer_ip, None)
        for peer in [p for p in self._channels if p.host == peer_ip]:
            del self._by_number[self._channels.pop(peer).number]

    def bind(self, peer: Endpoint, now: float) -> list[Output]:
        """Bind a channel to ``peer``: 4 bytes of framing per datagram instead of 36 or more."""
        self._require_allocated()
        peer = Endpoint(_ip(peer.host), peer.port)
        # Channel data needs the permission too, and a binding refreshes it only every 540 s: keep both.
        out = self.permit(peer.host, now)
        if peer in self._channels:
            return out
        if self._next_channel > CHANNEL_MAX:
            raise TurnError("turn: no channel numbers left in this allocation")
        channel = _Channel(self._next_channel)
        self._next_channel += 1
        self._channels[peer] = channel
        self._by_number[channel.number] = peer
        return [*out, self._channel_request(peer, channel.number, now)]

    def send_to_peer(self, peer: Endpoint, payload: bytes, now: float) -> list[Output]:
        """Relay ``payload`` to ``peer``; with no permission yet, ask for one and hold the payload until then."""
        self._require_allocated()
        peer = Endpoint(_ip(peer.host), peer.port)
        permission = self._permissions.get(peer.host)
        if permission is not None and permission.installed:
            return [self._wrap(peer, payload)]
        out = self.permit(peer.host, now)
        queue = self._permissions[peer.host].queue
        if len(queue) >= self.config.max_queued:
            return [*out, Dropped(f"datagram to {peer} dropped: {len(queue)} already wait for its permission")]
        queue.append((peer, payload))
        return out

    def close(self, now: float) -> list[Output]:
        """Delete the allocation (Refresh LIFETIME=0). Outside allocating and allocated, nothing to do."""
        if self.state is TurnState.ALLOCATING:
            self._fire(Trigger.CLOSE)
            self._forget()
            return [Closed()]
        if self.state is not TurnState.ALLOCATED:
            return []
        self._fire(Trigger.CLOSE)
        self._forget()
        return [self._request(_Job.CLOSE, {"LIFETIME": 0}, now)]

    # -- requests ------------------------------------------------------------------------------------

    def _require_allocated(self) -> None:
        if self.state is not TurnState.ALLOCATED:
            why = f": {self.reason}" if self.reason else ""
            raise TurnError(f"turn: no allocation (state {self.state}{why})")

    def _allocate_attributes(self) -> dict[str, object]:
        attributes: dict[str, object] = {"REQUESTED-TRANSPORT": UDP, "LIFETIME": self.config.lifetime}
        if self.config.software:
            attributes["SOFTWARE"] = self.config.software
        return attributes

    def _request(
        self,
        job: _Job,
        attributes: dict[str, object],
        now: float,
        stale: int = 0,
        *,
        peer_ip: str | None = None,
        peer: Endpoint | None = None,
    ) -> Transmit:
        """Send a new request (signed once we know REALM and NONCE) and track its retransmissions."""
        tid = new_transaction_id()
        signed = dict(attributes)
        if self._key is not None:
            signed |= {"USERNAME": self.config.username, "REALM": self._realm, "NONCE": self._nonce}
        data = encode(_METHODS[job], CLASS_REQUEST, signed, tid, self._key)
        txn = Transaction(tid, data, now, self.config.retransmit)
        self._requests[tid] = _Request(job, attributes, txn, self._key is not None, stale, peer_ip, peer)
        return Transmit(data, self.config.server)

    def _permission_request(self, peer_ip: str, now: float) -> Transmit:
        # The port of XOR-PEER-ADDRESS is ignored in CreatePermission (RFC 8656 section 9.1).
        return self._request(_Job.PERMISSION, {"XOR-PEER-ADDRESS": (peer_ip, 0)}, now, peer_ip=peer_ip)

    def _channel_request(self, peer: Endpoint, number: int, now: float) -> Transmit:
        attributes: dict[str, object] = {"CHANNEL-NUMBER": number, "XOR-PEER-ADDRESS": peer.sockaddr()}
        return self._request(_Job.CHANNEL, attributes, now, peer=peer)

    def _refreshes(self, now: float) -> list[Output]:
        out: list[Output] = []
        if now >= self._refresh_at:
            self._refresh_at = math.inf
            out.append(self._request(_Job.REFRESH, {"LIFETIME": self.config.lifetime}, now))
        for peer_ip, permission in self._permissions.items():
            if now >= permission.refresh_at:
                permission.refresh_at = math.inf
                out.append(self._permission_request(peer_ip, now))
        for peer, channel in self._channels.items():
            if now >= channel.refresh_at:
                channel.refresh_at = math.inf
                out.append(self._channel_request(peer, channel.number, now))
        return out

    def _wrap(self, peer: Endpoint, payload: bytes) -> Transmit:
        channel = self._channels.get(peer)
        if channel is not None and channel.bound:
            return Transmit(channel_data(channel.number, payload), self.config.server)
        return Transmit(send_indication(peer, payload), self.config.server)

    def _forget(self) -> None:
        """Drop everything that belongs to the current allocation."""
        self._requests.clear()
        self._permissions.clear()
        self._channels.clear()
        self._by_number.clear()
        self._next_channel = CHANNEL_MIN
        self._refresh_at = math.inf
        self._allocate_at = math.inf

    def _fail(self, reason: str) -> list[Output]:
        self._fire(Trigger.FAIL)
        self._forget()
        self.reason = reason
        self.relayed = self.mapped = self.lifetime = None
        return [Failed(reason)]

    # -- what comes back -----------------------------------------------------------------------------

    def _on_stun(self, message: StunMessage, now: float) -> list[Output]:
        if message.cls == CLASS_INDICATION:
            return self._on_indication(message)
        if message.cls == CLASS_REQUEST:
            return [Dropped(f"unexpected {message.name} request from the TURN server")]
        request = self._requests.get(message.tid)
        if request is None or _METHODS[request.job] != message.method:
            return [Dropped(f"{message.name} response to no request of ours")]
        why = self._untrusted(request, message)
        if why is not None:
            return [Dropped(why)]
        del self._requests[message.tid]
        if message.cls == CLASS_ERROR:
            return self._on_error(request, message, now)
        return _ON_SUCCESS[request.job](self, request, message, now)

    def _untrusted(self, request: _Request, message: StunMessage) -> str | None:
        """Why an answer to a signed request cannot be trusted, or ``None``."""
        if not request.signed or self._key is None:
            return None
        if "MESSAGE-INTEGRITY" in message.attributes:
            return None if message.has_valid_integrity(self._key) else f"{message.name} answer with bad integrity"
        if message.cls != CLASS_ERROR:
            return f"{message.name} success response without MESSAGE-INTEGRITY"
        # coturn 4.6 sends some error responses (437, 438) to signed requests unsigned: accept them.
        return None

    def _on_channel_data(self, data: bytes) -> list[Output]:
        number, payload = parse_channel_data(data)
        peer = self._by_number.get(number)
        # Accepted from the moment ChannelBind is sent: the server may use the channel before we hear back.
        if peer is None:
            return [Dropped(f"ChannelData on unknown channel {number:#x}")]
        return [Relayed(peer, payload)]

    def _on_indication(self, message: StunMessage) -> list[Output]:
        if message.method != stun.Method.DATA:
            return [Dropped(f"unexpected {message.name} indication from the TURN server")]
        if self.state is not TurnState.ALLOCATED:
            return [Dropped(f"Data indication in state {self.state}")]
        peer, payload = message.endpoint("XOR-PEER-ADDRESS"), message.data()
        if peer is None or payload is None:
            return [Dropped("Data indication without XOR-PEER-ADDRESS or DATA")]
        return [Relayed(peer, payload)]

    def _on_error(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        code, phrase = message.error() or (0, "error response without ERROR-CODE")
        if code == 401 and not request.signed:
            return self._authenticate(request, message, now)
        nonce = message.octets("NONCE")
        if code == 438 and nonce and request.stale < MAX_STALE_NONCE:
            self._nonce = nonce
            self._realm = message.text("REALM") or self._realm
            self._key = long_term_key(self.config.username, self._realm or "", self.config.password)
            stale = request.stale + 1
            peer_ip, peer = request.peer_ip, request.peer
            return [self._request(request.job, request.attributes, now, stale, peer_ip=peer_ip, peer=peer)]
        reason = f"turn: {request.label()} failed: {code} {phrase}".rstrip()
        return _ON_ERROR[request.job](self, request, code, reason, now)

    def _authenticate(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        """The challenge to a request sent before we knew REALM and NONCE: learn them, send it again signed."""
        realm, nonce = message.text("REALM"), message.octets("NONCE")
        if realm is None or nonce is None:
            return self._fail(f"turn: {request.label()} failed: 401 without REALM and NONCE")
        self._realm, self._nonce = realm, nonce
        self._key = long_term_key(self.config.username, realm, self.config.password)
        return [self._request(request.job, request.attributes, now)]

    def _on_timeout(self, request: _Request) -> list[Output]:
        if request.job is _Job.CLOSE:
            self._fire(Trigger.DONE)
            return [Closed()]
        server, seconds = self.config.server, self.config.retransmit.give_up
        return self._fail(f"turn: no response from {server} within {seconds:g} s")

    def _granted(self, message: StunMessage, now: float) -> int:
        granted = message.integer("LIFETIME")
        lifetime = self.config.lifetime if granted is None else granted
        self.lifetime = lifetime
        self._refresh_at = now + refresh_delay(lifetime)
        return lifetime

    # Success handlers (see _ON_SUCCESS).

    def _allocated(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        relayed = message.endpoint("XOR-RELAYED-ADDRESS")
        if relayed is None:
            return self._fail("turn: Allocate success without XOR-RELAYED-ADDRESS")
        self._fire(Trigger.GRANTED)
        self.relayed, self.mapped = relayed, message.endpoint("XOR-MAPPED-ADDRESS")
        return [Allocated(relayed, self.mapped, self._granted(message, now))]

    def _refreshed(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        return [Refreshed(self._granted(message, now))]

    def _allocate_again(self, request: _Request, message: StunMessage | None, now: float) -> list[Output]:
        """Our stale allocation is deleted (or was gone already): allocate, retrying 437s for a grace period."""
        self._mismatch_until = now + self.config.mismatch_grace
        return [self._request(_Job.ALLOCATE, self._allocate_attributes(), now)]

    def _closed(self, request: _Request, message: StunMessage | None, now: float) -> list[Output]:
        self._fire(Trigger.DONE)
        return [Closed()]

    def _permitted(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        assert request.peer_ip is not None
        permission = self._permissions.get(request.peer_ip)
        if permission is None:
            return []  # revoked meanwhile
        out: list[Output] = [] if permission.installed else [Permitted(request.peer_ip)]
        permission.installed = True
        permission.refresh_at = now + self.config.permission_refresh
        out += [self._wrap(peer, payload) for peer, payload in permission.queue]
        permission.queue.clear()
        return out

    def _bound(self, request: _Request, message: StunMessage, now: float) -> list[Output]:
        assert request.peer is not None
        channel = self._channels.get(request.peer)
        if channel is None:
            return []  # revoked meanwhile
        out: list[Output] = [] if channel.bound else [Bound(request.peer, channel.number)]
        channel.bound = True
        channel.refresh_at = now + self.config.channel_refresh
        return out

    # Error handlers (see _ON_ERROR): code and reason phrase already made into a reason.

    def _allocate_refused(self, request: _Request, code: int, reason: str, now: float) -> list[Output]:
        if code != 437:
            return self._fail(reason)
        if self._mismatch_until is None:
            # Our 5-tuple still has an allocation (we restarted, or forgot it after a time-out): delete it.
            # coturn answers 437 before it asks for credentials, so this Refresh may be challenged first.
            self._mismatch_until = math.inf
            return [self._request(_Job.CLEAR, {"LIFETIME": 0}, now)]
        if now < self._mismatch_until:
            # Deleted, but coturn keeps the allocation until its next 1 s timer tick: try again shortly.
            self._allocate_at = now + self.config.retransmit.rto
            return []
        return self._fail(reason)

    def _refused(self, request: _Request, code: int, reason: str, now: float) -> list[Output]:
        return self._fail(reason)

    def _peer_refused(self, request: _Request, code: int, reason: str, now: float) -> list[Output]:
        if code == 437:
            return self._fail(reason)  # no allocation on the server any more
        if request.peer is not None:
            channel = self._channels.pop(request.peer, None)
            if channel is not None:
                del self._by_number[channel.number]
            return [Denied(str(request.peer), reason)]
        assert request.peer_ip is not None
        self._permissions.pop(request.peer_ip, None)
        return [Denied(request.peer_ip, reason)]

    def _deleted_then_allocate(self, request: _Request, code: int, reason: str, now: float) -> list[Output]:
        return self._allocate_again(request, None, now)

    def _close_refused(self, request: _Request, code: int, reason: str, now: float) -> list[Output]:
        return self._closed(request, None, now)


_ON_SUCCESS: dict[_Job, Callable[[TurnAllocation, _Request, StunMessage, float], list[Output]]] = {
    _Job.ALLOCATE: TurnAllocation._allocated,
    _Job.REFRESH: TurnAllocation._refreshed,
    _Job.CLEAR: TurnAllocation._allocate_again,
    _Job.CLOSE: TurnAllocation._closed,
    _Job.PERMISSION: TurnAllocation._permitted,
    _Job.CHANNEL: TurnAllocation._bound,
}
"""What a success response to each kind of request does."""

_ON_ERROR: dict[_Job, Callable[[TurnAllocation, _Request, int, str, float], list[Output]]] = {
    _Job.ALLOCATE: TurnAllocation._allocate_refused,
    _Job.REFRESH: TurnAllocation._refused,
    _Job.CLEAR: TurnAllocation._deleted_then_allocate,
    _Job.CLOSE: TurnAllocation._close_refused,
    _Job.PERMISSION: TurnAllocation._peer_refused,
    _Job.CHANNEL: TurnAllocation._peer_refused,
}
"""What an error response (other than the 401 and 438 retries) to each kind of request does."""
