"""``nat run`` in a router network namespace, for the tests that build one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_nat(
    router_ns: str, state_dir: Path, gateway: str, log: list[str] | None = None, /, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """``nat run`` in ``router_ns`` with ``env`` added to ours, polled until ready; SIGTERM afterwards, and
    its stderr (the log) appended to ``log`` if given.

    Conntrack is flushed first and the default route via ``gateway`` put back (``nat run`` deletes it).
    """
    in_router = ["ip", "netns", "exec", router_ns]
    subprocess.run([*in_router, "conntrack", "-F"], capture_output=True, timeout=30, check=False)
    subprocess.run([*in_router, "ip", "route", "replace", "default", "via", gateway], timeout=30, check=True)
    process = subprocess.Popen(
        [*in_router, sys.executable, "-m", "nat", "--state-dir", str(state_dir), "run"],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (state_dir / "ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"nat run not ready (exit {process.poll()}): {process.communicate()[1]}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
        if log is not None:
            log.append(stderr)
