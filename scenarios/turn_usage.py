"""coturn's own count of what it relayed: each TURN session's "peer usage", logged when its allocation closes.

coturn (run with -v) logs, per session, the bytes it relayed to and from peers ("peer usage"): every few
seconds while data flows, each line counting what came since the one before, and a last time when the
allocation closes ("closed"); the agents release their allocations when they stop, so stopping both hosts
makes coturn report. A session's total is the sum of its lines. Restarting
both hosts first (:func:`restart_hosts`) gives sessions that cover only what follows (in a lab shared with
other scenarios, an older allocation would also count their traffic and its keepalives). Used by
scenarios/test_relay_usage.py (messages) and scenarios/test_tunnel.py (the tunnel).
"""

from __future__ import annotations

import re

from scenarios.harness import Lab
from scenarios.steps import PEER_OF

PEER_USAGE = re.compile(r"session (\d+): peer usage: .*?rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)")
CLOSED = re.compile(r"session (\d+): closed ")


def peer_usage(lab: Lab) -> dict[str, int]:
    """Relayed bytes per closed TURN session, from coturn's log (received from peers + sent to peers, summed
    over the session's lines)."""
    log = lab.container("turn").logs().decode("utf-8", "replace")
    closed = {m[1] for m in CLOSED.finditer(log)}
    usage = dict.fromkeys(closed, 0)
    for m in PEER_USAGE.finditer(log):
        if m[1] in closed:
            usage[m[1]] += int(m[3]) + int(m[5])
    return usage


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
