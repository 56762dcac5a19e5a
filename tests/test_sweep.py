"""The sweep's pure parts: each point's impairment, its Markdown table, its files, and its arguments."""

from __future__ import annotations

import json

import pytest

from nat.impair.spec import parse_link
from scenarios.grid import impaired_folder, parse_impairment, punch_timeout_s
from scenarios.plots import SweepPoint
from scenarios.sweep import main, render_markdown, write_results
from scenarios.traversal import Link

POINTS = [
    SweepPoint(0, 0.0, 2, [2.0, 3.0], 100, 100, 0.1, 0),
    SweepPoint(100, 0.05, 2, [120.0], 100, 98, 2.0, 9, False),
]


@pytest.mark.parametrize(
    ("link", "spec"),
    [
        (Link(0, 0), "off"),
        (Link(100, 0.05), "delay=25ms loss=5%"),
        (Link(50, 0), "delay=12.5ms"),
        (Link(0, 0.1), "loss=10%"),
    ],
)
def test_a_point_impairs_each_router_by_a_quarter_of_the_round_trip(link, spec):
    assert link.spec == spec
    parse_link(spec, "up")  # what `nat impair` will accept


def test_the_table_has_a_row_per_point_and_flags_a_broken_stream():
    text = render_markdown(POINTS, {"command": "x"})
    rows = [line for line in text.splitlines() if line.startswith("| 0 ms") or line.startswith("| 100 ms")]
    assert rows == [
        "| 0 ms | 0% | 2/2 | 2 ms | 100/100 | 1000 | 0.00 | yes |",
        "| 100 ms | 5% | 1/2 | 120 ms | 98/100 | 49 | 0.09 | NO |",
    ]


def test_results_are_json_markdown_and_the_plots(tmp_path):
    written = write_results(tmp_path, POINTS, {"command": "x"})
    assert sorted(p.name for p in written) == ["sweep.json", "sweep.md", "traversal.png", "traversal.svg"]
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [SweepPoint.from_dict(p) for p in data["points"]] == POINTS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rtt", "fast"], "expected comma-separated numbers"),
        (["--loss", "100"], "below 100%"),
        (["--attempts", "0"], "attempts >= 1"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_impaired_grid_gives_the_punch_three_round_trips_more():
    assert punch_timeout_s(parse_impairment("off")) == 2
    assert punch_timeout_s(parse_impairment("delay=25ms loss=5%")) == 3  # 2 s + 3 x 100 ms
    assert punch_timeout_s(parse_impairment("satellite")) == 6  # 2 s + 3 x 1.24 s
    assert impaired_folder("delay=25ms loss=5%").name == "grid-impaired-delay-25ms-loss-5"
    assert impaired_folder("lte").name == "grid-impaired-lte"


def test_a_bad_impairment_for_the_grid_exits_2(capsys):
    from scenarios.grid import main as grid_main

    with pytest.raises(SystemExit) as exited:
        grid_main(["--impair", "delay=soon"])
    assert exited.value.code == 2
    assert "--impair 'delay=soon': 'delay=soon'" in capsys.readouterr().err
