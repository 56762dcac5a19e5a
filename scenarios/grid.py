"""`make grid`: every ordered pair of NAT sites in one lab, N attempts per cell, checked against theory.

One bring-up of ``scenarios/topologies/grid.yaml`` (two sites per profile, plus the CGNAT site): the host of
site ``<p>-a`` (the row) connects to the host of site ``<q>-b`` (the column), sends one message and waits
until the path settles (direct confirmed, or the punch gave up). Cells run in rounds of disjoint pairs, a
Latin square, so every host takes part in one attempt at a time and a pair's next attempt comes rounds
later, after its NAT mappings have expired (a short UDP timeout): each attempt starts from clean NATs.

After each cell's first attempt that found a path, the row's host pings the column's host over the WireGuard
tunnel (``ping -c 3 -i 0.2 -w 5 <column host>.natlab``): the hosts run the tunnel (``NATLAB_TUNNEL=1``) without
asking for paths of their own (``NATLAB_TUNNEL_CONNECT=0``), so it carries exactly the pair the attempt
connected; a ping that fails where a path exists makes the cell a mismatch. ``--no-tunnel`` leaves it out.

Writes grid.md, grid.html and grid.json under ``results/grid/`` (``--out``), prints the Markdown, and exits 1
when any cell differs from the expected-outcome table (``scenarios.grid_expect``).

``--impair SPEC`` (a preset such as ``lte``, or ``nat impair`` settings such as ``delay=25ms loss=5%``) impairs
every site's access link both ways (``NATLAB_GRID_IMPAIR``; a preset gives each direction its own half), gives
the punch more time on a long round trip, and writes under ``results/grid-impaired-<spec>/``. The expected
outcomes stay the same; a cell matches when more than half of its attempts succeed, and reports its success
rate (``scenarios.grid_report``).

    python -m scenarios.grid [--attempts 5] [--sites cone,symmetric,...] [--impair lte] [--no-tunnel]
                             [--out results/grid]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import re
import signal
import sys
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from client.engine.routes import Route
from common.rfc4787 import Behaviour
from nat.impair.model import ImpairmentError, Impairments
from nat.impair.spec import format_link, parse_link
from nat.profiles import get_profile
from scenarios import results_index
from scenarios.grid_expect import Site, expected_path
from scenarios.grid_report import Attempt, Cell, failures, write_results
from scenarios.harness import REPO, Lab, Subnets
from scenarios.topologies.generate import CGNAT, CGNAT_PROFILES, DEFAULT_CGN, DEFAULT_NET, GRID_FILE, SITES
from scenarios.traversal import settled_attempt

PROJECT = "natlab-grid"
RESULTS = REPO / "results" / "grid"
PUNCH_TIMEOUT_S = 2
UDP_TIMEOUT_S = 8
"""Short NAT mapping timeout in the grid: a pair's next attempt (rounds later) meets none of its old mappings."""
KEEPALIVE_S = 2
"""Well inside UDP_TIMEOUT_S: keeps each host's mappings towards the signal and TURN servers alive meanwhile."""

TUNNEL_PING = ("ping", "-c", "3", "-i", "0.2", "-w", "5")
"""The tunnel column's check: three answers within 5 s (the tunnel opens its link for a new path within its
1 s sync, then WireGuard's handshake takes a round trip)."""

RTTS_TO_PUNCH = 3
"""On impaired links the punch gets this many of the pair's round trips on top of PUNCH_TIMEOUT_S."""


def attempt_timeout_s(punch_timeout_s: float) -> float:
    """Bound on one attempt inside the row's host: the connect's punch, the probe's ack, the settling punch."""
    return 2 * punch_timeout_s + 6


def parse_impairment(spec: str) -> Impairments:
    """``--impair``'s text, for each site's both directions; :class:`ImpairmentError` when it is not one."""
    return Impairments(parse_link(spec, "up"), parse_link(spec, "down"))


def punch_timeout_s(impairments: Impairments) -> int:
    """The grid's punch timeout on these links: both sites alike, so a pair's round trip is twice one site's
    delay (and jitter) each way."""
    one_site = sum(link.delay_ms + link.jitter_ms for link in (impairments.up, impairments.down))
    return math.ceil(PUNCH_TIMEOUT_S + RTTS_TO_PUNCH * 2 * one_site / 1000)


