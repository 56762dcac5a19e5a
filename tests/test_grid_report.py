"""The grid's cell statistics and its reports: strict verdicts, deterministic Markdown, HTML and JSON."""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser

import pytest

from scenarios.grid_expect import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT, Site, expected_table
from scenarios.grid_report import (
    Attempt,
    Cell,
    failures,
    mismatches,
    render_html,
    render_markdown,
    write_results,
)

EI, APD = ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT
CONE = Site("cone", EI, APD, classic="port-restricted cone")
FULL = Site("full-cone", EI, EI, classic="full cone")
SYMMETRIC = Site("symmetric", APD, APD, classic="symmetric")
SITES = (CONE, FULL, SYMMETRIC)
META = {"date": "2025-01-02", "wall time": "84 s", "attempts per cell": "3", "command": "make grid GRID_ATTEMPTS=3"}


def direct(first: float = 3.0, to_direct: float = 2.0) -> Attempt:
    return Attempt("direct", True, first, to_direct, None)


def relay(first: float = 40.0) -> Attempt:
    return Attempt("relay", True, first, None, "punch failed: no response within 5 s")


def failed(reason: str = "no path to bob") -> Attempt:
    return Attempt("none", False, None, None, reason)


def cell(a: str, b: str, expected: str, attempts: list[Attempt]) -> Cell:
    return Cell(a, b, expected, f"theory says {expected}", attempts)


def grid(sites=SITES, wrong: tuple[str, str] | None = None) -> list[Cell]:
    """One cell per ordered pair, each doing exactly what theory expects except ``wrong``, which goes direct."""
    cells = []
    for (a, b), (path, why) in expected_table(sites).items():
        attempts = [direct() if path == "direct" else relay() for _ in range(3)]
        if (a, b) == wrong:
            attempts = [direct(), direct(), direct()]
        cells.append(Cell(a, b, path, why, attempts))
    return cells


# -- statistics --------------------------------------------------------------------------------------


def test_path_is_the_majority():
    assert cell("a", "b", "relay", [direct(), relay(), relay()]).path == "relay"
    assert cell("a", "b", "relay", [direct(), direct(), failed()]).path == "direct"


@pytest.mark.parametrize(
    ("attempts", "path"),
    [
        ([direct(), relay()], "relay"),
        ([relay(), failed()], "none"),
        ([direct(), failed()], "none"),
        ([direct(), relay(), failed()], "none"),
        ([direct(), direct(), relay(), relay(), failed()], "relay"),
    ],
)
def test_a_tie_goes_to_the_worse_path(attempts, path):
    assert cell("a", "b", "direct", attempts).path == path


def test_a_cell_without_attempts_took_no_path_and_does_not_match():
    empty = cell("a", "b", "direct", [])
    assert (empty.path, empty.success_rate, empty.matches) == ("none", 0.0, False)
    assert (empty.median_first_message_ms, empty.median_direct_ms) == (None, None)


def test_success_rate_is_the_share_that_took_the_expected_path_and_delivered():
    assert cell("a", "b", "relay", [relay(), relay(), failed(), relay()]).success_rate == 0.75
    assert cell("a", "b", "direct", [direct(), relay(), direct(), direct()]).success_rate == 0.75


def test_on_impaired_links_a_cell_matches_when_more_than_half_succeeded():
    lossy = Cell("cone", "cone", "direct", "both map endpoint-independently", [direct(), failed(), direct()], False)
    assert lossy.matches
    assert lossy.label() == "direct 2/3 · 67% ok · 3.0 ms · ↗2.0 ms"
    half = Cell("cone", "full-cone", "direct", "theory", [direct(), relay()], False)
    assert not half.matches
    assert half.summary().endswith("MISMATCH, expected direct in more than half of the attempts")
    markdown = render_markdown([lossy, half], [CONE, FULL], META)
    assert "more than half of its attempts succeeded" in markdown
    assert (
        "| **cone** | direct 2/3 · 67% ok · 3.0 ms · ↗2.0 ms | ✗ relay 2/2 · 50% ok · 22 ms (expected direct) |"
        in markdown
    )
    perfect = Cell("cone", "cone", "direct", "theory", [direct(), direct()], False)
    assert perfect.label() == "direct 2/2 · 3.0 ms · ↗2.0 ms"  # no "100% ok": the counts say it
    assert "67% ok" in render_html([lossy], [CONE], META)


