"""What an impairment is, as data: one direction's settings, and a router's two directions.

``up`` is LAN -> WAN (what a host sends out), ``down`` is WAN -> LAN (what it receives). Every field's
zero means "not impaired"; a ``LinkImpairment()`` changes nothing. Values are validated on construction,
so one that exists is well formed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ImpairmentError(ValueError):
    """An impairment the operator got wrong (unknown key, bad value, out of range); the message says which."""


@dataclass(frozen=True)
class LinkImpairment:
    """One direction of one router's link."""

    delay_ms: float = 0.0
    """Mean one-way delay added to every packet."""
    jitter_ms: float = 0.0
    """Standard deviation of the delay (normal, cut at zero); packets still leave in order unless ``reorder``."""
    reorder: float = 0.0
    """Share (0..1) of packets sent at once, ahead of the delayed ones (netem's meaning)."""
    loss: float = 0.0
    """Share (0..1) of packets dropped: at random, or in bursts when ``loss_burst`` is set."""
    loss_burst: float = 0.0
    """Mean length in packets of a loss burst (a two-state Gilbert-Elliott model); 0 or 1: independent losses."""
    duplicate: float = 0.0
    """Share (0..1) of packets sent twice."""
    rate_bps: int = 0
    """Bits per second the link carries (a token bucket); 0: unlimited."""
    limit: int = 0
    """Packets the link's queue holds before it drops (the shaper's and the delay line's); 0: the default."""

    def __post_init__(self) -> None:
        for name in ("reorder", "loss", "duplicate"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ImpairmentError(f"{name} must be a share between 0% and 100%, got {share * 100:g}%")
        for name in ("delay_ms", "jitter_ms", "loss_burst"):
            if getattr(self, name) < 0:
                raise ImpairmentError(f"{name} must not be negative")
        if self.rate_bps < 0 or self.limit < 0:
            raise ImpairmentError("rate and limit must not be negative")
        if self.loss_burst > 1 and self.loss > self.loss_burst / (1 + self.loss_burst):
            # Gilbert-Elliott: entering the bad state has probability loss / (burst * (1 - loss)), at most 1.
            most = self.loss_burst / (1 + self.loss_burst)
            raise ImpairmentError(
                f"loss in bursts of {self.loss_burst:g} packets can be at most {most * 100:.1f}%, "
                f"got {self.loss * 100:g}%"
            )

    @property
    def is_clear(self) -> bool:
        return self == LinkImpairment()

    @property
    def needs_delay_line(self) -> bool:
        """Whether the userspace delay line must see this direction's packets (the kernel does the rest)."""
        return bool(self.delay_ms or self.jitter_ms or self.reorder or (self.loss and self.loss_burst > 1))


@dataclass(frozen=True)
class Impairments:
    """A router's impairments: ``up`` (LAN -> WAN) and ``down`` (WAN -> LAN)."""

    up: LinkImpairment = field(default_factory=LinkImpairment)
    down: LinkImpairment = field(default_factory=LinkImpairment)

    @property
    def is_clear(self) -> bool:
        return self.up.is_clear and self.down.is_clear

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready: ``{"up": {field: value}, "down": {...}}`` (the state file's form)."""
        return {"up": dataclasses.asdict(self.up), "down": dataclasses.asdict(self.down)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impairments:
        """The inverse of :meth:`as_dict`; ``ImpairmentError`` for an unknown field or a bad value."""
        known = {f.name for f in dataclasses.fields(LinkImpairment)}
        links = []
        for direction in ("up", "down"):
            fields = dict(data.get(direction) or {})
            unknown = set(fields) - known
            if unknown:
                raise ImpairmentError(f"{direction}: unknown field(s) {', '.join(sorted(unknown))}")
            try:
                links.append(LinkImpairment(**fields))
            except TypeError as exc:
                raise ImpairmentError(f"{direction}: {exc}") from None
        return cls(*links)
