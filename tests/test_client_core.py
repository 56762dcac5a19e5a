"""Two agent cores and a fake signal server joined by an in-memory network, NATs included.

Nothing here sleeps or opens a socket: the network delivers datagrams at once and time moves only when
the test moves it (to the next time a core wants to tick), h11-style.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from client.engine.core import AgentCore, CoreConfig, Emit, Log, NoPathError, Output, RequestError, Send
from client.engine.events import JSON, DirectConfirmed
from client.engine.path import PathState, PathTiming
from protocol import (
    Connect,
    Data,
    Endpoint,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Message,
    Msg,
    Ok,
    Register,
    Sealed,
    encode,
)
from tests.support.engine_outputs import frames
from tests.support.signal_server import SignalServer, Wiretap, answer, register, v2_punch

SERVER = Endpoint("198.18.0.10", 9000)
TIMING = PathTiming(timeout=5.0, interval=0.020)

# -- the lab in memory ------------------------------------------------------------------------------


FakeServer = SignalServer
"""The signal server every in-memory lab runs (tests.support.signal_server)."""


@dataclass
class Nat:
    """A NAT by its RFC 4787 behaviour: mapping and filtering are "independent" or "dependent"
    (address-and-port-dependent); idle mappings expire after ``timeout`` seconds."""

    public_ip: str
    mapping: str = "independent"
    filtering: str = "dependent"
    timeout: float = 30.0
    _ports: dict[tuple[Endpoint, Endpoint | None], int] = field(default_factory=dict)
    _owner: dict[int, Endpoint] = field(default_factory=dict)
    _allowed: dict[int, set[Endpoint]] = field(default_factory=dict)
    _used: dict[int, float] = field(default_factory=dict)
    _next_port: int = 50000

    def outbound(self, private: Endpoint, dst: Endpoint, now: float) -> Endpoint:
        self._expire(now)
        key = (private, dst if self.mapping == "dependent" else None)
        if key not in self._ports:
            self._next_port += 1
            self._ports[key] = self._next_port
            self._owner[self._next_port] = private
            self._allowed[self._next_port] = set()
        port = self._ports[key]
        self._allowed[port].add(dst)
        self._used[port] = now
        return Endpoint(self.public_ip, port)

    def inbound(self, public: Endpoint, src: Endpoint, now: float) -> Endpoint | None:
        self._expire(now)
        if public.host != self.public_ip or public.port not in self._owner:
            return None
        if self.filtering == "dependent" and src not in self._allowed[public.port]:
            return None
        return self._owner[public.port]

    def _expire(self, now: float) -> None:
        for port, used in list(self._used.items()):
            if now - used > self.timeout:
                del self._used[port], self._owner[port], self._allowed[port]
                self._ports = {k: p for k, p in self._ports.items() if p != port}


CONE = {"mapping": "independent", "filtering": "dependent"}  # port-restricted cone
FULL_CONE = {"mapping": "independent", "filtering": "independent"}
SYMMETRIC = {"mapping": "dependent", "filtering": "dependent"}


class Lab:
    """Hosts (each an AgentCore, maybe behind a NAT) and a FakeServer on one in-memory network."""

    def __init__(self, keepalive: float = 10.0) -> None:
        self.now = 1000.0
        self.server = FakeServer()
        self.keepalive = keepalive
        self.cores: dict[str, AgentCore] = {}
        self.private: dict[str, Endpoint] = {}
        self.nats: dict[str, Nat | None] = {}
        self.events: dict[str, list[JSON]] = {}  # as the event log has them
        self.logs: dict[str, list[str]] = {}
        self.wire: list[tuple[Endpoint, Endpoint, bytes]] = []
        self.tap = Wiretap()
        self._queue: deque[tuple[Endpoint, Endpoint, bytes]] = deque()

    def config(self, name: str) -> CoreConfig:
        """The agent configuration for host `name` (a subclass adds a relay)."""
        return CoreConfig(name, SERVER, TIMING, keepalive=self.keepalive, register_retry=0.25)

    def add(self, name: str, nat: Nat | None = None) -> AgentCore:
        config = self.config(name)
        self.tap.identities[name] = config.identity
        core = self.cores[name] = AgentCore(config)
        self.private[name] = Endpoint(f"198.18.{len(self.cores)}.10", 40000)  # its LAN address, as in the lab
        self.nats[name] = nat
        self.events[name], self.logs[name] = [], []
        self.perform(name, core.start(self.now))
        self.deliver()
        return core

    def perform(self, name: str, outputs: list[Output]) -> None:
        for output in outputs:
            match output:
                case Send(message, to):
                    nat, private = self.nats[name], self.private[name]
                    source = private if nat is None else nat.outbound(private, to, self.now)
                    self._queue.append((source, to, encode(message)))
                case Emit(ev):
                    self.events[name].append(ev.to_json())
                case Log(_, text):
                    self.logs[name].append(text)

    def deliver(self) -> None:
        """Deliver every datagram in flight, and what they cause, at the current time."""
        while self._queue:
            source, dst, data = self._queue.popleft()
            self.wire.append((source, dst, data))
            if dst == SERVER:
                self.server.now = self.now
                self._queue.extend((SERVER, to, reply) for reply, to in self.server.receive(data, source))
                continue
            for name, core in self.cores.items():
                nat = self.nats[name]
                private = dst if nat is None else nat.inbound(dst, source, self.now)
                if private == self.private[name]:
                    self.perform(name, core.receive(data, source, self.now))

    def request(self, name: str, call: Callable[[AgentCore], list[Output]]) -> None:
        self.perform(name, call(self.cores[name]))
        self.deliver()

    def run_until(self, done: Callable[[], bool], limit: float = 30.0) -> None:
        """Advance time tick by tick until ``done()``; fail after ``limit`` simulated seconds."""
        deadline = self.now + limit
        self.deliver()
        while not done():
            self.now = min(core.wakeup() for core in self.cores.values())
            assert self.now <= deadline, "condition not met in simulated time"
            for name, core in self.cores.items():
                if core.wakeup() <= self.now:
                    self.perform(name, core.tick(self.now))
            self.deliver()

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        self.run_until(lambda: min(c.wakeup() for c in self.cores.values()) > end, limit=seconds + 1)
        self.now = end

    def plain(self) -> list[tuple[Endpoint, Endpoint, Message | Frame | bytes]]:
        """The wire so far as its readers see it: sealed datagrams opened (tests.support.signal_server.Wiretap)."""
        return [(source, dst, self.tap.plain(data)) for source, dst, data in self.wire]

    def named(self, host: str, name: str) -> list[JSON]:
        return [e for e in self.events[host] if e["event"] == name]

    def state(self, host: str, peer: str) -> PathState:
        return self.cores[host].peers[peer].path.state

    def settled(self, host: str, peer: str) -> Callable[[], bool]:
        """Done when ``host``'s connect to ``peer`` has its outcome and the peer is not still punching."""

        def done() -> bool:
            other = self.cores.get(peer)
            still_punching = other is not None and host in other.peers and self.state(peer, host) is PathState.PUNCHING
            return self.cores[host].connect_settled(peer) and not still_punching

        return done


