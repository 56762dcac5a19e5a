"""Path upgrade: a pair that starts relayed (each router drops the other's UDP) moves to the direct path
as soon as the block lifts, while a stream of messages keeps flowing, none lost or duplicated."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from scenarios.harness import Lab, start_lab
from scenarios.steps import connect, events, peer_status


@pytest.fixture(scope="module", params=["cone-cone"])
def blocked_lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    """A cone-cone lab whose routers start with inbound UDP from each other blocked."""
    env = {"NAT_A": "cone", "NAT_B": "cone", "NATLAB_KEEPALIVE": "2", "NATLAB_BLOCK_EACH_OTHER": "1"}
    with start_lab(name="upgrade", env=env) as lab:
        yield lab


class Stream:
    """Sends numbered messages alice -> bob one after another (each acknowledged) until stopped."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sent: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and not self.failures:
            text = f"stream {len(self.sent):04d}"
            code, output = self.lab.exec("alice", "client", "send", "bob", text)
            (self.sent if code == 0 else self.failures).append(text if code == 0 else output)

    def wait_for_more(self, count: int, what: str) -> None:
        target = len(self.sent) + count
        self.lab.wait_for(lambda: True if len(self.sent) >= target or self.failures else None, 30, what)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_relayed_pair_moves_to_direct_without_losing_a_message(blocked_lab: Lab) -> None:
    lab = blocked_lab
    code, view = connect(lab, "alice")
    assert code == 0, view
    assert view["path"] == "relay", view
    stream = Stream(lab)
    try:
        stream.wait_for_more(5, "messages over the relay")
        for router in ("router-a", "router-b"):
            lab.exec_ok(router, "nat", "unblock")
        upgraded = lab.wait_for(
            lambda: v if (v := peer_status(lab, "alice")) and v["path"] == "direct" else None, 20, "the upgrade"
        )
        stream.wait_for_more(5, "messages over the direct path")
    finally:
        stream.stop()
    assert not stream.failures, stream.failures
    assert upgraded["relay"] is None
    received = [e["text"] for e in events(lab, "bob", "message_received") if e["text"].startswith("stream ")]
    assert received == stream.sent, "every message exactly once, in order, across the switch"
    changes = [(e["old"], e["new"]) for e in events(lab, "alice", "path_changed")]
    assert ("relay", "direct") in changes, changes
