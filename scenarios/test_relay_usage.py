"""The relay's own counters: coturn carries application data for a relayed pair and none for a direct one.

coturn (run with -v) logs each session's "peer usage" (bytes relayed to and from peers) when the
allocation closes; the agents release their allocations when they stop, so stopping both hosts makes
coturn report. The test restarts both hosts first, so the sessions it reads cover only its own traffic (in
a lab shared with other scenarios, an older allocation would also count their traffic and its keepalives).

Probes and keepalives may cross the relay of a direct pair (the relay stays warm for failover: a keepalive
each way every period, each counted by both sessions, plus each connect's probe budget); messages must not,
unless the pair is relayed.
"""

from __future__ import annotations

import re
import time

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import PEER_OF, connect_expecting, flood, keepalive_s

PEER_USAGE = re.compile(r"session (\d+): peer usage: .*?rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)")
MESSAGES, SIZE = 200, 500
PAYLOAD = MESSAGES * SIZE  # bytes of message text each way
CONTROL_DATAGRAM = 120
"""Bytes: more than any sealed probe, answer or keepalive on the relay (73-79 measured)."""
PROBE_BUDGET = 512
"""Bytes of unanswered probes per path per connect (the agents' NATLAB_PROBE_BUDGET default)."""
CONNECTS = 5
"""A connect and its repeats until the peer is heard direct (client.engine.server_link.REASKS + 1)."""


def peer_usage(lab: Lab) -> dict[str, int]:
    """Relayed bytes per closed TURN session, from coturn's log (received from peers + sent to peers)."""
    log = lab.container("turn").logs().decode("utf-8", "replace")
    return {m[1]: int(m[3]) + int(m[5]) for m in PEER_USAGE.finditer(log)}


def control_allowance(seconds: float, keepalive: float) -> int:
    """Relayed bytes a direct pair may show in ``seconds`` without any message: each keepalive period a
    keepalive each way (counted by the sender's and the receiver's session), and the probes of every connect
    (sent by one session, received by the other, and answered)."""
    periods = int(seconds / keepalive) + 2
    keepalives = periods * 2 * 2 * CONTROL_DATAGRAM
    probes = CONNECTS * 2 * 2 * 2 * PROBE_BUDGET
    return keepalives + probes


def test_relay_carries_messages_only_for_a_relayed_pair(lab: Lab, pair: Pair) -> None:
    closed_before = restart_hosts(lab)  # fresh allocations: coturn's counts start with this test
    began = time.monotonic()
    connect_expecting(lab, "alice", pair.expected_path)
    for sender in PEER_OF:
        result = flood(lab, sender, MESSAGES, SIZE)
        assert result["undelivered"] == 0, result
    seconds = time.monotonic() - began
    usage = stop_hosts(lab, closed_before)
    for host in PEER_OF:
        lab.start(host)
    relayed = sum(usage.values())
    if pair.expected_path == "direct":
        allowed = control_allowance(seconds, keepalive_s(lab, "alice"))
        assert allowed < PAYLOAD // 2, f"the test ran too long ({seconds:.0f} s) to tell messages from keepalives"
        assert relayed < allowed, f"a direct pair relayed {relayed} bytes in {seconds:.0f} s: {usage}"
    else:
        assert relayed >= 2 * PAYLOAD, f"a relayed pair relayed only {relayed} bytes: {usage}"


def stop_hosts(lab: Lab, closed_before: set[str]) -> dict[str, int]:
    """Stop both hosts (each agent releases its allocation) and return the two sessions coturn reports."""
    for host in PEER_OF:
        lab.stop(host)
    usage = lab.wait_for(
        lambda: u if len((u := peer_usage(lab)).keys() - closed_before) >= 2 else None,
        15,
        "coturn to report both hosts' sessions",
    )
    return {session: count for session, count in usage.items() if session not in closed_before}


def restart_hosts(lab: Lab) -> set[str]:
    """Restart both hosts, closing their allocations; the sessions closed so far (to ignore later)."""
    stop_hosts(lab, set(peer_usage(lab)))
    for host in PEER_OF:
        lab.start(host)
    return set(peer_usage(lab))