def two_hosts(alice_nat: dict[str, str] | None, bob_nat: dict[str, str] | None, **kw: float) -> Lab:
    lab = Lab(**kw)
    lab.add("alice", None if alice_nat is None else Nat("198.18.0.11", **alice_nat))  # type: ignore[arg-type]
    lab.add("bob", None if bob_nat is None else Nat("198.18.0.12", **bob_nat))  # type: ignore[arg-type]
    return lab


def connect(lab: Lab, host: str = "alice", peer: str = "bob") -> None:
    now = lab.now
    lab.request(host, lambda core: core.connect(peer, now))
    lab.run_until(lab.settled(host, peer))


# -- registration ----------------------------------------------------------------------------------


def test_both_register_once() -> None:
    lab = two_hosts(CONE, CONE)
    for name in ("alice", "bob"):
        assert lab.cores[name].registered
        assert lab.named(name, "registered") == [{"event": "registered", "server": "198.18.0.10:9000"}]
    registered = lab.server.peers["bob"]
    assert registered.addr == Endpoint("198.18.0.12", 50001)
    assert registered.keys == Keys(lab.tap.identities["bob"].public.sign, lab.tap.identities["bob"].public.box)
    assert lab.server.retries == 2  # each agent's first register had no cookie: retried with the server's