def test_medians_skip_attempts_without_the_value():
    flaky = cell("a", "b", "direct", [direct(3, 1), direct(5, 4), relay(100), failed()])
    assert flaky.median_first_message_ms == 5  # of 3, 5, 100; the failed attempt does not count as 0
    assert flaky.median_direct_ms == 2.5  # of 1, 4
    assert cell("a", "b", "relay", [failed(), failed()]).median_first_message_ms is None
    assert cell("a", "b", "relay", [relay()]).median_direct_ms is None


def test_matches_only_when_every_attempt_took_the_expected_path_and_delivered():
    assert cell("a", "b", "direct", [direct(), direct()]).matches
    assert not cell("a", "b", "direct", [direct(), direct(), relay()]).matches, "a flaky cell is a mismatch"
    assert not cell("a", "b", "relay", [relay(), Attempt("relay", False, None, None, "ack lost")]).matches
    assert not cell("a", "b", "relay", [direct(), direct()]).matches


def test_mismatches_picks_the_cells_that_differ():
    cells = grid(wrong=("cone", "symmetric"))
    assert [(c.a, c.b) for c in mismatches(cells)] == [("cone", "symmetric")]


def test_summary_is_one_line_with_the_pair_the_figures_and_the_verdict():
    good = cell("cone", "cone", "direct", [direct(3, 2), direct(3, 2)]).summary()
    assert good == "cone → cone: direct 2/2 · 3.0 ms · ↗2.0 ms (2 direct): ok"
    bad = cell("cone", "symmetric", "relay", [direct(12, 11), relay(50), failed()]).summary()
    assert "\n" not in bad
    assert bad.startswith("cone → symmetric: none 2/3")
    assert "1 direct, 1 relay, 1 none" in bad
    assert "MISMATCH, expected relay" in bad


def test_attempt_refuses_an_unknown_path():
    with pytest.raises(ValueError, match="punching"):
        Attempt("punching", False, None, None, None)


# -- Markdown ----------------------------------------------------------------------------------------


def test_markdown_has_the_meta_a_row_per_site_and_every_cell():
    text = render_markdown(grid(), SITES, META)
    assert text.startswith("# ")
    for key, value in META.items():
        assert f"**{key}**: {value}" in text
    assert "| a ↓ · b → | cone | full-cone | symmetric |" in text
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert [row.split("|")[1].strip() for row in rows] == ["**cone**", "**full-cone**", "**symmetric**"]
    assert all(row.count(" | ") == len(SITES) for row in rows)
    assert rows[0] == "| **cone** | direct 3/3 · 3.0 ms · ↗2.0 ms | direct 3/3 · 3.0 ms · ↗2.0 ms | relay 3/3 · 40 ms |"
    assert "All cells match the expected outcomes." in text
    assert not [row for row in rows if "✗" in row]


def test_markdown_marks_and_lists_a_mismatch():
    text = render_markdown(grid(wrong=("symmetric", "cone")), SITES, META)
    symmetric_row = next(line for line in text.splitlines() if line.startswith("| **symmetric**"))
    assert "| ✗ direct 3/3 · 3.0 ms · ↗2.0 ms (expected relay) |" in symmetric_row
    mismatch_section = text.split("## Mismatches")[1].split("## Sites")[0]
    assert "symmetric → cone" in mismatch_section
    assert "attempt 3: direct, delivered" in mismatch_section
    assert "All cells match" not in text


def test_markdown_says_what_a_flaky_cell_should_have_been():
    cells = grid()
    cells[0].attempts[2] = relay()  # cone → cone: still mostly direct, but one attempt fell back to the relay
    text = render_markdown(cells, SITES, META)
    assert "| **cone** | ✗ direct 3/3 · 3.0 ms · ↗2.0 ms (expected direct 3/3) |" in text
    assert "- cone → cone: direct 3/3 · 3.0 ms · ↗2.0 ms (2 direct, 1 relay): MISMATCH" in text


