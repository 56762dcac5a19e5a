"""`make grid`: every ordered pair of NAT sites in one lab, N attempts per cell, checked against theory.

One bring-up of ``scenarios/topologies/grid.yaml`` (two sites per profile, plus the CGNAT site): the host of
site ``<p>-a`` (the row) connects to the host of site ``<q>-b`` (the column), sends one message and waits
until the path settles (direct confirmed, or the punch gave up). Cells run in rounds of disjoint pairs, a
Latin square, so every host takes part in one attempt at a time and a pair's next attempt comes rounds
later, after its NAT mappings have expired (a short UDP timeout): each attempt starts from clean NATs.

Writes grid.md, grid.html and grid.json under ``results/grid/`` (``--out``), prints the Markdown, and exits 1
when any cell differs from the expected-outcome table (``scenarios.grid_expect``).

    python -m scenarios.grid [--attempts 5] [--sites cone,symmetric,...] [--out results/grid]
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from client.engine.routes import USABLE, Route
from common.rfc4787 import Behaviour
from nat.profiles import get_profile
from scenarios.grid_expect import Site, expected_path
from scenarios.grid_report import Attempt, Cell, failures, write_results
from scenarios.harness import REPO, Lab, LabError, Subnets
from scenarios.topologies.generate import CGNAT, CGNAT_PROFILES, DEFAULT_CGN, DEFAULT_NET, GRID_FILE, SITES

PROJECT = "natlab-grid"
RESULTS = REPO / "results" / "grid"
PUNCH_TIMEOUT_S = 2
UDP_TIMEOUT_S = 8
"""Short NAT mapping timeout in the grid: a pair's next attempt (rounds later) meets none of its old mappings."""
KEEPALIVE_S = 2
"""Well inside UDP_TIMEOUT_S: keeps each host's mappings towards the signal and TURN servers alive meanwhile."""

ATTEMPT_TIMEOUT_S = 2 * PUNCH_TIMEOUT_S + 6
"""Bound on one attempt inside the row's host: the connect's punch, the probe's ack, the settling punch."""


def site_behaviour(name: str) -> Site:
    """A grid site's RFC 4787 behaviour, from the profile records the routers apply."""
    if name == CGNAT:
        carrier, home = (get_profile(p) for p in CGNAT_PROFILES)
        eim = Behaviour.ENDPOINT_INDEPENDENT
        mapping = eim if carrier.mapping is eim and home.mapping is eim else Behaviour.ADDRESS_AND_PORT_DEPENDENT
        filtering = max((carrier.filtering, home.filtering), key=list(Behaviour).index)  # the stricter one
        classic = f"home {home.name} NAT behind a carrier {carrier.name} NAT (100.64.0.0/10 inside)"
        return Site(name, str(mapping), str(filtering), classic=classic)
    return Site.from_profile(get_profile(name))


def grid_lab(sites: Sequence[str]) -> Lab:
    """The grid lab, limited to ``sites`` (their routers and hosts, the server and the TURN server)."""
    hosts = [f"{site}-{side}" for site in sites for side in "ab"]
    routers = [f"nat-{host}" for host in hosts] + [f"cgn-{CGNAT}-{side}" for side in "ab" if CGNAT in sites]
    return Lab(
        (GRID_FILE,),
        project=PROJECT,
        subnets=Subnets({"NATLAB_GRID_NET": DEFAULT_NET, "NATLAB_GRID_CGN": DEFAULT_CGN}),
        services=["server", "turn", *routers, *hosts],
        env={
            "NATLAB_PUNCH_TIMEOUT": str(PUNCH_TIMEOUT_S),
            "NATLAB_KEEPALIVE": str(KEEPALIVE_S),
            "NATLAB_GRID_UDP_TIMEOUT": str(UDP_TIMEOUT_S),
        },
    )


def attempt(lab: Lab, row: str, column: str) -> Attempt:
    """One connect from the row's host to the column's host, from scratch on both sides afterwards.

    ``client connect --settle --probe`` in the row's host: connect, send one message and wait for its ack,
    then wait until the path has settled (direct, or punching gave up and the relay or nothing is left).
    """
    settle = ["--settle", "--timeout", str(ATTEMPT_TIMEOUT_S), "--probe", "grid probe", "--json"]
    try:
        _, out, err = lab.exec_split(row, "client", "connect", column, *settle)
    except LabError as exc:
        out, err = "", str(exc)
    try:
        result: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        result = {"peer": None, "delivered": False, "error": f"attempt failed: {err.strip() or out.strip()}"[:500]}
    lab.exec(row, "client", "disconnect", column)
    lab.exec(column, "client", "disconnect", row)
    status = result.get("peer") or {}
    path = status.get("path", Route.NONE)
    return Attempt(
        path=path if path in USABLE else Route.NONE,
        delivered=bool(result.get("delivered")),
        time_to_first_message_ms=status.get("time_to_first_message_ms"),
        time_to_direct_ms=result.get("time_to_direct_ms"),
        reason=result.get("error") or status.get("reason"),
    )


def run_grid(lab: Lab, sites: Sequence[str], attempts: int) -> list[Cell]:
    """Every ordered pair of ``sites``, ``attempts`` times, in rounds of disjoint pairs."""
    behaviours = {name: site_behaviour(name) for name in sites}
    cells = {}
    for a in sites:
        for b in sites:
            path, why = expected_path(behaviours[a], behaviours[b])
            cells[a, b] = Cell(a, b, path, why, [])
    n = len(sites)
    with ThreadPoolExecutor(max_workers=n) as pool:
        for round_ in range(attempts):
            print(f"grid: attempt {round_ + 1} of {attempts} for {n * n} cells", file=sys.stderr, flush=True)
            for shift in range(n):
                pairs = [(sites[i], sites[(i + shift) % n]) for i in range(n)]
                results = pool.map(lambda p: attempt(lab, f"{p[0]}-a", f"{p[1]}-b"), pairs)
                for pair, result in zip(pairs, results, strict=True):
                    cells[pair].attempts.append(result)
    return list(cells.values())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=5, help="attempts per cell (default 5)")
    parser.add_argument("--sites", default=",".join(SITES), help=f"comma-separated sites (default: {','.join(SITES)})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default results/grid)")
    args = parser.parse_args(argv)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    unknown = sorted(set(sites) - set(SITES))
    if unknown or not sites or args.attempts < 1:
        parser.error(
            f"unknown sites {unknown}; known: {', '.join(SITES)}" if unknown else "need sites and attempts >= 1"
        )
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run still removes its lab (the with block below)
    started = time.perf_counter()
    with grid_lab(sites) as lab:
        up = time.perf_counter() - started
        cells = run_grid(lab, sites, args.attempts)
    wall = time.perf_counter() - started
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{wall:.0f} s (lab up in {up:.0f} s)",
        "attempts per cell": str(args.attempts),
        "command": f"python -m scenarios.grid --attempts {args.attempts} --sites {','.join(sites)}",
    }
    markdown, html = write_results(args.out, cells, [site_behaviour(s) for s in sites], meta)
    print(markdown.read_text())
    print(f"grid written to {markdown} and {html}")
    problems = failures(cells, [site_behaviour(s) for s in sites])
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
