"""The reduced traversal grid, inside `make test`: four sites, every ordered pair, two attempts per cell.

`make grid` runs the full grid (every profile and the CGNAT site, five attempts); this runs the same code on
a subset that still covers each rule of the expected-outcome table: both sides cone-like (direct), a
symmetric side against an address-only filter (direct) and against a port-restricted one (relay), both
symmetric (relay), and UDP blocked (relay). The tunnel column only in two cells, after their first attempt:
cone -> cone (direct) and symmetric -> symmetric (relayed); `make grid` pings in every cell.
"""

from __future__ import annotations

from pathlib import Path

from scenarios.grid import grid_lab, run_grid, site_behaviour
from scenarios.grid_report import failures, write_results

SITES = ("cone", "restricted-cone", "symmetric", "udp-blocked")
TUNNEL_CELLS = (("cone", "cone"), ("symmetric", "symmetric"))


def test_reduced_grid_matches_theory(docker_ready: None, tmp_path: Path) -> None:
    with grid_lab(SITES) as lab:
        cells = run_grid(lab, SITES, attempts=2, tunnel=TUNNEL_CELLS)
    sites = [site_behaviour(s) for s in SITES]
    markdown, _ = write_results(tmp_path, cells, sites, {"command": "scenarios/test_grid.py"})
    assert len(cells) == len(SITES) ** 2
    assert failures(cells, sites) == [], markdown.read_text()
    pinged = {(c.a, c.b): (c.tunnel_answered, c.tunnel_pinged) for c in cells if c.tunnel_pinged}
    assert pinged == dict.fromkeys(TUNNEL_CELLS, (1, 1)), markdown.read_text()
