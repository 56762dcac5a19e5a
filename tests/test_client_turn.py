"""The TURN allocation state machine against an in-memory fake TURN server; time passed in, no sockets.

The fake parses requests and builds answers with aioice's codec (through :mod:`client.turn.wire`) and checks
MESSAGE-INTEGRITY with the long-term key, so the client's requests are checked as a server would.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from aioice import stun

from client.turn.allocation import MAX_STALE_NONCE, TurnAllocation, refresh_delay
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
    Retransmit,
    Transmit,
    TurnConfig,
    TurnError,
)
from client.turn.states import TurnState
from client.turn.wire import (
    CLASS_ERROR,
    CLASS_INDICATION,
    CLASS_RESPONSE,
    UDP,
    StunMessage,
    channel_data,
    data_indication,
    encode,
    is_channel_data,
    long_term_key,
    parse_channel_data,
    parse_stun,
)
from protocol import Endpoint

SERVER = Endpoint("198.18.0.20", 3478)
CLIENT = Endpoint("198.18.0.11", 40000)  # where the server sees the client (its server-reflexive address)
RELAYED = Endpoint("198.18.0.20", 50000)
PEER = Endpoint("198.18.0.12", 40000)
USER, PASSWORD, REALM = "alice", "s3cret", "natlab"
KEY = long_term_key(USER, REALM, PASSWORD)
FAST = Retransmit(rto=0.5, rc=5, rm=4)  # gives up after 9.5 s
T0 = 100.0


# -- the fake TURN server ---------------------------------------------------------------------------


@dataclass
class FakeAllocation:
    tid: bytes
    lifetime: int
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, Endpoint] = field(default_factory=dict)
    gone_at: float = math.inf  # deleted (Refresh LIFETIME=0) but still in the way until then


class FakeTurnServer:
    """RFC 8656 over UDP as a pure function of (datagram, source, now): long-term credentials, one allocation
    per client address. ``answered`` logs "Method code" per answer.

    Knobs: ``deaf`` (answer nothing), ``refuse`` (method -> error), ``stale_forever`` (438 every time);
    coturn's ways: ``mismatch_first`` (an Allocate from a client address in use gets 437 before 401) and
    ``linger`` (a deleted allocation still gets in the way of a new one for that many seconds).
    """

    def __init__(self) -> None:
        self.nonce = b"nonce-1"
        self.max_lifetime = 3600
        self.allocations: dict[Endpoint, FakeAllocation] = {}
        self.received: list[StunMessage] = []
        self.answered: list[str] = []
        self.relayed_out: list[tuple[Endpoint, bytes]] = []  # what left the relay for peers
        self.deaf = False
        self.refuse: dict[int, tuple[int, str]] = {}
        self.stale_forever = False
        self.mismatch_first = False
        self.linger = 0.0

    def restart(self) -> None:
        self.allocations.clear()
        self.nonce = b"nonce-after-restart"

    def handle(self, data: bytes, source: Endpoint, now: float) -> list[bytes]:
        if self.deaf:
            return []
        if is_channel_data(data):
            number, payload = parse_channel_data(data)
            self._relay(source, self.allocations[source].channels[number], payload, now)
            return []
        message = parse_stun(data)
        self.received.append(message)
        if message.cls == CLASS_INDICATION:
            peer, data_attribute = message.endpoint("XOR-PEER-ADDRESS"), message.data()
            assert peer is not None
            assert data_attribute is not None
            self._relay(source, peer, data_attribute, now)
            return []
        answer = self._refusal(message, source, now) or self._HANDLERS[message.method](self, message, source, now)
        reply = parse_stun(answer)
        self.answered.append(f"{reply.name} {(reply.error() or (200, ''))[0]}")
        return [answer]

    def live(self, source: Endpoint, now: float) -> FakeAllocation | None:
        allocation = self.allocations.get(source)
        return allocation if allocation is not None and allocation.gone_at == math.inf else None

    def _relay(self, source: Endpoint, peer: Endpoint, payload: bytes, now: float) -> None:
        allocation = self.live(source, now)
        if allocation is not None and allocation.permissions.get(peer.host, 0) > now:
            self.relayed_out.append((peer, payload))

    def _mismatch(self, message: StunMessage, source: Endpoint, now: float) -> bool:
        existing = self.allocations.get(source)
        if existing is not None and existing.gone_at <= now:
            del self.allocations[source]
            existing = None
        return message.method == stun.Method.ALLOCATE and existing is not None and existing.tid != message.tid

    def _refusal(self, message: StunMessage, source: Endpoint, now: float) -> bytes | None:
        """The error answer a request gets before its method is looked at, if any."""
        mismatch = self._mismatch(message, source, now)
        if mismatch and self.mismatch_first:
            return self._error(message, 437, "Mismatched allocation: wrong transaction ID\x00", challenge=None)
        if message.text("USERNAME") != USER or not message.has_valid_integrity(KEY):
            return self._error(message, 401, "Unauthorized", challenge=True)
        if message.octets("NONCE") != self.nonce or self.stale_forever:
            self.nonce += b"+"
            return self._error(message, 438, "Stale Nonce", challenge=True)
        if message.method in self.refuse:
            return self._error(message, *self.refuse[message.method])
        if mismatch or (message.method != stun.Method.ALLOCATE and self.live(source, now) is None):
            return self._error(message, 437, "Allocation Mismatch")
        return None

    def _allocate(self, message: StunMessage, source: Endpoint, now: float) -> bytes:
        if message.integer("REQUESTED-TRANSPORT") != UDP:
            return self._error(message, 442, "Unsupported Transport Protocol")
        lifetime = min(message.integer("LIFETIME") or 600, self.max_lifetime)
        # A retransmitted Allocate (same transaction) gets the same answer.
        self.allocations[source] = self.live(source, now) or FakeAllocation(message.tid, lifetime)
        attributes = {
            "XOR-RELAYED-ADDRESS": RELAYED.sockaddr(),
            "XOR-MAPPED-ADDRESS": source.sockaddr(),
            "LIFETIME": lifetime,
        }
        return self._reply(message, attributes)

    def _refresh(self, message: StunMessage, source: Endpoint, now: float) -> bytes:
        allocation = self.allocations[source]
        requested = message.integer("LIFETIME")
        allocation.lifetime = min(600 if requested is None else requested, self.max_lifetime)
        if allocation.lifetime == 0:
            allocation.gone_at = now + self.linger
        return self._reply(message, {"LIFETIME": allocation.lifetime})

    def _permit(self, message: StunMessage, source: Endpoint, now: float) -> bytes:
        allocation = self.allocations[source]
        peer = message.endpoint("XOR-PEER-ADDRESS")
        assert peer is not None
        allocation.permissions[peer.host] = now + 300
        if message.method == stun.Method.CHANNEL_BIND:
            number = message.integer("CHANNEL-NUMBER")
            assert number is not None
            allocation.channels[number] = peer
        return self._reply(message, {})

    _HANDLERS: ClassVar[dict[int, Callable[[FakeTurnServer, StunMessage, Endpoint, float], bytes]]] = {
        stun.Method.BINDING: lambda self, message, source, now: self._reply(
            message, {"XOR-MAPPED-ADDRESS": source.sockaddr()}, signed=False
        ),
        stun.Method.ALLOCATE: _allocate,
        stun.Method.REFRESH: _refresh,
        stun.Method.CREATE_PERMISSION: _permit,
        stun.Method.CHANNEL_BIND: _permit,
    }

    def _reply(self, message: StunMessage, attributes: dict[str, object], signed: bool = True) -> bytes:
        return encode(message.method, CLASS_RESPONSE, attributes, message.tid, KEY if signed else None)

    def _error(self, message: StunMessage, code: int, phrase: str, challenge: bool | None = False) -> bytes:
        """An error response; a challenge (401, 438) carries REALM and NONCE, and only ``False`` is signed."""
        attributes: dict[str, object] = {"ERROR-CODE": (code, phrase)}
        if challenge:
            attributes |= {"REALM": REALM, "NONCE": self.nonce}
        return encode(message.method, CLASS_ERROR, attributes, message.tid, KEY if challenge is False else None)

    def deliver(self, peer: Endpoint, payload: bytes, client: Endpoint = CLIENT) -> bytes:
        """What the server sends the client when ``peer`` sends ``payload`` to the relayed address."""
        channels = self.allocations[client].channels
        number = next((n for n, p in channels.items() if p == peer), None)
        return data_indication(peer, payload) if number is None else channel_data(number, payload)


def exchange(turn: TurnAllocation, server: FakeTurnServer, outputs: list[Output], now: float) -> list[Output]:
    """Carry every Transmit to the server and its answers back until quiet; every output, Transmits too."""
    seen: list[Output] = []
    queue = deque(outputs)
    for _ in range(1000):
        if not queue:
            return seen
        output = queue.popleft()
        seen.append(output)
        if isinstance(output, Transmit):
            assert output.to == SERVER
            for answer in server.handle(output.data, CLIENT, now):
                queue.extend(turn.receive(answer, SERVER, now))
    raise AssertionError("the exchange never went quiet")


def pump(turn: TurnAllocation, server: FakeTurnServer, outputs: list[Output], now: float) -> list[Output]:
    """:func:`exchange`, keeping the events (everything but Transmits)."""
    return [o for o in exchange(turn, server, outputs, now) if not isinstance(o, Transmit)]


def timeline(
    turn: TurnAllocation, server: FakeTurnServer, outputs: list[Output], until: float = T0 + 100
) -> list[tuple[float, Output]]:
    """Exchange ``outputs`` at T0, then tick at every wakeup up to ``until`` (at most 100 ticks): every
    output, Transmits too, with the time it came out."""
    seen = [(T0, o) for o in exchange(turn, server, outputs, T0)]
    for _ in range(100):
        wakeup = turn.wakeup()
        if wakeup is None or wakeup > until:
            return seen
        seen += [(wakeup, o) for o in exchange(turn, server, turn.tick(wakeup), wakeup)]
    raise AssertionError("still busy after 100 ticks")


def transmits(outputs: list[Output]) -> list[StunMessage]:
    return [parse_stun(o.data) for o in outputs if isinstance(o, Transmit)]


def config(**changes: Any) -> TurnConfig:
    """alice's configuration, retransmissions given up after 9.5 s, with ``changes``."""
    return dataclasses.replace(TurnConfig(SERVER, USER, PASSWORD, retransmit=FAST), **changes)


