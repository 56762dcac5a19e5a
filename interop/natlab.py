"""natlab's own client as an interop stack, so its figures sit beside the others' in the same schema.

Side ``a`` runs ``client connect PEER --settle --probe ... --json`` through the host's agent: connect, deliver
one message, wait until the path settles (direct, or punching gave up and the relay carries the pair); side
``b`` waits until its agent has a path to the connecting peer. The path is what ``client status --json`` says
of the peer (``direct``: the peer's NATed address, ``relay``: through the lab's TURN server); the time to
connect is the agent's time to direct for a direct path, else its time to the first message.

    python3 -m interop.natlab --side a --peer bob --exchange /tmp/natlab-interop/x [--timeout 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from interop.report import DIRECT, NONE, RELAY, Report, write_report

STACK = "natlab"


def peer_view(peer: str) -> dict[str, Any] | None:
    """The agent's status of ``peer`` (``client status --json``), None when it has none."""
    done = subprocess.run(["client", "status", "--json"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    peers: list[dict[str, Any]] = json.loads(done.stdout).get("peers", [])
    return next((view for view in peers if view.get("id") == peer), None)


def fill(report: Report, view: dict[str, Any], said: str) -> None:
    """Path, how it was known, time and endpoint from the agent's view of the peer."""
    path = view.get("path")
    report.path = path if path in (DIRECT, RELAY) else NONE
    report.connected = report.path != NONE
    report.how_path_was_known = f"{said}: path {path}, addr {view.get('addr')}, relay {view.get('relay')}"
    report.peer_endpoint = view.get("relay") if report.path == RELAY else view.get("addr")
    direct_ms, first_ms = view.get("time_to_direct_ms"), view.get("time_to_first_message_ms")
    report.time_to_connect_ms = direct_ms if report.path == DIRECT and direct_ms is not None else first_ms


def connect(peer: str, seconds: float) -> Report:
    report = Report(STACK, "a")
    command = ["client", "connect", peer, "--settle", "--timeout", f"{seconds:g}", "--probe", "interop", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        report.error = f"client connect failed ({done.returncode}): {(done.stderr or done.stdout).strip()[:400]}"
        return report
    view = peer_view(peer) or result.get("peer") or {}
    fill(report, view, "client status --json")
    if not result.get("delivered"):
        report.error = result.get("error") or "the probe was not delivered"
        report.connected = False
    return report


def wait_for_peer(peer: str, seconds: float) -> Report:
    report = Report(STACK, "b")
    retrying = Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(0.2),
        retry=retry_if_result(lambda view: view is None or view.get("path") not in (DIRECT, RELAY)),
    )
    try:
        view = retrying(peer_view, peer)
    except RetryError:
        view = None
    if view is None:
        report.error = f"no path to {peer} within {seconds:g} s"
        return report
    fill(report, view, "client status --json")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interop.natlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("a", "b"), required=True)
    parser.add_argument("--peer", required=True, help="the other host's natlab id")
    parser.add_argument("--exchange", type=Path, required=True, help="folder for the result")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    report = connect(args.peer, args.timeout) if args.side == "a" else wait_for_peer(args.peer, args.timeout + 5)
    write_report(report, args.exchange)
    return 0 if report.connected else 1


if __name__ == "__main__":
    sys.exit(main())
