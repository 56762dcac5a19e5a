"""`make impair-check`: each router of the interactive lab, configured against measured, as one table.

For every router with a host behind it: the impairments in force (its ``impair.json``), a ``client
linecheck`` from the host to an echo in the server container (one-way delay, jitter, loss and its bursts,
duplicates, reordering, per direction) and iperf3 in each shaped direction. Each row says what was allowed
(:mod:`scenarios.impair_tolerance` says why); the exit status is 0 when every row is within it, 1 otherwise
or when the lab is not running.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import closing

from nat.impair.spec import format_link
from scenarios.harness import Lab, LabError
from scenarios.impair_tolerance import render
from scenarios.line_measure import Measurement, measure, sites

DEFAULT_SECONDS = 5.0


def heading(measured: Measurement) -> str:
    site, probe, report = measured.site, measured.probe, measured.report
    rtt = report.get("rtt_ms") or {}
    return (
        f"{site.router}: up {format_link(measured.impairments.up)}; down {format_link(measured.impairments.down)}\n"
        f"  {site.host} -> echo in {site.echo} ({site.echo_address}): {probe.count} datagrams of {probe.size} bytes"
        f" at {probe.rate:g}/s; round trip median {rtt.get('p50', '-')} ms, {report['answered']} answered"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make impair-check", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="each line check's length (5)")
    parser.add_argument("--no-rate", action="store_true", help="skip iperf3 (shaped rates are not measured)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        parser.error(f"--seconds {args.seconds:g}: expected 1-600")
    with closing(Lab.interactive()) as lab:
        services = lab.running()
        if not services:
            print(f"natlab: the lab '{lab.project}' is not running (start it with `make lab-up`)", file=sys.stderr)
            return 1
        try:
            measured = [measure(lab, site, args.seconds, not args.no_rate) for site in sites(services)]
        except LabError as exc:
            print(f"impair-check: {exc}", file=sys.stderr)
            return 1
    for one in measured:
        print(heading(one))
    print(render([row for one in measured for row in one.rows]))
    failed = [one.site.router for one in measured if not one.ok]
    if failed:
        print(f"impair-check: {', '.join(failed)}: measured outside the tolerance (see FAIL rows)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
