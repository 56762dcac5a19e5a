"""Liveness of confirmed paths, pinned at the core's public API: a path that hears nothing from the peer for
three keepalive periods (README, "The three paths a pair can take") is lost to ``failed`` with a reason,
only traffic from the confirmed address keeps it alive, a lost direct path goes on probing in the
background while the relay carries the pair, and a pair left with no path connects again every two punch
time-outs. Pure cores, time passed in, no sockets, no sleeps.

Events are read through tests.support.engine_outputs, so the tests do not depend on how an event is
represented.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from client.engine.core import AgentCore, CoreConfig, Output, Send
from client.engine.drops import Drop
from client.engine.path import PathState
from protocol import Connect, Endpoint, Frame, Hello, HelloAck, Message, encode
from tests.support.engine_outputs import events, field
from tests.support.signal_server import register
from tests.test_client_core import CONE, SERVER, SYMMETRIC, TIMING, Nat
from tests.test_client_relay import RelayLab, connect, connected

KEEPALIVE = 10.0
LIVENESS = 3 * KEEPALIVE  # the README's "three keepalive periods"
BOB = Endpoint("198.18.0.12", 41000)  # where bob's probe came from: the confirmed address
ELSEWHERE = Endpoint("198.18.0.66", 41000)  # anyone else, using bob's id


# -- helpers ----------------------------------------------------------------------------------------


def direct_to_bob(now: float = 1.0) -> AgentCore:
    """Alice, registered, with a confirmed direct path to the extended peer bob at :data:`BOB` since ``now``."""
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING, keepalive=KEEPALIVE))
    register(alice)
    alice.receive(f"punch bob {BOB} relay=-".encode(), SERVER, now)  # a text natlab client: no keys
    confirmed = events(alice.receive(b"hello-ack bob", BOB, now), "direct_confirmed")
    assert [field(e, "addr") for e in confirmed] == [str(BOB)]
    return alice


def path_of(core: AgentCore, peer: str = "bob") -> str:
    status = core.peer_status(peer)
    assert status is not None
    return str(status["path"])


def lost_reason(addr: Endpoint, limit: float = LIVENESS) -> str:
    return f"direct lost: no response from {addr} within {limit:g} s"


# -- silence ----------------------------------------------------------------------------------------


def test_a_direct_path_silent_for_three_keepalive_periods_is_lost_to_failed_with_the_reason() -> None:
    alice = direct_to_bob(now=1.0)
    assert events(alice.tick(1.0 + LIVENESS - 0.001)) == []
    assert path_of(alice) == "direct"
    assert alice.wakeup() == 1.0 + LIVENESS  # the core wakes up for the loss, not only for the next keepalive
    out = alice.tick(1.0 + LIVENESS)
    reason = lost_reason(BOB)
    failed = events(out, "punch_failed")
    assert [(field(e, "addr"), field(e, "reason")) for e in failed] == [(str(BOB), reason)]
    [change] = events(out, "path_changed")
    assert (field(change, "old"), field(change, "new"), field(change, "reason")) == ("direct", "none", reason)
    status = alice.peer_status("bob")
    assert status is not None
    assert (status["path"], status["reason"]) == ("none", reason)


def test_traffic_from_the_confirmed_address_keeps_the_path_alive() -> None:
    alice = direct_to_bob(now=1.0)
    alice.tick(10.0)
    alice.receive(b"keepalive", BOB, 20.0)
    alice.receive(b"data bob 7 0 0 hi", BOB, 40.0)
    alice.receive(b"ack bob 9 0", BOB, 60.0)
    assert events(alice.tick(60.0 + LIVENESS - 0.001), "path_changed") == []
    assert path_of(alice) == "direct"
    assert [field(e, "reason") for e in events(alice.tick(60.0 + LIVENESS), "path_changed")] == [lost_reason(BOB)]


def test_traffic_from_an_unconfirmed_address_is_dropped_and_does_not_keep_the_path_alive() -> None:
    alice = direct_to_bob(now=1.0)
    received = alice.receive(b"data bob 7 0 0 from elsewhere", ELSEWHERE, 10.0)
    assert events(received, "message_received") == []  # not bob's path: not taken for bob's
    for when in (15.0, 20.0, 25.0, 30.0):
        alice.receive(b"keepalive", ELSEWHERE, when)
        alice.receive(b"ack bob 9 0", ELSEWHERE, when)
        alice.receive(f"data bob 7 {int(when)} 0 more".encode(), ELSEWHERE, when)
        alice.receive(b"msg bob plain", ELSEWHERE, when)
    assert path_of(alice) == "direct"
    assert (alice.drops[Drop.WRONG_SOURCE], alice.drops[Drop.UNKNOWN_SOURCE]) == (13, 4)
    [change] = events(alice.tick(1.0 + LIVENESS), "path_changed")
    assert field(change, "reason") == lost_reason(BOB)
    assert path_of(alice) == "none"


# -- a lost direct path with the relay standing by ---------------------------------------------------


class TimedLab(RelayLab):
    """The relay lab, noting when each host sent a new connect (a request's repeats, under its transaction id,
    are not noted), and each datagram not meant for the server."""

    def __init__(self, keepalive: float = KEEPALIVE) -> None:
        super().__init__(keepalive)
        self.timed: list[tuple[float, str, Endpoint, Message | Frame | bytes]] = []
        self.connects: list[tuple[float, str]] = []
        self._connect_txids: set[int] = set()

    def perform(self, name: str, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self._note(name, output.message, output.to)
        super().perform(name, outputs)

    def _note(self, name: str, message: Message | Frame, to: Endpoint) -> None:
        said = self.tap.plain(encode(message))
        if to == SERVER and isinstance(said, Frame) and isinstance(said.message, Connect):
            if said.txid not in self._connect_txids:
                self._connect_txids.add(said.txid)
                self.connects.append((self.now, name))
        elif to != SERVER:
            self.timed.append((self.now, name, to, said))


def hellos(lab: TimedLab, host: str) -> list[tuple[float, Message]]:
    """When ``host`` sent a probe or an answer on the direct path, and which (opened: they are sealed)."""
    return [(when, said) for when, name, _, said in lab.timed if isinstance(said, Hello | HelloAck) and name == host]


def timed_relay_lab(alice_nat: dict[str, Any], bob_nat: dict[str, Any]) -> TimedLab:
    lab = TimedLab()
    lab.add("alice", Nat("198.18.0.11", **alice_nat))
    lab.add("bob", Nat("198.18.0.12", **bob_nat))
    lab.run_until(lambda: all(c.relay_up and c.registered and not c.server.reannouncing for c in lab.cores.values()))
    return lab


def test_a_silent_direct_path_fails_over_to_the_relay_keeps_probing_and_comes_back() -> None:
    lab = timed_relay_lab(CONE, CONE)
    connect(lab, "direct")
    lab.run_for(1.0)  # the relay path stands by
    lab.block_direct = True  # a firewall rule between the NATs: direct goes silent both ways
    blocked = lab.now
    lab.run_until(lambda: lab.path("alice", "bob") == "relay", limit=LIVENESS + KEEPALIVE)
    assert lab.now - blocked <= LIVENESS
    assert lab.cores["alice"].peers["bob"].path.state is PathState.FAILED
    status = lab.status("alice", "bob")
    assert status["reason"].startswith("direct lost: no response from 198.18.0.12:")
    assert status["reason"].endswith(" within 30 s; relayed, still probing direct")
    [change] = lab.named("alice", "path_changed")
    assert (change["old"], change["new"]) == ("direct", "relay")
    # Background probing of the lost address, every direct_retry (1 s), for as long as the relay is used.
    since = lab.now
    lab.run_for(10.0)
    probes = [when for when, said in hellos(lab, "alice") if when > since and said == Hello("alice")]
    assert 9 <= len(probes) <= 11
    assert all(0.99 <= b - a <= 1.01 for a, b in itertools.pairwise(probes))
    lab.block_direct = False
    lab.run_until(lambda: lab.path("alice", "bob") == "direct", limit=2.0)
    changes = [(c["old"], c["new"]) for c in lab.named("alice", "path_changed")]
    assert changes == [("direct", "relay"), ("relay", "direct")]


# -- connecting again -------------------------------------------------------------------------------


def test_a_pair_left_with_no_path_connects_again_at_once_then_every_two_punch_timeouts() -> None:
    lab = timed_relay_lab(SYMMETRIC, CONE)
    connect(lab, "relay")
    del lab.cores["bob"]  # bob's agent stops answering; the server still knows him
    lab.connects.clear()
    gone = lab.now
    lab.run_until(lambda: len(lab.connects) >= 4, limit=LIVENESS + 4 * TIMING.timeout * 2)
    times = [when for when, name in lab.connects if name == "alice"]
    assert gone < times[0] <= gone + LIVENESS  # silence noticed: connect again at once
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([2 * TIMING.timeout] * (len(times) - 1))


def test_while_it_connects_again_the_status_keeps_saying_why_the_pair_has_no_path() -> None:
    lab = timed_relay_lab(SYMMETRIC, CONE)
    connect(lab, "relay")
    del lab.cores["bob"]
    lab.server.receive = lambda data, source: []  # type: ignore[method-assign]  # the server is cut off too
    lab.connects.clear()
    lab.run_until(lambda: len(lab.connects) >= 1, limit=LIVENESS + 1)
    [change] = [c for c in lab.named("alice", "path_changed") if c["new"] == "none"]
    status = lab.status("alice", "bob")
    assert (status["path"], status["reason"]) == ("none", change["reason"] + "; connecting again")
    assert change["reason"].startswith("relay lost: no response from ")
    lab.run_until(lambda: len(lab.connects) >= 3, limit=4 * TIMING.timeout + 1)
    assert lab.status("alice", "bob")["reason"].count("; connecting again") == 1  # never piled up


# -- a NAT that forgets idle mappings sooner than keepalives come ----------------------------------


def keepalives_to(out: list[Output], addr: Endpoint) -> int:
    """How many keepalives ``out`` sends to ``addr``."""
    return sum(1 for o in out if isinstance(o, Send) and o.to == addr and encode(o.message) == b"keepalive")


def test_each_loss_to_silence_halves_the_peers_keepalive_period_down_to_a_floor() -> None:
    alice = direct_to_bob(now=1.0)
    assert alice.peer_status("bob")["keepalive_s"] is None  # type: ignore[index]  # the agent's period
    periods, now = [], 1.0
    for _ in range(6):
        now += LIVENESS
        lost = alice.tick(now)
        assert [field(e, "reason") for e in events(lost, "punch_failed")] == [lost_reason(BOB)]
        periods.append(alice.peer_status("bob")["keepalive_s"])  # type: ignore[index]
        assert events(alice.receive(b"hello-ack bob", BOB, now), "direct_confirmed")  # the same address again
    assert periods == [5.0, 2.5, 1.25, 1.0, 1.0, 1.0]


def test_a_shortened_period_sends_that_peers_keepalives_on_its_own_clock_and_no_others() -> None:
    alice = direct_to_bob(now=1.0)
    alice.tick(10.0)  # the agent's keepalive: once on its period
    lost = 1.0 + LIVENESS
    alice.tick(lost)
    alice.receive(b"hello-ack bob", BOB, lost + 0.5)  # confirmed again: keepalives every 5 s from the loss
    sent: dict[float, int] = {}
    now = lost + 0.5
    while now < lost + 30.0:
        now = alice.wakeup()
        out = alice.tick(now)
        if keepalives_to(out, BOB):
            sent[now] = keepalives_to(out, BOB)
        alice.receive(b"keepalive", BOB, now)  # bob is alive, so the path stays up
    assert list(sent.values()) == [1] * len(sent)
    assert list(sent) == pytest.approx([lost + 5.0 * i for i in range(1, 7)])


def test_a_mapping_that_expires_between_keepalives_is_reported_then_kept_open_by_keepalives_twice_as_often() -> None:
    # Alice's NAT forgets a mapping after 7 s without traffic from her; she sends every 10 s. The next mapping
    # it makes has another port: bob's datagrams to the old one meet nothing, and hers come from a stranger.
    lab = timed_relay_lab({**CONE, "timeout": 7.0}, CONE)
    connect(lab, "direct")

    def lost(host: str) -> list[dict[str, Any]]:
        return [e for e in lab.named(host, "punch_failed") if e["reason"].startswith("direct lost: ")]

    lab.run_until(lambda: bool(lost("alice")), limit=LIVENESS + 2 * KEEPALIVE)
    assert lost("alice")[0]["reason"].startswith(f"direct lost: no response from {BOB.host}:")
    assert lab.status("alice", "bob")["keepalive_s"] == KEEPALIVE / 2
    assert any("keepalives to bob every 5 s from now" in line for line in lab.logs["alice"])
    lab.run_until(connected(lab, "direct"), limit=4 * TIMING.timeout + LIVENESS)  # connected again by itself
    changes = {host: len(lab.named(host, "path_changed")) for host in ("alice", "bob")}
    lab.run_for(4 * LIVENESS)  # now the mapping lives: no more losses
    assert {host: len(lab.named(host, "path_changed")) for host in ("alice", "bob")} == changes
    assert (lab.path("alice", "bob"), lab.path("bob", "alice")) == ("direct", "direct")
