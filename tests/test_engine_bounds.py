"""Bounded agents (README, "Bounded agents"): peers exist only when our server introduced them or a local
connect asked for them, at most ``max_peers`` of them (the oldest idle one out first), idle ones expire,
introductions we did not ask for are rate-limited, and everything refused is counted by reason. Pure cores,
time passed in, attacked as a stranger on the network would: datagrams from addresses of its choosing.

The peers here are introduced by text punches, without keys (seed-era or text natlab clients), so they talk
text: what a text protocol cannot stop (a stranger sending from such a peer's own address, or its ``hello
<known id>`` moving the path) stays possible for them; keyed peers are sealed (tests/test_engine_trust.py).
"""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from client.engine.bounds import Bounds, TokenBucket
from client.engine.core import AgentCore, CoreConfig, Log, Output, RequestError, Send
from client.engine.path import PathState
from protocol import Connect, Endpoint
from tests.support.engine_outputs import datagrams, events, field, frames
from tests.support.signal_server import register
from tests.test_client_core import CONE, SERVER, TIMING
from tests.test_client_relay import connect as connect_relay_lab
from tests.test_client_relay import relay_lab

STRANGER = Endpoint("198.18.0.66", 40000)
BOB = Endpoint("198.18.0.12", 41000)


def registered(bounds: Bounds | None = None, keepalive: float = 10.0) -> AgentCore:
    """Alice, registered with her server at t=0."""
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING, keepalive=keepalive, bounds=bounds or Bounds()))
    register(alice)
    return alice


def addr(n: int) -> Endpoint:
    return Endpoint("198.18.2.1", 20000 + n)


def punch(core: AgentCore, peer: str, at: Endpoint, now: float, extended: bool = True) -> list[Output]:
    """Our server introduces ``peer`` at ``at`` (an extended peer: ``relay=-``)."""
    return core.receive(f"punch {peer} {at}{' relay=-' if extended else ''}".encode(), SERVER, now)


def direct(core: AgentCore, peer: str, at: Endpoint, now: float, extended: bool = True) -> None:
    """``peer`` introduced, and its answer to our probe confirms the direct path."""
    punch(core, peer, at, now, extended)
    core.receive(f"hello-ack {peer}".encode(), at, now)
    assert core.peers[peer].path.state is PathState.DIRECT


def run(core: AgentCore, until: float, keepalives_from: tuple[Endpoint, ...] = ()) -> list[Output]:
    """Tick ``core`` at its wakeups up to ``until``; each of ``keepalives_from`` sends one every 5 s."""
    out: list[Output] = []
    now = 0.0
    next_keepalive = 5.0
    while now < until:
        now = min(core.wakeup(), next_keepalive, until)
        if now == next_keepalive:
            for source in keepalives_from:
                out += core.receive(b"keepalive", source, now)
            next_keepalive += 5.0
        out += core.tick(now)
    return out


def forgotten(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(field(e, "peer"), field(e, "reason")) for e in events(outputs, "peer_forgotten")]


# -- strangers --------------------------------------------------------------------------------------


def test_a_stranger_flooding_hellos_for_new_ids_creates_no_peer_gets_no_answer_and_costs_no_memory() -> None:
    alice = registered()
    alice.receive(b"hello warm-up", STRANGER, 1.0)  # whatever is made once (caches) is made before measuring
    wakeup = alice.wakeup()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        answers = sum(len(datagrams(alice.receive(f"hello x{n}".encode(), STRANGER, 1.0))) for n in range(1500))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert answers == 0  # not even a hello-ack: a stranger's probe is not reflected anywhere
    assert alice.peers == {}
    assert alice.dropped()["unknown_peer"] == 1501
    assert alice.wakeup() == wakeup  # no timers, no keepalives for anyone
    assert grown < 16_000, f"the agent kept {grown} bytes for a stranger's 1,500 probes"  # was ~1,500 peers


def test_a_stranger_flooding_data_for_new_ids_holds_nothing() -> None:
    alice = registered()
    text = "y" * 1000
    for n in range(1500):  # each out of order (seq 5): before, each was held for its new "peer"
        assert datagrams(alice.receive(f"data x{n} 1 5 0 {text}".encode(), STRANGER, 1.0)) == []
    assert (alice.peers, alice.held.count, alice.dropped()["unknown_peer"]) == ({}, 0, 1500)


