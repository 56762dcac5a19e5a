"""Faults real paths have, each under a live stream both ways, each checking issue 4's guarantee (every
message crosses exactly once, in order) and the path and reason the agents report.

The streams are `client flood N --rate R` on both hosts at once (alice -> bob and bob -> alice): a message
every 1/R s, and while there is no path the stream waits for it to come back instead of failing, as a live
application would. Each fault is injected once both streams flow (a test fails if one had ended before),
and the outages check that each stream stalled (a pass means the fault met them). The guarantee is checked
on the receivers' event logs: their `message_received` texts since the stream began are exactly the
stream's texts, in order (nothing lost, nothing doubled), and each sender's stream ends with every message
acknowledged (`undelivered` 0).

One lab (cone-cone, keepalives every KEEPALIVE s, so a silent path is lost after 3 x KEEPALIVE) serves
every fault but the mapping expiry, which needs routers that forget idle mappings sooner than the agents'
keepalives come, and so a lab of its own (started first, and gone before the shared one starts):

- router restart (`docker restart router-a`, about 1.5 s): conntrack and mappings go with the router's
  network namespace. The pair must resume with every message delivered once, and whatever path changes
  happened (on a loaded host the restart can outlast the path's liveness) must have their reasons.
- router reboot (router-a stopped for 3 x KEEPALIVE + 2 s, past the path's liveness, then started): the
  loss is reported with its reason (`direct lost: no response from ... within 6 s`, or `within 1 s while
  sending` when the active check under the streams notices first), both agents connect again
  by themselves (a new punch) once the router is back, and the streams resume.
- signal server restart while the pair is direct: no path event on either side, the streams go on, and
  both hosts are in the new server's table within one keepalive period of its start.
- mapping expiry: see :func:`test_a_mapping_that_expires_between_keepalives_is_detected_and_recovered`.
- a 10 s total outage of router-a's WAN (`nat impair both loss=100%`, then `nat impair clear`): lost with
  the reason, connected again after the outage, streams resumed.
- a path turning 30 % lossy mid-stream (`nat impair both loss=30%` on router-a, then clear): the pair stays
  direct, retransmissions repair the losses.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any

import pytest

from client.engine.paths import CHECK_DEADLINE
from scenarios.harness import Lab, LabTimeout, start_lab
from scenarios.steps import (
    PEER_OF,
    connect_expecting,
    events,
    flood,
    flood_texts,
    keepalive_s,
    peer_status,
    received_since,
)

KEEPALIVE = 2
"""The shared lab's keepalive period (s): a silent path is lost after three, 6 s."""
RATE = 40
"""Messages a second in each stream ..."""
STREAM_S = 20
"""... for this many seconds (more while there is no path): long enough to meet a fault on a loaded host."""
SIZE = 100
"""Characters per message."""
BOOT = 120
"""Seconds a restarted router may take to be healthy again (seconds when idle; far more on a loaded host)."""
OUTAGE = 10
"""Seconds router-a's WAN is cut off in the outage fault."""
PATH_EVENTS = ("path_changed", "punch_failed", "punch_started", "direct_confirmed", "relay_confirmed")
"""The events that say something happened to a path."""


@pytest.fixture(scope="module")
def faults_lab(docker_ready: None) -> Iterator[Lab]:
    """One cone-cone lab for the faults that need nothing else of it."""
    env = {"NAT_A": "cone", "NAT_B": "cone", "NATLAB_KEEPALIVE": str(KEEPALIVE)}
    with start_lab(name="faults", env=env) as lab:
        yield lab


# -- helpers ------------------------------------------------------------------------------------------


def event_log(lab: Lab, host: str) -> list[dict[str, Any]]:
    """Every event in `host`'s log."""
    return [json.loads(line) for line in lab.exec_ok(host, "client", "events").splitlines() if line]


def marks(lab: Lab) -> dict[str, int]:
    """How many events each host has logged so far (what :func:`path_events` counts from)."""
    return {host: len(event_log(lab, host)) for host in PEER_OF}


def path_events(lab: Lab, host: str, since: dict[str, int]) -> list[dict[str, Any]]:
    """`host`'s path events after its mark in `since`."""
    return [e for e in event_log(lab, host)[since[host] :] if e["event"] in PATH_EVENTS]