def test_keepalive_goes_to_server_and_direct_peers() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    lab.wire.clear()
    lab.run_for(10.0)
    # To the server a v2 keepalive (with the cookie), to each direct peer a sealed one.
    keepalives = [(s, d) for s, d, said in lab.plain() if _keepalive(said)]
    alice_public, bob_public = Endpoint("198.18.0.11", 50001), Endpoint("198.18.0.12", 50001)
    assert sorted(keepalives) == sorted(
        [(alice_public, SERVER), (alice_public, bob_public), (bob_public, SERVER), (bob_public, alice_public)]
    )


def _keepalive(said: Message | Frame | bytes) -> bool:
    """A keepalive: sealed to a peer (opened by the wiretap), or to the server its register again (v2, with the
    cookie: server_link.py says why a register)."""
    return said == Keepalive() or (
        isinstance(said, Frame) and isinstance(said.message, Register) and said.cookie is not None
    )


# -- punching through NATs -------------------------------------------------------------------------


def test_cone_to_cone_goes_direct_both_ways() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    assert lab.state("alice", "bob") is PathState.DIRECT
    assert lab.state("bob", "alice") is PathState.DIRECT
    [started] = lab.named("alice", "punch_started")
    assert started == {"event": "punch_started", "peer": "bob", "addr": "198.18.0.12:50001"}
    [confirmed] = lab.named("alice", "direct_confirmed")
    assert confirmed["addr"] == "198.18.0.12:50001"
    assert confirmed["time_to_direct_ms"] == 0.0  # the in-memory network has no latency
    assert lab.named("bob", "direct_confirmed")[0]["addr"] == "198.18.0.11:50001"
    # probing stopped as soon as the path was confirmed: one probe each way, one answer or so
    hellos = [said for _, _, said in lab.plain() if isinstance(said, Hello | HelloAck)]
    assert len(hellos) <= 4


def test_time_to_direct_counts_from_connect_and_from_punch() -> None:
    lab = two_hosts(CONE, CONE)
    lab.server.drop_connects = True  # the first connect is lost: alice re-sends it after 250 ms
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    lab.run_for(0.2)
    lab.server.drop_connects = False
    lab.run_until(lab.settled("alice", "bob"))
    assert lab.named("alice", "direct_confirmed")[0]["time_to_direct_ms"] == pytest.approx(250.0)
    assert lab.named("bob", "direct_confirmed")[0]["time_to_direct_ms"] == 0.0


def connects(lab: Lab) -> list[Frame]:
    """alice's connects to bob on the wire so far (retransmissions and repeats included)."""
    return [said for _, _, said in lab.plain() if isinstance(said, Frame) and said.message == Connect("alice", "bob")]


def test_a_punch_lost_on_its_way_to_the_peer_is_asked_for_again() -> None:
    # bob's punch is lost: his NAT stays shut to alice's probes, he knows nothing. alice, whose own punch
    # came, asks the server again after 250 ms; the server punches both again, and bob's gets through.
    lab = two_hosts(CONE, CONE)
    lab.server.lost_punches["bob"] = 1
    connect(lab)
    assert lab.state("alice", "bob") is PathState.DIRECT
    assert lab.named("alice", "direct_confirmed")[0]["time_to_direct_ms"] == pytest.approx(250.0)
    assert len(connects(lab)) == 2
    assert len({frame.txid for frame in connects(lab)}) == 1  # the same request, repeated
    assert lab.cores["alice"].peers["bob"].reasking is None  # bob was heard: no more repeats
    lab.run_for(2.0)
    assert len(connects(lab)) == 2


def test_a_peer_heard_at_once_costs_no_repeat() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    lab.run_for(2.0)
    assert len(connects(lab)) == 1


def test_a_peer_never_heard_gets_at_most_four_repeats() -> None:
    lab = two_hosts(CONE, CONE)
    lab.server.lost_punches["bob"] = 100  # bob never learns of alice
    connect(lab)
    assert lab.state("alice", "bob") is PathState.FAILED
    assert len(connects(lab)) == 1 + 4  # re-sent every 250 ms after the punch, then no more


