"""The traversal plots: a small made-up sweep rendered to SVG and PNG files, and the figure's content."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.lines import Line2D

from scenarios.plots import SweepPoint, save, traversal_figure

POINTS = [
    SweepPoint(0, 0.0, 3, [2.0, 2.5, 3.0], 100, 100, 0.1, 0),
    SweepPoint(0, 0.05, 3, [2.5, 4.0, 3.0], 100, 100, 0.2, 11),
    SweepPoint(100, 0.0, 3, [101.0, 102.0, 104.0], 100, 100, 0.4, 0),
    SweepPoint(100, 0.05, 3, [110.0, 380.0], 100, 99, 1.5, 12, exactly_once=True),
    SweepPoint(200, 0.1, 2),  # no attempt went direct, no stream: nothing drawn, no zero
]


def test_a_small_sweep_renders_to_svg_and_png(tmp_path):
    paths = save(traversal_figure(POINTS), tmp_path, "traversal")
    assert [p.name for p in paths] == ["traversal.svg", "traversal.png"]
    svg, png = paths
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len(png.read_bytes()) > 10_000


def xs(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_xdata(), dtype=float)]


def ys(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_ydata(), dtype=float)]


def test_the_figure_has_a_line_per_round_trip_and_marks_a_broken_stream():
    figure = traversal_figure(POINTS)
    time_panel, share_panel, rate_panel, cost_panel = figure.axes
    assert [line.get_label() for line in time_panel.get_lines()] == ["RTT 0 ms", "RTT 100 ms"]
    assert [xs(line) for line in share_panel.get_lines()] == [[0, 5], [0, 5], [10]]
    assert ys(share_panel.get_lines()[2]) == [0]  # 0 of 2 went direct: shown as 0%, not left out
    assert time_panel.get_yscale() == "log"
    assert "lost or doubled a message" in [line.get_label() for line in rate_panel.get_lines()]
    [broken] = [line for line in rate_panel.get_lines() if line.get_label() == "lost or doubled a message"]
    assert (xs(broken), [round(y) for y in ys(broken)]) == ([5], [66])  # 99 messages in 1.5 s, at 5% loss
    assert [round(y, 2) for y in ys(cost_panel.get_lines()[0])] == [0, 0.11]


def test_no_points_is_an_error():
    with pytest.raises(ValueError, match="no sweep points"):
        traversal_figure([])


def test_points_round_trip_through_json_data():
    assert [SweepPoint.from_dict(p.as_dict()) for p in POINTS] == POINTS
