"""The per-peer path state machine, with time passed in: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from client.engine.path import (
    TRANSITIONS,
    Action,
    Answer,
    Changed,
    Ignored,
    Moved,
    Path,
    PathError,
    PathState,
    PathTiming,
    Probe,
    Trigger,
)
from protocol import Endpoint

SERVER_SAYS = Endpoint("198.18.0.12", 40000)
ACTUAL = Endpoint("198.18.0.12", 51234)  # where a symmetric NAT really sends the peer's probes from
ELSEWHERE = Endpoint("198.18.0.13", 40000)
T0 = 100.0


@pytest.fixture
def path() -> Path:
    """A path to bob, punch timeout 5 s, probes every 20 ms."""
    return Path("bob", PathTiming(timeout=5.0, interval=0.020))


def probes(actions: list[Action]) -> list[Endpoint]:
    return [a.to for a in actions if isinstance(a, Probe)]


def test_new_path_is_none_and_idle(path: Path) -> None:
    assert path.state is PathState.NONE
    assert path.wakeup() is None
    assert path.tick(T0) == []


def test_punch_probes_at_once_and_then_every_interval(path: Path) -> None:
    actions = path.punch(SERVER_SAYS, T0)
    assert actions == [Changed(PathState.NONE, PathState.PUNCHING), Probe(SERVER_SAYS)]
    assert path.addr == SERVER_SAYS
    assert path.wakeup() == pytest.approx(T0 + 0.020)
    assert path.tick(T0 + 0.019) == []
    assert path.tick(T0 + 0.020) == [Probe(SERVER_SAYS)]
    assert path.tick(T0 + 0.030) == []
    assert path.tick(T0 + 0.040) == [Probe(SERVER_SAYS)]


def test_a_late_answer_does_not_bring_back_a_forgotten_path(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.reset("disconnected")
    [ignored] = path.on_hello_ack(SERVER_SAYS, T0 + 0.005)
    assert isinstance(ignored, Ignored)
    assert path.state is PathState.NONE
    assert path.on_hello(SERVER_SAYS, T0 + 0.006)[-1] == Changed(PathState.NONE, PathState.DIRECT), "a probe does"


def test_background_probing_does_not_slow_a_punch_under_way(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.keep_probing(1.0, T0 + 0.010)  # another path (the relay) confirmed while we punch
    assert path.tick(T0 + 0.020) == [Probe(SERVER_SAYS)]
    assert path.tick(T0 + 5.0)[-1] == Changed(PathState.PUNCHING, PathState.FAILED)
    assert path.wakeup() == pytest.approx(T0 + 6.0), "then the slow background probing"


def test_deferred_punch_is_punching_but_probes_only_after_the_head_start(path: Path) -> None:
    actions = path.punch(SERVER_SAYS, T0, defer=0.010)
    assert actions == [Changed(PathState.NONE, PathState.PUNCHING)]
    assert path.wakeup() == pytest.approx(T0 + 0.010)
    assert path.tick(T0 + 0.009) == []
    assert path.tick(T0 + 0.010) == [Probe(SERVER_SAYS)]
    assert path.tick(T0 + 0.030) == [Probe(SERVER_SAYS)]
    path.tick(T0 + 5.005)
    assert path.state is PathState.PUNCHING, "the punch time-out counts from the first probe"
    assert path.on_hello_ack(SERVER_SAYS, T0 + 5.006)[-1] == Changed(PathState.PUNCHING, PathState.DIRECT)


def test_probe_count_over_the_whole_timeout(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    sent = 1
    while path.state is PathState.PUNCHING:
        wakeup = path.wakeup()
        assert wakeup is not None
        sent += len(probes(path.tick(wakeup)))
    # one at once, then one every 20 ms until the 5 s deadline
    assert 249 <= sent <= 251


def test_a_stall_sends_one_probe_not_a_burst(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    assert path.tick(T0 + 1.0) == [Probe(SERVER_SAYS)]
    assert path.wakeup() == pytest.approx(T0 + 1.020)


def test_timeout_fails_with_the_exact_reason(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    assert path.tick(T0 + 4.99) == [Probe(SERVER_SAYS)]  # still punching just before the deadline
    assert path.tick(T0 + 5.0) == [Changed(PathState.PUNCHING, PathState.FAILED)]
    assert path.state is PathState.FAILED
    assert path.reason == "punch failed: no response from 198.18.0.12:40000 within 5 s"
    assert path.time_to_direct_ms is None
    assert path.wakeup() is None
    assert path.tick(T0 + 6.0) == []


def test_fractional_timeout_in_reason() -> None:
    path = Path("bob", PathTiming(timeout=2.5, interval=0.1))
    path.punch(SERVER_SAYS, T0)
    path.tick(T0 + 2.5)
    assert path.reason == "punch failed: no response from 198.18.0.12:40000 within 2.5 s"


def test_hello_is_answered_and_confirms(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    actions = path.on_hello(SERVER_SAYS, T0 + 0.030)
    assert actions == [Answer(SERVER_SAYS), Changed(PathState.PUNCHING, PathState.DIRECT)]
    assert path.state is PathState.DIRECT
    assert path.time_to_direct_ms == pytest.approx(30.0)
    assert path.wakeup() is None
    assert path.tick(T0 + 10) == []  # no more probes, no time-out


def test_hello_ack_confirms_without_answer(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    actions = path.on_hello_ack(SERVER_SAYS, T0 + 0.012)
    assert actions == [Changed(PathState.PUNCHING, PathState.DIRECT)]
    assert path.time_to_direct_ms == pytest.approx(12.0)


def test_answer_goes_to_the_actual_source(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    actions = path.on_hello(ACTUAL, T0 + 0.050)
    assert actions[0] == Answer(ACTUAL)
    assert path.addr == ACTUAL
    assert path.state is PathState.DIRECT


def test_hello_while_direct_is_still_answered(path: Path) -> None:
    path.on_hello(SERVER_SAYS, T0)
    assert path.on_hello(SERVER_SAYS, T0 + 1) == [Answer(SERVER_SAYS)]


def test_hello_from_a_new_source_while_direct_moves_the_path(path: Path) -> None:
    path.on_hello(SERVER_SAYS, T0)
    assert path.on_hello(ACTUAL, T0 + 1) == [Answer(ACTUAL), Moved(SERVER_SAYS, ACTUAL)]
    assert path.addr == ACTUAL


def test_hello_before_any_punch_confirms_at_once(path: Path) -> None:
    actions = path.on_hello(ACTUAL, T0)
    assert actions == [Answer(ACTUAL), Changed(PathState.NONE, PathState.DIRECT)]
    assert path.time_to_direct_ms == 0.0


def test_time_to_direct_counts_from_the_local_connect(path: Path) -> None:
    path.punch(SERVER_SAYS, T0 + 0.005, started=T0)
    path.on_hello_ack(SERVER_SAYS, T0 + 0.025)
    assert path.time_to_direct_ms == pytest.approx(25.0)


def test_duplicate_punch_at_same_addr_is_ignored_while_direct(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.on_hello_ack(SERVER_SAYS, T0 + 0.01)
    actions = path.punch(SERVER_SAYS, T0 + 1)
    assert len(actions) == 1
    assert isinstance(actions[0], Ignored)
    assert path.state is PathState.DIRECT


def test_duplicate_punch_at_same_addr_keeps_the_deadline_while_punching(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    assert isinstance(path.punch(SERVER_SAYS, T0 + 3)[0], Ignored)
    path.tick(T0 + 5.0)
    assert path.state is PathState.FAILED


def test_repunch_at_a_new_addr_restarts(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    actions = path.punch(ELSEWHERE, T0 + 3)
    assert actions == [Changed(PathState.PUNCHING, PathState.PUNCHING), Probe(ELSEWHERE)]
    assert path.addr == ELSEWHERE
    assert probes(path.tick(T0 + 3.02)) == [ELSEWHERE]
    path.tick(T0 + 7.99)
    assert path.state is PathState.PUNCHING  # a fresh 5 s from the new punch
    path.tick(T0 + 8.0)
    assert path.reason == "punch failed: no response from 198.18.0.13:40000 within 5 s"


def test_repunch_while_direct_also_probes_the_working_addr(path: Path) -> None:
    path.on_hello(ACTUAL, T0)  # direct at the address the peer's probes really came from
    actions = path.punch(SERVER_SAYS, T0 + 0.01)
    assert probes(actions) == [SERVER_SAYS, ACTUAL]
    assert actions[0] == Changed(PathState.DIRECT, PathState.PUNCHING)
    assert path.on_hello_ack(ACTUAL, T0 + 0.02) == [Changed(PathState.PUNCHING, PathState.DIRECT)]
    assert path.addr == ACTUAL


def test_punch_after_failure_retries(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.tick(T0 + 5)
    actions = path.punch(SERVER_SAYS, T0 + 10)
    assert actions == [Changed(PathState.FAILED, PathState.PUNCHING), Probe(SERVER_SAYS)]
    assert path.reason is None


def test_late_answer_after_failure_still_confirms(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.tick(T0 + 5)
    assert path.on_hello_ack(SERVER_SAYS, T0 + 6) == [Changed(PathState.FAILED, PathState.DIRECT)]
    assert path.reason is None
    assert path.time_to_direct_ms == pytest.approx(6000.0)


def test_reset_forgets_and_can_carry_a_reason(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    assert path.reset("server: invalid peers") == [Changed(PathState.PUNCHING, PathState.NONE)]
    assert path.state is PathState.NONE
    assert path.reason == "server: invalid peers"
    assert path.wakeup() is None


def test_a_direct_path_silent_past_the_limit_is_lost_to_failed_and_probed_in_the_background(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.on_hello_ack(ACTUAL, T0 + 0.02)
    path.hear(T0 + 10)
    assert path.silent_until(30.0) == pytest.approx(T0 + 40)
    assert path.check_alive(T0 + 39.9, 30.0, "direct") == []
    assert path.check_alive(T0 + 40, 30.0, "direct") == [Changed(PathState.DIRECT, PathState.FAILED)]
    assert path.state is PathState.FAILED
    assert path.reason == f"direct lost: no response from {ACTUAL} within 30 s"
    assert path.silent_until(30.0) is None  # lost once, not again
    # While another path carries the pair, the lost address is probed every retry interval ...
    path.keep_probing(1.0, T0 + 40)
    assert path.wakeup() == pytest.approx(T0 + 41)
    assert path.tick(T0 + 40.5) == []
    assert path.tick(T0 + 41) == [Probe(ACTUAL)]
    assert path.tick(T0 + 42) == [Probe(ACTUAL)]
    # ... and an answer brings it back.
    assert path.on_hello_ack(ACTUAL, T0 + 42.01) == [Changed(PathState.FAILED, PathState.DIRECT)]
    assert path.reason is None


def test_lose_stops_a_punch_and_only_notes_the_reason_on_a_path_not_up(path: Path) -> None:
    assert path.lose("relay lost: turn down", T0) == []
    assert (path.state, path.reason) == (PathState.NONE, "relay lost: turn down")
    path.punch(SERVER_SAYS, T0)
    assert path.lose("relay lost: turn down", T0 + 1) == [Changed(PathState.PUNCHING, PathState.FAILED)]
    assert (path.state, path.reason) == (PathState.FAILED, "relay lost: turn down")
    assert path.tick(T0 + 1.02) == []  # nothing left to probe


def test_the_table_is_complete_for_its_triggers() -> None:
    for state in PathState:
        assert TRANSITIONS[state, Trigger.PUNCH] is PathState.PUNCHING
        assert TRANSITIONS[state, Trigger.CONFIRM] is PathState.DIRECT
        assert TRANSITIONS[state, Trigger.RESET] is PathState.NONE
    timeouts = {state for (state, trigger) in TRANSITIONS if trigger is Trigger.TIMEOUT}
    assert timeouts == {PathState.PUNCHING}
    assert {(state, TRANSITIONS[state, trigger]) for (state, trigger) in TRANSITIONS if trigger is Trigger.LOST} == {
        (PathState.DIRECT, PathState.FAILED)
    }


def test_a_trigger_the_table_forbids_is_a_bug(path: Path) -> None:
    with pytest.raises(PathError, match="timeout not allowed in state none"):
        path._fire(Trigger.TIMEOUT)


# -- the active check (a direct path in use) ------------------------------------------------------------


def check(path: Path, now: float) -> list[Action]:
    """The active check as the agent runs it: quiet 0.5 s, deadline 1 s, a probe every 50 ms."""
    return path.check(now, 0.5, 1.0, 0.05, "direct")


def test_a_path_confirmed_by_the_peers_probe_alone_is_not_proven_until_ours_is_answered(path: Path) -> None:
    path.on_hello(ACTUAL, T0)
    assert path.state is PathState.DIRECT
    assert not path.proven
    assert path.check_wakeup(0.5) == T0  # a check at once
    assert probes(check(path, T0)) == [ACTUAL]
    path.on_hello_ack(ACTUAL, T0 + 0.001)
    assert path.proven
    assert path.check_wakeup(0.5) is None  # idle: nothing to check


def test_traffic_unanswered_for_quiet_seconds_calls_for_probes_then_loses_the_path(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.on_hello_ack(SERVER_SAYS, T0 + 0.01)
    assert path.note_sending(T0 + 0.1) is True  # the first traffic since the answer: a check is scheduled
    assert path.note_sending(T0 + 0.2) is False  # ... once
    assert path.check_wakeup(0.5) == pytest.approx(T0 + 0.51)
    assert check(path, T0 + 0.3) == []
    sent = [p for i in range(20) for p in probes(check(path, T0 + 0.51 + i * 0.05))]
    assert sent == [SERVER_SAYS] * 20
    [changed] = check(path, T0 + 1.52)
    assert changed == Changed(PathState.DIRECT, PathState.FAILED)
    assert path.reason == f"direct lost: no response from {SERVER_SAYS} within 1 s while sending"


def test_an_answer_during_the_check_ends_it(path: Path) -> None:
    path.punch(SERVER_SAYS, T0)
    path.on_hello_ack(SERVER_SAYS, T0)
    path.note_sending(T0 + 0.1)
    assert probes(check(path, T0 + 0.5)) == [SERVER_SAYS]
    path.prove(T0 + 0.9)  # an ack of our data, say
    assert check(path, T0 + 1.6) == []
    assert path.state is PathState.DIRECT


def test_a_starved_agent_loses_the_path_only_once_its_probes_are_out(path: Path) -> None:
    """Ticks late (a loaded host): the deadline alone does not lose the path, the answers may be waiting
    unread; it is lost once the probes due were sent too, one per tick, with no burst of catch-up probes."""
    path.punch(SERVER_SAYS, T0)
    path.on_hello_ack(SERVER_SAYS, T0)
    path.note_sending(T0 + 0.1)
    assert probes(check(path, T0 + 0.5)) == [SERVER_SAYS]
    assert probes(check(path, T0 + 2.0)) == [SERVER_SAYS]  # 1.5 s late: a probe, not lost yet
    assert path.check_wakeup(0.5) == pytest.approx(T0 + 2.05)  # the next probe, not the past deadline
    assert check(path, T0 + 2.01) == []
    for i in range(1, 19):
        assert probes(check(path, T0 + 2.0 + i * 0.05)) == [SERVER_SAYS]
    assert path.state is PathState.DIRECT
    [changed] = check(path, T0 + 2.0 + 19 * 0.05)
    assert changed == Changed(PathState.DIRECT, PathState.FAILED)