def path_of(lab: Lab, host: str, path: str) -> dict[str, Any] | None:
    """`host`'s view of its peer when the path is `path`, else None."""
    view = peer_status(lab, host)
    return view if view is not None and view["path"] == path else None


def both_direct(lab: Lab, timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Wait until alice and bob both use the direct path to each other (connecting alice if need be)."""
    connect_expecting(lab, "alice", "direct", timeout)
    return {host: lab.wait_for(partial(path_of, lab, host, "direct"), timeout, f"{host} direct") for host in PEER_OF}


def wait_seconds(lab: Lab, seconds: float, what: str) -> None:
    """Let `seconds` pass (a fault that lasts that long), as a bounded wait rather than a bare sleep."""
    until = time.monotonic() + seconds
    lab.wait_for(lambda: True if time.monotonic() >= until else None, seconds + 5, what)


def guarantee_broken(got: list[str], sent: list[str]) -> str:
    """What differs between the texts received and those sent: lost, doubled, out of order."""
    counts = Counter(got)
    lost = [t[:6] for t in sent if t not in counts]
    doubled = [t[:6] for t, n in counts.items() if n > 1]
    order = "in order" if got == sorted(got) else "out of order"
    return f"{len(got)} received of {len(sent)} sent; lost {lost[:10]}; doubled {doubled[:10]}; {order}"


class Streams:
    """A paced stream each way (`client flood N --rate R` in alice and in bob at once), in the background.

    ``with Streams(lab, seconds) as streams:`` starts them; :meth:`flowing` waits until both have delivered
    something, :meth:`finish` waits for their end and asserts the guarantee. Leaving the block early (a
    failed assertion) does not wait for them.
    """

    def __init__(self, lab: Lab, seconds: float) -> None:
        self.lab = lab
        self.count = int(RATE * seconds)
        self.before = {host: len(received_since(lab, host, 0)) for host in PEER_OF}
        self.counted = {host: received_count(lab, host) for host in PEER_OF}
        self._pool = ThreadPoolExecutor(max_workers=len(PEER_OF), thread_name_prefix="stream")
        self.runs: dict[str, Future[dict[str, Any]]] = {}

    def __enter__(self) -> Streams:
        for sender in PEER_OF:
            self.runs[sender] = self._pool.submit(flood, self.lab, sender, self.count, SIZE, RATE)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._pool.shutdown(wait=kind is None, cancel_futures=True)

    def received(self, receiver: str) -> list[str]:
        return received_since(self.lab, receiver, self.before[receiver])

    def stall_s(self, receiver: str) -> float:
        """The longest gap between two messages of the stream `receiver` got: what the fault cost it."""
        got = events(self.lab, receiver, "message_received")[self.before[receiver] :]
        return round(max((b["ts"] - a["ts"] for a, b in itertools.pairwise(got)), default=0.0), 1)

    def flowing(self) -> None:
        """Wait until each stream has delivered a message (the status's counter, which costs less to read than
        the whole event log), and assert both still run: the fault that comes next hits them mid-way. A host
        so slow that a stream ended first fails here rather than pass without the fault having met it."""

        def both() -> bool | None:
            return all(received_count(self.lab, h) > n for h, n in self.counted.items()) or None

        self.lab.wait_for(both, 60, "both streams to flow")
        done = [sender for sender, run in self.runs.items() if run.done()]
        assert not done, f"the streams from {done} ended before the fault came: make them longer"

    def finish(self, stalled: float = 0.0) -> dict[str, dict[str, Any]]:
        """Wait for both streams; assert every message was acknowledged and received exactly once, in order,
        and that each stalled at least `stalled` s (the evidence that the fault met it)."""
        results = {sender: run.result() for sender, run in self.runs.items()}
        sent = flood_texts(self.count, SIZE)
        for sender, result in results.items():
            receiver = PEER_OF[sender]
            assert (result["delivered"], result["undelivered"]) == (self.count, 0), f"{sender}: {result}"
            got = self.received(receiver)
            assert got == sent, f"{sender} -> {receiver}: {guarantee_broken(got, sent)}"
            result["stall_s"] = self.stall_s(receiver)
            assert result["stall_s"] >= stalled, f"{sender} -> {receiver} never stalled: the fault missed it"
        return results

    @staticmethod
    def summary(results: dict[str, dict[str, Any]]) -> str:
        """One line per stream: messages, longest stall, time waited without a path."""
        return "; ".join(
            f"{s}->{PEER_OF[s]} {r['delivered']} exactly once, stall {r['stall_s']} s, no path {r['no_path_s']} s"
            for s, r in results.items()
        )


def received_count(lab: Lab, host: str) -> int:
    """How many messages `host` has received from its peer (its status's counter)."""
    return int((peer_status(lab, host) or {}).get("received", 0))


def started_at(lab: Lab, service: str) -> str:
    """When the service's container was last started (Docker's own record)."""
    container = lab.container(service)
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def impair(lab: Lab, *spec: str) -> None:
    """`nat impair SPEC...` in router-a (slices A/B of issue 11): impair its links at run time."""
    lab.exec_ok("router-a", "nat", "impair", *spec)


def lost_and_back(lab: Lab, host: str, since: dict[str, int]) -> list[dict[str, Any]]:
    """Assert `host` reported its direct path lost, with the reason, and confirmed it again after (a new
    punch); returns its path events. Under the streams the active check (its probes unanswered while sending)
    usually notices first; the silence of three keepalive periods is the other way."""
    seen = path_events(lab, host, since)
    lost = [e for e in seen if e["event"] == "punch_failed" and e["reason"].startswith("direct lost: ")]
    assert lost, f"{host} never reported the direct path lost: {seen}"
    limit = 3 * keepalive_s(lab, host)
    # "...; relayed, still probing direct" follows when the relay path outlived the direct one a moment.
    reasons = (f"within {limit:g} s", f"within {CHECK_DEADLINE:g} s while sending")
    reason = f"direct lost: no response from {lost[0]['addr']} "
    assert any(lost[0]["reason"].startswith(reason + why) for why in reasons), lost[0]
    changed = [e for e in seen if e["event"] == "path_changed" and e["old"] == "direct"]
    assert changed, f"{host} reported no path change: {seen}"
    assert all(e["reason"] for e in changed), f"{host}: a path change without its reason: {seen}"
    after = seen[seen.index(lost[0]) :]
    assert any(e["event"] == "direct_confirmed" for e in after), f"{host} never confirmed the path again: {seen}"
    return seen


# -- the faults ---------------------------------------------------------------------------------------

MAPPING_TIMEOUT = 2
"""The expiry lab's routers forget an idle UDP mapping after this many seconds ..."""
SLOW_KEEPALIVE = 5
"""... and its agents send keepalives this often: slower, and more than twice as slow, so that whatever the
phase between the two agents' keepalives, one side's always reach the other's NAT after it forgot."""


@pytest.fixture
def expiry_lab(docker_ready: None) -> Iterator[Lab]:
    """Cone routers that forget idle mappings after MAPPING_TIMEOUT s; agents that keepalive every
    SLOW_KEEPALIVE s. Function-scoped and first in the file: it is gone before the shared lab starts."""
    timeout = str(MAPPING_TIMEOUT)
    env = {"NAT_A": "cone", "NAT_B": "cone", "NAT_A_UDP_TIMEOUT": timeout, "NAT_B_UDP_TIMEOUT": timeout}
    with start_lab(name="expiry", env=env | {"NATLAB_KEEPALIVE": str(SLOW_KEEPALIVE)}) as lab:
        yield lab


def connect_both(lab: Lab) -> None:
    """Both hosts connect at once, until both are direct. Behind NATs that forget the server's mapping
    within MAPPING_TIMEOUT s, the server's punch to the host that did not ask is lost more often than not;
    a host's own connect always gets its punch (the answer comes through the mapping the connect made)."""
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda host: lab.exec(host, "client", "connect", PEER_OF[host]), PEER_OF))
        try:
            both_direct(lab, timeout=20)
            return
        except LabTimeout:
            continue
    both_direct(lab, timeout=20)


