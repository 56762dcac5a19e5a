"""The relay's own counters: coturn carries application data for a relayed pair and none for a direct one.

coturn (run with -v) logs each session's "peer usage" (bytes relayed to and from peers) when the
allocation closes (scenarios/turn_usage.py). The test restarts both hosts first, so the sessions it reads
cover only its own traffic.

Probes and keepalives may cross the relay of a direct pair (the relay stays warm for failover: a keepalive
each way every period, each counted by both sessions, plus each connect's probe budget); messages must not,
unless the pair is relayed.
"""

from __future__ import annotations

import time

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import PEER_OF, connect_expecting, flood, keepalive_s
from scenarios.turn_usage import restart_hosts, stop_hosts

MESSAGES, SIZE = 200, 500
PAYLOAD = MESSAGES * SIZE  # bytes of message text each way
CONTROL_DATAGRAM = 120
"""Bytes: more than any sealed probe, answer or keepalive on the relay (73-79 measured)."""
PROBE_BUDGET = 512
"""Bytes of unanswered probes per path per connect (the agents' NATLAB_PROBE_BUDGET default)."""
CONNECTS = 5
"""A connect and its repeats until the peer is heard direct (client.engine.server_link.REASKS + 1)."""


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