@pytest.mark.parametrize("data", [b"msg bob hi", b"data bob 9 0 0 hi", b"ack bob 9 1", b"hello-ack bob"])
def test_a_peer_datagram_naming_an_unknown_id_is_dropped_and_counted(data: bytes) -> None:
    alice = registered()
    out = alice.receive(data, BOB, 1.0)
    assert [type(o) for o in out] == [Log]
    assert alice.peers == {}
    assert alice.dropped()["unknown_peer"] == 1


def test_a_strangers_data_and_ack_for_a_known_peer_do_not_touch_delivery() -> None:
    lab = relay_lab(CONE, CONE)
    connect_relay_lab(lab, "direct")
    alice = lab.cores["alice"]

    def stranger(data: bytes) -> None:
        lab.perform("alice", alice.receive(data, STRANGER, lab.now))
        lab.deliver()

    # A new epoch for bob (the seed issue's "data bob 777 0 0 x", which blackholed bob's next message) and a
    # forged msg: neither is shown, and bob's real messages still arrive, exactly once.
    stranger(b"data bob 777 0 0 forged")
    stranger(b"msg bob forged too")
    lab.send("bob", "alice", "the real one")
    lab.send("bob", "alice", "and another")
    assert lab.received("alice") == ["the real one", "and another"]
    # A forged ack for alice's message in flight settles nothing: only bob's own ack does.
    sent = alice.send("bob", "to bob", lab.now)
    assert sent.ticket is not None
    stranger(f"ack bob {sent.ticket.epoch} {sent.ticket.seq + 1}".encode())
    assert lab.delivered("alice") == 0
    lab.perform("alice", sent.outputs)
    lab.deliver()
    assert lab.delivered("alice") == 1
    assert lab.received("bob") == ["to bob"]
    # bob is keyed: text naming him is dropped whoever sent it (a sealed forgery: tests/test_engine_trust.py).
    assert alice.dropped()["unsealed"] == 3


# -- introductions ----------------------------------------------------------------------------------


def test_punches_we_did_not_ask_for_are_rate_limited() -> None:
    alice = registered(Bounds(intro_rate=2.0, intro_burst=20))
    probed = []
    for n in range(100):  # someone who can make our server introduce us, at once
        probed += [o.to for o in punch(alice, f"p{n}", addr(n), 1.0) if isinstance(o, Send)]
    assert probed == [addr(n) for n in range(20)]
    assert len(alice.peers) == 20
    assert alice.dropped()["intro_rate"] == 80
    for n in range(100, 110):
        punch(alice, f"p{n}", addr(n), 2.0)
    assert len(alice.peers) == 22  # one second later: two more, at 2 a second


def test_our_own_connects_and_their_punches_are_never_rate_limited() -> None:
    alice = registered(Bounds(intro_rate=0.001, intro_burst=1))
    punch(alice, "mallory", addr(0), 1.0)  # the one token
    punch(alice, "trudy", addr(1), 1.0)
    assert "trudy" not in alice.peers
    for n in range(2, 32):
        assert [f.message for f in frames(alice.connect(f"p{n}", 1.0), SERVER)] == [Connect("alice", f"p{n}")]
        assert [o.to for o in punch(alice, f"p{n}", addr(n), 1.0) if isinstance(o, Send)] == [addr(n)]
    assert alice.dropped()["intro_rate"] == 1


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert [bucket.take(0.5) for _ in range(2)] == [True, False]
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


# -- a full table -----------------------------------------------------------------------------------


def test_a_full_table_forgets_the_oldest_idle_peer_for_a_new_one() -> None:
    alice = registered(Bounds(max_peers=4))
    for n in range(4):
        punch(alice, f"p{n}", addr(n), 1.0 + n)  # unanswered: each punch fails 5 s later, and is idle
    run(alice, 10.0)
    out = punch(alice, "p4", addr(4), 10.0)
    assert forgotten(out) == [("p0", "the peer table is full: making room for p4")]
    assert sorted(alice.peers) == ["p1", "p2", "p3", "p4"]
    assert alice.dropped()["peer_evicted"] == 1


