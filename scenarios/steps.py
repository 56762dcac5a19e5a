"""Actions scenarios share: reset a pair's paths, connect, read event logs. Each returns parsed JSON."""

from __future__ import annotations

import json
from typing import Any

from scenarios.harness import Lab

PEER_OF = {"alice": "bob", "bob": "alice"}


def reset_paths(lab: Lab) -> None:
    """Both hosts forget each other, so the next connect starts from nothing."""
    for host, peer in PEER_OF.items():
        lab.exec_ok(host, "client", "disconnect", peer)


def connect(lab: Lab, host: str) -> tuple[int, dict[str, Any]]:
    """`client connect <peer> --json` on `host`: (exit code, the peer's status)."""
    code, output = lab.exec(host, "client", "connect", PEER_OF[host], "--json")
    return code, json.loads(output)


def connect_expecting(lab: Lab, host: str, path: str, timeout: float = 15) -> dict[str, Any]:
    """Connect, then wait until `host` uses `path` to its peer. `connect` returns on the first usable path,
    and a cone pair's relay can confirm a few ms before the direct path does (then traffic moves over)."""
    code, view = connect(lab, host)
    if code != 0:
        raise AssertionError(f"{host} could not connect: {view}")

    def on_path() -> dict[str, Any] | None:
        current = peer_status(lab, host)
        return current if current and current["path"] == path else None

    return lab.wait_for(on_path, timeout, f"{host} to use the {path} path")


def punch_timeout_s(lab: Lab, host: str) -> float:
    """The punch timeout `host`'s agent runs with (its NATLAB_PUNCH_TIMEOUT in the compose model)."""
    return float(lab.service(host).environment["NATLAB_PUNCH_TIMEOUT"])


def keepalive_s(lab: Lab, host: str) -> float:
    """The keepalive period `host`'s agent runs with (its NATLAB_KEEPALIVE in the compose model)."""
    return float(lab.service(host).environment["NATLAB_KEEPALIVE"])


def peer_status(lab: Lab, host: str) -> dict[str, Any] | None:
    """`host`'s view of its peer from `client status --json`, or None if it has none."""
    status = lab.json(host, "client", "status", "--json")
    return next((p for p in status["peers"] if p["id"] == PEER_OF[host]), None)


def events(lab: Lab, host: str, name: str) -> list[dict[str, Any]]:
    """The `name` events in `host`'s event log (JSON lines)."""
    lines = lab.exec_ok(host, "client", "events").splitlines()
    return [e for e in map(json.loads, filter(None, lines)) if e["event"] == name]


def server_peers(lab: Lab) -> dict[str, dict[str, Any]]:
    """The signal server's peer table, by id."""
    state = lab.json("server", "cat", "/run/natlab/server.json")
    return {p["id"]: p for p in state["peers"]}


def received_since(lab: Lab, host: str, count_before: int) -> list[str]:
    """Texts of the `message_received` events `host` logged after its first `count_before` ones."""
    return [e["text"] for e in events(lab, host, "message_received")[count_before:]]


def flood(lab: Lab, sender: str, count: int, size: int, rate: float | None = None) -> dict[str, Any]:
    """`client flood`: `count` numbered messages of `size` characters (`rate` a second: a stream that waits
    out a lost path); returns its JSON result."""
    paced = () if rate is None else ("--rate", f"{rate:g}")
    return dict(lab.json(sender, "client", "flood", PEER_OF[sender], str(count), "--size", str(size), *paced))


def flood_texts(count: int, size: int) -> list[str]:
    """What `client flood` sends: each text starts with its 6-digit number, padded with x to `size`."""
    return [f"{i:06d} ".ljust(size, "x") for i in range(1, count + 1)]
