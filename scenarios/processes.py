"""A background process for the length of a ``with`` block (host side: the unit tests' real servers, the
loopback flood tool)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def logged_process(
    command: Sequence[str], log: Path, env: Mapping[str, str] | None = None, stop_timeout: float = 5.0
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, its stdout and stderr appended to ``log``; on exit (also when the block fails)
    terminated (SIGTERM, so a profiler under it writes its file), and killed if it has not stopped within
    ``stop_timeout`` seconds."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