def quiet_since(lab: Lab, seconds: float) -> bool | None:
    """True when both hosts are direct and neither logged a path event in the last `seconds`."""
    if not all(path_of(lab, host, "direct") for host in PEER_OF):
        return None
    last = max((e["ts"] for host in PEER_OF for e in event_log(lab, host) if e["event"] in PATH_EVENTS), default=0)
    return True if time.time() - last >= seconds else None


def test_a_mapping_that_expires_between_keepalives_is_detected_and_recovered(expiry_lab: Lab) -> None:
    """Both routers forget a mapping after MAPPING_TIMEOUT s, the agents send every SLOW_KEEPALIVE s: the
    agent whose NAT closed before its peer's keepalive came stops hearing the peer, reports the direct path
    lost with the reason, halves its keepalive period to that peer and connects again by itself; once the
    period is short enough the path stays up, and messages sent after an idle spell cross exactly once."""
    lab = expiry_lab
    since = marks(lab)
    connect_both(lab)

    def detected() -> list[tuple[str, dict[str, Any]]] | None:
        found = [
            (host, e)
            for host in PEER_OF
            for e in path_events(lab, host, since)
            if e["event"] == "punch_failed" and e["reason"].startswith("direct lost: ")
        ]
        return found or None

    found = lab.wait_for(detected, 3 * SLOW_KEEPALIVE + 30, "one side to lose the direct path to silence")
    host, lost = found[0]
    assert lost["reason"].startswith(f"direct lost: no response from {lost['addr']} within {3 * SLOW_KEEPALIVE} s")
    changed = [e for e in path_events(lab, host, since) if e["event"] == "path_changed" and e["old"] == "direct"]
    assert changed, f"{host} reported no path change"
    assert all(e["reason"] for e in changed), changed
    # Recovered: direct both ways again, and quiet for three keepalive periods (a second halving may come
    # first when the phases make half the period still too long).
    lab.wait_for(lambda: quiet_since(lab, 3 * SLOW_KEEPALIVE + 1), 150, "the pair to stay direct")
    shortened = {h: (peer_status(lab, h) or {}).get("keepalive_s") for h in PEER_OF}
    period = shortened[host]
    assert period is not None, shortened
    assert period <= SLOW_KEEPALIVE / 2, shortened
    # Idle for longer than the routers keep a mapping, then a stream each way: nothing lost or doubled.
    wait_seconds(lab, MAPPING_TIMEOUT + 1, "an idle spell longer than the mapping timeout")
    with Streams(lab, seconds=2) as streams:
        results = streams.finish()
    print(
        f"\nfaults: mapping expiry: {host} lost the path first; keepalive_s now {shortened}; {Streams.summary(results)}"
    )


