"""A running router's impairments as ``nat impair`` and ``nat show`` see them: the settings in force
(``impair.json``), the delay line's counters, and the SIGHUP that tells ``nat run`` to re-read the settings.

``nat run`` writes ``impair.json`` and ``nat.pid`` at start (``nat.state``); ``nat impair`` applies the kernel
side itself, rewrites ``impair.json`` and sends SIGHUP, on which ``nat run`` hands the new settings to its
delay line.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from common.files import write_atomic
from nat.impair.model import ImpairmentError, Impairments
from nat.impair.spec import format_link
from nat.state import IMPAIR_FILE, IMPAIR_STATS_FILE, PID_FILE, PROFILE_FILE


class RouterNotRunning(RuntimeError):
    """No ``nat run`` to hand the settings to (its state or its pid is missing, or the pid is stale)."""


def read_impairments(state_dir: Path) -> Impairments | None:
    """The settings in force, ``None`` if ``impair.json`` does not exist; ``ImpairmentError`` if it is bad."""
    path = state_dir / IMPAIR_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ImpairmentError(f"cannot read {path}: {exc}") from None
    try:
        return Impairments.from_dict(json.loads(text))
    except (ValueError, AttributeError, TypeError) as exc:  # ImpairmentError is a ValueError
        raise ImpairmentError(f"{path} holds no impairments: {exc}") from None


def write_impairments(state_dir: Path, impairments: Impairments) -> None:
    write_atomic(state_dir / IMPAIR_FILE, json.dumps(impairments.as_dict(), indent=2) + "\n")


def read_stats(state_dir: Path) -> Any:
    """The delay line's counters as it last wrote them (JSON), ``None`` if it never did or the file is torn."""
    try:
        return json.loads((state_dir / IMPAIR_STATS_FILE).read_text())
    except (OSError, ValueError):
        return None


def router_links(state_dir: Path) -> tuple[str, str]:
    """The running router's WAN and LAN interface names, from the state ``nat run`` left."""
    path = state_dir / PROFILE_FILE
    try:
        profile = json.loads(path.read_text())
        return str(profile["wan"]["ifname"]), str(profile["lan"]["ifname"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RouterNotRunning(f"no router state in {path} ({exc}): is `nat run` running?") from None


def router_pid(state_dir: Path) -> int:
    """The pid of ``nat run``, checked to be alive; ``RouterNotRunning`` says what is wrong."""
    path = state_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        raise RouterNotRunning(f"no {path}: `nat run` is not running here") from None
    except (OSError, ValueError) as exc:
        raise RouterNotRunning(f"{path} holds no pid: {exc}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise RouterNotRunning(f"`nat run` (pid {pid} in {path}) is not running: the file is stale") from None
    except PermissionError:
        pass  # alive, and someone else's: the SIGHUP itself will say so
    return pid


def notify_router(pid: int) -> None:
    """SIGHUP: ``nat run`` re-reads ``impair.json`` and reconfigures its delay line."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise RouterNotRunning(f"`nat run` (pid {pid}) stopped before it could be told") from None
    except PermissionError as exc:
        raise RouterNotRunning(f"cannot signal `nat run` (pid {pid}): {exc}") from None


def describe(impairments: Impairments | None, stats: Any) -> dict[str, Any]:
    """What ``nat show --json`` and ``nat impair --json`` print: canonical text per direction, the fields, and
    the delay line's counters."""
    if impairments is None:
        return {"up": None, "down": None, "settings": None, "stats": stats}
    return {
        "up": format_link(impairments.up),
        "down": format_link(impairments.down),
        "settings": impairments.as_dict(),
        "stats": stats,
    }


def describe_text(impairments: Impairments | None, stats: Any) -> list[str]:
    """The same as text lines: ``up``/``down`` and their settings, then the delay line's counters."""
    if impairments is None:
        lines = ["impair      (none recorded: no impair.json)"]
    else:
        lines = [f"impair up   {format_link(impairments.up)}", f"impair down {format_link(impairments.down)}"]
    if isinstance(stats, dict):
        for direction in ("up", "down"):
            counters = stats.get(direction)
            if isinstance(counters, dict):
                lines.append(f"delay line  {direction}: " + " ".join(f"{k}={v}" for k, v in counters.items()))
    elif stats is not None:
        lines.append(f"delay line  {json.dumps(stats)}")
    return lines