def impaired_folder(spec: str) -> Path:
    """Where an impaired grid's reports go by default: ``results/grid-impaired-lte``, ``...-delay-25ms-loss-5``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", spec.replace("%", "")).strip("-").lower()
    return RESULTS.parent / f"grid-impaired-{slug}"


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


def grid_lab(sites: Sequence[str], impair: str = "", tunnel: bool = True) -> Lab:
    """The grid lab, limited to ``sites`` (their routers and hosts, the server and the TURN server); ``impair``:
    every site router's impairment, both directions (``--impair``); ``tunnel``: every host runs the tunnel,
    carrying only the peers it has a path to."""
    hosts = [f"{site}-{side}" for site in sites for side in "ab"]
    routers = [f"nat-{host}" for host in hosts] + [f"cgn-{CGNAT}-{side}" for side in "ab" if CGNAT in sites]
    punch = punch_timeout_s(parse_impairment(impair)) if impair else PUNCH_TIMEOUT_S
    return Lab(
        (GRID_FILE,),
        project=PROJECT,
        subnets=Subnets({"NATLAB_GRID_NET": DEFAULT_NET, "NATLAB_GRID_CGN": DEFAULT_CGN}),
        services=["server", "turn", *routers, *hosts],
        env={
            "NATLAB_PUNCH_TIMEOUT": str(punch),
            "NATLAB_KEEPALIVE": str(KEEPALIVE_S),
            "NATLAB_GRID_UDP_TIMEOUT": str(UDP_TIMEOUT_S),
            "NATLAB_GRID_IMPAIR": impair,
            "NATLAB_TUNNEL": "1" if tunnel else "0",
        },
    )


def attempt(lab: Lab, row: str, column: str, tunnel: bool = False) -> Attempt:
    """One connect from the row's host to the column's host, from scratch on both sides afterwards.

    ``client connect --settle --probe`` in the row's host: connect, send one message and wait for its ack,
    then wait until the path has settled (direct, or punching gave up and the relay or nothing is left).
    ``tunnel``: then, if there is a path, ping the column's host over the tunnel (:data:`TUNNEL_PING`).
    """
    timeout = attempt_timeout_s(float(lab.env["NATLAB_PUNCH_TIMEOUT"]))
    result = settled_attempt(lab, row, column, timeout, "grid probe")
    if tunnel and result.path != Route.NONE:
        code, _ = lab.exec(row, *TUNNEL_PING, f"{column}.natlab")
        result = dataclasses.replace(result, tunnel=code == 0)
    lab.exec(row, "client", "disconnect", column)
    lab.exec(column, "client", "disconnect", row)
    return result


def run_grid(
    lab: Lab, sites: Sequence[str], attempts: int, tunnel: Collection[tuple[str, str]] | None = None
) -> list[Cell]:
    """Every ordered pair of ``sites``, ``attempts`` times, in rounds of disjoint pairs (cells strict unless the
    lab's links are impaired). The cells in ``tunnel`` (None: all of them, if the lab runs the tunnel) ping
    over the tunnel after their first attempt."""
    if lab.env.get("NATLAB_TUNNEL") != "1":
        tunnel = ()
    pinging = {(a, b) for a in sites for b in sites} if tunnel is None else set(tunnel)
    behaviours = {name: site_behaviour(name) for name in sites}
    strict = not lab.env.get("NATLAB_GRID_IMPAIR")
    cells = {}
    for a in sites:
        for b in sites:
            path, why = expected_path(behaviours[a], behaviours[b])
            cells[a, b] = Cell(a, b, path, why, [], strict)
    n = len(sites)
    with ThreadPoolExecutor(max_workers=n) as pool:
        for round_ in range(attempts):
            print(f"grid: attempt {round_ + 1} of {attempts} for {n * n} cells", file=sys.stderr, flush=True)
            for shift in range(n):
                pairs = [(sites[i], sites[(i + shift) % n]) for i in range(n)]
                ping = [round_ == 0 and pair in pinging for pair in pairs]
                results = pool.map(lambda p, t: attempt(lab, f"{p[0]}-a", f"{p[1]}-b", t), pairs, ping)
                for pair, result in zip(pairs, results, strict=True):
                    cells[pair].attempts.append(result)
    return list(cells.values())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=5, help="attempts per cell (default 5)")
    parser.add_argument("--sites", default=",".join(SITES), help=f"comma-separated sites (default: {','.join(SITES)})")
    parser.add_argument(
        "--impair",
        default="",
        metavar="SPEC",
        help="impair every site's link both ways: a preset (dsl, cable, lte, satellite, lossy-wifi) or nat impair "
        "settings ('delay=25ms loss=5%%'); reports go to results/grid-impaired-<spec> unless --out says",
    )
    parser.add_argument(
        "--no-tunnel", action="store_true", help="no tunnel column (the hosts run without the WireGuard tunnel)"
    )
    parser.add_argument("--out", type=Path, help="results folder (default results/grid)")
    args = parser.parse_args(argv)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    unknown = sorted(set(sites) - set(SITES))
    if unknown or not sites or args.attempts < 1:
        parser.error(
            f"unknown sites {unknown}; known: {', '.join(SITES)}" if unknown else "need sites and attempts >= 1"
        )
    impair = " ".join(args.impair.split())
    try:
        impairments = parse_impairment(impair) if impair else Impairments()
    except ImpairmentError as exc:
        parser.error(f"--impair {impair!r}: {exc}")
    out = args.out or (impaired_folder(impair) if impair else RESULTS)
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run still removes its lab (the with block below)
    started = time.perf_counter()
    with grid_lab(sites, impair, tunnel=not args.no_tunnel) as lab:
        up = time.perf_counter() - started
        cells = run_grid(lab, sites, args.attempts)
    wall = time.perf_counter() - started
    command = f"python -m scenarios.grid --attempts {args.attempts} --sites {','.join(sites)}"
    command += " --no-tunnel" if args.no_tunnel else ""
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{wall:.0f} s (lab up in {up:.0f} s)",
        "attempts per cell": str(args.attempts),
        "command": command + (f" --impair '{impair}'" if impair else ""),
    }
    if impair:
        meta["impairment"] = (
            f"{impair}: every site's router, up {format_link(impairments.up)}, down {format_link(impairments.down)}; "
            f"punch timeout {lab.env['NATLAB_PUNCH_TIMEOUT']} s"
        )
    markdown, html = write_results(out, cells, [site_behaviour(s) for s in sites], meta)
    print(markdown.read_text())
    print(f"grid written to {markdown} and {html}")
    problems = failures(cells, [site_behaviour(s) for s in sites])
    for problem in problems:
        print(problem, file=sys.stderr)
    results_index.write(REPO / "results")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
