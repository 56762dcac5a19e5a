"""``nat capture start [--ring] | stop | status [--json] | flush``: the command line of :mod:`nat.capture`.

Exit status: 0 done; 1 tcpdump failed, or a capture's tcpdump has died (``status``); 2 the operator's mistake
(a capture already running, settings out of range).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nat import capture
from nat.capture import CAPTURE_DIR, Capture, CaptureError, CaptureSettings, CaptureUsageError, Mode

DEFAULTS = CaptureSettings()


def add_parser(commands: Any) -> None:
    """Add ``capture`` and its actions to ``nat``'s subcommands (``commands``: argparse's subparsers)."""
    parser = commands.add_parser("capture", help="packet captures of the WAN and LAN sides (tcpdump)")
    parser.add_argument("--folder", type=Path, default=CAPTURE_DIR, help="where the pcap files go (%(default)s)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    start = actions.add_parser("start", help="capture both interfaces until `nat capture stop`")
    start.add_argument(
        "--ring",
        action="store_true",
        help="keep only the last FILES x MB per interface (--ring-files x --ring-size), overwriting the oldest",
    )
    start.add_argument("--snaplen", type=int, default=DEFAULTS.snaplen, help="bytes kept per packet (%(default)s)")
    start.add_argument("--ring-files", type=int, default=DEFAULTS.ring_files, help="files per ring (%(default)s)")
    start.add_argument(
        "--ring-size", type=int, default=DEFAULTS.ring_megabytes, metavar="MB", help="MB per file (%(default)s)"
    )
    start.set_defaults(handler=_start)

    actions.add_parser("stop", help="stop capturing; tcpdump writes what it holds").set_defaults(handler=_stop)
    status = actions.add_parser("status", help="what is being captured, and the files")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    status.set_defaults(handler=_status)
    flush = actions.add_parser("flush", help="have tcpdump write what it has buffered (before copying the files)")
    flush.set_defaults(handler=_flush)


Action = Callable[[argparse.Namespace], int]


def _guarded(action: Action) -> Action:
    """The action's exit status, with its errors printed: 2 for the operator's, 1 for tcpdump's."""

    def run(args: argparse.Namespace) -> int:
        try:
            status = action(args)
        except CaptureUsageError as exc:
            _error(str(exc))
            return 2
        except (CaptureError, OSError) as exc:
            _error(str(exc))
            return 1
        return status

    return run


@_guarded
def _start(args: argparse.Namespace) -> int:
    settings = CaptureSettings(args.snaplen, args.ring_files, args.ring_size)
    started = capture.start(Mode.RING if args.ring else Mode.FULL, args.state_dir, args.folder, settings)
    print(_describe(started))
    for process in started.processes:
        print(f"  {process.role}  {process.ifname:<6} tcpdump pid {process.pid}: {' '.join(process.command)}")
    return 0


@_guarded
def _stop(args: argparse.Namespace) -> int:
    stopped = capture.stop(args.state_dir)
    print(
        "no capture was running"
        if stopped is None
        else f"stopped the {stopped.mode} capture; files in {stopped.folder}"
    )
    return 0


@_guarded
def _flush(args: argparse.Namespace) -> int:
    told = capture.flush(args.state_dir)
    print(f"flushed {told} tcpdump process(es)" if told else "no capture running")
    return 0


@_guarded
def _status(args: argparse.Namespace) -> int:
    current = capture.running(args.state_dir)
    report = status_report(current, capture.files(args.folder), args.folder)
    print(json.dumps(report, indent=2) if args.json else status_text(report))
    return 1 if report["dead"] else 0


def status_report(current: Capture | None, files: list[capture.PcapFile], folder: Path) -> dict[str, Any]:
    """``status --json``: the capture (None when none runs), each tcpdump with whether it runs (and, if it
    died, what it said), and every pcap file in the folder."""
    processes = []
    dead = []
    for process in current.processes if current else ():
        alive = process.alive()
        processes.append({"role": process.role, "ifname": process.ifname, "pid": process.pid, "running": alive})
        if not alive:
            dead.append(f"{process.role} tcpdump (pid {process.pid}) is gone: {process.messages() or 'no message'}")
    return {
        "capture": None if current is None else {**current.as_dict(), "processes": processes},
        "folder": str(folder),
        "files": [{"name": f.name, "bytes": f.bytes, "modified": f.modified} for f in files],
        "dead": dead,
    }


def status_text(report: dict[str, Any]) -> str:
    current = report["capture"]
    lines = ["no capture running" if current is None else _describe_dict(current)]
    for process in current["processes"] if current else ():
        state = "running" if process["running"] else "NOT RUNNING"
        lines.append(f"  {process['role']}  {process['ifname']:<6} tcpdump pid {process['pid']} {state}")
    lines.append(f"files in {report['folder']}:" if report["files"] else f"no pcap files in {report['folder']}")
    lines += [f"  {f['name']:<24} {f['bytes']:>12,} bytes  {_clock(f['modified'])}" for f in report["files"]]
    lines += [f"error: {message}" for message in report["dead"]]
    return "\n".join(lines)


def _describe(current: Capture) -> str:
    return _describe_dict(current.as_dict())


def _describe_dict(current: dict[str, Any]) -> str:
    settings = current["settings"]
    kept = (
        f"a ring of {settings['ring_files']} files of {settings['ring_megabytes']} MB per interface"
        if current["mode"] == Mode.RING
        else "everything"
    )
    return (
        f"capturing ({current['mode']}: {kept}, {settings['snaplen']} bytes of each packet) "
        f"since {_clock(current['started'])} into {current['folder']}"
    )


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _error(message: str) -> None:
    print(f"nat: {message}", file=sys.stderr)
