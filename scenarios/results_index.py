"""``results/index.html``: one page linking what ``make grid``, ``make sweep``, ``make interop`` and ``make bench``
wrote.

Each of them calls :func:`write` when done, so the page always lists what the folder holds: every grid report
(``grid/`` and each ``grid-impaired-*/``), the sweep's plots (shown inline) and data, and the bench's figures.
:func:`render` is pure (the files found in, the page out); links are relative, so the folder can be copied
or served as it is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INDEX = "index.html"


@dataclass(frozen=True)
class Entry:
    """One section of the page: a heading, what it shows, its files (relative to results/), inline images."""

    title: str
    about: str
    files: tuple[str, ...]
    images: tuple[str, ...] = ()


def find(results: Path) -> list[Entry]:
    """What the results folder holds, as the page's sections, in a fixed order."""
    entries: list[Entry] = []
    for folder in [results / "grid", *sorted(results.glob("grid-impaired-*"))]:
        files = _present(results, folder, ("grid.html", "grid.md", "grid.json"))
        if files:
            impaired = folder.name.removeprefix("grid-impaired-") if folder.name != "grid" else None
            title = "Traversal grid" + (f", impaired: {impaired}" if impaired else "")
            about = "Every ordered pair of NAT sites, checked against the expected outcomes (make grid" + (
                " GRID_ARGS='--impair ...'), with each cell's success rate and time to direct)." if impaired else ")."
            )
            entries.append(Entry(title, about, files))
    sweep = results / "sweep"
    files = _present(results, sweep, ("traversal.svg", "traversal.png", "sweep.json", "sweep.md"))
    if files:
        about = (
            "Cone-cone across round trip and loss (make sweep, run by make grid and make bench): time from connect to "
            "a direct path, the share of connects that got there, and a message stream's rate and retransmissions."
        )
        entries.append(Entry("Traversal under impairment", about, files, tuple(f for f in files if f.endswith(".svg"))))
    files = _present(results, results / "interop", ("interop.html", "interop.md", "interop.json"))
    if files:
        about = (
            "Third-party P2P stacks (aiortc, nebula with relays off and on) beside natlab's client across NAT site "
            "pairs, checked against theory and each stack's documented behaviour, with time to connect (make interop)."
        )
        entries.append(Entry("Interop", about, files))
    files = _present(results, results / "bench", ("bench.txt",))
    if files:
        entries.append(Entry("Benchmarks", "What make bench measured on this machine.", files))
    return entries


def _present(results: Path, folder: Path, names: Sequence[str]) -> tuple[str, ...]:
    return tuple((folder / name).relative_to(results).as_posix() for name in names if (folder / name).is_file())


def render(entries: Sequence[Entry]) -> str:
    """The page: one section per entry, its files linked, its images shown; everything escaped."""
    e = _escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>natlab results</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}img{max-width:100%;border:1px solid #ccc}"
        "li{margin:.2em 0}</style></head>",
        "<body>",
        "<h1>natlab results</h1>",
    ]
    if not entries:
        out.append("<p>Nothing yet: run make grid, make sweep or make bench.</p>")
    for entry in entries:
        out += [f"<h2>{e(entry.title)}</h2>", f"<p>{e(entry.about)}</p>", "<ul>"]
        out += [f'<li><a href="{e(name)}">{e(name)}</a></li>' for name in entry.files]
        out.append("</ul>")
        out += [
            f'<p><a href="{e(image)}"><img src="{e(image)}" alt="{e(entry.title)}"></a></p>' for image in entry.images
        ]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def write(results: Path) -> Path:
    """(Re)write ``results/index.html`` from what the folder holds now; returns its path."""
    results.mkdir(parents=True, exist_ok=True)
    page = results / INDEX
    page.write_text(render(find(results)), encoding="utf-8")
    return page


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
