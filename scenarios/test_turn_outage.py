"""TURN server outages: a direct pair does not notice; a relayed pair reports `none` with the reason and
recovers by itself when the server is back."""

from __future__ import annotations

import time

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import connect_expecting, events, keepalive_s, peer_status


def path_is(lab: Lab, path: str) -> dict | None:
    view = peer_status(lab, "alice")
    return view if view and view["path"] == path else None


def relay_lost(lab: Lab, seen: int) -> dict | None:
    """The first relay -> none change after the first `seen` path changes alice logged, if any."""
    changes = events(lab, "alice", "path_changed")[seen:]
    return next((e for e in changes if (e["old"], e["new"]) == ("relay", "none")), None)


def test_turn_outage(lab: Lab, pair: Pair) -> None:
    connect_expecting(lab, "alice", pair.expected_path)
    seen = len(events(lab, "alice", "path_changed"))
    lab.stop("turn")
    try:
        if pair.expected_path == "direct":
            # Long enough for a relay path to be declared dead (three keepalive periods), then check.
            quiet_until = time.monotonic() + 3 * keepalive_s(lab, "alice") + 2
            lab.wait_for(lambda: True if time.monotonic() > quiet_until else None, 30, "three keepalive periods")
            assert path_is(lab, "direct"), peer_status(lab, "alice")
            lab.exec_ok("alice", "client", "send", "bob", "the relay is down and nobody cares")
            return
        # The path drops to none with the reason (as a path_changed event: the status's reason moves on to
        # whatever the next reconnect attempt says, e.g. the punch that still fails).
        timeout = 3 * keepalive_s(lab, "alice") + 20
        lost = lab.wait_for(lambda: relay_lost(lab, seen), timeout, "the relayed path to drop")
        assert lost["reason"].startswith("relay lost: "), lost
    finally:
        lab.start("turn")
    lab.wait_for(lambda: path_is(lab, "relay"), 60, "the pair to recover through the restarted relay")
    lab.exec_ok("alice", "client", "send", "bob", "back through the relay")
    lab.exec_ok("bob", "client", "send", "alice", "and back again")
