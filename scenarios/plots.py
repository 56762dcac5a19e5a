"""Pictures of how traversal degrades with the round trip and loss: sweep results in, a matplotlib figure out.

Pure apart from :func:`save`: :func:`traversal_figure` turns :class:`SweepPoint` records (what
``scenarios.sweep`` measured, or any made-up data) into one figure of four panels, each against the loss share
with one line per round trip: the median time from connect to a confirmed direct path, the share of attempts
that got there, the rate a stream of messages was delivered at, and the retransmissions each message cost.
Uses matplotlib's object interface (``Figure``, no pyplot): no global state, no display, any backend-free host.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

FORMATS = ("svg", "png")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the sweep: both routers impaired alike, a few cold connects and one stream measured."""

    rtt_ms: float
    """The pair's round trip the impairment adds (each router delays each direction by a quarter of it)."""
    loss: float
    """Share (0..1) each router drops in each direction."""
    attempts: int
    """Cold connects made."""
    direct_ms: list[float] = field(default_factory=list)
    """Time from connect to the confirmed direct path, for each attempt that got one within its time."""
    sent: int = 0
    """Messages of the stream (``client flood``), alice to bob."""
    delivered: int = 0
    """Of them, acknowledged (and received exactly once, in order: ``exactly_once``)."""
    seconds: float = 0.0
    """The stream's wall time, first send to last acknowledgement."""
    retransmitted: int = 0
    """Retransmissions the sender made for the stream."""
    exactly_once: bool = True
    """The receiver got every delivered message once, in order."""

    @property
    def direct_share(self) -> float:
        return len(self.direct_ms) / self.attempts if self.attempts else 0.0

    @property
    def median_direct_ms(self) -> float | None:
        return statistics.median(self.direct_ms) if self.direct_ms else None

    @property
    def msgs_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def retransmits_per_message(self) -> float:
        return self.retransmitted / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rtt_ms": self.rtt_ms,
            "loss": self.loss,
            "attempts": self.attempts,
            "direct_ms": list(self.direct_ms),
            "sent": self.sent,
            "delivered": self.delivered,
            "seconds": self.seconds,
            "retransmitted": self.retransmitted,
            "exactly_once": self.exactly_once,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepPoint:
        return cls(**{**data, "direct_ms": [float(ms) for ms in data.get("direct_ms", [])]})


def traversal_figure(points: Sequence[SweepPoint], title: str = "natlab: traversal under impairment") -> Figure:
    """Four panels against loss, one line per round trip: time to direct, direct share, delivery rate, cost."""
    if not points:
        raise ValueError("no sweep points to plot")
    figure = Figure(figsize=(11, 8), layout="constrained")
    figure.suptitle(title)
    panels = figure.subplots(2, 2, sharex=True)
    rtts = sorted({p.rtt_ms for p in points})
    for rtt in rtts:
        line = sorted((p for p in points if p.rtt_ms == rtt), key=lambda p: p.loss)
        losses = [100 * p.loss for p in line]
        label = f"RTT {rtt:g} ms"
        _plot(panels[0][0], losses, [p.median_direct_ms for p in line], label)
        _plot(panels[0][1], losses, [100 * p.direct_share for p in line], label)
        _plot(panels[1][0], losses, [p.msgs_per_s if p.sent else None for p in line], label)
        _plot(panels[1][1], losses, [p.retransmits_per_message if p.sent else None for p in line], label)
        broken = [p for p in line if p.sent and (p.delivered < p.sent or not p.exactly_once)]
        if broken:  # a stream that lost or doubled a message is the one thing the picture must not hide
            xs, ys = [100 * p.loss for p in broken], [p.msgs_per_s for p in broken]
            panels[1][0].plot(xs, ys, "x", color="red", markersize=12, label="lost or doubled a message")
    _label(panels[0][0], "connect → direct, median (ms)", log=True)
    _label(panels[0][1], "attempts that went direct (%)", ylim=(0, 105))
    _label(panels[1][0], "stream delivered (messages/s)")
    _label(panels[1][1], "retransmissions per message")
    for axes in panels[1]:
        axes.set_xlabel("loss each way at each router (%)")
    panels[0][0].legend(loc="best", fontsize="small")
    return figure


def _plot(axes: Axes, xs: list[float], ys: Sequence[float | None], label: str) -> None:
    """One line; points without a value (no attempt went direct, no stream) are left out, not drawn as 0."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if pairs:
        axes.plot([x for x, _ in pairs], [y for _, y in pairs], marker="o", label=label)


def _label(axes: Axes, ylabel: str, *, log: bool = False, ylim: tuple[float, float] | None = None) -> None:
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if log and axes.has_data():
        axes.set_yscale("log")
    if ylim is not None:
        axes.set_ylim(*ylim)


def save(figure: Figure, folder: Path, stem: str) -> list[Path]:
    """Write ``stem.svg`` and ``stem.png`` into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{fmt}" for fmt in FORMATS]
    for path in paths:
        figure.savefig(path, dpi=110)
    return paths
