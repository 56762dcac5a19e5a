"""``make capture``: copy the interactive lab's router pcaps to results/captures/ and print one line per flow.

    python -m scenarios.capture_report [--out results/captures]

For each router of the lab (``COMPOSE_PROJECT_NAME``, ``natlab`` by default): its tcpdumps flush, every
pcap file is copied to ``<out>/<router>/`` (scenarios/captures.py names them), and the files of its current
capture are read by the router's own tcpdump and summed per flow (scenarios/pcap_flows.py). Exit status 1
when the lab is not up or no router has captured anything (with how to start captures).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from scenarios.captures import CaptureReadError, copy_pcaps, read_flows, status
from scenarios.harness import REPO, Lab, LabError, Role

RESULTS = REPO / "results" / "captures"
HOW_TO_START = "start captures with `make lab-up CAPTURE=1`, or `docker compose exec <router> nat capture start`"


def report_router(lab: Lab, router: str, out: Path) -> list[str]:
    """Copy one router's pcaps into ``out/<router>/`` and describe them: a header line, then a line per flow
    of each interface of its current capture. Empty when the router has no pcap files."""
    container = lab.container(router)
    current = status(container)
    if not current["files"]:
        return []
    copied = copy_pcaps(container, out / router)
    capture = current["capture"]
    mode = f"{capture['mode']} capture running" if capture else "no capture running"
    size = sum(path.stat().st_size for path in copied)
    lines = [f"{router}: {mode}; {len(copied)} pcap files ({size:,} bytes) copied to {_shown(out / router)}"]
    for role in ("wan", "lan"):
        names = [f["name"] for f in current["files"] if f["name"].startswith(f"{role}.pcap")]
        summary = read_flows(container, names)
        lines += [f"{router} {role}  {flow.describe()}" for flow in summary.flows]
        lines += [f"{router} {role}  (tcpdump: {line})" for line in summary.unparsed if line.startswith("tcpdump")]
    return lines


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make capture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the pcaps go (default results/captures)")
    args = parser.parse_args(argv)
    lab = Lab.interactive()
    try:
        routers = [s.name for s in lab.running() if s.role is Role.ROUTER]
        if not routers:
            print(f"capture: lab {lab.project} is not up (make lab-up CAPTURE=1)", file=sys.stderr)
            return 1
        lines = [line for router in routers for line in report_router(lab, router, args.out.resolve())]
    except (LabError, CaptureReadError) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.close()
    if not lines:
        print(f"capture: no router of lab {lab.project} has pcap files: {HOW_TO_START}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
