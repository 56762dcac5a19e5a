"""`make interop`: third-party P2P stacks (aiortc, nebula with relays off and on) and natlab's own client,
across NAT site pairs of the grid, N attempts each, checked against ``scenarios.interop_expect``.

One lab: the grid's topology (``scenarios/topologies/grid.yaml``, two sites per profile) limited to the chosen
sites, started from the interop image (`make interop-image`), under its own project name (it takes the grid's
subnets, so it does not run beside `make grid`). For each ordered pair of sites (row: the connecting host
``<p>-a``, column: ``<q>-b``) every stack makes its attempts one after the other, the lighthouse of nebula's
runs in the signal server's container, and every stack starts each attempt on fresh ports. Writes
interop.md, interop.html and interop.json under ``results/interop`` (``--out``), prints the Markdown and the
wall time, and exits 1 when a cell differs from its expectation.

    python -m scenarios.interop [--sites cone,symmetric] [--all] [--attempts 1] [--stacks natlab,aiortc,...]
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from interop.report import Report
from scenarios import interop_stacks, results_index
from scenarios.grid import grid_lab, site_behaviour
from scenarios.harness import REPO, Lab, LabError
from scenarios.interop_expect import STACK_NAMES, expected
from scenarios.interop_report import Cell, failures, write_results
from scenarios.topologies.generate import SITES

PROJECT = "natlab-interop"
RESULTS = REPO / "results" / "interop"
DEFAULT_SITES = ("full-cone", "cone", "symmetric")
"""The default subset (9 pairs): a site that filters nothing, the port-restricted cone and the symmetric NAT
cover every outcome the stacks differ in; ``--all`` runs every grid site."""

Runner = Callable[[Lab, str, str], dict[str, Report]]
RUNNERS: dict[str, Runner] = {
    "natlab": interop_stacks.natlab,
    "aiortc": interop_stacks.webrtc,
    "nebula": lambda lab, a, b: interop_stacks.nebula(lab, relays=False, a=a, b=b),
    "nebula-relays": lambda lab, a, b: interop_stacks.nebula(lab, relays=True, a=a, b=b),
}


def interop_lab(sites: Sequence[str], image: str) -> Lab:
    """The grid lab for ``sites`` (no WireGuard tunnel), from the interop image, as its own project."""
    grid = grid_lab(sites, tunnel=False)
    env = {**grid.env, "NATLAB_IMAGE": image}
    return Lab(grid.files, project=PROJECT, subnets=grid.subnets, env=env, services=grid.only)


def attempt(lab: Lab, name: str, a: str, b: str) -> dict[str, Report]:
    """One attempt; a lab error (a driver that never reported) becomes a failed report on both sides."""
    try:
        return RUNNERS[name](lab, a, b)
    except LabError as exc:
        said = str(exc).splitlines()[0][:300]
        return {side: Report(name, side, error=f"no report: {said}") for side in ("a", "b")}


def run(lab: Lab, sites: Sequence[str], stacks: Sequence[str], attempts: int, budget_s: float) -> list[Cell]:
    """Every ordered pair of ``sites`` with every stack, ``attempts`` times; no attempt starts after
    ``budget_s`` seconds (the cells left have no attempts, and the report says they were not run)."""
    behaviours = {name: site_behaviour(name) for name in sites}
    deadline = time.monotonic() + budget_s
    cells = []
    for row in sites:
        for column in sites:
            for name in stacks:
                allowed, theory, why = expected(name, behaviours[row], behaviours[column])
                cell = Cell(row, column, name, theory, why, sorted(allowed))
                for number in range(attempts):
                    if time.monotonic() > deadline:
                        break
                    print(f"interop: {name} {row} → {column}, attempt {number + 1}", file=sys.stderr, flush=True)
                    cell.attempts.append(attempt(lab, name, f"{row}-a", f"{column}-b"))
                cells.append(cell)
    return cells


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make interop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", default=",".join(DEFAULT_SITES), help="comma-separated grid sites")
    parser.add_argument("--all", action="store_true", help=f"every grid site ({', '.join(SITES)})")
    parser.add_argument("--stacks", default=",".join(STACK_NAMES), help="comma-separated stacks")
    parser.add_argument("--attempts", type=int, default=1, help="attempts per cell and stack (default 1)")
    parser.add_argument("--budget", type=float, default=30.0, help="minutes after which no attempt starts (default 30)")
    parser.add_argument("--image", help="the interop image (default: build it with make interop-image)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default results/interop)")
    args = parser.parse_args(argv)
    sites = list(SITES) if args.all else [s.strip() for s in args.sites.split(",") if s.strip()]
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = sorted(set(sites) - set(SITES)) + sorted(set(stacks) - set(STACK_NAMES))
    if unknown or not sites or not stacks or args.attempts < 1:
        parser.error(f"unknown {unknown}; sites: {', '.join(SITES)}; stacks: {', '.join(STACK_NAMES)}")
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run still removes its lab (the with block below)
    started = time.perf_counter()
    image = args.image or interop_stacks.interop_image()
    with interop_lab(sites, image) as lab:
        up = time.perf_counter() - started
        cells = run(lab, sites, stacks, args.attempts, args.budget * 60)
    wall = time.perf_counter() - started
    command = f"python -m scenarios.interop --sites {','.join(sites)} --stacks {','.join(stacks)}"
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{wall:.0f} s (image and lab up in {up:.0f} s)",
        "attempts per cell and stack": str(args.attempts),
        "image": image,
        "command": f"{command} --attempts {args.attempts}",
    }
    skipped = sum(not cell.attempts for cell in cells)
    if skipped:
        meta["not run"] = f"{skipped} cells: the {args.budget:g} min budget ran out (--budget)"
    markdown, page, _ = write_results(args.out, cells, meta)
    print(markdown.read_text())
    print(f"interop written to {markdown} and {page}; wall time {wall:.0f} s")
    problems = failures(cells)
    for problem in problems:
        print(problem, file=sys.stderr)
    results_index.write(REPO / "results")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