def test_an_error_for_a_repeat_stops_the_repeats_and_keeps_the_path() -> None:
    lab = two_hosts(CONE, CONE)
    lab.server.lost_punches["bob"] = 100
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    del lab.server.peers["bob"]  # bob expired from the server: a repeat gets "invalid peers"
    lab.run_for(0.3)
    alice = lab.cores["alice"]
    assert alice.peers["bob"].reasking is None
    assert lab.state("alice", "bob") is PathState.PUNCHING  # the punch goes on until its own deadline
    assert any("connect to bob repeated: server: invalid peers" in line for line in lab.logs["alice"])
    assert lab.named("alice", "server_error") == []


@pytest.mark.parametrize(
    ("alice_nat", "bob_nat"),
    [pytest.param(SYMMETRIC, SYMMETRIC, id="symmetric-symmetric"), pytest.param(CONE, SYMMETRIC, id="cone-symmetric")],
)
def test_symmetric_nat_fails_with_the_exact_reason(alice_nat: dict[str, str], bob_nat: dict[str, str]) -> None:
    lab = two_hosts(alice_nat, bob_nat)
    connect(lab)
    bob_seen_by_server, alice_seen_by_server = lab.server.peers["bob"].addr, lab.server.peers["alice"].addr
    for host, peer, addr in [("alice", "bob", bob_seen_by_server), ("bob", "alice", alice_seen_by_server)]:
        assert lab.state(host, peer) is PathState.FAILED
        reason = f"punch failed: no response from {addr} within 5 s"
        assert lab.cores[host].peers[peer].path.reason == reason
        [failed] = lab.named(host, "punch_failed")
        assert failed == {"event": "punch_failed", "peer": peer, "addr": str(addr), "reason": reason}
        with pytest.raises(NoPathError, match=f"^{re.escape(f'no path to {peer}: {reason}')}$"):
            lab.cores[host].send(peer, "anyone there?", lab.now)
    assert lab.named("alice", "message_sent") == []


def test_full_cone_to_symmetric_answers_the_actual_source() -> None:
    lab = two_hosts(FULL_CONE, SYMMETRIC)
    connect(lab)
    assert lab.state("alice", "bob") is PathState.DIRECT
    assert lab.state("bob", "alice") is PathState.DIRECT
    actual = lab.cores["alice"].peers["bob"].path.addr
    assert actual is not None
    assert actual != lab.server.peers["bob"].addr  # bob's NAT gave the path to alice a port of its own
    answers = [(s, d) for s, d, said in lab.plain() if said == HelloAck("alice")]
    assert answers
    assert all(dst == actual for _, dst in answers)


def test_no_nat_at_all() -> None:
    lab = two_hosts(None, None)
    connect(lab)
    assert lab.cores["alice"].peers["bob"].path.addr == Endpoint("198.18.2.10", 40000)


# -- messages --------------------------------------------------------------------------------------


def _send(core: AgentCore, peer_id: str, text: str, now: float) -> list[Output]:
    return core.send(peer_id, text, now).outputs


def test_messages_both_ways_exactly_once() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    for text in ("Hello, World?", "second", "third"):
        lab.request("alice", functools.partial(_send, peer_id="bob", text=text, now=lab.now))
    lab.request("bob", lambda core: core.send("alice", "gday", lab.now).outputs)
    lab.run_for(25.0)  # keepalives and ticks must not repeat anything
    received = [(e["peer"], e["text"]) for e in lab.named("bob", "message_received")]
    assert received == [("alice", "Hello, World?"), ("alice", "second"), ("alice", "third")]
    assert [(e["peer"], e["text"]) for e in lab.named("alice", "message_received")] == [("bob", "gday")]
    assert lab.named("bob", "message_received")[0]["addr"] == "198.18.0.11:50001"
    assert [e["text"] for e in lab.named("alice", "message_sent")] == ["Hello, World?", "second", "third"]
    sent = [said for _, _, said in lab.plain() if isinstance(said, Data)]
    assert len(sent) == 4  # each message once, sealed (keepalives and acks carry no text)
    alice_bob = lab.cores["alice"].peer_status("bob")
    assert alice_bob is not None
    assert (alice_bob["sent"], alice_bob["received"]) == (3, 1)


