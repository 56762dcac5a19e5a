"""`make interop`'s results: per cell (a NAT site pair and a stack) the attempts' reports, checked against
``scenarios.interop_expect``, rendered as Markdown, HTML and JSON under results/interop.

A cell matches when every attempt's side-a report took a path the stack may take there (and was connected
exactly when that path is not ``none``). Pure rendering: whatever varies between runs comes in as ``meta``.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interop.report import NONE, Report
from scenarios.interop_expect import STACKS, stack

TITLE = "natlab interop: third-party P2P stacks across NAT site pairs"
_DASH = "—"
QUIRKS = (
    "aiortc may be relayed where punching works: aioice nominates aggressively, so whichever pair's check "
    "succeeds first (a TURN relay pair can) carries the data, and it never moves to a better pair.",
    "nebula with relays on may stay relayed where punching works: its relayed and direct handshakes race, and "
    "1.6 never moves a relayed tunnel to a direct path.",
    "nebula without relays has no way round a symmetric NAT opposite a port-restricted one: its handshakes "
    "stay UNREPLIED in the symmetric router's conntrack and the tunnel never comes up.",
    "aiortc's time to connect includes ICE's pacing of checks and DTLS and SCTP set-up before the data channel "
    "opens; natlab's is its own time to a confirmed direct path (or to the first message when relayed); "
    "nebula's is from the first ping (which starts its lighthouse query and handshake) to the first answer.",
    "aiortc names the nominated pair's local candidate by its base: a srflx path shows as `local host`.",
)


@dataclass
class Cell:
    """One site pair (row ``a``: the connecting side's site, column ``b``) and one stack, with its attempts."""

    a: str
    b: str
    stack: str
    theory: str
    why: str
    allowed: list[str]
    attempts: list[dict[str, Report]] = field(default_factory=list)

    def attempt_ok(self, reports: dict[str, Report]) -> bool:
        first = reports["a"]
        return first.path in self.allowed and first.connected == (first.path != NONE)

    @property
    def matches(self) -> bool:
        return bool(self.attempts) and all(self.attempt_ok(reports) for reports in self.attempts)

    @property
    def paths(self) -> list[str]:
        return [reports["a"].path for reports in self.attempts]

    def median(self, what: str) -> float | None:
        values = [getattr(reports["a"], what) for reports in self.attempts]
        present = [value for value in values if value is not None]
        return round(statistics.median(present), 1) if present else None

    def summary(self) -> str:
        """``direct 3/3`` (the most common path, how many attempts took it), ✗ and the allowed paths if off."""
        paths = self.paths
        if not paths:
            return "not run"
        common = max(sorted(set(paths)), key=paths.count)
        text = f"{common} {paths.count(common)}/{len(paths)}"
        return text if self.matches else f"✗ {text} (expected {' or '.join(self.allowed)})"

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "attempts"}
        data["attempts"] = [{side: asdict(report) for side, report in reports.items()} for reports in self.attempts]
        data["matches"] = self.matches
        return data


def _ms(value: float | None) -> str:
    return _DASH if value is None else f"{value:g} ms"


def _pairs(cells: Sequence[Cell]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((cell.a, cell.b) for cell in cells))


def _stacks(cells: Sequence[Cell]) -> list[str]:
    present = {cell.stack for cell in cells}
    return [known.name for known in STACKS if known.name in present]


def _grid(cells: Sequence[Cell]) -> dict[tuple[str, str, str], Cell]:
    return {(cell.a, cell.b, cell.stack): cell for cell in cells}