@pytest.fixture
def server() -> FakeTurnServer:
    """A fresh fake TURN server that knows alice."""
    return FakeTurnServer()


@pytest.fixture
def turn(server: FakeTurnServer) -> TurnAllocation:
    """An allocation granted at T0 (after the 401 dance); the server's requests log is then cleared."""
    turn = TurnAllocation(config())
    assert pump(turn, server, turn.start(T0), T0) == [Allocated(RELAYED, CLIENT, 600)]
    server.received.clear()
    return turn


def permitted(turn: TurnAllocation, server: FakeTurnServer, now: float) -> None:
    assert pump(turn, server, turn.permit(PEER.host, now), now) == [Permitted(PEER.host)]


# -- allocation -------------------------------------------------------------------------------------


def test_allocate_does_the_401_dance(server: FakeTurnServer) -> None:
    turn = TurnAllocation(config())
    assert turn.state is TurnState.IDLE
    assert turn.wakeup() is None
    assert pump(turn, server, turn.start(T0), T0) == [Allocated(RELAYED, CLIENT, 600)]
    assert (turn.state, turn.relayed, turn.mapped, turn.lifetime) == (TurnState.ALLOCATED, RELAYED, CLIENT, 600)
    first, second = server.received
    assert first.integer("REQUESTED-TRANSPORT") == 17 << 24
    assert first.integer("LIFETIME") == 600
    assert "USERNAME" not in first.attributes
    assert "MESSAGE-INTEGRITY" not in first.attributes
    assert (second.text("USERNAME"), second.text("REALM"), second.octets("NONCE")) == (USER, REALM, b"nonce-1")
    assert second.has_valid_integrity(KEY)
    assert second.tid != first.tid
    assert second.integer("REQUESTED-TRANSPORT") == 17 << 24


