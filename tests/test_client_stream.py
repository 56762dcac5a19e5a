"""`client flood --rate`: a paced stream between real agents over loopback, which keeps its pace, waits out
a lost path instead of failing, and gives up (with the reason) only after the delivery deadline. The fault
scenarios (scenarios/test_faults.py) run it across router restarts and outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.test_client_agent import AgentProcess, server, start_agent, wait_for, workdir

__all__ = ["server", "start_agent", "workdir"]  # fixtures shared with test_client_agent

pytestmark = pytest.mark.timeout(120)

Completed = subprocess.CompletedProcess[str]

KEEPALIVE = 0.3
"""Seconds: a silent peer's path is lost after three of them, so a test sees it lost within a second."""


def texts(count: int, size: int) -> list[str]:
    return [f"{i:06d} ".ljust(size, "x") for i in range(1, count + 1)]


@pytest.fixture
def quick_pair(
    monkeypatch: pytest.MonkeyPatch, start_agent: Callable[[str], AgentProcess]
) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    """Alice and bob with short keepalives, connected directly; bob is let go on if a test stopped him."""
    monkeypatch.setenv("NATLAB_KEEPALIVE", str(KEEPALIVE))
    monkeypatch.setenv("NATLAB_DELIVERY_DEADLINE", "8")
    alice, bob = start_agent("alice"), start_agent("bob")
    result = alice.cli("connect", "bob", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "direct"
    yield alice, bob
    os.kill(bob.proc.pid, signal.SIGCONT)


def stream(pool: ThreadPoolExecutor, alice: AgentProcess, count: int, rate: float) -> Future[Completed]:
    """`client flood bob COUNT --rate RATE` in alice, in the background."""
    return pool.submit(alice.cli, "flood", "bob", str(count), "--size", "40", "--rate", str(rate))


def received(bob: AgentProcess) -> list[str]:
    return [e["text"] for e in bob.named("message_received")]


def test_a_paced_flood_keeps_its_pace_and_delivers_every_message_once_in_order(
    quick_pair: tuple[AgentProcess, AgentProcess],
) -> None:
    alice, bob = quick_pair
    result = alice.cli("flood", "bob", "30", "--size", "40", "--rate", "60")
    assert result.returncode == 0, result.stderr
    flood = json.loads(result.stdout)
    assert (flood["sent"], flood["delivered"], flood["undelivered"], flood["no_path_s"]) == (30, 30, 0, 0)
    assert flood["seconds"] >= 29 / 60, "message i goes i/R seconds after the start"
    got = wait_for(lambda: len(r := bob.named("message_received")) == 30 and r, "bob to receive the stream")
    assert [e["text"] for e in got] == texts(30, 40)
    assert got[-1]["ts"] - got[0]["ts"] >= 0.4, "the receiver sees them spread out, not in one burst"


def test_a_paced_flood_waits_out_a_lost_path_and_finishes_once_it_is_back(
    quick_pair: tuple[AgentProcess, AgentProcess],
) -> None:
    alice, bob = quick_pair
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = stream(pool, alice, 60, 20)  # 3 s
        wait_for(lambda: len(received(bob)) >= 3, "the stream to start")
        os.kill(bob.proc.pid, signal.SIGSTOP)  # bob falls silent: alice's path is lost after 3 keepalives
        lost = wait_for(lambda: (p := alice.peer("bob")) and p["path"] == "none" and p, "alice to lose the path")
        assert lost["reason"].startswith("direct lost: no response from "), lost
        # bob stays stopped a few of the stream's periods more: once he runs he answers alice's last probes
        # (queued in his socket), which brings the path back within milliseconds.
        gone = time.monotonic()
        wait_for(lambda: time.monotonic() - gone > 0.3 and alice.peer("bob")["path"] == "none", "the stream to wait")  # type: ignore[index]
        assert not running.done(), "the stream waits for a path instead of failing"
        os.kill(bob.proc.pid, signal.SIGCONT)
        again = alice.cli("connect", "bob", "--json")  # without a relay the agent does not reconnect by itself
        assert again.returncode == 0, again.stderr
        result = running.result()
    assert result.returncode == 0, result.stderr
    flood = json.loads(result.stdout)
    assert (flood["sent"], flood["delivered"], flood["undelivered"]) == (60, 60, 0)
    assert flood["no_path_s"] > 0
    wait_for(lambda: len(received(bob)) == 60, "bob to receive the whole stream")
    assert received(bob) == texts(60, 40), "nothing lost, nothing doubled, in order"


def test_a_paced_flood_gives_up_with_the_reason_when_the_path_stays_lost(
    quick_pair: tuple[AgentProcess, AgentProcess],
) -> None:
    alice, bob = quick_pair
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = stream(pool, alice, 200, 20)  # 10 s: longer than the wait for a path
        wait_for(lambda: len(received(bob)) >= 3, "the stream to start")
        os.kill(bob.proc.pid, signal.SIGSTOP)
        result = running.result()
    assert result.returncode == 1
    assert result.stderr.startswith("client: no path to bob: direct lost: no response from "), result.stderr
