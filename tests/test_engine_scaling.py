"""A message's cost does not grow with the number of peers: a datagram, a send and a tick touch only the peer
they concern. Counted, not timed: every peer the core looks at for its route or its wakeup is noted, with one
other peer and with a thousand, and the counts must be the same (and small). The full walks that remain (a
keepalive period, a change of our relay or registration) are tested to still reach every peer."""

from __future__ import annotations

from collections import Counter

import pytest

from client.engine.bounds import Bounds
from client.engine.core import AgentCore, CoreConfig, Emit, Output
from client.engine.delivery import DeliveryConfig
from client.engine.events import MessageReceived
from client.engine.paths import PathKeeper
from client.engine.peer import Peer
from client.engine.presence import PER_PERIOD
from protocol import Ack, Data, Endpoint, Frame, Keepalive, Ok, PresenceQuery, Register, Sealed, encode, parse
from tests.support.engine_outputs import frames
from tests.support.signal_server import answer, register

SERVER = Endpoint("198.18.0.10", 9000)
ALICE = Endpoint("198.18.0.11", 40000)
T0 = 1000.0


class Visits:
    """Which peers the core looked at: their route (Peer.routing) or their wakeup (PathKeeper.wakeup)."""

    def __init__(self) -> None:
        self.routes: Counter[str] = Counter()
        self.wakeups: Counter[str] = Counter()

    def clear(self) -> None:
        self.routes.clear()
        self.wakeups.clear()

    def total(self) -> int:
        return sum(self.routes.values()) + sum(self.wakeups.values())


@pytest.fixture
def visits(monkeypatch: pytest.MonkeyPatch) -> Visits:
    seen = Visits()
    routing, wakeup = Peer.routing, PathKeeper.wakeup

    def counted_routing(peer: Peer, relay_up: bool) -> tuple[object, ...]:
        seen.routes[peer.id] += 1
        return routing(peer, relay_up)

    def counted_wakeup(keeper: PathKeeper, peer: Peer) -> float:
        seen.wakeups[peer.id] += 1
        return wakeup(keeper, peer)

    monkeypatch.setattr(Peer, "routing", counted_routing)
    monkeypatch.setattr(PathKeeper, "wakeup", counted_wakeup)
    return seen


ROOMY = Bounds(max_peers=2000, intro_rate=1.0, intro_burst=2000)
"""Room for a thousand peers, all introduced at once."""


def introduce(core: AgentCore, peers: int) -> None:
    """Our server introduces ``peers`` peers (p0, p1, ...), each of which answers a probe: direct paths."""
    for n in range(peers):
        addr = Endpoint("198.18.2.1", 20000 + n)
        core.receive(f"punch p{n} {addr}".encode(), SERVER, T0)
        core.receive(f"hello p{n}".encode(), addr, T0)


def bob_knowing(others: int) -> AgentCore:
    """Bob, registered, with a direct path to alice (an extended peer) and to ``others`` more peers."""
    delivery = DeliveryConfig(ack_every=16)  # as the agent has it
    bob = AgentCore(CoreConfig("bob", SERVER, delivery=delivery, bounds=ROOMY))
    register(bob, T0)
    introduce(bob, others)
    bob.receive(f"punch alice {ALICE} relay=-".encode(), SERVER, T0)
    bob.receive(b"hello alice", ALICE, T0)
    bob.receive(encode(Data("alice", 7, 0, 0, "first")), ALICE, T0)
    assert len(bob.peers) == others + 1
    return bob


def received(outputs: list[Output]) -> list[str]:
    return [o.event.text for o in outputs if isinstance(o, Emit) and isinstance(o.event, MessageReceived)]