def test_wrong_password_fails_with_401(server: FakeTurnServer) -> None:
    turn = TurnAllocation(TurnConfig(SERVER, USER, "wrong", retransmit=FAST))
    assert pump(turn, server, turn.start(T0), T0) == [Failed("turn: Allocate failed: 401 Unauthorized")]
    assert (turn.state, turn.reason) == (TurnState.FAILED, "turn: Allocate failed: 401 Unauthorized")
    assert turn.wakeup() is None


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(403, "Forbidden"), (486, "Allocation Quota Reached"), (508, "Insufficient Capacity")],
)
def test_allocate_error_fails_with_code_and_phrase(server: FakeTurnServer, code: int, phrase: str) -> None:
    server.refuse[stun.Method.ALLOCATE] = (code, phrase)
    turn = TurnAllocation(config())
    assert pump(turn, server, turn.start(T0), T0) == [Failed(f"turn: Allocate failed: {code} {phrase}")]


@pytest.mark.parametrize(
    ("mismatch_first", "linger", "expected"),
    [
        pytest.param(False, 0.0, ["Allocate 401", "Allocate 437", "Refresh 200", "Allocate 200"], id="rfc-order"),
        pytest.param(
            True,
            1.0,
            ["Allocate 437", "Refresh 401", "Refresh 200", "Allocate 437", "Allocate 437", "Allocate 200"],
            id="coturn-437-before-401-and-lingering",
        ),
    ],
)
def test_stale_allocation_of_ours_is_deleted_then_allocated_again(
    server: FakeTurnServer, mismatch_first: bool, linger: float, expected: list[str]
) -> None:
    old = TurnAllocation(config())
    pump(old, server, old.start(T0 - 5), T0 - 5)  # the agent restarts on the same port: the server keeps this
    server.mismatch_first, server.linger = mismatch_first, linger
    server.answered.clear()
    turn = TurnAllocation(config())
    seen = timeline(turn, server, turn.start(T0), until=T0 + 5)
    assert server.answered == expected
    assert [(t, o) for t, o in seen if not isinstance(o, Transmit)] == [(T0 + linger, Allocated(RELAYED, CLIENT, 600))]