def test_keepalives_hold_the_path_past_the_nat_timeout() -> None:
    lab = two_hosts(CONE, CONE, keepalive=10.0)
    connect(lab)
    lab.run_for(95.0)  # three NAT timeouts
    lab.request("alice", lambda core: core.send("bob", "still there?", lab.now).outputs)
    assert [e["text"] for e in lab.named("bob", "message_received")] == ["still there?"]


def test_without_keepalives_inside_the_timeout_the_nat_forgets() -> None:
    lab = two_hosts(CONE, CONE, keepalive=40.0)  # the control: keepalive slower than the NAT timeout
    connect(lab)
    lab.run_for(35.0)
    lab.request("alice", lambda core: core.send("bob", "still there?", lab.now).outputs)
    assert lab.named("bob", "message_received") == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty message"),
        ("two\nlines", "a message is one line"),
        ("x" * 1500, "message too long"),
    ],
)
def test_bad_message_text_is_the_callers_error(text: str, error: str) -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    with pytest.raises(RequestError, match=error):
        lab.cores["alice"].send("bob", text, lab.now)


def test_send_to_unknown_peer_is_refused_not_dropped() -> None:
    lab = two_hosts(CONE, CONE)
    with pytest.raises(NoPathError, match=r"^no path to carol: not connected$"):
        lab.cores["alice"].send("carol", "hi", lab.now)


# -- server errors, connect requests, disconnect ---------------------------------------------------


def test_connect_to_unregistered_peer_fails_with_the_servers_reason() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab, "alice", "carol")
    status = lab.cores["alice"].peer_status("carol")
    assert status is not None
    assert (status["path"], status["reason"]) == ("none", "server: invalid peers")
    assert lab.named("alice", "server_error") == [{"event": "server_error", "reason": "invalid peers", "peer": "carol"}]


def test_connect_with_no_answer_gives_up_after_the_timeout() -> None:
    lab = two_hosts(CONE, CONE)
    lab.server.drop_connects = True
    connect(lab)
    path = lab.cores["alice"].peers["bob"].path
    assert (path.state, path.reason) == (PathState.NONE, "server: no answer to connect within 5 s")
    connects = [
        said for _, _, said in lab.plain() if isinstance(said, Frame) and said.message == Connect("alice", "bob")
    ]
    assert 19 <= len(connects) <= 21  # re-sent every 250 ms
    assert len({frame.txid for frame in connects}) == 1  # one request: its retransmissions keep its txid
    assert len({frame.proof for frame in connects}) == len(connects)  # each with a fresh proof


def test_connect_refuses_bad_requests() -> None:
    core = AgentCore(CoreConfig("alice", SERVER, TIMING))
    [request] = frames(core.start(0.0), SERVER)
    with pytest.raises(RequestError, match=re.escape("not registered with server 198.18.0.10:9000 yet")):
        core.connect("bob", 0.0)
    answer(core, request, Ok(), 0.0)
    with pytest.raises(RequestError, match="cannot connect to yourself"):
        core.connect("alice", 0.0)
    with pytest.raises(RequestError, match="invalid peer id"):
        core.connect("no spaces", 0.0)


def test_connect_while_direct_or_punching_sends_nothing() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    assert lab.cores["alice"].connect("bob", lab.now) == []
    assert lab.cores["alice"].connect_settled("bob")


def test_disconnect_forgets_locally() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    lab.request("alice", lambda core: core.disconnect("bob"))
    assert lab.state("alice", "bob") is PathState.NONE
    assert lab.named("alice", "disconnected") == [{"event": "disconnected", "peer": "bob"}]
    with pytest.raises(NoPathError, match="not connected"):
        lab.cores["alice"].send("bob", "hi", lab.now)
    assert lab.cores["alice"].disconnect("carol") == []  # idempotent: nothing to forget
    assert "carol" not in lab.cores["alice"].peers
    connect(lab)  # and a new connect works; bob, still direct, ignores the duplicate punch
    assert lab.state("alice", "bob") is PathState.DIRECT
    assert any("ignoring punch: already direct to alice" in line for line in lab.logs["bob"])