def tables(cells: Sequence[Cell]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the report's three tables: paths, time to connect, RTT."""
    grid, stacks = _grid(cells), _stacks(cells)
    header = ["a → b", "theory", *(stack(name).title for name in stacks)]
    out = []
    for title, render in (
        ("Path (side a, most common / attempts)", Cell.summary),
        ("Time to connect (side a, median)", lambda cell: _ms(cell.median("time_to_connect_ms"))),
        ("Round trip once connected (side a, median)", lambda cell: _ms(cell.median("rtt_ms"))),
    ):
        rows = []
        for a, b in _pairs(cells):
            found = [grid.get((a, b, name)) for name in stacks]
            theory = next((cell.theory for cell in found if cell is not None), _DASH)
            rows.append([f"{a} → {b}", theory, *(_DASH if cell is None else render(cell) for cell in found)])
        out.append((title, header, rows))
    return out


def failures(cells: Sequence[Cell]) -> list[str]:
    return [
        f"interop: {cell.stack} {cell.a} → {cell.b}: took {', '.join(cell.paths) or 'nothing'}, "
        f"expected {' or '.join(cell.allowed)}"
        for cell in cells
        if cell.attempts and not cell.matches
    ]


def render_markdown(cells: Sequence[Cell], meta: dict[str, str]) -> str:
    out = [f"# {TITLE}", ""]
    out += [f"- {key}: {value}" for key, value in meta.items()]
    out.append("")
    for title, header, rows in tables(cells):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    problems = failures(cells)
    out += ["## Against the expectations", ""]
    out += [f"- {problem.removeprefix('interop: ')}" for problem in problems] or [
        "All cells match the expected outcomes."
    ]
    out += ["", "## What each stack is expected to do", ""]
    out += [f"- **{known.title}**: {known.behaviour}" for known in STACKS]
    out += ["", "## Quirks", ""]
    out += [f"- {quirk}" for quirk in QUIRKS]
    return "\n".join(out) + "\n"


def render_html(cells: Sequence[Cell], meta: dict[str, str]) -> str:
    e = html.escape
    colours = {"direct": "#cfe8cf", "relay": "#fbe7b5", "none": "#f3c4c4"}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(TITLE)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}"
        ".bad{outline:2px solid #c00}</style>",
        "</head><body>",
        f"<h1>{e(TITLE)}</h1>",
        "<ul>" + "".join(f"<li>{e(key)}: {e(value)}</li>" for key, value in meta.items()) + "</ul>",
    ]
    grid, stacks = _grid(cells), _stacks(cells)
    for index, (title, header, rows) in enumerate(tables(cells)):
        out += [f"<h2>{e(title)}</h2>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
        for (a, b), row in zip(_pairs(cells), rows, strict=True):
            tds = [f"<td>{e(row[0])}</td>", f"<td>{e(row[1])}</td>"]
            for name, text in zip(stacks, row[2:], strict=True):
                cell = grid.get((a, b, name))
                if cell is None:
                    tds.append(f"<td>{e(text)}</td>")
                    continue
                paths = cell.paths
                colour = colours.get(max(sorted(set(paths)), key=paths.count), "#fff") if paths else "#fff"
                tip = "\n".join(
                    f"attempt {i + 1}: "
                    + "; ".join(f"{side}: {r.path} ({r.how_path_was_known})" for side, r in rep.items())
                    for i, rep in enumerate(cell.attempts)
                )
                tip = f"expected {' or '.join(cell.allowed)} ({cell.why})\n{tip}"
                bad = ' class="bad"' if index == 0 and not cell.matches else ""
                tds.append(f'<td{bad} style="background:{colour}" title="{e(tip)}">{e(text)}</td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</table>")
    problems = failures(cells)
    out.append("<h2>Against the expectations</h2>")
    out.append(
        "<ul>" + "".join(f"<li>{e(p.removeprefix('interop: '))}</li>" for p in problems) + "</ul>"
        if problems
        else "<p>All cells match the expected outcomes.</p>"
    )
    out += ["<h2>What each stack is expected to do</h2>", "<ul>"]
    out += [f"<li><b>{e(known.title)}</b>: {e(known.behaviour)}</li>" for known in STACKS]
    out += ["</ul>", "<h2>Quirks</h2>", "<ul>"] + [f"<li>{e(quirk)}</li>" for quirk in QUIRKS] + ["</ul>"]
    out += ["</body></html>"]
    return "\n".join(out) + "\n"


def write_results(folder: Path, cells: Sequence[Cell], meta: dict[str, str]) -> tuple[Path, Path, Path]:
    """interop.md, interop.html and interop.json in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown, page, data = folder / "interop.md", folder / "interop.html", folder / "interop.json"
    markdown.write_text(render_markdown(cells, meta), encoding="utf-8")
    page.write_text(render_html(cells, meta), encoding="utf-8")
    document = {"meta": meta, "cells": [cell.to_json() for cell in cells], "failures": failures(cells)}
    data.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return markdown, page, data
