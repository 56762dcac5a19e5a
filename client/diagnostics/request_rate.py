"""A UDP server's sustained request rate on loopback: ``python3 -m client.diagnostics.request_rate``.

The load generator of ``make bench``'s server-rate figure, the same code for every server (the loop is
:mod:`client.diagnostics.rate_loop`, the requests :mod:`client.diagnostics.request_kinds`). It runs for
``--warmup`` seconds (imports, caches, the server's first registrations), then counts the replies received
over the next ``--seconds``: the sustained rate.

Given a command after ``--``, it starts that server pinned to one CPU (``taskset``, util-linux: in every
Debian system) and itself to another, waits until the server answers, measures, and stops the server. It
then also reports the CPU time the server used in the window: a server that was not busy all along (the
generator could not keep up, or something else took its CPU) shows it, and its CPU time per reply is its
cost per request whatever else ran on the machine::

    python3 -m client.diagnostics.request_rate 127.0.0.1:9000 --kind register --json \\
        -- python3 -m server --listen 127.0.0.1:9000
    python3 -m client.diagnostics.request_rate 127.0.0.1:3478 --kind stun-binding \\
        -- turnserver -n --listening-ip 127.0.0.1 --listening-port 3478 --no-tls --no-dtls --no-cli
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from client.diagnostics.rate_loop import Load, Mark, RateError, drive, open_socket, wait_ready
from client.diagnostics.request_kinds import KINDS
from protocol import Endpoint

LOG_LINES = 20
"""Lines of the server's output shown when the measurement fails."""


@dataclass(frozen=True)
class Result:
    """One measurement: replies counted in the window after the warm-up, and who spent the CPU."""

    kind: str
    target: str
    sockets: int
    seconds: float
    replies: int
    per_s: float
    resent: int
    ignored: int
    generator_cpu: float
    """Share of one CPU the generator used in the window."""
    server_cpu: float | None
    """Share of one CPU the server used in the window (None: not started by us, so not measured)."""
    server_us_per_reply: float | None
    """The server's CPU time per counted reply, in microseconds: its cost per request."""


def summarise(kind: str, target: Endpoint, sockets: int, start: Mark, end: Mark) -> Result:
    """The figures of the window between two marks."""
    seconds = end.at - start.at
    replies = end.replies - start.replies
    server = None if start.server_cpu is None or end.server_cpu is None else end.server_cpu - start.server_cpu
    return Result(
        kind=kind,
        target=str(target),
        sockets=sockets,
        seconds=round(seconds, 3),
        replies=replies,
        per_s=round(replies / seconds, 1),
        resent=end.resent - start.resent,
        ignored=end.ignored - start.ignored,
        generator_cpu=round((end.own_cpu - start.own_cpu) / seconds, 3),
        server_cpu=None if server is None else round(server / seconds, 3),
        server_us_per_reply=None if server is None or not replies else round(server / replies * 1e6, 2),
    )


def measure(
    target: Endpoint, kind: str, load: Load, server: subprocess.Popen[bytes] | None = None, ready_wait: float = 10.0
) -> Result:
    """Load ``target`` with requests of ``kind``; the sustained rate (and ``server``'s CPU, if given)."""
    factory = KINDS[kind]
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(open_socket(target)) for _ in range(load.sockets)]
        exchanges = [factory(index) for index in range(load.sockets)]
        for sock, exchange in zip(socks, exchanges, strict=True):
            wait_ready(sock, exchange, server, ready_wait)  # every client answered once: nothing is cold
        start, end = drive(socks, exchanges, load, None if server is None else server.pid)
    return summarise(kind, target, load.sockets, start, end)


