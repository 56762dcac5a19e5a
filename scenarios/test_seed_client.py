"""A seed-era client, the seed's exact text exchange, chats with a natlab client through a cone pair.

``seedclient`` (the seed's Go client translated datagram for datagram, ``seedclient/client.py``) runs in
bob's container, behind router-b, on a socket of its own: bob's agent takes no part. It registers the
unkeyed id ``carol``, types ``/connect alice`` and chats: alice (natlab, behind router-a) shows its lines
as ``message_received`` events, and the seed client prints alice's as ``[peer alice] ...``. Every datagram
the seed client sends is checked against the seed's own: ``register carol``, ``connect carol alice``, the
bare ``hello``, ``msg carol <text>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pexpect
import pytest

from scenarios.harness import Lab, start_lab
from scenarios.steps import events, punch_timeout_s

SEED_ID = "carol"
SEED_HOST = "bob"
"""The container the seed client runs in: bob's site, behind router-b (cone)."""


@pytest.fixture(scope="module")
def cone_lab(docker_ready: None) -> Iterator[Lab]:
    # The default 10 s keepalive: the seed keeps a path alive every 10 s, and natlab drops a path silent for
    # three keepalive periods.
    with start_lab(name="seed", env={"NAT_A": "cone", "NAT_B": "cone"}) as lab:
        yield lab


class SeedSession:
    """The seed client in a pseudo-terminal (`docker compose exec -T bob seedclient carol --json`)."""

    def __init__(self, lab: Lab) -> None:
        command, *args = lab.compose_argv("exec", "-T", SEED_HOST, "seedclient", SEED_ID, "--json")
        self.child = pexpect.spawn(command, args, env=lab.compose_env(), encoding="utf-8", timeout=30)
        self.child.setecho(False)
        self.seen: list[dict[str, Any]] = []

    def type(self, line: str) -> None:
        self.child.sendline(line)

    def wait(self, want: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first event (already seen or still to come) that ``want`` accepts."""
        for old in self.seen:
            if want(old):
                return old
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.child.expect(r"\{[^\r\n]*\}\r?\n", timeout=left)
            except (pexpect.TIMEOUT, pexpect.EOF):
                break
            event: dict[str, Any] = json.loads(self.child.after.strip())
            self.seen.append(event)
            if want(event):
                return event
        raise AssertionError(f"the seed client never reported {what}; it reported {self.seen}")

    def sent(self) -> list[str]:
        return [e["text"] for e in self.seen if e["event"] == "sent"]

    def close(self) -> None:
        self.child.sendeof()
        self.child.expect(pexpect.EOF, timeout=10)
        self.child.close(force=True)


def sent(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "sent" and e["text"] == text


def test_seed_client_chats_with_a_natlab_client_through_a_cone_pair(cone_lab: Lab) -> None:
    """The seed's exchange, both ways. Figure: alice's path to the seed client and what each side showed."""
    lab = cone_lab
    seed = SeedSession(lab)
    try:
        seed.wait(sent(f"register {SEED_ID}"), 10, "its register")
        seed.wait(lambda e: e["event"] == "received" and e["text"] == "ok", 10, "the server's ok")
        seed.type("/connect alice")
        seed.wait(sent(f"connect {SEED_ID} alice"), 10, "its connect")
        punching = seed.wait(lambda e: e["event"] == "punching", 10, "a punch (a plain one: it ignores others)")
        assert punching["peer"] == "alice"
        seed.wait(sent("hello"), 10, "the seed's bare hello")

        line = "hello alice, this is the seed"
        seed.type(line)
        seed.wait(sent(f"msg {SEED_ID} {line}"), 10, "its message")
        lab.wait_for(lambda: _shown(lab, "alice", SEED_ID, line), 10, "alice to show the seed client's line")

        def direct() -> dict[str, Any] | None:
            status = lab.json("alice", "client", "status", "--json")
            view = next((p for p in status["peers"] if p["id"] == SEED_ID), None)
            return view if view is not None and view["path"] == "direct" else None

        path = lab.wait_for(direct, punch_timeout_s(lab, "alice") + 5, "alice's direct path to the seed client")
        print(f"\nseed client: alice's path to {SEED_ID}: {path}")
        lab.exec_ok("alice", "client", "send", SEED_ID, "gday from natlab")
        seed.wait(
            lambda e: e["event"] == "message" and e == {**e, "peer": "alice", "text": "gday from natlab"},
            10,
            "alice's message",
        )
        wire = set(seed.sent())
        assert wire <= {
            f"register {SEED_ID}",
            f"connect {SEED_ID} alice",
            "hello",
            "keepalive",
            f"msg {SEED_ID} {line}",
        }
    finally:
        seed.close()


def _shown(lab: Lab, host: str, peer: str, text: str) -> bool | None:
    shown = any(e["peer"] == peer and e["text"] == text for e in events(lab, host, "message_received"))
    return True if shown else None
