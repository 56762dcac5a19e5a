"""A background process for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def logged_process(command: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, its stdout and stderr appended to ``log``; on exit (also when the block fails)
    terminated, and killed if it has not stopped within 5 s."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
