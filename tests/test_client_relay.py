"""Relay fallback, path upgrade and guaranteed delivery: two cores, an extended fake signal server and an
in-memory TURN server (the fake from test_client_turn, given one relayed address per client and relaying
between allocations), on the NAT-like network of test_client_core. No sockets, no sleeps."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from aioice import stun

from client.engine.core import CoreConfig, Output, RequestError, Send, SendRaw
from client.engine.delivery import DeliveryConfig
from client.engine.events import Ticket
from client.turn.outputs import Retransmit
from client.turn.relay import RelayConfig
from client.turn.wire import StunMessage, data_indication, is_turn_datagram, parse_stun
from protocol import (
    MAX_COUNTER,
    MAX_DATAGRAM,
    Ack,
    Candidates,
    Data,
    Endpoint,
    Frame,
    Hello,
    Msg,
    Ok,
    Register,
    encode,
)
from tests.test_client_core import CONE, SERVER, SYMMETRIC, TIMING, FakeServer, Lab, Nat
from tests.test_client_turn import PASSWORD, USER, FakeAllocation, FakeTurnServer

TURN = Endpoint("198.18.0.20", 3478)
LOST_TURN = "relay lost: turn: no response from 198.18.0.20:3478 within 9.5 s"


ExtendedServer = FakeServer
"""The signal server with candidates (tests.support.signal_server does both)."""


class RelayingTurnServer(FakeTurnServer):
    """The fake TURN server with a relayed address per client, relaying between its own allocations."""

    def __init__(self) -> None:
        super().__init__()
        self.relayed: dict[Endpoint, Endpoint] = {}  # client -> its relayed address
        self.outbox: list[tuple[Endpoint, Endpoint, bytes]] = []  # (client, peer, payload) to relay
        self.payloads: list[bytes] = []  # every payload relayed, for checks

    def _allocate(self, message: StunMessage, source: Endpoint, now: float) -> bytes:
        lifetime = min(message.integer("LIFETIME") or 600, self.max_lifetime)
        self.allocations[source] = self.live(source, now) or FakeAllocation(message.tid, lifetime)
        relayed = self.relayed.setdefault(source, Endpoint(TURN.host, 49152 + len(self.relayed)))
        attributes = {"XOR-RELAYED-ADDRESS": relayed.sockaddr(), "XOR-MAPPED-ADDRESS": source.sockaddr()}
        return self._reply(message, {**attributes, "LIFETIME": lifetime})

    _HANDLERS: ClassVar = {**FakeTurnServer._HANDLERS, stun.Method.ALLOCATE: _allocate}  # type: ignore[dict-item]

    def _relay(self, source: Endpoint, peer: Endpoint, payload: bytes, now: float) -> None:
        allocation = self.live(source, now)
        if allocation is not None and allocation.permissions.get(peer.host, 0) > now:
            self.outbox.append((source, peer, payload))

    def forward(self, now: float) -> list[tuple[Endpoint, bytes]]:
        """Deliver the outbox to the allocations it was sent to: (client, Data indication)."""
        out = []
        for source, peer, payload in self.outbox:
            target = next((c for c, r in self.relayed.items() if r == peer), None)
            allocation = None if target is None else self.live(target, now)
            if target is None or allocation is None or allocation.permissions.get(TURN.host, 0) <= now:
                continue
            self.payloads.append(payload)
            out.append((target, data_indication(self.relayed[source], payload)))
        self.outbox.clear()
        return out


class RelayLab(Lab):
    """The in-memory lab with a TURN server; ``block_direct`` drops datagrams between the hosts' NATs, and
    ``relay_loss`` is the share of relayed datagrams lost."""

    def __init__(self, keepalive: float = 10.0) -> None:
        super().__init__(keepalive)
        self.server = ExtendedServer()
        self.turn = RelayingTurnServer()
        self.turn_down = False
        self.block_direct = False
        self.relay_loss = 0.0
        self.random = random.Random(4)

    def config(self, name: str) -> CoreConfig:
        relay = RelayConfig(TURN, USER, lambda: PASSWORD, retransmit=Retransmit(rto=0.5, rc=5, rm=4))
        delivery = DeliveryConfig(deadline=30.0)
        return CoreConfig(name, SERVER, TIMING, self.keepalive, 0.25, relay, direct_retry=1.0, delivery=delivery)

    def perform(self, name: str, outputs: list[Output]) -> None:
        super().perform(name, [o for o in outputs if not isinstance(o, SendRaw)])
        for output in outputs:
            if isinstance(output, SendRaw):
                nat, private = self.nats[name], self.private[name]
                source = private if nat is None else nat.outbound(private, output.to, self.now)
                self._queue.append((source, output.to, output.data))

    def deliver(self) -> None:
        while self._queue:
            source, dst, data = self._queue.popleft()
            self.wire.append((source, dst, data))
            if dst == TURN:
                self._to_turn(source, data)
            elif dst == SERVER:
                self.server.now = self.now
                self._queue.extend((SERVER, to, reply) for reply, to in self.server.receive(data, source))
            elif not self._blocked(source, dst):
                for name, core in self.cores.items():
                    nat = self.nats[name]
                    private = dst if nat is None else nat.inbound(dst, source, self.now)
                    if private == self.private[name]:
                        self.perform(name, core.receive(data, source, self.now))

    def _to_turn(self, source: Endpoint, data: bytes) -> None:
        if self.turn_down:
            return
        self._queue.extend((TURN, source, answer) for answer in self.turn.handle(data, source, self.now))
        for client, indication in self.turn.forward(self.now):
            if self.random.random() >= self.relay_loss:
                self._queue.append((TURN, client, indication))

    def _blocked(self, source: Endpoint, dst: Endpoint) -> bool:
        return self.block_direct and source.host != TURN.host and SERVER not in (source, dst)

    def path(self, host: str, peer: str) -> str:
        status = self.cores[host].peer_status(peer)
        return "unknown" if status is None else str(status["path"])

    def status(self, host: str, peer: str) -> dict[str, Any]:
        status = self.cores[host].peer_status(peer)
        assert status is not None
        return status

    def send_all(self, host: str, peer: str, texts: list[str]) -> None:
        for text in texts:
            self.send(host, peer, text)

    def send(self, host: str, peer: str, text: str) -> None:
        self.perform(host, self.cores[host].send(peer, text, self.now).outputs)
        self.deliver()

    def received(self, host: str) -> list[str]:
        return [e["text"] for e in self.named(host, "message_received")]

    def delivered(self, host: str) -> int:
        return len(self.named(host, "message_delivered"))


def relay_lab(
    alice_nat: dict[str, str], bob_nat: dict[str, str], keepalive: float = 10.0, kind: type[RelayLab] = RelayLab
) -> RelayLab:
    lab = kind(keepalive)
    lab.add("alice", Nat("198.18.0.11", **alice_nat))  # type: ignore[arg-type]
    lab.add("bob", Nat("198.18.0.12", **bob_nat))  # type: ignore[arg-type]
    lab.run_until(lambda: all(c.relay_up and c.registered and not c.server.reannouncing for c in lab.cores.values()))
    return lab


def connected(lab: RelayLab, want: str) -> Callable[[], bool]:
    return lambda: lab.path("alice", "bob") == want and lab.path("bob", "alice") == want


def connect(lab: RelayLab, want: str) -> None:
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    lab.run_until(connected(lab, want))


def texts(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {i:03d}" for i in range(count)]


def relayed_app_data(lab: RelayLab) -> list[bytes]:
    return [p for p in lab.turn.payloads if isinstance(lab.tap.plain(p), Data | Ack | Msg)]


def requests(lab: RelayLab) -> list[Frame]:
    """The v2 requests the hosts sent their server, in order."""
    return [f for f in (lab.tap.plain(d) for _, dst, d in lab.wire if dst == SERVER) if isinstance(f, Frame)]


# -- tests ------------------------------------------------------------------------------------------


def test_registers_as_extended_then_with_the_relay() -> None:
    lab = relay_lab(CONE, CONE)
    registers = [f.message for f in requests(lab) if isinstance(f.message, Register) and f.message.id == "alice"]
    relayed = lab.cores["alice"].relay_status()["relay"]
    assert registers[0] == Register("alice", Candidates(None))
    assert registers[-1] == Register("alice", Candidates(Endpoint.parse(relayed)))
    assert lab.server.candidates["alice"] == Candidates(Endpoint.parse(relayed))
    assert lab.named("alice", "turn_allocated") == [{"event": "turn_allocated", "relay": relayed}]
    turn = lab.cores["alice"].relay_status()["turn"]
    assert turn == {"server": str(TURN), "state": "allocated", "reason": None}


def test_cone_cone_goes_direct_and_sends_no_application_data_via_turn() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    lab.send_all("alice", "bob", texts("a", 5))
    lab.send_all("bob", "alice", texts("b", 5))
    lab.run_until(lambda: lab.delivered("alice") == 5 and lab.delivered("bob") == 5)
    assert lab.received("bob") == texts("a", 5)
    assert lab.received("alice") == texts("b", 5)
    assert relayed_app_data(lab) == []
    status = lab.status("alice", "bob")
    assert (status["path"], status["relay"], status["delivered"], status["received"]) == ("direct", None, 5, 5)
    assert status["time_to_first_message_ms"] is not None


def test_symmetric_cone_goes_relay_and_delivers_200_each_way_exactly_once_in_order() -> None:
    lab = relay_lab(SYMMETRIC, CONE)
    connect(lab, "relay")
    [confirmed] = lab.named("alice", "relay_confirmed")
    bob_relay = lab.cores["bob"].relay_status()["relay"]
    assert confirmed["relay"] == bob_relay
    assert lab.status("alice", "bob")["addr"] == lab.status("alice", "bob")["relay"] == bob_relay
    lab.run_for(6.0)  # the direct punch times out; the relay carries on
    reason = lab.status("alice", "bob")["reason"]
    assert reason.startswith("punch failed: no response from")
    assert reason.endswith("; relayed, still probing direct")
    lab.relay_loss = 0.1
    lab.send_all("alice", "bob", texts("a", 200))
    lab.send_all("bob", "alice", texts("b", 200))
    lab.run_until(lambda: lab.delivered("alice") == 200 and lab.delivered("bob") == 200, limit=60)
    assert lab.received("bob") == texts("a", 200)
    assert lab.received("alice") == texts("b", 200)
    assert lab.named("alice", "message_undelivered") == []
    status = lab.status("alice", "bob")
    assert status["path"] == "relay"
    assert status["retransmitted"] > 0  # the loss was real
    assert not any(isinstance(said, Data) for _, _, said in lab.plain())  # application data never went direct


def test_path_upgrades_to_direct_while_messages_flow() -> None:
    lab = relay_lab(CONE, CONE)
    lab.block_direct = True
    connect(lab, "relay")
    sent = texts("a", 100)
    for i, text in enumerate(sent):
        if i == 30:
            lab.block_direct = False
        lab.send("alice", "bob", text)
        lab.run_for(0.05)
    lab.run_until(lambda: lab.delivered("alice") == 100 and lab.path("alice", "bob") == "direct")
    assert lab.received("bob") == sent
    [change] = lab.named("alice", "path_changed")
    assert (change["old"], change["new"]) == ("relay", "direct")
    status = lab.status("alice", "bob")
    assert status["time_to_direct_ms"] > 1000  # found by the slow background probing
    assert status["relay"] is None


def test_direct_gets_a_head_start_then_the_relay_stands_by() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    assert [p for p in lab.turn.payloads if isinstance(lab.tap.plain(p), Hello)] == [], "no relay probe before direct"
    lab.run_for(1.0)
    assert lab.named("alice", "relay_confirmed"), "the relay path is confirmed as a standby"
    assert lab.path("alice", "bob") == "direct"


def test_a_connect_after_a_forgotten_peer_brought_the_relay_back_still_punches() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    lab.run_for(1.0)  # the relay stands by: both allocations now let the other's relay in
    lab.perform("bob", lab.cores["bob"].disconnect("alice"))
    lab.perform("alice", lab.cores["alice"].disconnect("bob"))
    connect(lab, "direct")
    lab.perform("alice", lab.cores["alice"].disconnect("bob"))
    lab.run_for(0.5)  # bob's relay probes, held back by the head start, arrive after alice forgot him
    assert lab.path("alice", "bob") == "relay"
    punches = len(lab.named("alice", "punch_started"))
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    lab.run_until(connected(lab, "direct"))
    assert len(lab.named("alice", "punch_started")) == punches + 1


def test_time_to_first_message_counts_from_this_connect_not_from_a_relay_path_the_last_one_left_up() -> None:
    # As in the grid: after an attempt bob's late relay probe brings alice's relay path back once she forgot
    # him, and keepalives keep it up; two minutes later alice connects again and sends. The relay path's start
    # is the old attempt's: the first message counts from this connect's punch.
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    lab.run_for(1.0)
    lab.perform("bob", lab.cores["bob"].disconnect("alice"))
    lab.perform("alice", lab.cores["alice"].disconnect("bob"))
    connect(lab, "direct")
    lab.perform("alice", lab.cores["alice"].disconnect("bob"))
    lab.run_for(0.5)  # bob's relay probes arrive after alice forgot him: her relay path is up again
    assert lab.path("alice", "bob") == "relay"
    lab.run_for(100.0)
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    lab.run_until(connected(lab, "direct"))
    lab.send("alice", "bob", "first")
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.status("alice", "bob")["time_to_first_message_ms"] < 1000


def test_a_connect_made_before_the_first_allocation_is_retried_when_the_relay_comes_up() -> None:
    lab = RelayLab()
    lab.turn_down = True
    lab.add("alice", Nat("198.18.0.11", **SYMMETRIC))  # type: ignore[arg-type]
    lab.add("bob", Nat("198.18.0.12", **CONE))  # type: ignore[arg-type]
    lab.run_until(lambda: all(c.registered for c in lab.cores.values()))
    connect(lab, "punching")
    lab.run_until(lambda: lab.path("alice", "bob") == "none")
    assert lab.status("alice", "bob")["reason"].startswith("punch failed")
    lab.turn_down = False
    lab.run_until(connected(lab, "relay"), limit=60)
    lab.send_all("alice", "bob", ["through the late relay"])
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.received("bob") == ["through the late relay"]


def test_turn_dying_while_direct_changes_nothing() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    lab.turn_down = True
    lab.run_for(40.0)
    assert lab.named("alice", "turn_failed")
    assert lab.cores["alice"].relay_status()["relay"] is None
    assert lab.named("alice", "path_changed") == []
    lab.send_all("alice", "bob", ["still here?"])
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.path("alice", "bob") == "direct"


def test_turn_dying_while_relayed_loses_the_path_then_recovers() -> None:
    lab = relay_lab(SYMMETRIC, CONE)
    connect(lab, "relay")
    lab.turn_down = True
    lab.run_until(lambda: lab.path("alice", "bob") == "none", limit=40)
    assert lab.status("alice", "bob")["reason"] == LOST_TURN
    [change] = lab.named("alice", "path_changed")
    assert (change["old"], change["new"], change["reason"]) == ("relay", "none", LOST_TURN)
    lab.turn.restart()
    lab.turn_down = False
    lab.run_until(connected(lab, "relay"), limit=60)
    lab.send_all("alice", "bob", ["back again"])
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.received("bob") == ["back again"]


def test_relay_path_gone_silent_before_turn_is_noticed_dead_still_recovers() -> None:
    # Short keepalives: the peer's silence (3 periods) is noticed before our own allocation's refresh fails,
    # as in the lab; the pair must still connect again once the relay is back.
    lab = relay_lab(SYMMETRIC, CONE, keepalive=2.0)
    connect(lab, "relay")
    lab.turn_down = True
    lab.run_until(lambda: lab.path("alice", "bob") == "none", limit=40)
    lab.turn.restart()
    lab.turn_down = False
    lab.run_until(connected(lab, "relay"), limit=90)
    lab.send_all("alice", "bob", ["after the silence"])
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.received("bob") == ["after the silence"]


def test_seed_era_peer_gets_plain_msg() -> None:
    lab = relay_lab(CONE, CONE)
    bob = lab.server.peers["bob"]
    bob.keys, bob.candidates = None, None  # as if bob registered the seed's way: plain punches, no keys, both ways
    connect(lab, "direct")
    lab.send_all("alice", "bob", ["hi"])
    assert [d for _, _, d in lab.wire if d.startswith((b"msg ", b"data "))] == [b"msg alice hi"]
    assert lab.received("bob") == ["hi"]
    assert lab.named("bob", "message_received")[0]["seed"] is True  # unauthenticated, and says so
    assert lab.status("alice", "bob")["seed"] is True


def test_turn_datagrams_are_told_apart_from_the_protocol() -> None:
    assert all(not is_turn_datagram(encode(m)) for m in (Ok(), Register("a", Candidates(None))))
    assert parse_stun(data_indication(TURN, b"x")).method == stun.Method.DATA
    assert isinstance(Send(Ok(), TURN), Send)


def test_stopping_releases_the_allocation() -> None:
    lab = relay_lab(CONE, CONE)
    alice = lab.cores["alice"]
    released = alice.stop(lab.now)
    assert len(released) == 1
    (output,) = released
    assert isinstance(output, SendRaw)
    assert output.to == TURN
    refresh = parse_stun(output.data)
    assert (refresh.method, refresh.integer("LIFETIME")) == (stun.Method.REFRESH, 0), "Refresh LIFETIME=0"
    assert alice.stop(lab.now) == [], "nothing left to release"


def test_send_returns_the_ticket_its_settling_event_names() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    sent = lab.cores["alice"].send("bob", "ticketed", lab.now)
    lab.perform("alice", sent.outputs)
    [message_sent] = lab.named("alice", "message_sent")
    assert sent.ticket == Ticket("bob", message_sent["epoch"], message_sent["seq"])
    lab.run_until(lambda: lab.delivered("alice") == 1)
    [delivered] = lab.named("alice", "message_delivered")
    assert Ticket(delivered["peer"], delivered["epoch"], delivered["seq"]) == sent.ticket


def test_text_checked_once_against_the_frame_it_will_ride_in() -> None:
    lab = relay_lab(CONE, CONE)
    connect(lab, "direct")
    # Fits a text `data` frame but not a sealed one whose counters may grow to their maximum.
    header = len(encode(Data("alice", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, "")))
    text = "x" * (MAX_DATAGRAM - header)
    assert len(encode(Data("alice", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, text))) == MAX_DATAGRAM
    with pytest.raises(RequestError, match=r"^message too long: \d+ bytes on the wire, at most 1400$"):
        lab.cores["alice"].send("bob", text, lab.now)
    assert lab.named("alice", "message_sent") == []
    sealed = lab.cores["alice"].sealer.size(Data("alice", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, "x"))
    largest = "x" * (MAX_DATAGRAM - sealed + 1)
    lab.send("alice", "bob", largest)
    lab.run_until(lambda: lab.delivered("alice") == 1)
    assert lab.received("bob") == [largest]


def warm_relays_shut_nats(lab: RelayLab) -> None:
    """The pair met before (each TURN allocation still permits the other's relay), forgot each other, and both
    NATs are shut to each other again."""
    connect(lab, "direct")
    lab.run_for(1.0)  # the relay paths confirm too: each allocation now permits the TURN server's address
    lab.request("alice", lambda core: core.disconnect("bob"))
    lab.request("bob", lambda core: core.disconnect("alice"))
    for name, other in (("alice", "198.18.0.12"), ("bob", "198.18.0.11")):
        nat = lab.nats[name]
        assert nat is not None
        for allowed in nat._allowed.values():
            allowed -= {a for a in allowed if a.host == other}


def test_when_the_peers_relay_probe_comes_before_our_punch_direct_still_counts_from_the_connect() -> None:
    # alice's punch is lost; bob's comes, and his relay probe reaches alice through the old permission: her
    # relay path confirms before she knows where bob is. Her connect is repeated, her punch comes 250 ms late,
    # and the path is not settled until direct confirms; time to direct counts from her connect.
    lab = relay_lab(CONE, CONE)
    warm_relays_shut_nats(lab)
    lab.server.lost_punches["alice"] = 1
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    alice = lab.cores["alice"]
    lab.run_until(lambda: lab.path("alice", "bob") == "relay")
    assert not alice.path_settled("bob")
    lab.run_until(lambda: alice.path_settled("bob"))
    assert lab.path("alice", "bob") == "direct"
    # Repeated 250 ms after bob's relay probe, which came after the relay's 10 ms head start.
    assert alice.peers["bob"].path.time_to_direct_ms == pytest.approx(260.0)


def test_a_relay_that_answers_does_not_stop_asking_again_for_a_lost_punch() -> None:
    # The pair met before: each TURN allocation still permits the other's relay. Both forget each other and
    # bob's NAT shuts again; then bob's punch is lost. alice's relay probe still reaches bob (the old
    # permission) and confirms the relay path, which proves nothing about the punch: alice asks again until
    # she hears bob on the direct path.
    lab = relay_lab(CONE, CONE)
    warm_relays_shut_nats(lab)
    lab.server.lost_punches["bob"] = 1
    connect(lab, "direct")
    assert lab.cores["alice"].peers["bob"].reasking is None
