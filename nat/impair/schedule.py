"""When a held packet leaves, or whether it is lost: one direction's delay, jitter, reordering and bursty loss.

Pure: the time comes in as an argument and the randomness from the ``random.Random`` the caller passes, so
tests replay a schedule exactly. The delay line asks :meth:`LinkSchedule.decide` once per packet, in the
order the packets arrive.

- Delay and jitter: each packet draws ``delay + jitter * N(0, 1)``, cut at zero.
- FIFO: a packet never leaves before the one ahead of it, so a short draw waits for the packet in front.
  At high packet rates this lifts the delays above the draws (see :func:`simulate`); it is what a real
  path's queue does, and it keeps order unless ``reorder`` asks otherwise.
- Reordering (netem's meaning): a ``reorder`` share of packets leaves at once, ahead of those held.
- Bursty loss (``loss`` with ``loss_burst`` > 1): a two-state Gilbert-Elliott chain. The good state loses
  nothing, the bad state everything; from good the chain turns bad with p = loss / (burst * (1 - loss)),
  from bad it turns good with r = 1 / burst, so the share of packets lost is p / (p + r) = loss and a
  burst lasts 1 / r = burst packets on average. Loss without a burst is the kernel's (nft), not done here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from nat.impair.model import LinkImpairment


def gilbert_elliott(loss: float, burst: float) -> tuple[float, float]:
    """``(p, r)``: the chain's good -> bad and bad -> good probabilities for a loss share and a mean burst
    (``LinkImpairment`` refuses a share its burst length cannot reach, p > 1)."""
    return loss / (burst * (1 - loss)), 1 / burst


@dataclass
class Counts:
    """What one direction's schedule has decided so far."""

    seen: int = 0
    dropped: int = 0
    """Lost in a Gilbert-Elliott burst."""
    delayed: int = 0
    """Held for a while (their release time lay ahead)."""
    reordered: int = 0
    """Sent at once as the reorder share, ahead of packets still held."""


class LinkSchedule:
    """One direction: :meth:`decide` per packet, :meth:`configure` for new settings at any time."""

    def __init__(self, link: LinkImpairment, rng: random.Random) -> None:
        self.counts = Counts()
        self._rng = rng
        self._last_release = float("-inf")
        self._bad = False
        self.link = link
        self.configure(link)

    def configure(self, link: LinkImpairment) -> None:
        """New settings for the packets that arrive from now on. Held packets keep their release times, and
        the next packet still leaves no earlier than the last one held, so the queue's order survives."""
        self.link = link
        self._chain = gilbert_elliott(link.loss, link.loss_burst) if link.loss and link.loss_burst > 1 else None
        if self._chain is None:
            self._bad = False

    def decide(self, now: float) -> float | None:
        """The packet that arrived at ``now``: when it leaves (``now`` or later), or ``None`` if it is lost."""
        self.counts.seen += 1
        if self._lost():
            self.counts.dropped += 1
            return None
        link = self.link
        if link.reorder and self._rng.random() < link.reorder:
            if self._last_release > now:
                self.counts.reordered += 1
            return now
        delay = link.delay_ms
        if link.jitter_ms:
            delay = max(0.0, self._rng.gauss(link.delay_ms, link.jitter_ms))
        release = max(now + delay / 1000, self._last_release)
        self._last_release = release
        if release > now:
            self.counts.delayed += 1
        return release

    def _lost(self) -> bool:
        if self._chain is None:
            return False
        p, r = self._chain
        self._bad = self._rng.random() >= r if self._bad else self._rng.random() < p
        return self._bad


def simulate(link: LinkImpairment, arrivals: Iterable[float], rng: random.Random) -> list[float | None]:
    """Each packet's delay in seconds (``None``: lost) for packets arriving at ``arrivals``: what the delay line
    would do on a perfect clock, to compare a measurement with (FIFO lifts delays at high rates)."""
    schedule = LinkSchedule(link, rng)
    delays: list[float | None] = []
    for now in arrivals:
        release = schedule.decide(now)
        delays.append(None if release is None else release - now)
    return delays