def test_437_after_the_grace_period_fails(server: FakeTurnServer) -> None:
    server.refuse[stun.Method.ALLOCATE] = (437, "Allocation Mismatch")
    turn = TurnAllocation(config(mismatch_grace=2.0))
    seen = timeline(turn, server, turn.start(T0))
    assert server.answered == ["Allocate 401", "Allocate 437", "Refresh 437", *["Allocate 437"] * 5]
    assert seen[-1] == (T0 + 2.0, Failed("turn: Allocate failed: 437 Allocation Mismatch"))


def test_start_while_allocated_is_a_caller_bug(turn: TurnAllocation) -> None:
    with pytest.raises(TurnError, match="start not allowed in state allocated"):
        turn.start(T0)


# -- retransmissions and time-outs ------------------------------------------------------------------


def test_unanswered_allocate_is_retransmitted_then_fails(server: FakeTurnServer) -> None:
    server.deaf = True
    turn = TurnAllocation(config())
    seen = timeline(turn, server, turn.start(T0))
    sends = [(t - T0, o.data) for t, o in seen if isinstance(o, Transmit)]
    assert [t for t, _ in sends] == [0, 0.5, 1.5, 3.5, 7.5]
    assert len({data for _, data in sends}) == 1  # the same bytes every time
    assert seen[-1] == (T0 + 9.5, Failed("turn: no response from 198.18.0.20:3478 within 9.5 s"))
    assert turn.state is TurnState.FAILED


def test_default_schedule_is_rfc8489() -> None:
    assert Retransmit().offsets() == (0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)
    assert Retransmit().give_up == 39.5
    with pytest.raises(ValueError, match="invalid retransmission schedule"):
        Retransmit(rc=0)


def test_a_stalled_caller_gets_one_copy_not_a_burst(server: FakeTurnServer) -> None:
    server.deaf = True
    turn = TurnAllocation(config())
    turn.start(T0)
    assert len(turn.tick(T0 + 5)) == 1  # sends due at 0.5, 1.5 and 3.5: one copy
    assert turn.wakeup() == T0 + 7.5


def test_late_answer_after_a_retransmission_is_accepted(server: FakeTurnServer) -> None:
    turn = TurnAllocation(config())
    (challenge,) = turn.start(T0)
    assert isinstance(challenge, Transmit)
    (retransmission,) = turn.tick(T0 + 0.5)
    assert retransmission == challenge
    assert pump(turn, server, [retransmission], T0 + 0.6) == [Allocated(RELAYED, CLIENT, 600)]


