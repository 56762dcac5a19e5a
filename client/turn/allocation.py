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

``permit``, ``bind`` and ``send_to_peer`` raise :class:`TurnError` unless allocated; ``receive`` never raises
(it drops datagrams not from ``config.server``, and answers whose MESSAGE-INTEGRITY does not check out).

States and transitions: :mod:`client.turn.states`.

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

This module is the state machine. Its inputs and outputs are in :mod:`client.turn.outputs`, its requests in
flight and their credentials in :mod:`client.turn.transactions`, its permissions and channels in
:mod:`client.turn.grants`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable

from aioice import stun

from client.turn.grants import Grants
from client.turn.outputs import (
    Allocated,
    Bound,
    Closed,
    Denied,
    Dropped,
    Failed,
    Output,
    Permitted,
    Refreshed,
    Relayed,
    Transmit,
    TurnConfig,
    TurnError,
)
from client.turn.states import TRANSITIONS, Trigger, TurnState
from client.turn.transactions import Job, Request, Transactions
from client.turn.wire import (
    CLASS_ERROR,
    CLASS_INDICATION,
    CLASS_REQUEST,
    UDP,
    StunMessage,
    channel_data,
    is_channel_data,
    parse_channel_data,
    parse_stun,
    send_indication,
)
from protocol import Endpoint

MAX_STALE_NONCE = 3
"""438 Stale Nonce answers in a row that one request may retry after."""


def refresh_delay(lifetime: int) -> float:
    """When to refresh an allocation granted for ``lifetime`` s: a minute early, or at half-time if short.

    A minute covers the whole default retransmission schedule (39.5 s).
    """
    return lifetime - 60.0 if lifetime >= 120 else lifetime / 2


def _ip(host: str) -> str:
    return str(ipaddress.ip_address(host))


def _allocate_attributes(config: TurnConfig) -> dict[str, object]:
    attributes: dict[str, object] = {"REQUESTED-TRANSPORT": UDP, "LIFETIME": config.lifetime}
    if config.software:
        attributes["SOFTWARE"] = config.software
    return attributes


def _wrap(grants: Grants, server: Endpoint, peer: Endpoint, payload: bytes) -> Transmit:
    """A datagram for ``peer`` through the server: ChannelData once a channel is bound, else a Send indication."""
    number = grants.channel_of(peer)
    if number is not None:
        return Transmit(channel_data(number, payload), server)
    return Transmit(send_indication(peer, payload), server)


