"""`make bench`'s server-rate figure: natlab's signal server (on asyncio's loop and on uvloop) and coturn,
each on one CPU, loaded in turn by the same generator on another CPU, all inside one lab container.

The container runs the lab image (its Python, uvloop and coturn) with no network at all: the servers and
the generator talk over its loopback only. Each mode is one run of ``python3 -m
client.diagnostics.request_rate`` with the server's command after ``--``: the generator starts the
server pinned to one CPU, pins itself to the other, waits until the server answers, counts replies for
BENCH_RATE_SECONDS (3) after BENCH_RATE_WARMUP (1), and stops the server. natlab answers a text
``register <id>`` (one id per client socket, each reply ``ok``), coturn a STUN Binding request.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from scenarios.harness import LABEL, REPO, LabError

HOST = "127.0.0.1"
COTURN = "coturn STUN Binding"
"""The reference mode's name: the others' rates are given as a ratio to its."""
BUSY = 0.9
"""A server's CPU share below which its rate says more about the machine's other work than about it."""


@dataclass(frozen=True)
class Settings:
    """The generator's load, the same for every mode."""

    seconds: float = 3.0
    warmup: float = 1.0
    sockets: int = 64
    rounds: int = 1
    """Runs of every mode, interleaved; each mode's best (highest rate) is kept: on a busy machine the run
    that other work disturbed least."""

    @classmethod
    def from_env(cls) -> Settings:
        """BENCH_RATE_SECONDS, BENCH_RATE_WARMUP, BENCH_RATE_SOCKETS, BENCH_RATE_ROUNDS, or the defaults."""
        env = os.environ
        return cls(
            float(env.get("BENCH_RATE_SECONDS", cls.seconds)),
            float(env.get("BENCH_RATE_WARMUP", cls.warmup)),
            int(env.get("BENCH_RATE_SOCKETS", cls.sockets)),
            int(env.get("BENCH_RATE_ROUNDS", cls.rounds)),
        )


@dataclass(frozen=True)
class Mode:
    """One server under load: what it is called in the output, the request kind, its port and command."""

    name: str
    kind: str
    port: int
    server: tuple[str, ...]


LIMITS = ("--ids-per-ip", "1024", "--rate", "10000000", "--burst", "10000000")
"""The server's per-source limits set far above the load: every client shares 127.0.0.1, one source, so the
defaults (16 ids, 20 requests a second) would refuse them; the token bucket is still taken for every
request, so its cost is in the figure."""


SIGNED = "signed-register"


def natlab(loop: str, port: int = 9000, python: str = "python3", files: str = "/tmp", kind: str = "register") -> Mode:
    """natlab's signal server on ``loop`` (asyncio or uvloop) answering ``kind`` (the seed's text ``register``,
    or protocol v2's signed one); as the lab runs it, with a state file (in ``files``), but with
    :data:`LIMITS`."""
    state = f"{files}/natlab-server-{kind}-{loop}.json"
    options = ("--listen", f"{HOST}:{port}", "--state-file", state, *LIMITS)
    name = f"natlab {'v2 signed register' if kind == SIGNED else 'register'}, {loop}"
    return Mode(name, kind, port, (python, "-m", "server", *options, "--loop", loop))


def coturn(port: int = 3478, files: str = "/tmp") -> Mode:
    """coturn as the lab runs it (``-n``: no config file) without TURN's credentials (Binding needs none),
    its pid file and user database in ``files``, answering STUN Binding."""
    command = (
        "turnserver", "-n", "--listening-ip", HOST, "--listening-port", str(port),
        "--no-tls", "--no-dtls", "--no-tcp", "--no-cli", "--no-software-attribute",
        "--log-file", "stdout", "--simple-log", "--pidfile", f"{files}/turnserver.pid", "--userdb", f"{files}/turndb",
    )  # fmt: skip
    return Mode(COTURN, "stun-binding", port, command)


MODES = (natlab("asyncio"), natlab("uvloop"), natlab("uvloop", kind=SIGNED), coturn())


def lab_image() -> str:
    """The lab image of this checkout, built if needed: its content-hash tag, not natlab-lab:latest, which
    another checkout building at the same time would move."""
    done = subprocess.run(["images/build.sh"], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"images/build.sh failed:\n{done.stderr}{done.stdout}")
    return done.stdout.strip()


def generator_command(mode: Mode, settings: Settings) -> list[str]:
    """The generator's command line in the container: it starts the mode's server itself."""
    return [
        "python3", "-m", "client.diagnostics.request_rate", f"{HOST}:{mode.port}", "--kind", mode.kind,
        "--seconds", str(settings.seconds), "--warmup", str(settings.warmup), "--sockets", str(settings.sockets),
        "--json", "--", *mode.server,
    ]  # fmt: skip


def measure(image: str, settings: Settings, modes: Sequence[Mode] = MODES) -> dict[str, dict[str, Any]]:
    """Every mode's best result (the generator's JSON) of ``settings.rounds``, by mode name, the modes run
    one after the other in one container of ``image``."""
    best: dict[str, dict[str, Any]] = {}
    with closing(docker.from_env()) as client:
        container = client.containers.run(
            image, ["sleep", "infinity"], detach=True, network_mode="none", labels={LABEL: "bench"}
        )
        try:
            for _ in range(settings.rounds):
                for mode in modes:
                    keep_best(best, mode.name, _run(container, mode, settings))
        finally:
            container.remove(force=True)
    return best


def keep_best(best: dict[str, dict[str, Any]], name: str, result: dict[str, Any]) -> None:
    """Keep ``result`` as ``name``'s if it is its first or its highest rate yet."""
    if name not in best or result["per_s"] > best[name]["per_s"]:
        best[name] = result


def _run(container: Any, mode: Mode, settings: Settings) -> dict[str, Any]:
    code, (out, err) = container.exec_run(generator_command(mode, settings), demux=True)
    if code != 0:
        said = (err or b"").decode(errors="replace") + (out or b"").decode(errors="replace")
        raise LabError(f"{mode.name}: the request-rate generator failed (exit {code}):\n{said}")
    result: dict[str, Any] = json.loads(out)
    return result


def report(results: dict[str, dict[str, Any]], settings: Settings) -> list[str]:
    """The bench's lines: each server's replies per second, its CPU share and cost per request, and each
    natlab figure as a ratio to coturn's, per second and per CPU-second (cost against cost)."""
    reference = results.get(COTURN)
    load = f"{settings.sockets} clients, {settings.seconds:g} s after {settings.warmup:g} s warm-up"
    if settings.rounds > 1:
        load += f", best of {settings.rounds} rounds"
    lines = [f"  server rate, one CPU each, loopback ({load}):"]
    for name, result in results.items():
        cpu, cost = result["server_cpu"], result["server_us_per_reply"]
        line = (
            f"    {name:32s} {result['per_s']:9,.0f} req/s  (server CPU {cpu:4.0%}, {cost:5.1f} us/request; "
            f"generator CPU {result['generator_cpu']:4.0%})"
        )
        if reference is not None and name != COTURN:
            line += f"   {result['per_s'] / reference['per_s']:.2f}x coturn"
            line += f", {reference['server_us_per_reply'] / cost:.2f}x per CPU-second"
        lines.append(line)
    if any(result["server_cpu"] < BUSY for result in results.values()):
        lines.append(
            f"    (a server had less than {BUSY:.0%} of its CPU: the machine was busy; compare per CPU-second)"
        )
    return lines


def main() -> int:
    settings = Settings.from_env()
    for line in report(measure(lab_image(), settings), settings):
        print(line)
    return 0
