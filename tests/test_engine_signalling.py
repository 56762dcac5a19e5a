"""The core and its signal server, pinned at the public API: an ``err`` answers the connect its transaction id
names, a punch's relay starts relay probing only while our own TURN allocation is up, and an ``ok`` for an
older register does not stop the announcement of a relay that changed since. Pure cores, time passed in.

Events are read through tests.support.engine_outputs, so the tests do not depend on how an event is
represented.
"""

from __future__ import annotations

from client.engine.core import AgentCore, CoreConfig, Log, Output, SendRaw
from client.turn.relay import RelayConfig
from protocol import Candidates, Connect, Endpoint, Err, ErrorCode, Frame, Ok, Register
from tests.support.engine_outputs import events, field, frames, kind
from tests.support.signal_server import answer, register, v2_punch
from tests.test_client_core import SERVER, TIMING
from tests.test_client_relay import TURN, RelayingTurnServer
from tests.test_client_turn import PASSWORD, USER
from trust import Identity

ALICE = Endpoint("198.18.0.11", 40000)  # alice's address as the servers see it (no NAT)
BOB = Endpoint("198.18.0.12", 41000)
BOB_RELAY = Endpoint("198.18.0.20", 49999)


# -- helpers ----------------------------------------------------------------------------------------


def registered(config: CoreConfig) -> AgentCore:
    core = AgentCore(config)
    assert [kind(e) for e in events(register(core))] == ["registered"]
    return core


def with_relay() -> CoreConfig:
    """Alice with a TURN server configured (whether it answers is up to the test)."""
    return CoreConfig("alice", SERVER, TIMING, relay=RelayConfig(TURN, USER, lambda: PASSWORD))


# -- err answers the connect its transaction id names ----------------------------------------------


def test_an_err_answers_the_connect_its_transaction_id_names() -> None:
    alice = registered(CoreConfig("alice", SERVER, TIMING))
    [carol] = frames(alice.connect("carol", 1.0), SERVER)
    [dave] = frames(alice.connect("dave", 1.1), SERVER)
    [erin] = frames(alice.connect("erin", 1.2), SERVER)
    assert len({carol.txid, dave.txid, erin.txid}) == 3
    out = answer(alice, dave, Err("invalid peers", ErrorCode.INVALID_PEERS), 1.15)
    assert [(field(e, "peer"), field(e, "reason")) for e in events(out, "server_error")] == [("dave", "invalid peers")]
    status = alice.peer_status("dave")
    assert status is not None
    assert (status["path"], status["reason"]) == ("none", "server: invalid peers")
    assert alice.connect_settled("dave")
    assert not alice.connect_settled("carol")
    assert not alice.connect_settled("erin")
    # Only the connects still waiting are repeated, each under its own transaction id.
    repeated = frames(alice.tick(1.5), SERVER)
    assert sorted((f.message.to_id, f.txid) for f in repeated if isinstance(f.message, Connect)) == sorted(
        [("carol", carol.txid), ("erin", erin.txid)]
    )
    # An err naming no request of ours (a late one, a spoofed one) settles nothing.
    out = answer(alice, dave, Err("invalid peers", ErrorCode.INVALID_PEERS), 1.6)
    assert events(out, "server_error") == []
    assert alice.dropped()["unmatched"] == 1
    assert not alice.connect_settled("carol")


# -- relay probing needs our own allocation ---------------------------------------------------------


def test_a_punch_with_relay_starts_no_relay_probing_while_our_allocation_is_down() -> None:
    alice = registered(with_relay())  # the TURN server never answers: no allocation
    assert not alice.relay_up
    out = v2_punch(alice, "bob", BOB, 1.0, keys=Identity.generate(), relay=BOB_RELAY)
    assert [field(e, "addr") for e in events(out, "punch_started")] == [str(BOB)]
    assert [o for o in out if isinstance(o, SendRaw)] == []
    seen: list[Output] = []
    now = 1.0
    while now < 1.0 + TIMING.timeout:
        now = min(alice.wakeup(), 1.0 + TIMING.timeout)
        seen += alice.tick(now)
    # The direct punch gave up at its deadline, and with it the connect: no relay path is left punching.
    reason = f"punch failed: no response from {BOB} within {TIMING.timeout:g} s"
    assert [field(e, "reason") for e in events(seen, "punch_failed")] == [reason]
    status = alice.peer_status("bob")
    assert status is not None
    assert (status["path"], status["reason"]) == ("none", reason)
    assert alice.connect_settled("bob")
    assert [o.text for o in seen if isinstance(o, Log) and "relay path" in o.text] == []


# -- re-announcing a changed relay ------------------------------------------------------------------


def allocate(alice: AgentCore, turn: RelayingTurnServer, outputs: list[Output], now: float) -> list[Output]:
    """Carry ``outputs``' TURN datagrams to ``turn`` and its answers back, until nothing is left in flight;
    everything else the core put out is returned."""
    rest: list[Output] = []
    while outputs:
        output, outputs = outputs[0], outputs[1:]
        if isinstance(output, SendRaw) and output.to == TURN:
            for answer in turn.handle(output.data, ALICE, now):
                outputs += alice.receive(answer, TURN, now)
        else:
            rest.append(output)
    return rest


def registers(outputs: list[Output]) -> list[Frame]:
    return [f for f in frames(outputs, SERVER) if isinstance(f.message, Register)]


def test_an_ok_for_an_older_register_does_not_stop_announcing_a_relay_that_came_up_since() -> None:
    alice, turn = AgentCore(with_relay()), RelayingTurnServer()
    started = allocate(alice, turn, alice.start(0.0), 0.0)
    [first] = registers(started)
    assert first.message == Register("alice", Candidates(None))  # sent before the allocation
    assert alice.relay_up
    relayed = alice.relay.relayed if alice.relay is not None else None
    assert relayed is not None
    # The ok answering that first register arrives after the relay came up, before the next register.
    assert [kind(e) for e in events(answer(alice, first, Ok(), 0.1))] == ["registered"]
    [second] = registers(alice.tick(0.1))
    assert second.message == Register("alice", Candidates(relayed))
    assert second.txid != first.txid  # another request
    assert [f.txid for f in registers(alice.tick(0.35))] == [second.txid]  # retried until ok
    answer(alice, second, Ok(), 0.4)
    assert registers(alice.tick(0.65)) == []
    assert alice.wakeup() > 0.65 + 1.0  # done: nothing left to announce


def test_a_late_ok_while_registered_does_not_stop_announcing_a_new_relay() -> None:
    alice, turn = AgentCore(with_relay()), RelayingTurnServer()
    turn.deaf = True  # the first allocation attempts get no answer
    [first] = registers(alice.start(0.0))
    assert [f.txid for f in registers(alice.tick(0.25))] == [first.txid]  # repeated: two copies in flight
    answer(alice, first, Ok(), 0.3)
    assert registers(alice.tick(0.5)) == []  # registered, nothing new to announce
    turn.deaf = False
    now = 0.5
    while not alice.relay_up:
        now = alice.wakeup()
        allocate(alice, turn, alice.tick(now), now)
    relayed = alice.relay.relayed if alice.relay is not None else None
    assert relayed is not None
    answer(alice, first, Ok(), now)  # the answer to the repeated register, late
    assert [f.message for f in registers(alice.tick(now))] == [Register("alice", Candidates(relayed))]
