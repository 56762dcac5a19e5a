"""The grid's results: per-cell statistics and the reports `make grid` writes (Markdown, HTML, JSON).

A cell is one ordered pair of sites (row "a": the connecting host's site, column "b": the other host's) with
its expected path and the attempts made. The statistics are strict on purpose: a cell matches only when every
attempt took the expected path and delivered, because a flaky cell is exactly what the grid exists to catch.
On impaired links (``make grid GRID_ARGS='--impair lte'``) loss may cost an attempt, so a cell there is not
strict: it matches when more than half of its attempts succeeded (took the expected path and delivered), and
its success rate says how often.

Pure text rendering: no clock, no environment. Whatever varies between runs (date, wall time, command) comes
in as ``meta``, so the same results always render to the same bytes.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.engine.routes import Route
from scenarios.grid_expect import RULES, Site, explain_rules

PATHS = (Route.NONE, Route.RELAY, Route.DIRECT)
"""The paths an attempt can take, worst first: ties in a cell's majority go to the worse one."""

_RANK = {path: rank for rank, path in enumerate(PATHS)}
_DASH = "—"
_ALL_CLEAR = "All cells match the expected outcomes."
_TITLE = "natlab grid: every ordered pair of NAT sites"
_ROWS = "Rows are the connecting host's site (a), columns the other host's site (b)."
_MARK = (
    "✗ marks a cell that differs from the expected outcome and says what was expected; a cell matches only when "
    "every attempt took the expected path and delivered its first message, and every ping over the tunnel "
    "after an attempt with a path was answered."
)
_MARK_IMPAIRED = (
    "On these impaired links a cell matches when more than half of its attempts succeeded (took the expected path "
    "and delivered their first message) and more than half of its pings over the tunnel were answered; `N% ok` "
    "is the first share when it is not all of them, and ✗ marks a cell where either is half or less."
)
_LEGEND_MD = (
    f"{_ROWS} Each cell reads `path delivered/attempts · median time to first message · ↗median time to direct "
    "· tunnel answered/pinged` (↗ only for direct cells; `tunnel` where the cell pinged over the WireGuard tunnel "
    "after an attempt that found a path: `ping -c 3 -i 0.2 -w 5 <column host>.natlab` from the row's host); the "
    "path is the one most attempts took (a tie counts as the worse)."
)
_LEGEND_HTML = (
    f"{_ROWS} Each cell is coloured by the path most attempts took (a tie counts as the worse) and shows how many "
    "attempts delivered their first message, the median time to it and, for direct cells, the median time to "
    "direct (↗), and how many pings over the WireGuard tunnel after an attempt were answered (where the cell "
    "pinged). Hover over a cell for the expectation and every attempt."
)


@dataclass(frozen=True)
class Attempt:
    """One connect-and-send between the pair's hosts, as the connecting host's agent reported it."""

    path: str
    delivered: bool
    time_to_first_message_ms: float | None
    time_to_direct_ms: float | None
    reason: str | None
    tunnel: bool | None = None
    """A ping over the tunnel after the attempt (row host -> ``<column host>.natlab``) was answered; None: not
    pinged (the cell pings on some attempts only, and never without a path)."""

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"attempt path {self.path!r} is not one of {', '.join(PATHS)}")

    def describe(self) -> str:
        """One line per attempt, for tooltips and the mismatch list: what a reader needs to see the failure."""
        parts = [self.path, "delivered" if self.delivered else "not delivered"]
        if self.time_to_first_message_ms is not None:
            parts.append(f"first message {_ms(self.time_to_first_message_ms)}")
        if self.time_to_direct_ms is not None:
            parts.append(f"direct {_ms(self.time_to_direct_ms)}")
        if self.reason:
            parts.append(self.reason)
        if self.tunnel is not None:
            parts.append(f"tunnel ping {'answered' if self.tunnel else 'failed'}")
        return ", ".join(parts)