def test_probe_from_a_peer_we_never_heard_of_is_dropped_until_the_server_introduces_it() -> None:
    alice, bob = AgentCore(CoreConfig("alice", SERVER, TIMING)), AgentCore(CoreConfig("bob", SERVER, TIMING))
    register(alice)
    register(bob)
    at = Endpoint("198.18.0.12", 41000)
    v2_punch(
        bob, "alice", Endpoint("198.18.0.11", 40000), 1.0, keys=alice.config.identity
    )  # bob got his punch first: ours is on its way
    [probe] = [o.message for o in bob.tick(1.02) if isinstance(o, Send)]
    outputs = alice.receive(encode(probe), at, 1.02)
    assert [type(o) for o in outputs] == [Log]
    assert alice.peers == {}
    assert alice.dropped()["unknown_peer"] == 1
    v2_punch(alice, "bob", at, 1.03, keys=bob.config.identity)
    [probe] = [o.message for o in bob.tick(1.04) if isinstance(o, Send)]
    outputs = alice.receive(encode(probe), at, 1.04)  # bob's next probe
    [answer_] = [o for o in outputs if isinstance(o, Send)]
    assert answer_.to == at
    assert bob.receive(encode(answer_.message), Endpoint("198.18.0.11", 40000), 1.04)  # bob opens it
    assert [o for o in outputs if isinstance(o, Emit)] == [
        Emit(DirectConfirmed(peer="bob", addr=str(at), time_to_direct_ms=10.0))
    ]


# -- hostile input ---------------------------------------------------------------------------------

GARBAGE = [
    b"",
    b" ",
    b"\xff\xfe",
    b"x" * 2000,
    b"hello",
    b"hello bad id!",
    b"hello-ack",
    b"msg",
    b"msg bob",
    b"punch bob",
    b"punch bob not-an-addr",
    b"punch bob 1.2.3.4:99999",
    b"ok extra",
    b"register mallory",
    b"connect a b",
    b"unknown verb",
    b"\x00\x01\x02",
]


@pytest.mark.parametrize("data", GARBAGE, ids=repr)
def test_garbage_is_dropped_and_logged(data: bytes) -> None:
    core = AgentCore(CoreConfig("alice", SERVER, TIMING))
    core.start(0.0)
    outputs = core.receive(data, Endpoint("203.0.113.9", 666), 1.0)
    assert outputs
    assert all(isinstance(o, Log) and o.level == logging.DEBUG for o in outputs)


@pytest.mark.parametrize(
    "data", [b"punch bob 1.2.3.4:5", b"ok", b"err invalid peers", b"hello alice", b"msg alice hi"], ids=repr
)
def test_server_verbs_from_strangers_and_our_own_reflections_are_dropped(data: bytes) -> None:
    core = AgentCore(CoreConfig("alice", SERVER, TIMING))
    core.start(0.0)
    outputs = core.receive(data, Endpoint("203.0.113.9", 666), 1.0)
    assert [type(o) for o in outputs] == [Log]
    assert not core.registered
    assert core.peers == {}


def test_punch_for_ourselves_is_ignored() -> None:
    core = AgentCore(CoreConfig("alice", SERVER, TIMING))
    core.start(0.0)
    outputs = core.receive(b"punch alice 1.2.3.4:5", SERVER, 1.0)
    assert [type(o) for o in outputs] == [Log]
    assert core.peers == {}


def test_wire_messages_are_the_protocols() -> None:
    # To a seed-era peer the core speaks protocol.messages; spot-check the probe pair so a rename cannot slip by.
    assert encode(Hello("alice")) == b"hello alice"
    assert encode(HelloAck("alice")) == b"hello-ack alice"
    assert encode(Msg("alice", "hi there")) == b"msg alice hi there"


def test_a_keyed_peers_message_is_sealed_data_with_a_ticket() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    sent = lab.cores["alice"].send("bob", "acknowledged, please", lab.now)
    assert sent.ticket is not None
    [datagram] = [o for o in sent.outputs if isinstance(o, Send)]
    assert datagram.to == Endpoint("198.18.0.12", 50001)
    assert isinstance(datagram.message, Frame)
    assert isinstance(datagram.message.message, Sealed)
    assert b"acknowledged" not in encode(datagram.message)  # encrypted
    plain = lab.tap.plain(encode(datagram.message))
    assert isinstance(plain, Data)
    assert plain.text == "acknowledged, please"