class TurnAllocation:
    """One allocation on one TURN server, and its permissions and channels."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.state = TurnState.IDLE
        self.reason: str | None = None
        self.relayed: Endpoint | None = None
        self.mapped: Endpoint | None = None
        self.lifetime: int | None = None
        self._mismatch_until: float | None = None  # set once we have deleted a stale allocation of ours
        self._allocate_at = math.inf  # when to try Allocate again after that deletion
        self._requests = Transactions(config)
        self._refresh_at = math.inf
        self._grants = Grants(config.max_queued)

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
        self._requests.forget_credentials()
        self._mismatch_until = None
        return [self._requests.send(Job.ALLOCATE, _allocate_attributes(self.config), now)]

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
        for request in self._requests.pending():
            if not self._requests.holds(request):
                continue  # forgotten by an earlier time-out in this tick
            if now >= request.txn.deadline:
                self._requests.pop(request)
                out += self._on_timeout(request)
            elif request.txn.due(now):
                out.append(Transmit(request.txn.data, self.config.server))
        if self.state is TurnState.ALLOCATING and now >= self._allocate_at:
            self._allocate_at = math.inf
            out.append(self._requests.send(Job.ALLOCATE, _allocate_attributes(self.config), now))
        if self.state is TurnState.ALLOCATED:
            out += self._refreshes(now)
        return out

    def wakeup(self) -> float | None:
        """When :meth:`tick` next has something to do, or ``None``."""
        times = self._requests.wakeups()
        if self.state is TurnState.ALLOCATING:
            times.append(self._allocate_at)
        if self.state is TurnState.ALLOCATED:
            times += [self._refresh_at, *self._grants.wakeups()]
        return min((t for t in times if t != math.inf), default=None)

    def permit(self, peer_ip: str, now: float) -> list[Output]:
        """Let ``peer_ip`` (any port) send to our relayed address, and keep the permission refreshed."""
        self._require_allocated()
        peer_ip = _ip(peer_ip)
        if not self._grants.ask_permission(peer_ip):
            return []
        return [self._permission_request(peer_ip, now)]

    def refresh(self, now: float) -> list[Output]:
        """Refresh the allocation now (unless a Refresh is in flight): a server gone away is noticed soon."""
        self._require_allocated()
        if self._requests.in_flight(Job.REFRESH):
            return []
        self._refresh_at = math.inf
        return [self._requests.send(Job.REFRESH, {"LIFETIME": self.config.lifetime}, now)]

    def revoke(self, peer_ip: str) -> None:
        """Stop refreshing the permission and channels of ``peer_ip``: the server expires them."""
        self._grants.revoke(_ip(peer_ip))

    def bind(self, peer: Endpoint, now: float) -> list[Output]:
        """Bind a channel to ``peer``: 4 bytes of framing per datagram instead of 36 or more."""
        self._require_allocated()
        peer = Endpoint(_ip(peer.host), peer.port)
        # Channel data needs the permission too, and a binding refreshes it only every 540 s: keep both.
        out = self.permit(peer.host, now)
        number = self._grants.new_channel(peer)
        if number is None:
            return out
        return [*out, self._channel_request(peer, number, now)]

    def send_to_peer(self, peer: Endpoint, payload: bytes, now: float) -> list[Output]:
        """Relay ``payload`` to ``peer``; with no permission yet, ask for one and hold the payload until then."""
        self._require_allocated()
        peer = Endpoint(_ip(peer.host), peer.port)
        if self._grants.permitted(peer.host):
            return [_wrap(self._grants, self.config.server, peer, payload)]
        out = self.permit(peer.host, now)
        why = self._grants.hold(peer, payload)
        return out if why is None else [*out, Dropped(why)]

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
        return [self._requests.send(Job.CLOSE, {"LIFETIME": 0}, now)]

    # -- requests ------------------------------------------------------------------------------------

    def _require_allocated(self) -> None:
        if self.state is not TurnState.ALLOCATED:
            why = f": {self.reason}" if self.reason else ""
            raise TurnError(f"turn: no allocation (state {self.state}{why})")

    def _permission_request(self, peer_ip: str, now: float) -> Transmit:
        # The port of XOR-PEER-ADDRESS is ignored in CreatePermission (RFC 8656 section 9.1).
        return self._requests.send(Job.PERMISSION, {"XOR-PEER-ADDRESS": (peer_ip, 0)}, now, peer_ip=peer_ip)

    def _channel_request(self, peer: Endpoint, number: int, now: float) -> Transmit:
        attributes: dict[str, object] = {"CHANNEL-NUMBER": number, "XOR-PEER-ADDRESS": peer.sockaddr()}
        return self._requests.send(Job.CHANNEL, attributes, now, peer=peer)

    def _refreshes(self, now: float) -> list[Output]:
        out: list[Output] = []
        if now >= self._refresh_at:
            self._refresh_at = math.inf
            out.append(self._requests.send(Job.REFRESH, {"LIFETIME": self.config.lifetime}, now))
        permissions, channels = self._grants.due(now)
        out += [self._permission_request(peer_ip, now) for peer_ip in permissions]
        out += [self._channel_request(peer, number, now) for peer, number in channels]
        return out

    def _forget(self) -> None:
        """Drop everything that belongs to the current allocation."""
        self._requests.clear()
        self._grants.clear()
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
        request = self._requests.answered(message)
        if isinstance(request, str):
            return [Dropped(request)]
        if message.cls == CLASS_ERROR:
            return self._on_error(request, message, now)
        return _ON_SUCCESS[request.job](self, request, message, now)

    def _on_channel_data(self, data: bytes) -> list[Output]:
        number, payload = parse_channel_data(data)
        peer = self._grants.peer_of(number)
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

    def _on_error(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        code, phrase = message.error() or (0, "error response without ERROR-CODE")
        if code == 401 and not request.signed:
            return self._authenticate(request, message, now)
        nonce = message.octets("NONCE")
        if code == 438 and nonce and request.stale < MAX_STALE_NONCE:
            self._requests.learn(message.text("REALM"), nonce)
            return [self._requests.resend(request, now, request.stale + 1)]
        reason = f"turn: {request.label()} failed: {code} {phrase}".rstrip()
        return _ON_ERROR[request.job](self, request, code, reason, now)

    def _authenticate(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        """The challenge to a request sent before we knew REALM and NONCE: learn them, send it again signed."""
        realm, nonce = message.text("REALM"), message.octets("NONCE")
        if realm is None or nonce is None:
            return self._fail(f"turn: {request.label()} failed: 401 without REALM and NONCE")
        self._requests.learn(realm, nonce)
        return [self._requests.resend(request, now)]

    def _on_timeout(self, request: Request) -> list[Output]:
        if request.job is Job.CLOSE:
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

    def _allocated(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        relayed = message.endpoint("XOR-RELAYED-ADDRESS")
        if relayed is None:
            return self._fail("turn: Allocate success without XOR-RELAYED-ADDRESS")
        self._fire(Trigger.GRANTED)
        self.relayed, self.mapped = relayed, message.endpoint("XOR-MAPPED-ADDRESS")
        return [Allocated(relayed, self.mapped, self._granted(message, now))]

    def _refreshed(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        return [Refreshed(self._granted(message, now))]

    def _allocate_again(self, request: Request, message: StunMessage | None, now: float) -> list[Output]:
        """Our stale allocation is deleted (or was gone already): allocate, retrying 437s for a grace period."""
        self._mismatch_until = now + self.config.mismatch_grace
        return [self._requests.send(Job.ALLOCATE, _allocate_attributes(self.config), now)]

    def _closed(self, request: Request, message: StunMessage | None, now: float) -> list[Output]:
        self._fire(Trigger.DONE)
        return [Closed()]

    def _permitted(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        assert request.peer_ip is not None
        granted = self._grants.installed(request.peer_ip, now + self.config.permission_refresh)
        if granted is None:
            return []  # revoked meanwhile
        new, held = granted
        out: list[Output] = [Permitted(request.peer_ip)] if new else []
        return out + [_wrap(self._grants, self.config.server, peer, payload) for peer, payload in held]

    def _bound(self, request: Request, message: StunMessage, now: float) -> list[Output]:
        assert request.peer is not None
        number = self._grants.bound(request.peer, now + self.config.channel_refresh)
        return [] if number is None else [Bound(request.peer, number)]

    # Error handlers (see _ON_ERROR): code and reason phrase already made into a reason.

    def _allocate_refused(self, request: Request, code: int, reason: str, now: float) -> list[Output]:
        if code != 437:
            return self._fail(reason)
        if self._mismatch_until is None:
            # Our 5-tuple still has an allocation (we restarted, or forgot it after a time-out): delete it.
            # coturn answers 437 before it asks for credentials, so this Refresh may be challenged first.
            self._mismatch_until = math.inf
            return [self._requests.send(Job.CLEAR, {"LIFETIME": 0}, now)]
        if now < self._mismatch_until:
            # Deleted, but coturn keeps the allocation until its next 1 s timer tick: try again shortly.
            self._allocate_at = now + self.config.retransmit.rto
            return []
        return self._fail(reason)

    def _refused(self, request: Request, code: int, reason: str, now: float) -> list[Output]:
        return self._fail(reason)

    def _peer_refused(self, request: Request, code: int, reason: str, now: float) -> list[Output]:
        if code == 437:
            return self._fail(reason)  # no allocation on the server any more
        if request.peer is not None:
            self._grants.unbind(request.peer)
            return [Denied(str(request.peer), reason)]
        assert request.peer_ip is not None
        self._grants.refuse_permission(request.peer_ip)
        return [Denied(request.peer_ip, reason)]

    def _deleted_then_allocate(self, request: Request, code: int, reason: str, now: float) -> list[Output]:
        return self._allocate_again(request, None, now)

    def _close_refused(self, request: Request, code: int, reason: str, now: float) -> list[Output]:
        return self._closed(request, None, now)


_ON_SUCCESS: dict[Job, Callable[[TurnAllocation, Request, StunMessage, float], list[Output]]] = {
    Job.ALLOCATE: TurnAllocation._allocated,
    Job.REFRESH: TurnAllocation._refreshed,
    Job.CLEAR: TurnAllocation._allocate_again,
    Job.CLOSE: TurnAllocation._closed,
    Job.PERMISSION: TurnAllocation._permitted,
    Job.CHANNEL: TurnAllocation._bound,
}
"""What a success response to each kind of request does."""

_ON_ERROR: dict[Job, Callable[[TurnAllocation, Request, int, str, float], list[Output]]] = {
    Job.ALLOCATE: TurnAllocation._allocate_refused,
    Job.REFRESH: TurnAllocation._refused,
    Job.CLEAR: TurnAllocation._deleted_then_allocate,
    Job.CLOSE: TurnAllocation._close_refused,
    Job.PERMISSION: TurnAllocation._peer_refused,
    Job.CHANNEL: TurnAllocation._peer_refused,
}
"""What an error response (other than the 401 and 438 retries) to each kind of request does."""
