"""``client connect --settle`` and ``client bench-connect``: connects measured the way the grid and the
benchmarks need, as CLI commands (they run inside the lab's host containers).

``connect --settle`` returns once the path has *settled*: direct confirmed, or the direct punch gave up and
the relay (or nothing) is what is left. A cone pair may be relayed for a few milliseconds before its direct
path confirms; settling waits for that. With ``--probe TEXT`` it also sends TEXT once a path is up, and
``delivered`` says whether the peer acknowledged it (guaranteed delivery's ack, end to end); without a probe
``delivered`` is null.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from client.cli.control_client import AgentClient, AgentRefused
from client.daemon.config import ConfigError
from client.engine.routes import USABLE, Route

MAX_TIMEOUT = 3600.0
"""The longest ``--timeout`` accepted (seconds)."""

REQUEST_MARGIN = 5.0
"""Seconds the control connection waits beyond a request's own bound, for the answer to come back."""


@dataclass(frozen=True)
class Settled:
    """What ``client connect --settle --json`` prints."""

    peer: dict[str, Any] | None
    """The peer's status (one entry of ``client status --json``'s ``peers``)."""
    settled: bool
    """The path settled within the timeout."""
    time_to_direct_ms: float | None
    """From the connect to the confirmed direct path; null unless the settled path is direct."""
    delivered: bool | None
    """The probe message was acknowledged by the peer; null without ``--probe``."""
    error: str | None
    """Why the probe was not delivered, if it was not."""

    @property
    def ok(self) -> bool:
        usable = self.peer is not None and self.peer["path"] in USABLE
        return self.settled and usable and self.delivered is not False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_timeout(timeout: float) -> float:
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise ConfigError(f"--timeout {timeout:g}: expected 0-{MAX_TIMEOUT:g} seconds")
    return timeout


def connect_and_settle(agent: AgentClient, peer: str, timeout: float, probe: str | None) -> Settled:
    """Connect to ``peer``, send ``probe`` once a path is up, and wait until the path settles; all within
    about ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = agent.request("connect", peer=peer)["peer"]
    delivered, error = None, None
    if probe is not None:
        try:
            agent.request("send", peer=peer, text=probe, wait=True)
            delivered = True
        except AgentRefused as exc:
            delivered, error = False, str(exc)
    remaining = max(deadline - time.monotonic(), 0.001)
    answer = agent.request("settle", peer=peer, timeout=remaining)
    status = answer["peer"]
    direct = status is not None and status["path"] == Route.DIRECT
    ms = status["time_to_direct_ms"] if direct else None
    return Settled(status, bool(answer["settled"]), ms, delivered, error)


def bench_connect(agent: AgentClient, peer: str, count: int, timeout: float, gap: float) -> list[float]:
    """``count`` connects to ``peer``, each from scratch on our side; each one's time to direct (ms).

    Before each connect the previous one's path is forgotten and ``gap`` seconds pass: the relay standby
    settles, and the peer's last probes of the previous round cannot arrive after the forget and confirm the
    next round at once.
    """
    samples: list[float] = []
    for _ in range(count):
        agent.request("disconnect", peer=peer)
        time.sleep(gap)  # pacing between rounds (see above), not a wait for a condition
        result = connect_and_settle(agent, peer, timeout, None)
        if result.time_to_direct_ms is None:
            raise AgentRefused(f"no direct path to {peer} within {timeout:g} s: {result.peer}")
        samples.append(float(result.time_to_direct_ms))
    return samples


def request_timeout(timeout: float) -> float:
    """The control connection's bound for one request that itself waits up to ``timeout``."""
    return timeout + REQUEST_MARGIN