def test_a_router_restart_under_a_stream_loses_nothing(faults_lab: Lab) -> None:
    lab = faults_lab
    before = both_direct(lab)
    since = marks(lab)
    booted = started_at(lab, "router-a")
    with Streams(lab, seconds=STREAM_S) as streams:
        streams.flowing()
        lab.container("router-a").restart(timeout=2)  # docker restart: a new network namespace, empty conntrack
        assert started_at(lab, "router-a") != booted
        lab.wait_for(lambda: True if lab.health("router-a") == "healthy" else None, BOOT, "router-a healthy again")
        results = streams.finish(stalled=0.5)
    after = both_direct(lab)
    # The restarted cone NAT maps alice's port to the same external port again: bob still reaches her there.
    assert after["bob"]["addr"] == before["bob"]["addr"], (before, after)
    changes = {}
    for host in PEER_OF:
        changed = changes[host] = [e for e in path_events(lab, host, since) if e["event"] == "path_changed"]
        assert all(e["reason"] for e in changed), f"{host}: a path change without its reason: {changed}"
    counts = {host: len(changed) for host, changed in changes.items()}
    print(f"\nfaults: router restart: path changes {counts}; {Streams.summary(results)}")


def test_a_router_reboot_longer_than_the_paths_liveness_is_reported_and_recovered(faults_lab: Lab) -> None:
    lab = faults_lab
    both_direct(lab)
    since = marks(lab)
    limit = 3 * keepalive_s(lab, "alice")
    with Streams(lab, seconds=STREAM_S) as streams:
        streams.flowing()
        lab.stop("router-a")
        try:
            # Down past the path's liveness (the agents notice by themselves; their events say so below).
            wait_seconds(lab, limit + 2, "router-a to stay down past the path's liveness")
        finally:
            lab.start("router-a", timeout=BOOT)
        up = time.monotonic()
        both_direct(lab, timeout=60)
        back = time.monotonic() - up
        results = streams.finish(stalled=limit)
    for host in PEER_OF:
        lost_and_back(lab, host, since)
    print(f"\nfaults: router reboot: both direct {back:.1f} s after the router was healthy; {Streams.summary(results)}")


