"""What one connect and one agent may spend (README, "Bounded agents"): probes to an address that never
answers stop at a byte budget while the punch timing of a normal connect is unchanged (and a peer whose
punch came late still confirms, by its own probes), and out-of-order frames held for reassembly are capped
per agent, across peers, with nothing lost and nothing doubled. Pure cores, time passed in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest

from client.engine.bounds import UNASKED_KEYLESS_PROBES, Bounds
from client.engine.core import AgentCore, CoreConfig, Log, Output, Send
from client.engine.delivery import Frame, HeldFrames, Receiver
from client.engine.path import PathState
from protocol import Endpoint, encode
from tests.support.engine_outputs import datagrams, events, field
from tests.support.signal_server import register, v2_punch
from tests.test_client_core import CONE, FULL_CONE, SERVER, TIMING, Lab, Nat
from tests.test_client_delivery import DIRECT, RELAY, Link, messages
from tests.test_client_delivery import Lab as DeliveryLab
from tests.test_engine_bounds import BOB, direct, registered
from trust import Identity

ALICE = Endpoint("198.18.0.11", 40000)
VICTIM = Endpoint("198.18.0.99", 4000)  # an address someone had our server name in a punch: nobody answers


MALLORY = Identity.generate()


def probes_to(outputs: list[Output], to: Endpoint) -> list[bytes]:
    return [encode(o.message) for o in outputs if isinstance(o, Send) and o.to == to]


def punched_into_silence(me: str, bounds: Bounds) -> tuple[AgentCore, list[Output]]:
    """``me`` punched towards :data:`VICTIM` at t=1, and everything it did until the punch gave up."""
    core = AgentCore(CoreConfig(me, SERVER, TIMING, bounds=bounds))
    register(core)
    out = v2_punch(core, "mallory", VICTIM, 1.0, keys=MALLORY)
    while core.peers["mallory"].path.state is PathState.PUNCHING:
        out += core.tick(core.wakeup())
    return core, out


# -- the probe budget -------------------------------------------------------------------------------


@pytest.mark.parametrize(("me", "count", "size"), [("alice", 6, 79), ("a" * 32, 3, 133)])
def test_an_unanswered_punch_sends_at_most_the_probe_budget_in_bytes(me: str, count: int, size: int) -> None:
    # Before the budget: 251 probes (one every 20 ms for 5 s), 2,761 bytes as alice, 9,538 with a 32-char id;
    # with it and text probes, 46 and 13. A sealed probe is larger (79 bytes as alice): fewer of them.
    core, out = punched_into_silence(me, Bounds(probe_budget=512))
    sent = probes_to(out, VICTIM)
    assert [len(probe) for probe in sent] == [size] * count
    assert len(set(sent)) == count  # sealed: each under its own counter
    assert 512 - size < sum(map(len, sent)) <= 512
    # It still gives up at the deadline, with the same reason, and says why it went quiet.
    status = core.peer_status("mallory")
    assert status is not None
    assert status["reason"] == f"punch failed: no response from {VICTIM} within 5 s"
    assert core.dropped()["probe_budget"] == 1
    quiet = [o.text for o in out if isinstance(o, Log) and "unanswered" in o.text]
    assert quiet == [
        f"direct path to mallory: {count} probes, {count * len(sent[0])} bytes unanswered; waiting for its probes"
    ]


def test_an_unasked_introduction_of_a_keyless_peer_gets_three_probes() -> None:
    # A text id anyone can register from a forged source (the victim's) and have introduced to us: our probes
    # are what an attacker aims. Asked for, or keyed (no forged register can hold a keyed id), the full budget.
    def probes(punch: Callable[[AgentCore], list[Output]], connect_first: bool = False) -> list[bytes]:
        core = AgentCore(CoreConfig("alice", SERVER, TIMING, bounds=Bounds(probe_budget=512)))
        register(core)
        out = core.connect("mallory", 1.0) if connect_first else []
        out += punch(core)
        while core.peers["mallory"].path.state is PathState.PUNCHING:
            out += core.tick(core.wakeup())
        return probes_to(out, VICTIM)

    def keyless(core: AgentCore) -> list[Output]:
        return v2_punch(core, "mallory", VICTIM, 1.0)

    def keyed(core: AgentCore) -> list[Output]:
        return v2_punch(core, "mallory", VICTIM, 1.0, keys=MALLORY)

    assert probes(keyless) == [b"hello alice"] * UNASKED_KEYLESS_PROBES == [b"hello alice"] * 3
    assert len(probes(keyless, connect_first=True)) == 6  # our own connect: the budget (6 as sealed probes)
    assert len(probes(keyed)) == 6


def test_the_budget_is_per_connect_attempt() -> None:
    core, out = punched_into_silence("alice", Bounds(probe_budget=800))  # 10 probes of 79 bytes
    again = core.connect("mallory", 10.0) + v2_punch(core, "mallory", VICTIM, 10.1, keys=MALLORY)
    while core.peers["mallory"].path.state is PathState.PUNCHING:
        again += core.tick(core.wakeup())
    assert len(probes_to(out, VICTIM)) == len(probes_to(again, VICTIM)) == 10


def test_a_probe_from_the_peer_after_the_budget_is_spent_still_confirms() -> None:
    alice = registered(Bounds(probe_budget=5 * 79))  # 5 sealed probes: 80 ms of them
    bob = AgentCore(CoreConfig("bob", SERVER, TIMING))
    register(bob)
    v2_punch(alice, "bob", BOB, 1.0, keys=bob.config.identity)
    out: list[Output] = []
    while alice.wakeup() < 2.0:
        out += alice.tick(alice.wakeup())
    assert len(probes_to(out, BOB)) == 4  # and the one sent with the punch
    [probe] = probes_to(v2_punch(bob, "alice", ALICE, 2.0, keys=alice.config.identity), ALICE)
    answer = alice.receive(probe, BOB, 2.0)  # bob's punch came a second late: his first probe
    [(to, reply)] = [(o.to, o.message) for o in answer if isinstance(o, Send)]
    assert to == BOB
    assert [field(e, "peer") for e in events(bob.receive(encode(reply), ALICE, 2.0), "direct_confirmed")] == ["alice"]
    assert [field(e, "time_to_direct_ms") for e in events(answer, "direct_confirmed")] == [1000.0]


# -- the race: the peer's probe before our punch ----------------------------------------------------


class LatencyLab(Lab):
    """The in-memory lab with a one-way delay on every datagram, and an extra one on the punches to ``late``
    (the race where the peer's probes reach us before our server's punch does)."""

    def __init__(self, one_way: float, late: str, punch_delay: float) -> None:
        super().__init__()
        self.one_way, self.late, self.punch_delay = one_way, late, punch_delay
        self._flight: list[tuple[float, int, Endpoint, Endpoint, bytes]] = []
        self._order = itertools.count()

    def perform(self, name: str, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                nat, private = self.nats[name], self.private[name]
                source = private if nat is None else nat.outbound(private, output.to, self.now)
                self._send(source, output.to, encode(output.message), self.one_way)
        super().perform(name, [o for o in outputs if not isinstance(o, Send)])

    def _send(self, source: Endpoint, to: Endpoint, data: bytes, delay: float) -> None:
        heapq.heappush(self._flight, (self.now + delay, next(self._order), source, to, data))

    def deliver(self) -> None:
        while self._flight and self._flight[0][0] <= self.now:
            _, _, source, dst, data = heapq.heappop(self._flight)
            if dst == SERVER:
                for reply, to in self.server.receive(data, source):
                    punch = reply.startswith(b"\xf5\x02\x14")  # a v2 punch
                    late = punch and self.late in self.server.peers and to == self.server.peers[self.late].addr
                    self._send(SERVER, to, reply, self.one_way + (self.punch_delay if late else 0.0))
                continue
            for name, core in self.cores.items():
                nat = self.nats[name]
                private = dst if nat is None else nat.inbound(dst, source, self.now)
                if private == self.private[name]:
                    self.perform(name, core.receive(data, source, self.now))

    def run_until(self, done: Callable[[], bool], limit: float = 30.0) -> None:
        deadline = self.now + limit
        while not done():
            due = [c.wakeup() for c in self.cores.values()] + [self._flight[0][0]] * bool(self._flight)
            self.now = min(due)
            assert self.now <= deadline, "condition not met in simulated time"
            self.deliver()
            for name, core in self.cores.items():
                if core.wakeup() <= self.now:
                    self.perform(name, core.tick(self.now))


def both_direct(lab: Lab) -> bool:
    return all(
        (peer := core.peers.get(other)) is not None and peer.path.state is PathState.DIRECT
        for core, other in ((lab.cores["alice"], "bob"), (lab.cores["bob"], "alice"))
    )


@pytest.mark.parametrize("bob_nat", [CONE, FULL_CONE, None], ids=["cone", "full-cone", "no-nat"])
@pytest.mark.parametrize(
    ("punch_delay", "within"),
    [(0.0, 0.030), (0.015, 0.050), (0.100, 0.130), (2.0, 2.040)],
    ids=["together", "15ms-late", "100ms-late", "2s-late-budget-spent"],
)
def test_a_late_punch_still_goes_direct_at_once(
    bob_nat: dict[str, str] | None, punch_delay: float, within: float
) -> None:
    # 10 ms one way everywhere; the punch to bob comes late. Alice's probes reach bob before his punch and
    # are dropped (he does not know her yet); his own probes, once his punch is there, confirm both sides.
    # Before peers needed an introduction, a NAT that let alice's probe in confirmed bob at once (40 ms for
    # any delay); with a port-restricted cone it was as now: 30, 50, 130 and 2,030 ms.
    lab = LatencyLab(one_way=0.010, late="bob", punch_delay=punch_delay)
    lab.add("alice", Nat("198.18.0.11", **CONE))  # type: ignore[arg-type]
    lab.add("bob", None if bob_nat is None else Nat("198.18.0.12", **bob_nat))  # type: ignore[arg-type]
    lab.run_until(lambda: all(core.registered for core in lab.cores.values()))
    start = lab.now
    lab.request("alice", lambda core: core.connect("bob", start))
    lab.run_until(lambda: both_direct(lab), limit=5.0)
    assert lab.now - start <= within + 1e-9
    assert not [e for e in lab.events["alice"] if e["event"] == "punch_failed"]


# -- held frames ------------------------------------------------------------------------------------


def test_held_frames_are_capped_across_peers_and_the_rest_comes_again() -> None:
    alice = registered(Bounds(max_held=8))
    carol = Endpoint("198.18.0.13", 42000)
    direct(alice, "bob", BOB, 1.0)
    direct(alice, "carol", carol, 1.0)
    acks = {}
    for name, source in (("bob", BOB), ("carol", carol)):
        for seq in range(1, 7):  # message 0 lost on the way: 1-6 wait for it
            acks[name] = datagrams(alice.receive(f"data {name} 5 {seq} 0 m{seq}".encode(), source, 1.1))
    assert alice.held.count == 8
    assert alice.dropped()["held_full"] == 4
    assert acks == {"bob": [b"ack alice 5 0 1-6"], "carol": [b"ack alice 5 0 1-2"]}  # carol's 3-6 come again
    out = alice.receive(b"data carol 5 0 0 m0", carol, 1.2)
    assert [field(e, "text") for e in events(out, "message_received")] == ["m0", "m1", "m2"]
    assert alice.held.count == 6
    for seq in range(3, 7):  # carol's retransmissions
        out += alice.receive(f"data carol 5 {seq} 0 m{seq}".encode(), carol, 1.4)
    assert [field(e, "text") for e in events(out, "message_received")] == [f"m{n}" for n in range(7)]
    assert alice.held.count == 6  # bob's, still waiting for his message 0


@pytest.mark.parametrize("link", [DIRECT, RELAY], ids=["direct", "relay"])
def test_a_small_held_limit_loses_and_doubles_nothing(link: Link) -> None:
    # A lossy, reordering link with the receiver allowed to hold 32 frames (an eighth of its window): frames
    # it could not hold are retransmitted, and every message is released once, in order, and acknowledged.
    refused = 0
    texts = messages(60)
    for seed in range(40):
        lab = DeliveryLab(seed, link)
        held = HeldFrames(32)
        lab.receiver = Receiver(lab.config.window, held)
        lab.send_all(texts, lab.now, 0.002)
        lab.run()
        assert lab.released == texts, f"seed {seed}"
        assert [d.text for d in lab.delivered] == texts, f"seed {seed}"
        assert lab.max_waiting <= 32, f"seed {seed}"
        assert held.count == 0, f"seed {seed}"
        refused += held.refused
    assert refused > 500  # the limit was met, often


def test_at_the_held_limit_the_frame_nearer_the_gap_is_kept() -> None:
    held = HeldFrames(3)
    receiver = Receiver(256, held)
    for seq in (5, 6, 9):
        receiver.on_frame(Frame(1, seq, 0, f"m{seq}"), 0.0)
    ack, _ = receiver.on_frame(Frame(1, 2, 0, "m2"), 0.0)  # nearer the gap at 0 than 9: 9 comes again
    assert ack is not None
    assert ack.held == ((2, 2), (5, 6))
    ack, _ = receiver.on_frame(Frame(1, 7, 0, "m7"), 0.0)  # farther than what it holds: not kept
    assert ack is not None
    assert ack.held == ((2, 2), (5, 6))
    assert (held.count, held.refused) == (3, 2)


def test_forgetting_a_peer_gives_its_held_frames_back() -> None:
    held = HeldFrames(4)
    receiver = Receiver(256, held)
    for seq in (3, 4, 5):
        receiver.on_frame(Frame(1, seq, 0, "x"), 0.0)
    assert held.count == 3
    receiver.close()
    assert (held.count, receiver.waiting) == (0, 0)