def one_message_each_way(bob: AgentCore, visits: Visits, seq: int) -> dict[str, int]:
    """Peers looked at while bob receives a data frame, ticks for its held-back ack, sends one, and takes
    alice's ack: per step, the number of looks."""
    counts: dict[str, int] = {}
    now = T0 + 0.001 * seq
    visits.clear()
    assert received(bob.receive(encode(Data("alice", 7, seq, 0, f"m{seq}")), ALICE, now)) == [f"m{seq}"]
    counts["receive"] = visits.total()
    visits.clear()
    assert bob.wakeup() < T0 + 1  # the ack held back in a burst, long before the keepalive period
    bob.tick(bob.wakeup())
    counts["tick"] = visits.total()
    visits.clear()
    sent = bob.send("alice", f"reply {seq}", now)
    counts["send"] = visits.total()
    assert sent.ticket is not None
    visits.clear()
    bob.receive(encode(Ack("alice", sent.ticket.epoch, sent.ticket.seq + 1)), ALICE, now)
    counts["ack"] = visits.total()
    assert set(visits.routes) | set(visits.wakeups) <= {"alice"}
    return counts


def test_a_messages_work_is_the_same_with_one_peer_or_a_thousand(visits: Visits) -> None:
    few, many = bob_knowing(1), bob_knowing(1000)
    with_few = [one_message_each_way(few, visits, seq) for seq in range(1, 4)]
    with_many = [one_message_each_way(many, visits, seq) for seq in range(1, 4)]
    assert with_few == with_many
    assert all(count <= 2 for counts in with_many for count in counts.values())


def test_the_keepalive_period_still_visits_every_peer(visits: Visits) -> None:
    bob = bob_knowing(1000)
    visits.clear()
    outputs = bob.tick(T0 + 10.0)  # CoreConfig's keepalive period
    assert len(visits.wakeups) == 1001
    sent = [parse(encode(o.message)) for o in outputs if hasattr(o, "message")]
    keepalives = [m for m in sent if m == Keepalive()]
    assert len(keepalives) == 1001  # every direct peer
    assert len([m for m in sent if isinstance(m, Frame) and isinstance(m.message, Register)]) == 1  # the server's
    queries = [m for m in sent if isinstance(m, Frame) and isinstance(m.message, PresenceQuery)]
    assert len(queries) == PER_PERIOD  # presence, a few peers a period: the server limits requests per IP


def test_a_relay_or_registration_change_reschedules_every_peer(visits: Visits) -> None:
    bob = AgentCore(CoreConfig("bob", SERVER, bounds=ROOMY))
    [request] = frames(bob.start(T0), SERVER)
    introduce(bob, 50)
    visits.clear()
    answer(bob, request, Ok(), T0)  # registered now: a reconnect may depend on it
    assert len(visits.wakeups) == 50


@pytest.mark.parametrize(
    "data",
    [
        b"keepalive",
        b"hello mallory",
        b"hello-ack mallory",
        b"data mallory 1 5 0 x",
        b"data alice 7 1 0 x",
        encode(Frame(0, Sealed("mallory", 1, 0, bytes(40)))),
        encode(Frame(0, Sealed("alice", 1, 0, bytes(40)))),
    ],
    ids=[
        "keepalive",
        "hello-new-id",
        "hello-ack-new-id",
        "data-new-id",
        "data-known-id-wrong-address",
        "sealed-new-id",
        "sealed-known-id-no-key",
    ],
)
def test_a_strangers_datagram_looks_at_no_peer(visits: Visits, data: bytes) -> None:
    bob = bob_knowing(1000)
    visits.clear()
    out = bob.receive(data, Endpoint("198.18.0.66", 40000), T0 + 1)
    assert visits.total() == 0
    assert [type(o).__name__ for o in out] == ["Log"]
    assert sum(bob.dropped().values()) == 1


def test_a_keepalive_finds_its_peer_by_address(visits: Visits) -> None:
    bob = bob_knowing(1000)
    silent_until = bob.peers["alice"].path.silent_until(30.0)
    assert silent_until is not None
    visits.clear()
    assert bob.receive(b"keepalive", ALICE, T0 + 5) == []
    assert set(visits.routes) | set(visits.wakeups) == {"alice"}
    assert bob.peers["alice"].path.silent_until(30.0) == silent_until + 5  # alice's path heard