@contextlib.contextmanager
def pinned_server(command: Sequence[str], cpu: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running on CPU ``cpu`` only, its output in ``log``; stopped (SIGTERM, then SIGKILL)."""
    with log.open("wb") as out:
        try:
            server = subprocess.Popen(["taskset", "--cpu-list", str(cpu), *command], stdout=out, stderr=out)
        except OSError as exc:
            raise RateError(f"cannot run taskset: {exc}") from None
    try:
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def cpus(server_cpu: int | None, own_cpu: int | None) -> tuple[int, int]:
    """The server's CPU and ours: by default the last and the first this process may use; two distinct."""
    allowed = sorted(os.sched_getaffinity(0))
    server = allowed[-1] if server_cpu is None else server_cpu
    own = next((cpu for cpu in allowed if cpu != server), server) if own_cpu is None else own_cpu
    if own == server:
        raise RateError(f"the server and the generator need a CPU each; this process may use {allowed}")
    return server, own


def run(
    target: Endpoint,
    kind: str,
    load: Load,
    *,
    command: Sequence[str] = (),
    pinning: tuple[int | None, int | None] = (None, None),
    ready_wait: float = 10.0,
) -> Result:
    """Measure; first start ``command`` as the server when there is one, pinned (server CPU, ours) as we are.
    Our own CPU affinity is restored afterwards."""
    allowed = os.sched_getaffinity(0)
    try:
        if not command:
            if pinning[1] is not None:
                os.sched_setaffinity(0, {pinning[1]})
            return measure(target, kind, load, ready_wait=ready_wait)
        server_cpu, own_cpu = cpus(*pinning)
        os.sched_setaffinity(0, {own_cpu})
        return _measure_started(target, kind, load, (command, server_cpu), ready_wait)
    finally:
        os.sched_setaffinity(0, allowed)


def _measure_started(
    target: Endpoint, kind: str, load: Load, server: tuple[Sequence[str], int], ready_wait: float
) -> Result:
    """Start the server (command, CPU), measure it, stop it; a failure carries the end of its output."""
    with tempfile.TemporaryDirectory(prefix="natlab-rate-") as tmp:
        log = Path(tmp) / "server.log"
        try:
            with pinned_server(*server, log) as process:
                return measure(target, kind, load, process, ready_wait)
        except RateError as exc:
            said = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
            raise RateError(f"{exc}; the server's last {len(said)} lines of output:\n" + "\n".join(said)) from None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m client.diagnostics.request_rate",
        description="A UDP server's sustained replies per second on loopback, from one generator process.",
        epilog="After --, a server command to start (pinned to --server-cpu) and stop around the measurement.",
    )
    parser.add_argument("target", type=_endpoint, metavar="IP:PORT", help="the server")
    parser.add_argument("--kind", choices=sorted(KINDS), default="register", help="the request (default register)")
    parser.add_argument("--sockets", type=int, default=Load.sockets, help="clients, one request outstanding each")
    parser.add_argument("--warmup", type=float, default=Load.warmup, help="seconds before counting")
    parser.add_argument("--seconds", type=float, default=Load.seconds, help="seconds counted")
    parser.add_argument("--resend-after", type=float, default=Load.resend_after, help="seconds before a resend")
    parser.add_argument("--server-cpu", type=int, help="the server's CPU (default: the last one we may use)")
    parser.add_argument("--cpu", type=int, help="the generator's CPU (default: the first other one)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if args.sockets < 1 or args.seconds <= 0 or min(args.warmup, args.resend_after) < 0:
        parser.error("--sockets and --seconds must be positive, --warmup and --resend-after not negative")
    return args


def _endpoint(text: str) -> Endpoint:
    try:
        return Endpoint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    load = Load(args.sockets, args.warmup, args.seconds, args.resend_after)
    try:
        result = run(args.target, args.kind, load, command=args.command, pinning=(args.server_cpu, args.cpu))
    except (RateError, OSError) as exc:
        print(f"request_rate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        server = "" if result.server_cpu is None else f", server CPU {result.server_cpu:.0%}"
        print(f"{result.kind} -> {result.target}: {result.per_s:.0f} replies/s over {result.seconds} s{server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