@dataclass
class Cell:
    """One ordered pair of sites: what theory expects (``expected``, ``why``) and the attempts made."""

    a: str
    b: str
    expected: str
    why: str
    attempts: list[Attempt] = field(default_factory=list)
    strict: bool = True
    """Every attempt must succeed (perfect links); ``False`` on impaired links: more than half must."""

    @property
    def path(self) -> str:
        """The path most attempts took; a tie goes to the worse path, so a coin flip never looks good."""
        if not self.attempts:
            return Route.NONE
        counts = {path: sum(1 for attempt in self.attempts if attempt.path == path) for path in PATHS}
        return max(PATHS, key=lambda path: (counts[path], -_RANK[path]))

    @property
    def delivered(self) -> int:
        """How many attempts delivered the first message."""
        return sum(1 for attempt in self.attempts if attempt.delivered)

    @property
    def succeeded(self) -> int:
        """How many attempts succeeded: took the expected path and delivered the first message."""
        return sum(1 for attempt in self.attempts if attempt.path == self.expected and attempt.delivered)

    @property
    def success_rate(self) -> float:
        """Share of attempts that succeeded (0.0 when nothing was attempted)."""
        return self.succeeded / len(self.attempts) if self.attempts else 0.0

    @property
    def median_first_message_ms(self) -> float | None:
        """Median time to the first delivered message over the attempts that measured one."""
        return _median(attempt.time_to_first_message_ms for attempt in self.attempts)

    @property
    def median_direct_ms(self) -> float | None:
        """Median time to a confirmed direct path over the attempts that reached one."""
        return _median(attempt.time_to_direct_ms for attempt in self.attempts)

    @property
    def tunnel_pinged(self) -> int:
        """How many attempts with a path were followed by a ping over the tunnel."""
        return sum(1 for attempt in self.attempts if attempt.tunnel is not None and attempt.path != Route.NONE)

    @property
    def tunnel_answered(self) -> int:
        """How many of those pings were answered."""
        return sum(1 for attempt in self.attempts if attempt.tunnel and attempt.path != Route.NONE)

    @property
    def tunnel_ok(self) -> bool:
        """Where a path existed the tunnel carried a ping: every time (strict), or more than half the time."""
        if self.strict:
            return self.tunnel_answered == self.tunnel_pinged
        return self.tunnel_pinged == 0 or 2 * self.tunnel_answered > self.tunnel_pinged

    @property
    def matches(self) -> bool:
        """Strict: every attempt took the expected path and delivered (no attempts is no evidence: no match),
        and every ping over the tunnel after one was answered; not strict (impaired links): more than half of
        them did."""
        if not self.attempts or not self.tunnel_ok:
            return False
        if self.strict:
            return self.succeeded == len(self.attempts)
        return 2 * self.succeeded > len(self.attempts)

    def label(self) -> str:
        """The compact figures of a table cell: ``direct 5/5 · 3.1 ms · ↗2.0 ms`` (and ``80% ok`` after the
        counts on an impaired link where not every attempt succeeded)."""
        parts = [f"{self.path} {self.delivered}/{len(self.attempts)}"]
        if not self.strict and self.attempts and self.succeeded < len(self.attempts):
            parts.append(f"{self.success_rate:.0%} ok")
        if self.median_first_message_ms is not None:
            parts.append(_ms(self.median_first_message_ms))
        if self.path == Route.DIRECT and self.median_direct_ms is not None:
            parts.append(f"↗{_ms(self.median_direct_ms)}")
        if self.tunnel_pinged:
            parts.append(f"tunnel {self.tunnel_answered}/{self.tunnel_pinged}")
        return " · ".join(parts)

    def summary(self) -> str:
        """One line for logs and the mismatch list: the pair, what happened, and what was expected."""
        most = "in every attempt" if self.strict else "in more than half of the attempts"
        verdict = "ok" if self.matches else f"MISMATCH, expected {self.expected} {most}"
        mix = ", ".join(f"{n} {p}" for p in reversed(PATHS) if (n := sum(1 for x in self.attempts if x.path == p)))
        return f"{self.a} → {self.b}: {self.label()} ({mix or 'no attempts'}): {verdict}"