def test_reallocate_after_failure_when_the_server_is_back(server: FakeTurnServer) -> None:
    server.deaf = True
    turn = TurnAllocation(config())
    timeline(turn, server, turn.start(T0))
    assert turn.state is TurnState.FAILED
    server.deaf = False
    server.restart()
    assert pump(turn, server, turn.start(T0 + 20), T0 + 20) == [Allocated(RELAYED, CLIENT, 600)]
    assert turn.reason is None


# -- refresh ----------------------------------------------------------------------------------------


def test_refresh_a_minute_before_expiry(turn: TurnAllocation, server: FakeTurnServer) -> None:
    assert turn.wakeup() == T0 + 540
    assert turn.tick(T0 + 539.9) == []
    outputs = turn.tick(T0 + 540)
    (refresh,) = transmits(outputs)
    assert (refresh.name, refresh.integer("LIFETIME")) == ("Refresh", 600)
    assert refresh.has_valid_integrity(KEY)
    assert pump(turn, server, outputs, T0 + 540) == [Refreshed(600)]
    assert turn.wakeup() == T0 + 1080


def test_short_lifetime_refreshes_at_half_time(server: FakeTurnServer) -> None:
    server.max_lifetime = 100
    turn = TurnAllocation(config())
    assert pump(turn, server, turn.start(T0), T0) == [Allocated(RELAYED, CLIENT, 100)]
    assert turn.wakeup() == T0 + 50
    assert refresh_delay(600) == 540
    assert refresh_delay(60) == 30


def test_stale_nonce_is_retried_with_the_new_nonce(turn: TurnAllocation, server: FakeTurnServer) -> None:
    server.nonce = b"nonce-2"
    assert pump(turn, server, turn.tick(T0 + 540), T0 + 540) == [Refreshed(600)]
    nonces = [m.octets("NONCE") for m in server.received]
    assert nonces == [b"nonce-1", b"nonce-2+"]
    assert all(m.has_valid_integrity(KEY) for m in server.received)


def test_endless_stale_nonce_fails(turn: TurnAllocation, server: FakeTurnServer) -> None:
    server.stale_forever = True
    events = pump(turn, server, turn.tick(T0 + 540), T0 + 540)
    assert events == [Failed("turn: Refresh failed: 438 Stale Nonce")]
    assert len(server.received) == 1 + MAX_STALE_NONCE


def test_refresh_after_server_restart_fails_with_437_then_reallocates(
    turn: TurnAllocation, server: FakeTurnServer
) -> None:
    server.restart()
    events = pump(turn, server, turn.tick(T0 + 540), T0 + 540)
    assert events == [Failed("turn: Refresh failed: 437 Allocation Mismatch")]
    assert (turn.state, turn.relayed) == (TurnState.FAILED, None)
    assert pump(turn, server, turn.start(T0 + 541), T0 + 541) == [Allocated(RELAYED, CLIENT, 600)]


def test_close_deletes_the_allocation(turn: TurnAllocation, server: FakeTurnServer) -> None:
    outputs = turn.close(T0 + 1)
    assert [(m.name, m.integer("LIFETIME")) for m in transmits(outputs)] == [("Refresh", 0)]
    assert turn.state == "closing"
    assert pump(turn, server, outputs, T0 + 1) == [Closed()]
    assert turn.state is TurnState.CLOSED
    assert server.live(CLIENT, T0 + 1) is None
    assert turn.close(T0 + 2) == []
    assert turn.wakeup() is None


def test_close_unanswered_still_closes(turn: TurnAllocation, server: FakeTurnServer) -> None:
    server.deaf = True
    seen = timeline(turn, server, turn.close(T0))
    assert seen[-1] == (T0 + 9.5, Closed())
    assert turn.state is TurnState.CLOSED


def test_close_while_allocating_closes_at_once(server: FakeTurnServer) -> None:
    turn = TurnAllocation(config())
    turn.start(T0)
    assert turn.close(T0) == [Closed()]
    assert (turn.state, turn.wakeup()) == (TurnState.CLOSED, None)


# -- permissions, indications, channels -------------------------------------------------------------


