"""`client flood` between two agents on loopback, no Docker: the data path's rate, profiled if asked.

A signal server and two agents (alice, bob) run as subprocesses of this tool on 127.0.0.1, with their
sockets, event logs and logs in a temporary directory; alice connects to bob (a direct path: loopback has
no NAT) and floods it through the control socket, as `client flood` does. Next to it, the same number of
raw UDP datagrams of the same size from one process to another on loopback, the ceiling for Python::

    python -m scenarios.flood_local                     # 5000 messages of 1000 bytes, and raw UDP
    python -m scenarios.flood_local --count 20000 --size 100 --runs 3
    python -m scenarios.flood_local --profile /tmp/prof # cProfile of both agents: alice.prof, bob.prof
    python -m pstats /tmp/prof/alice.prof               # then e.g. "sort tottime" and "stats 25"

Rates depend on the machine and its load: this is a tool to compare before and after, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import pstats
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from client.cli.control_client import AgentClient
from scenarios.processes import logged_process

HOST = "127.0.0.1"
PEERS = ("alice", "bob")


@dataclass(frozen=True)
class Agent:
    """One agent process's files."""

    name: str
    socket: str
    ready: Path
    profile: Path | None
    pid: int = 0

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used: a machine under load stretches the wall clock
        of a flood, not (much) the CPU time each message costs."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait(condition: Any, what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` until it holds, or fail naming ``what``."""
    retrying = Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(0.05), retry=retry_if_result(lambda ok: not ok), reraise=True
    )
    try:
        retrying(condition)
    except Exception as exc:
        raise SystemExit(f"flood_local: {what} within {timeout:g} s ({exc})") from None


@contextlib.contextmanager
def lab(workdir: Path, profile: Path | None, log_level: str) -> Iterator[dict[str, Agent]]:
    """The signal server and both agents, registered."""
    port = _free_port()
    server = [sys.executable, "-m", "server", "--listen", f"{HOST}:{port}"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(logged_process(server, workdir / "server.log", stop_timeout=20))
        agents: dict[str, Agent] = {}
        for name in PEERS:
            agent = Agent(
                name,
                str(workdir / f"{name}.sock"),
                workdir / f"{name}.ready",
                None if profile is None else profile / f"{name}.prof",
            )
            env = {
                **os.environ,
                "NATLAB_ID": name,
                "NATLAB_SERVER": f"{HOST}:{port}",
                "NATLAB_SOCKET": agent.socket,
                "NATLAB_EVENTS": str(workdir / f"{name}.events.jsonl"),
                "NATLAB_READY_FILE": str(agent.ready),
                "NATLAB_LOG": log_level,
            }
            runner = [] if agent.profile is None else ["-m", "cProfile", "-o", str(agent.profile)]
            command = [sys.executable, *runner, "-m", "client", "agent"]
            pid = stack.enter_context(logged_process(command, workdir / f"{name}.log", env, stop_timeout=20)).pid
            agents[name] = replace(agent, pid=pid)
        for agent in agents.values():
            _wait(agent.ready.exists, f"{agent.name} did not register")
        yield agents


def flood(agents: dict[str, Agent], count: int, size: int) -> dict[str, Any]:
    """alice connects to bob (if not yet) and floods it; the flood's JSON result, with the CPU time each
    agent spent per message (microseconds)."""
    with AgentClient(agents["alice"].socket, timeout=30.0) as alice:
        peer = alice.request("connect", peer="bob")["peer"]
        if peer["path"] != "direct":
            raise SystemExit(f"flood_local: no direct path on loopback: {json.dumps(peer)}")
    before = {name: agent.cpu_seconds() for name, agent in agents.items()}
    with AgentClient(agents["alice"].socket, timeout=600.0) as alice:
        result: dict[str, Any] = alice.request("flood", peer="bob", count=count, size=size)["result"]
    for name, agent in agents.items():
        result[f"{name}_cpu_us_per_msg"] = round((agent.cpu_seconds() - before[name]) / count * 1e6, 1)
    return result


def _sink(port: int, count: int, idle: float, results: Any) -> None:
    """The raw baseline's receiver: counts datagrams until ``count`` or ``idle`` seconds of silence."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((HOST, port))
        sock.settimeout(idle)
        results.put("ready")
        received, first, last = 0, 0.0, 0.0
        while received < count:
            try:
                sock.recv(65536)
            except TimeoutError:
                break
            last = time.perf_counter()
            first = first or last
            received += 1
        results.put((received, last - first))


def raw_udp(count: int, size: int) -> dict[str, Any]:
    """``count`` datagrams of ``size`` bytes from this process to another on loopback, as fast as Python
    sends them (no acks, no pacing: losses show as received < sent)."""
    port = _free_port()
    results: Any = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_sink, args=(port, count, 1.0, results))
    receiver.start()
    results.get(timeout=10)
    payload = b"x" * size
    started = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(count):
            sock.sendto(payload, (HOST, port))
    sent_in = time.perf_counter() - started
    received, seconds = results.get(timeout=30)
    receiver.join(timeout=5)
    return {
        "sent": count,
        "received": received,
        "send_per_s": round(count / sent_in, 1),
        "recv_per_s": round(received / max(seconds, 1e-9), 1),
    }


def _top(path: Path, lines: int) -> None:
    print(f"--- {path.name}: top {lines} by own time")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(lines)
    print(f"--- {path.name}: top {lines} by cumulative time")
    stats.sort_stats("cumulative").print_stats(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.flood_local", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="messages (and raw datagrams) per run")
    parser.add_argument("--size", type=int, default=1000, help="characters per message, bytes per datagram")
    parser.add_argument("--runs", type=int, default=1, help="floods in a row on the same agents")
    parser.add_argument("--profile", type=Path, help="profile both agents with cProfile into this directory")
    parser.add_argument("--top", type=int, default=0, help="print the profiles' top N entries")
    parser.add_argument("--log", default="info", choices=("debug", "info", "warning"), help="agents' NATLAB_LOG")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw UDP baseline")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 1 or args.runs < 1:
        parser.error("--count, --size and --runs must be positive")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="natlab-flood-") as tmp, lab(Path(tmp), args.profile, args.log) as agents:
        for run in range(args.runs):
            result = flood(agents, args.count, args.size)
            print(json.dumps({"run": run + 1, "flood": result}), flush=True)
    if not args.no_raw:
        print(json.dumps({"raw_udp": raw_udp(args.count, args.size)}), flush=True)
    if args.profile is not None and args.top:
        for name in PEERS:
            _top(args.profile / f"{name}.prof", args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
