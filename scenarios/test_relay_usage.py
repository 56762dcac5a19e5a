"""The relay's own counters: coturn carries application data for a relayed pair and none for a direct one.

coturn (run with -v) logs each session's "peer usage" (bytes relayed to and from peers) when the
allocation closes; the agents release their allocations when they stop, so stopping both hosts makes
coturn report. Probes and keepalives may cross the relay (a few hundred bytes); messages must not, unless
the pair is relayed.
"""

from __future__ import annotations

import re

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import PEER_OF, connect_expecting, flood

PEER_USAGE = re.compile(r"session (\d+): peer usage: .*?rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)")
MESSAGES, SIZE = 200, 500
PAYLOAD = MESSAGES * SIZE  # bytes of message text each way


def peer_usage(lab: Lab) -> dict[str, int]:
    """Relayed bytes per closed TURN session, from coturn's log (received from peers + sent to peers)."""
    log = lab.container("turn").logs().decode("utf-8", "replace")
    return {m[1]: int(m[3]) + int(m[5]) for m in PEER_USAGE.finditer(log)}


def test_relay_carries_messages_only_for_a_relayed_pair(lab: Lab, pair: Pair) -> None:
    connect_expecting(lab, "alice", pair.expected_path)
    for sender in PEER_OF:
        result = flood(lab, sender, MESSAGES, SIZE)
        assert result["undelivered"] == 0, result
    closed_before = set(peer_usage(lab))
    for host in PEER_OF:
        lab.stop(host)  # each agent releases its allocation: coturn closes the session and reports
    usage = lab.wait_for(
        lambda: u if len((u := peer_usage(lab)).keys() - closed_before) >= 2 else None,
        15,
        "coturn to report both hosts' sessions",
    )
    for host in PEER_OF:
        lab.start(host)
    relayed = sum(usage.values())
    if pair.expected_path == "direct":
        assert relayed < PAYLOAD // 20, f"a direct pair relayed {relayed} bytes: {usage}"
    else:
        assert relayed >= 2 * PAYLOAD, f"a relayed pair relayed only {relayed} bytes: {usage}"