def test_permission_is_created_and_refreshed(turn: TurnAllocation, server: FakeTurnServer) -> None:
    outputs = turn.permit(PEER.host, T0 + 10)
    (request,) = transmits(outputs)
    assert (request.name, request.endpoint("XOR-PEER-ADDRESS")) == ("CreatePermission", Endpoint(PEER.host, 0))
    assert request.has_valid_integrity(KEY)
    assert pump(turn, server, outputs, T0 + 10) == [Permitted(PEER.host)]
    assert turn.permit(PEER.host, T0 + 11) == []
    assert turn.wakeup() == T0 + 250
    assert turn.tick(T0 + 249) == []
    refresh = turn.tick(T0 + 250)
    assert [m.name for m in transmits(refresh)] == ["CreatePermission"]
    assert pump(turn, server, refresh, T0 + 250) == []  # refreshed quietly
    assert server.allocations[CLIENT].permissions[PEER.host] == T0 + 550
    assert turn.wakeup() == T0 + 490


def test_send_indication_carries_peer_and_data(turn: TurnAllocation, server: FakeTurnServer) -> None:
    permitted(turn, server, T0)
    outputs = turn.send_to_peer(PEER, b"hello bob", T0)
    (indication,) = transmits(outputs)
    assert (indication.name, indication.cls) == ("Send", CLASS_INDICATION)
    assert (indication.endpoint("XOR-PEER-ADDRESS"), indication.data()) == (PEER, b"hello bob")
    assert "MESSAGE-INTEGRITY" not in indication.attributes
    pump(turn, server, outputs, T0)
    assert server.relayed_out == [(PEER, b"hello bob")]


def test_send_before_the_permission_waits_for_it(server: FakeTurnServer) -> None:
    turn = TurnAllocation(config(max_queued=2))
    pump(turn, server, turn.start(T0), T0)
    first = turn.send_to_peer(PEER, b"one", T0)
    assert [m.name for m in transmits(first)] == ["CreatePermission"]
    assert turn.send_to_peer(PEER, b"two", T0) == []
    assert turn.send_to_peer(PEER, b"three", T0) == [
        Dropped("datagram to 198.18.0.12:40000 dropped: 2 already wait for its permission")
    ]
    assert pump(turn, server, first, T0) == [Permitted(PEER.host)]
    assert server.relayed_out == [(PEER, b"one"), (PEER, b"two")]


def test_data_indication_is_relayed(turn: TurnAllocation, server: FakeTurnServer) -> None:
    permitted(turn, server, T0)
    datagram = server.deliver(PEER, b"hello alice")
    assert turn.receive(datagram, SERVER, T0) == [Relayed(PEER, b"hello alice")]


def test_turn_datagrams_from_anyone_else_are_dropped(turn: TurnAllocation, server: FakeTurnServer) -> None:
    datagram = server.deliver(PEER, b"spoofed")
    assert turn.receive(datagram, PEER, T0) == [
        Dropped("TURN datagram from 198.18.0.12:40000, not from our server 198.18.0.20:3478")
    ]


def test_permission_refused_is_denied_and_the_allocation_stays(turn: TurnAllocation, server: FakeTurnServer) -> None:
    server.refuse[stun.Method.CREATE_PERMISSION] = (403, "Forbidden")
    events = pump(turn, server, turn.send_to_peer(PEER, b"lost", T0), T0)
    assert events == [Denied(PEER.host, "turn: CreatePermission for 198.18.0.12 failed: 403 Forbidden")]
    assert turn.state is TurnState.ALLOCATED
    assert server.relayed_out == []


def test_channel_bind_then_channel_data_both_ways(turn: TurnAllocation, server: FakeTurnServer) -> None:
    outputs = turn.bind(PEER, T0)
    assert [m.name for m in transmits(outputs)] == ["CreatePermission", "ChannelBind"]
    assert pump(turn, server, outputs, T0) == [Permitted(PEER.host), Bound(PEER, 0x4000)]
    assert turn.send_to_peer(PEER, b"hello", T0) == [Transmit(b"\x40\x00\x00\x05hello", SERVER)]
    pump(turn, server, turn.send_to_peer(PEER, b"hello", T0), T0)
    assert server.relayed_out == [(PEER, b"hello")]
    datagram = server.deliver(PEER, b"hi")
    assert datagram == b"\x40\x00\x00\x02hi"
    assert turn.receive(datagram, SERVER, T0) == [Relayed(PEER, b"hi")]
    assert turn.receive(channel_data(0x4001, b"?"), SERVER, T0) == [Dropped("ChannelData on unknown channel 0x4001")]