def mismatches(cells: Iterable[Cell]) -> list[Cell]:
    """The cells that differ from their expected outcome (flaky ones included)."""
    return [cell for cell in cells if not cell.matches]


def failures(cells: Sequence[Cell], sites: Sequence[Site]) -> list[str]:
    """One line per reason `make grid` must fail: each mismatching cell, then each pair of sites without a cell.

    Empty means the run proved the whole table; a pair that never ran proves nothing, so it counts too.
    """
    return [headline for headline, _ in _findings(cells, [site.name for site in sites])]


def render_markdown(cells: Sequence[Cell], sites: Sequence[Site], meta: dict[str, str]) -> str:
    """The grid as a Markdown page: meta, legend, the a x b table, mismatches, the sites and the rules."""
    grid = _by_pair(cells)
    names = [site.name for site in sites]
    lines = [f"# {_TITLE}", ""]
    lines += [f"- **{_md(key)}**: {_md(value)}" for key, value in meta.items()]
    lines += ["", f"{_LEGEND_MD} {_mark(cells)}", ""]
    lines.append("| a ↓ · b → | " + " | ".join(_md(name) for name in names) + " |")
    lines.append("| --- |" + " --- |" * len(names))
    for a in names:
        row = [_md(_markdown_cell(grid.get((a, b)))) for b in names]
        lines.append(f"| **{_md(a)}** | " + " | ".join(row) + " |")
    lines += ["", "## Mismatches", ""]
    lines += _markdown_mismatches(cells, names)
    lines += [
        "",
        "## Sites",
        "",
        "| site | classic name | mapping | filtering | UDP |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {_md(s.name)} | {_md(s.classic or _DASH)} | {s.mapping} | {s.filtering} | "
        f"{'blocked' if s.udp_blocked else 'open'} |"
        for s in sites
    ]
    lines += ["", "## Expected outcomes", "", explain_rules()]
    return "\n".join(lines).rstrip("\n") + "\n"


def _mark(cells: Sequence[Cell]) -> str:
    """How to read ✗: the strict rule, or the impaired links' majority rule (a grid is one or the other)."""
    return _MARK if all(cell.strict for cell in cells) else _MARK_IMPAIRED


def _markdown_cell(cell: Cell | None) -> str:
    """A table cell's text; a mismatch leads with ✗ so it stands out in a plain-text diff too."""
    if cell is None:
        return f"{_DASH} not run"
    if cell.matches:
        return cell.label()
    return f"✗ {cell.label()} ({_expectation(cell)})"


def _expectation(cell: Cell) -> str:
    """What a mismatching cell should have shown: the path, or when that was right, that it is flaky."""
    if cell.path != cell.expected:
        return f"expected {cell.expected}"
    if not cell.tunnel_ok:
        return "expected the tunnel to carry the ping" + ("" if cell.strict else " more than half the time")
    if not cell.strict:
        return f"expected {cell.expected} in more than half"
    return f"expected {cell.expected} {len(cell.attempts)}/{len(cell.attempts)}"