def test_a_signal_server_restart_does_not_disturb_a_direct_pair(faults_lab: Lab) -> None:
    lab = faults_lab
    before = both_direct(lab)
    since = marks(lab)
    old = lab.json("server", "cat", "/run/natlab/server.json")["started"]

    def both_back() -> dict[str, Any] | None:
        state = lab.json("server", "cat", "/run/natlab/server.json")
        peers = {p["id"] for p in state["peers"]}
        return state if state["started"] != old and peers >= set(PEER_OF) else None

    with Streams(lab, seconds=STREAM_S) as streams:
        streams.flowing()
        lab.container("server").restart(timeout=2)
        state = lab.wait_for(both_back, 60, "alice and bob in the restarted server's table")
        results = streams.finish()
    started = datetime.fromisoformat(state["started"])
    took = {}
    for peer in state["peers"]:
        # The state file's times are whole seconds: one more second of slack for the rounding.
        took[peer["id"]] = (datetime.fromisoformat(peer["registered_at"]) - started).total_seconds()
        assert took[peer["id"]] <= KEEPALIVE + 1, f"{peer['id']} registered {took} s after the server started"
    for host in PEER_OF:
        assert path_events(lab, host, since) == [], f"{host}'s path was disturbed"
        view = path_of(lab, host, "direct")
        assert view is not None, peer_status(lab, host)
        assert view["addr"] == before[host]["addr"], (before[host], view)
    print(f"\nfaults: signal server restart: registered again after {took} s; {Streams.summary(results)}")


def test_a_10_s_outage_of_router_as_wan_is_reported_and_recovered(faults_lab: Lab) -> None:
    lab = faults_lab
    both_direct(lab)
    since = marks(lab)
    assert 3 * keepalive_s(lab, "alice") < OUTAGE, "an outage the agents cannot notice tests nothing"
    with Streams(lab, seconds=STREAM_S) as streams:
        streams.flowing()
        impair(lab, "both", "loss=100%")
        try:
            wait_seconds(lab, OUTAGE, "the outage")  # noticed within 1.5 s (active check) or 3 keepalives (6 s)
        finally:
            impair(lab, "clear")
        cleared = time.monotonic()
        both_direct(lab, timeout=60)
        back = time.monotonic() - cleared
        results = streams.finish(stalled=OUTAGE / 2)
    for host in PEER_OF:
        lost_and_back(lab, host, since)
    print(f"\nfaults: {OUTAGE} s WAN outage: both direct {back:.1f} s after it ended; {Streams.summary(results)}")


def test_a_path_that_turns_30_percent_lossy_mid_stream_stays_direct_and_loses_nothing(faults_lab: Lab) -> None:
    lab = faults_lab
    both_direct(lab)
    since = marks(lab)
    retransmitted = {host: (peer_status(lab, host) or {})["retransmitted"] for host in PEER_OF}
    with Streams(lab, seconds=STREAM_S) as streams:
        streams.flowing()
        impair(lab, "both", "loss=30%")
        try:
            wait_seconds(lab, 5, "5 s of the stream through a 30 % lossy path")
        finally:
            impair(lab, "clear")
        results = streams.finish()
    for host in PEER_OF:
        assert path_events(lab, host, since) == [], f"{host}'s path changed under loss"
        view = path_of(lab, host, "direct")
        assert view is not None, peer_status(lab, host)
        assert view["retransmitted"] > retransmitted[host], "the loss was real: messages had to be sent again"
        retransmitted[host] = view["retransmitted"] - retransmitted[host]
    print(f"\nfaults: 30 % loss: retransmitted {retransmitted}; {Streams.summary(results)}")