def test_channel_binding_is_refreshed_with_the_same_number(turn: TurnAllocation, server: FakeTurnServer) -> None:
    pump(turn, server, turn.bind(PEER, T0), T0)
    server.received.clear()
    events = [e for now in (T0 + 240, T0 + 480, T0 + 540) for e in pump(turn, server, turn.tick(now), now)]
    assert events == [Refreshed(600)]  # permissions and channel quietly
    assert [(m.name, m.integer("CHANNEL-NUMBER")) for m in server.received] == [
        ("CreatePermission", None), ("CreatePermission", None), ("Refresh", None), ("ChannelBind", 0x4000),
    ]  # fmt: skip


def test_revoked_peer_is_no_longer_refreshed(turn: TurnAllocation, server: FakeTurnServer) -> None:
    pump(turn, server, turn.bind(PEER, T0), T0)
    turn.revoke(PEER.host)
    assert turn.wakeup() == T0 + 540  # only the allocation's refresh is left
    assert turn.receive(server.deliver(PEER, b"hi"), SERVER, T0) == [Dropped("ChannelData on unknown channel 0x4000")]


def test_sending_without_an_allocation_is_a_caller_bug(server: FakeTurnServer) -> None:
    server.refuse[stun.Method.ALLOCATE] = (403, "Forbidden")
    turn = TurnAllocation(config())
    pump(turn, server, turn.start(T0), T0)
    with pytest.raises(TurnError, match=r"no allocation \(state failed: turn: Allocate failed: 403 Forbidden\)"):
        turn.send_to_peer(PEER, b"x", T0)
    with pytest.raises(TurnError, match="no allocation"):
        turn.permit(PEER.host, T0)


# -- what the client refuses to believe -------------------------------------------------------------


def test_answer_with_bad_integrity_is_dropped_and_the_real_one_accepted(
    turn: TurnAllocation, server: FakeTurnServer
) -> None:
    outputs = turn.tick(T0 + 540)
    (refresh,) = transmits(outputs)
    forged = encode(refresh.method, CLASS_RESPONSE, {"LIFETIME": 5}, refresh.tid, b"not the key")
    assert turn.receive(forged, SERVER, T0 + 540) == [Dropped("Refresh answer with bad integrity")]
    unsigned = encode(refresh.method, CLASS_RESPONSE, {"LIFETIME": 5}, refresh.tid)
    assert turn.receive(unsigned, SERVER, T0 + 540) == [Dropped("Refresh success response without MESSAGE-INTEGRITY")]
    assert pump(turn, server, outputs, T0 + 540) == [Refreshed(600)]


def test_answer_to_no_request_is_dropped(turn: TurnAllocation) -> None:
    stray = encode(stun.Method.REFRESH, CLASS_RESPONSE, {"LIFETIME": 600}, bytes(12), KEY)
    assert turn.receive(stray, SERVER, T0) == [Dropped("Refresh response to no request of ours")]
    assert turn.receive(b"\x00\x01\x00\x04" + b"!\x12\xa4B" + bytes(12), SERVER, T0) == [
        Dropped("bad STUN datagram: STUN message length does not match")
    ]


def test_channel_data_is_accepted_before_the_binding_is_confirmed(turn: TurnAllocation) -> None:
    turn.bind(PEER, T0)  # requests sent, answers not back yet: the server may already use the channel
    assert turn.receive(channel_data(0x4000, b"early"), SERVER, T0) == [Relayed(PEER, b"early")]
    assert turn.send_to_peer(PEER, b"held", T0) == []  # no permission yet: held, not sent


def test_data_indication_without_an_allocation_is_dropped(server: FakeTurnServer) -> None:
    turn = TurnAllocation(config())
    datagram = data_indication(PEER, b"hi")
    assert turn.receive(datagram, SERVER, T0) == [Dropped("Data indication in state idle")]
