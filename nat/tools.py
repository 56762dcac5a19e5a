"""Run the router's command-line tools (nft, conntrack): stdout, or the caller's error class with stderr."""

from __future__ import annotations

import subprocess


def run_tool(command: list[str], error: type[Exception], package: str, timeout: float, stdin: str | None = None) -> str:
    """Run ``command``; its stdout, or ``error`` naming the command and what went wrong (never a traceback)."""
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise error(f"{command[0]} is not installed (package {package})") from None
    except subprocess.TimeoutExpired:
        raise error(f"{' '.join(command)} took longer than {timeout:g}s") from None
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        raise error(f"{' '.join(command)} failed: {detail}")
    return done.stdout