def test_a_full_table_of_busy_peers_refuses_a_new_one_with_a_log_line() -> None:
    alice = registered(Bounds(max_peers=3))
    direct(alice, "bob", BOB, 1.0)  # extended, with a path in use
    punch(alice, "carol", addr(1), 1.0)  # still punching
    alice.connect("dave", 1.0)  # waiting for its punch
    out = punch(alice, "erin", addr(3), 1.5)
    assert datagrams(out) == []
    assert [(o.level, o.text) for o in out if isinstance(o, Log)] == [
        (logging.WARNING, "refused peer erin: the peer table is full (3 peers, none idle; NATLAB_MAX_PEERS)")
    ]
    with pytest.raises(RequestError, match=r"^cannot connect to frank: the peer table is full \(3 peers"):
        alice.connect("frank", 1.5)
    assert sorted(alice.peers) == ["bob", "carol", "dave"]
    assert alice.dropped()["peer_table_full"] == 2


def test_a_peer_with_a_message_in_flight_is_not_idle() -> None:
    alice = registered(Bounds(max_peers=2, peer_idle=60.0))
    direct(alice, "bob", BOB, 1.0)
    alice.send("bob", "are you there?", 1.0)  # never acknowledged: bob is gone
    run(alice, 40.0)  # its path lost after 30 s of silence, the message given up at 31 s
    assert alice.peer_status("bob")["path"] == "none"  # type: ignore[index]
    punch(alice, "carol", addr(1), 40.0)
    assert forgotten(punch(alice, "dave", addr(2), 40.0)) == [("bob", "the peer table is full: making room for dave")]


# -- idle peers expire ------------------------------------------------------------------------------


def test_idle_peers_expire_and_peers_in_use_are_kept() -> None:
    alice = registered(Bounds(peer_idle=60.0))
    direct(alice, "bob", BOB, 1.0)  # extended, keeps its path alive with keepalives
    punch(alice, "carol", addr(1), 1.0)  # never answers: failed at 6 s, idle since 1 s
    direct(alice, "dave", addr(2), 1.0, extended=False)  # a seed-era peer, then silent
    out = run(alice, 200.0, keepalives_from=(BOB,))
    assert sorted(forgotten(out)) == [("carol", "idle for 60 s"), ("dave", "idle for 60 s")]
    assert sorted(alice.peers) == ["bob"]
    assert alice.peer_status("bob")["path"] == "direct"  # type: ignore[index]
    assert alice.dropped()["peer_expired"] == 2
    # Forgotten: no more keepalives to dave's address, and its datagrams are a stranger's.
    assert addr(2) not in [o.to for o in alice.tick(alice.wakeup()) if isinstance(o, Send)]
    assert datagrams(alice.receive(b"msg dave hello?", addr(2), 201.0)) == []
    assert alice.dropped()["unknown_peer"] == 1


def test_a_seed_era_peer_that_keeps_talking_is_kept() -> None:
    alice = registered(Bounds(peer_idle=60.0))
    direct(alice, "dave", addr(2), 1.0, extended=False)
    out = run(alice, 200.0, keepalives_from=(addr(2),))
    assert forgotten(out) == []
    assert "dave" in alice.peers


def test_an_expired_peer_can_be_introduced_again() -> None:
    alice = registered(Bounds(peer_idle=30.0))
    punch(alice, "carol", addr(1), 1.0)
    run(alice, 40.0)
    assert "carol" not in alice.peers
    out = punch(alice, "carol", addr(1), 40.0)
    assert [field(e, "peer") for e in events(out, "punch_started")] == ["carol"]
    assert alice.peers["carol"].path.state is PathState.PUNCHING


def test_the_hook_for_authenticated_probes_admits_within_the_bounds() -> None:
    # Where a later, authenticated probe may introduce its sender (issue 10, item 3): as an introduction we
    # did not ask for, so rate-limited and within the table. Unauthenticated, it admits no one.
    alice = registered(Bounds(intro_burst=1))
    assert alice._admit_prober("bob", 1.0, authenticated=False) == (None, [])
    peer, _ = alice._admit_prober("bob", 1.0, authenticated=True)
    assert peer is not None
    assert peer is alice.peers["bob"]
    assert alice._admit_prober("carol", 1.0, authenticated=True) == (None, [])  # the bucket is empty
