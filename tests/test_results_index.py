"""results/index.html: it lists what the results folder holds, links relative, names escaped."""

from __future__ import annotations

from scenarios.results_index import Entry, find, render, write


def test_the_page_links_every_grid_the_sweep_and_the_bench(tmp_path):
    for name in ("grid/grid.html", "grid/grid.md", "grid-impaired-lte/grid.html", "sweep/traversal.svg",
                 "sweep/traversal.png", "sweep/sweep.json", "bench/bench.txt"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    page = write(tmp_path).read_text()
    assert [e.title for e in find(tmp_path)] == [
        "Traversal grid",
        "Traversal grid, impaired: lte",
        "Traversal under impairment",
        "Benchmarks",
    ]
    for link in (
        "grid/grid.html",
        "grid/grid.md",
        "grid-impaired-lte/grid.html",
        "sweep/sweep.json",
        "bench/bench.txt",
    ):
        assert f'<a href="{link}">' in page
    assert '<img src="sweep/traversal.svg"' in page
    assert "grid/grid.json" not in page  # not written: not linked


def test_an_empty_folder_says_what_to_run(tmp_path):
    assert "run make grid, make sweep or make bench" in write(tmp_path / "results").read_text()


def test_text_is_escaped():
    page = render([Entry("a <b>", "x & y", ('q"r.html',))])
    assert "a &lt;b&gt;" in page
    assert "x &amp; y" in page
    assert 'href="q&quot;r.html"' in page