def _findings(cells: Sequence[Cell], names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """What the mismatch lists show, in grid order: each mismatching cell with its attempts, then unrun pairs.

    Shared by both renderings so that Markdown and HTML can never disagree about what went wrong.
    """
    findings = [
        (
            f"{cell.summary()}; why {cell.expected}: {cell.why}",
            [f"attempt {i}: {x.describe()}" for i, x in enumerate(cell.attempts, 1)],
        )
        for cell in mismatches(_ordered(cells, names))
    ]
    run = {(cell.a, cell.b) for cell in cells}
    findings += [(f"{a} → {b}: not run", []) for a in names for b in names if (a, b) not in run]
    return findings


def _markdown_mismatches(cells: Sequence[Cell], names: Sequence[str]) -> list[str]:
    """One bullet per finding with its attempts nested, or the all-clear."""
    findings = _findings(cells, names)
    if not findings:
        return [_ALL_CLEAR]
    lines = []
    for headline, details in findings:
        lines.append(f"- {_md(headline)}")
        lines += [f"  - {_md(detail)}" for detail in details]
    return lines


def render_html(cells: Sequence[Cell], sites: Sequence[Site], meta: dict[str, str]) -> str:
    """The grid as one self-contained HTML page: inline CSS, no scripts, nothing fetched; all text escaped."""
    grid = _by_pair(cells)
    names = [site.name for site in sites]
    e = _escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(_TITLE)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(_TITLE)}</h1>",
        "<dl>",
        *(f"<dt>{e(key)}</dt><dd>{e(value)}</dd>" for key, value in meta.items()),
        "</dl>",
        f"<p>{e(_LEGEND_HTML)} {e(_mark(cells))}</p>",
        '<p class="legend"><span class="direct">direct</span> <span class="relay">relay</span> '
        '<span class="none">none</span> <span class="mismatch">✗ differs from expected</span></p>',
        '<table class="grid">',
        "<thead><tr><th>a ↓ · b →</th>" + "".join(f'<th scope="col">{e(b)}</th>' for b in names) + "</tr></thead>",
        "<tbody>",
    ]
    for a in names:
        row = "".join(_html_cell(grid.get((a, b)), a, b) for b in names)
        out.append(f'<tr><th scope="row">{e(a)}</th>{row}</tr>')
    out += ["</tbody>", "</table>", "<h2>Mismatches</h2>", *_html_mismatches(cells, names)]
    out += ["<h2>Sites</h2>", *_html_sites(sites), "<h2>Expected outcomes</h2>", "<ul>"]
    out += [f"<li>{e(rule)}</li>" for rule in RULES]
    out += ["</ul>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #999;padding:.4em .6em;text-align:left;vertical-align:top}"
    "td.cell{min-width:9em}"
    ".direct{background:#c8efc8}"
    ".relay{background:#ffe1a6}"
    ".none{background:#f6b8b8}"
    ".notrun{background:#eee;color:#777}"
    ".mismatch{outline:3px solid #c00;outline-offset:-3px}"
    ".legend span{padding:.2em .5em;margin-right:.3em}"
    ".path{font-weight:bold}"
    ".expected{color:#c00;font-weight:bold}"
    ".figures{font-size:.9em}"
    "dt{font-weight:bold;float:left;clear:left;margin-right:.5em}dt::after{content:':'}dd{margin:0}"
)


def _html_cell(cell: Cell | None, a: str, b: str) -> str:
    """One grid cell: coloured by the path taken, figures inside, every attempt in the tooltip."""
    if cell is None:
        return f'<td class="cell notrun" title="{_escape(f"{a} → {b}: not run")}">{_DASH} not run</td>'
    classes = f"cell {cell.path}" + ("" if cell.matches else " mismatch")
    tooltip = "\n".join(
        [f"{a} → {b}: expected {cell.expected}: {cell.why}"]
        + [f"attempt {i}: {attempt.describe()}" for i, attempt in enumerate(cell.attempts, 1)]
    )
    figures = [f"{cell.delivered}/{len(cell.attempts)} delivered"]
    if not cell.strict and cell.succeeded < len(cell.attempts):
        figures.append(f"{cell.success_rate:.0%} ok")
    if cell.median_first_message_ms is not None:
        figures.append(f"first message {_ms(cell.median_first_message_ms)}")
    if cell.path == Route.DIRECT and cell.median_direct_ms is not None:
        figures.append(f"↗ direct {_ms(cell.median_direct_ms)}")
    if cell.tunnel_pinged:
        figures.append(f"tunnel {cell.tunnel_answered}/{cell.tunnel_pinged} pings answered")
    body = f'<div class="path">{_escape(cell.path)}</div>'
    body += "".join(f'<div class="figures">{_escape(figure)}</div>' for figure in figures)
    if not cell.matches:
        body += f'<div class="expected">✗ {_escape(_expectation(cell))}</div>'
    return f'<td class="{classes}" title="{_escape(tooltip)}">{body}</td>'


