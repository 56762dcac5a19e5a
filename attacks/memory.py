"""A process's memory as the kernel counts it (``/proc/<pid>/status``): resident now and at its peak.

Run inside the container of the process to measure (the signal server's, for the flood): ``VmRSS`` is
what it holds now, ``VmHWM`` the most it ever held (the flood's peak, even after it let go).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def status_kb(text: str, field: str) -> int | None:
    """A ``<field>: <n> kB`` line of a /proc status file, in kB (None when absent: a kernel thread)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return None


def processes(matching: str, proc: Path = PROC) -> list[dict[str, Any]]:
    """Every process whose command line starts with ``matching`` (not this one), with its RSS and peak RSS.

    Starts with, not contains: the init process's command line (``docker-init -- ... python3 -m server``)
    contains the service's own."""
    found = []
    for entry in sorted(proc.iterdir(), key=lambda p: p.name.zfill(10)):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile
            continue
        if cmdline.startswith(matching):
            rss, peak = status_kb(status, "VmRSS"), status_kb(status, "VmHWM")
            found.append({"pid": int(entry.name), "cmdline": cmdline, "rss_kb": rss, "peak_rss_kb": peak})
    return found