def test_markdown_lists_the_sites_and_the_rules():
    text = render_markdown(grid(), SITES, META)
    assert "| cone | port-restricted cone | endpoint-independent | address-and-port-dependent | open |" in text
    assert "## Expected outcomes" in text
    assert "- Both sites map endpoint-independently: direct" in text


def test_markdown_shows_a_cell_that_was_not_run_and_keeps_pipes_out_of_the_table():
    odd = Site("a|b", EI, EI)
    cells = [cell("a|b", "a|b", "direct", [failed("x | y")])]
    text = render_markdown(cells, [odd, CONE], META)
    assert "| **a\\|b** | ✗ none 0/1 (expected direct) | — not run |" in text
    assert "x \\| y" in text


def test_rendering_is_deterministic():
    assert render_markdown(grid(), SITES, META) == render_markdown(list(reversed(grid())), SITES, META)
    assert render_html(grid(), SITES, META) == render_html(list(reversed(grid())), SITES, META)


def test_two_cells_for_one_pair_are_refused():
    with pytest.raises(ValueError, match="two cells for cone → cone"):
        render_markdown([*grid(), cell("cone", "cone", "direct", [direct()])], SITES, META)


# -- HTML --------------------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link"}


class Checker(HTMLParser):
    """Records the element stack's problems, every td's classes and title, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()
        self.cells: list[dict[str, str]] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += attrs
        if tag == "td":
            self.cells.append({name: value or "" for name, value in attrs})
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    return checker


def grid_cells(checker: Checker) -> list[dict[str, str]]:
    return [attrs for attrs in checker.cells if "cell" in attrs.get("class", "").split()]


def test_html_tags_balance_and_nothing_is_fetched_or_run():
    page = render_html(grid(wrong=("cone", "symmetric")), SITES, META)
    checker = parse(page)
    assert checker.errors == []
    assert checker.stack == []
    assert page.startswith("<!DOCTYPE html>")
    assert {"html", "head", "body", "style", "table"} <= checker.tags
    assert not checker.tags & {"script", "link", "img", "iframe"}
    assert not [name for name, _ in checker.attributes if name in {"src", "href"} or name.startswith("on")]
    assert "url(" not in page
    assert "@import" not in page


def test_html_colours_each_cell_by_its_path_and_outlines_a_mismatch():
    cells = grid(wrong=("cone", "symmetric"))  # goes direct where relay is expected
    cells[0].attempts[:] = [failed(), failed(), direct()]  # cone → cone: mostly none
    checker = parse(render_html(cells, SITES, META))
    classes = [set(attrs["class"].split()) for attrs in grid_cells(checker)]
    assert len(classes) == 9
    paths = ["none", "direct", "direct", "direct", "direct", "direct", "relay", "direct", "relay"]
    for got, path in zip(classes, paths, strict=True):
        assert path in got
    marked = [i for i, got in enumerate(classes) if "mismatch" in got]
    assert marked == [0, 2]
    page = render_html(cells, SITES, META)
    assert ".direct{background:#c8efc8}" in page
    assert ".relay{background:#ffe1a6}" in page
    assert ".none{background:#f6b8b8}" in page
    assert ".mismatch{outline:3px solid #c00" in page
    assert "✗ expected relay" in "".join(checker.text)


def test_html_cell_has_the_figures_inside_and_the_attempts_in_its_title():
    cells = grid()
    cells[2].attempts[1] = failed("punch failed: no response from 198.18.0.12:37371 within 5 s")
    checker = parse(render_html(cells, SITES, META))
    cone_symmetric = grid_cells(checker)[2]
    assert cone_symmetric["title"].startswith("cone → symmetric: expected relay: ")
    assert "attempt 2: none, not delivered, punch failed: no response from 198.18.0.12:37371" in cone_symmetric["title"]
    text = "".join(checker.text)
    assert "2/3 delivered" in text
    assert "first message 3.0 ms" in text
    assert "↗ direct 2.0 ms" in text


def test_html_escapes_every_name_and_reason():
    evil = Site("<x>", EI, EI, classic='"quoted" & <b>')
    cells = [Cell("<x>", "<x>", "direct", "because <i>", [failed('<script>alert("hi")</script>')])]
    page = render_html(cells, [evil], {"<meta>": "<value>"})
    assert "<x>" not in page
    assert "<script>" not in page
    assert "<b>" not in page
    assert "&lt;x&gt;" in page
    assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt;" in page
    checker = parse(page)
    assert checker.errors == []
    assert "script" not in checker.tags
    assert grid_cells(checker)[0]["title"].startswith("<x> → <x>: expected direct: because <i>")


def test_html_shows_a_cell_that_was_not_run_and_the_all_clear():
    checker = parse(render_html([], SITES, META))
    assert [attrs["class"] for attrs in grid_cells(checker)] == ["cell notrun"] * 9
    assert "All cells match the expected outcomes." not in "".join(checker.text)
    assert "All cells match the expected outcomes." in "".join(parse(render_html(grid(), SITES, META)).text)


# -- files -------------------------------------------------------------------------------------------


def test_write_results_writes_markdown_html_and_json(tmp_path):
    folder = tmp_path / "results" / "grid"
    cells = grid(wrong=("cone", "symmetric"))
    md, page = write_results(folder, cells, SITES, META)
    assert (md, page) == (folder / "grid.md", folder / "grid.html")
    assert md.read_text(encoding="utf-8") == render_markdown(cells, SITES, META)
    assert page.read_text(encoding="utf-8") == render_html(cells, SITES, META)
    raw = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    assert raw["meta"] == META
    assert [site["name"] for site in raw["sites"]] == ["cone", "full-cone", "symmetric"]
    assert len(raw["cells"]) == 9
    cone_symmetric = next(c for c in raw["cells"] if (c["a"], c["b"]) == ("cone", "symmetric"))
    assert (cone_symmetric["expected"], cone_symmetric["path"], cone_symmetric["matches"]) == ("relay", "direct", False)
    assert cone_symmetric["attempts"][0] == {
        "path": "direct",
        "delivered": True,
        "time_to_first_message_ms": 3.0,
        "time_to_direct_ms": 2.0,
        "reason": None,
        "tunnel": None,
    }
    assert (cone_symmetric["tunnel_pinged"], cone_symmetric["tunnel_answered"]) == (0, 0)


def pinged(attempt: Attempt, answered: bool) -> Attempt:
    return dataclasses.replace(attempt, tunnel=answered)


def test_a_tunnel_ping_that_fails_where_a_path_exists_is_a_mismatch():
    ok = cell("cone", "cone", "direct", [pinged(direct(), True), direct()])
    assert ok.matches
    assert ok.label() == "direct 2/2 · 3.0 ms · ↗2.0 ms · tunnel 1/1"
    broken = cell("cone", "cone", "direct", [pinged(direct(), False), direct()])
    assert not broken.matches
    text = render_markdown([broken], SITES, META)
    assert "✗ direct 2/2 · 3.0 ms · ↗2.0 ms · tunnel 0/1 (expected the tunnel to carry the ping)" in text
    assert "attempt 1: direct, delivered, first message 3.0 ms, direct 2.0 ms, tunnel ping failed" in text
    assert "tunnel 0/1 pings answered" in render_html([broken], SITES, META)
    # Without a path there is nothing to carry: such a ping proves nothing and is not counted.
    assert cell("a", "b", "none", [pinged(failed(), False)]).tunnel_pinged == 0


def test_on_impaired_links_more_than_half_of_the_tunnel_pings_must_be_answered():
    attempts = [pinged(relay(), True), pinged(relay(), True), pinged(relay(), False)]
    assert Cell("a", "b", "relay", "why", attempts, strict=False).matches
    assert not Cell("a", "b", "relay", "why", attempts[1:], strict=False).matches


def test_pairs_without_a_cell_are_listed_as_not_run_never_as_matching():
    text = render_markdown(grid()[:-1], SITES, META)
    assert "| — not run |" in text
    assert "- symmetric → symmetric: not run" in text
    assert "All cells match" not in text
    assert render_markdown([], SITES, META).count("not run") == 18  # in the table and in the list


def test_failures_name_every_mismatch_and_every_pair_that_did_not_run():
    assert failures(grid(), SITES) == []
    cells = grid(wrong=("symmetric", "cone"))[:-1]
    found = failures(cells, SITES)
    assert len(found) == 2
    assert found[0].startswith("symmetric → cone: direct 3/3")
    assert found[1] == "symmetric → symmetric: not run"