def _html_mismatches(cells: Sequence[Cell], names: Sequence[str]) -> list[str]:
    """The findings as an HTML list: the same content as the Markdown one."""
    findings = _findings(cells, names)
    if not findings:
        return [f"<p>{_ALL_CLEAR}</p>"]
    out = ["<ul>"]
    for headline, details in findings:
        nested = f"<ul>{''.join(f'<li>{_escape(d)}</li>' for d in details)}</ul>" if details else ""
        out.append(f"<li>{_escape(headline)}{nested}</li>")
    out.append("</ul>")
    return out


def _html_sites(sites: Sequence[Site]) -> list[str]:
    """The sites' classic names and RFC 4787 behaviour as an HTML table."""
    rows = [
        f"<tr><td>{_escape(s.name)}</td><td>{_escape(s.classic or _DASH)}</td><td>{_escape(s.mapping)}</td>"
        f"<td>{_escape(s.filtering)}</td><td>{'blocked' if s.udp_blocked else 'open'}</td></tr>"
        for s in sites
    ]
    head = "<tr><th>site</th><th>classic name</th><th>mapping</th><th>filtering</th><th>UDP</th></tr>"
    return ["<table>", f"<thead>{head}</thead>", "<tbody>", *rows, "</tbody>", "</table>"]


def write_results(
    folder: Path, cells: Sequence[Cell], sites: Sequence[Site], meta: dict[str, str]
) -> tuple[Path, Path]:
    """Write grid.md and grid.html for people and grid.json (raw attempts) for machines; return (md, html)."""
    folder.mkdir(parents=True, exist_ok=True)
    md, page, raw = folder / "grid.md", folder / "grid.html", folder / "grid.json"
    md.write_text(render_markdown(cells, sites, meta), encoding="utf-8")
    page.write_text(render_html(cells, sites, meta), encoding="utf-8")
    raw.write_text(json.dumps(results_json(cells, sites, meta), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md, page


def results_json(cells: Sequence[Cell], sites: Sequence[Site], meta: dict[str, str]) -> dict[str, Any]:
    """Everything the reports show, plus every attempt, as JSON-ready data (cells in grid order)."""
    return {
        "meta": dict(meta),
        "sites": [asdict(site) for site in sites],
        "cells": [
            {
                "a": cell.a,
                "b": cell.b,
                "expected": cell.expected,
                "why": cell.why,
                "path": cell.path,
                "matches": cell.matches,
                "delivered": cell.delivered,
                "success_rate": cell.success_rate,
                "strict": cell.strict,
                "median_first_message_ms": cell.median_first_message_ms,
                "median_direct_ms": cell.median_direct_ms,
                "tunnel_pinged": cell.tunnel_pinged,
                "tunnel_answered": cell.tunnel_answered,
                "attempts": [asdict(attempt) for attempt in cell.attempts],
            }
            for cell in _ordered(cells, [site.name for site in sites])
        ],
    }


def _by_pair(cells: Iterable[Cell]) -> dict[tuple[str, str], Cell]:
    """Cells keyed by (a, b); a pair given twice is a bug in the caller, not something to pick from silently."""
    grid: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        if (cell.a, cell.b) in grid:
            raise ValueError(f"two cells for {cell.a} → {cell.b}")
        grid[cell.a, cell.b] = cell
    return grid


def _ordered(cells: Sequence[Cell], names: Sequence[str]) -> list[Cell]:
    """Cells in grid order (rows, then columns, as the sites are listed); cells of unlisted sites keep theirs."""
    position = {name: i for i, name in enumerate(names)}
    last = len(names)
    return sorted(cells, key=lambda cell: (position.get(cell.a, last), position.get(cell.b, last)))


def _median(values: Iterable[float | None]) -> float | None:
    """Median of the values that exist: attempts that never measured something do not count as zero."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _ms(value: float) -> str:
    """Milliseconds, compact: one decimal below 10 ms, where it still means something, whole numbers above."""
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell: a pipe would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _escape(text: str) -> str:
    """HTML-escaped text, quotes included, so it is safe in element content and attribute values alike."""
    return html.escape(text, quote=True)
