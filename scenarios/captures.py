"""A router's packet captures seen from the host: flush, copy the pcap files out, summarise them per flow.

Works on a router's container (docker SDK), so the harness's artifacts and ``make capture`` share it. The
router side is ``nat capture`` (nat/capture.py); the files are read with the router's own tcpdump, so the
host needs none. Names on the host end in ``.pcap`` and number a ring's files oldest first: a router's
``wan.pcap2`` (tcpdump's ring slot) becomes ``wan-1.pcap`` when it is the oldest; ``previous/`` (the
capture before a restart) becomes ``previous-wan-1.pcap``.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
from docker.models.containers import Container

from nat.capture import CAPTURE_DIR as ROUTER_CAPTURE_DIR
from scenarios.pcap_flows import TCPDUMP_READ, Summary, summarise

CAPTURE_DIR = PurePosixPath(ROUTER_CAPTURE_DIR)
"""Where the routers write: a path in the router's filesystem, not the host's."""
_PCAP = re.compile(r"^(?P<role>[a-z]+)\.pcap(?P<slot>\d*)$")


class CaptureReadError(RuntimeError):
    """The router's tcpdump could not read a file: its message, verbatim."""


@dataclass(frozen=True)
class Stored:
    """One pcap file in the router: its path relative to the capture folder and when it was last written."""

    name: str
    modified: float

    @property
    def role(self) -> str:
        match = _PCAP.match(PurePosixPath(self.name).name)
        return match["role"] if match else ""

    @property
    def previous(self) -> bool:
        return PurePosixPath(self.name).parent.name == "previous"


def host_names(stored: Iterable[Stored]) -> dict[str, str]:
    """Router file name -> the name it gets on the host: ``<role>.pcap`` for a single file, ``<role>-<n>.pcap``
    for a ring's files numbered from the oldest, ``previous-`` in front for the capture before."""
    groups: dict[tuple[bool, str], list[Stored]] = {}
    for item in stored:
        if item.role:
            groups.setdefault((item.previous, item.role), []).append(item)
    names = {}
    for (previous, role), items in groups.items():
        prefix = "previous-" if previous else ""
        ring = any(PurePosixPath(i.name).name != f"{role}.pcap" for i in items)  # tcpdump numbered them
        for number, item in enumerate(sorted(items, key=lambda i: (i.modified, i.name)), 1):
            names[item.name] = f"{prefix}{role}-{number}.pcap" if ring else f"{prefix}{role}.pcap"
    return names


def flush(router: Container) -> None:
    """Have the router's tcpdumps write what they hold (``nat capture flush``; nothing when none runs)."""
    router.exec_run(["nat", "capture", "flush"])


def status(router: Container) -> dict[str, Any]:
    """``nat capture status --json`` (its exit status 1 only says a tcpdump died: the JSON is still there)."""
    result = router.exec_run(["nat", "capture", "status", "--json"], demux=True)
    out, err = (bytes(part or b"").decode("utf-8", "replace") for part in result.output)
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        raise CaptureReadError(f"nat capture status failed ({result.exit_code}): {err or out}") from None
    return report


def copy_pcaps(router: Container, folder: Path, prefix: str = "") -> list[Path]:
    """Flush, then copy every pcap file of the router into ``folder`` (names: :func:`host_names`, after
    ``prefix``). Returns the files written; none when the router never captured."""
    flush(router)
    try:
        chunks, _ = router.get_archive(str(CAPTURE_DIR))
    except docker.errors.NotFound:
        return []
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        members = {
            str(PurePosixPath(m.name).relative_to(CAPTURE_DIR.name)): m
            for m in archive.getmembers()
            if m.isfile() and _PCAP.match(PurePosixPath(m.name).name)
        }
        names = host_names(Stored(name, member.mtime) for name, member in members.items())
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, member in members.items():
            source = archive.extractfile(member)
            if source is None:
                continue
            target = folder / f"{prefix}{names[name]}"
            target.write_bytes(source.read())
            written.append(target)
    return sorted(written)


def read_flows(router: Container, files: Iterable[str]) -> Summary:
    """The flows in the router's files (paths relative to its capture folder), read by its own tcpdump.

    A ring file that tcpdump was writing as it was read may end in half a packet: tcpdump then reports a
    truncated file after printing every whole packet, which is kept as a line of the summary's ``unparsed``.
    """
    lines: list[str] = []
    for name in files:
        path = str(CAPTURE_DIR / name)
        result = router.exec_run([*TCPDUMP_READ, path], demux=True)
        out, err = (bytes(part or b"").decode("utf-8", "replace") for part in result.output)
        if result.exit_code and not out:
            raise CaptureReadError(f"tcpdump -r {path} failed ({result.exit_code}): {err.strip()}")
        lines += out.splitlines()
        lines += [line for line in err.splitlines() if line and not line.startswith("reading from file")]
    return summarise(lines)
