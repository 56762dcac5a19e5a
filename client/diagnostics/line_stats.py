"""What ``client linecheck`` measured, pure: per direction loss, loss bursts, duplicates, reordering and
one-way delay, and the round trip, from the numbers both ends saw (no sockets, no clocks).

The way out (``up``: sender -> echo) is counted by the echo, over the seqs it received; the way back
(``down``) by the sender, over the echo's receipt numbers (one reply per datagram the echo received, numbered
in its arrival order, duplicates included). So a datagram doubled on the way out shows as two receipt numbers
for one seq, a reply doubled on the way back as one receipt number twice, and the replies the way back lost
as receipt numbers that never came, whatever the way out did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.diagnostics.line_wire import DataReply, SummaryReply

Z95 = 1.959964
"""The normal quantile of a two-sided 95 % interval."""


def wilson(hits: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the share ``hits / trials`` (correct near 0 and 1, unlike p ± z·se)."""
    if trials <= 0:
        return 0.0, 1.0
    p = hits / trials
    spread = z * z / trials
    centre = (p + spread / 2) / (1 + spread)
    half = z * math.sqrt(p * (1 - p) / trials + spread / (4 * trials)) / (1 + spread)
    return max(0.0, centre - half), min(1.0, centre + half)


class Arrivals:
    """Numbered datagrams in the order they arrived: which numbers came, how often, in what order."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[int] = set()
        self._first: list[int] = []
        """Each number's first arrival, in arrival order (duplicates do not reorder anything)."""

    def add(self, number: int) -> int:
        """Record one arrival; its receipt number (0, 1, 2, ... counting every arrival)."""
        receipt = self.total
        self.total += 1
        if number not in self._seen:
            self._seen.add(number)
            self._first.append(number)
        return receipt

    def __contains__(self, number: int) -> bool:
        return number in self._seen

    def counts(self, sent: int) -> Counts:
        """What arrived of the numbers ``0 .. sent - 1``."""
        first = [n for n in self._first if 0 <= n < sent]
        return Counts(
            sent=sent,
            receipts=self.total,
            distinct=len(first),
            lost_runs=lost_runs(first, sent),
            ahead=ahead(first),
        )


def lost_runs(received: Iterable[int], sent: int) -> int:
    """Runs of consecutive numbers in ``0 .. sent - 1`` that never arrived (each run is one loss burst)."""
    came = bytearray(sent)
    for number in received:
        came[number] = 1
    runs, missing = 0, False
    for flag in came:
        if not flag and not missing:
            runs += 1
        missing = not flag
    return runs


def ahead(arrivals: Sequence[int]) -> int:
    """Datagrams that arrived before one numbered lower than them (some datagram sent earlier came later).

    This is the meaning of a ``reorder`` setting ("the share sent ahead of the delayed ones"): a datagram
    that overtakes a queue of 20 counts once, where counting the late ones (RFC 4737's "reordered") would
    count 20.
    """
    count, lowest_after = 0, math.inf
    for number in reversed(arrivals):
        if lowest_after < number:
            count += 1
        lowest_after = min(lowest_after, number)
    return count


@dataclass(frozen=True)
class Counts:
    """One direction's datagram counts."""

    sent: int
    receipts: int
    """Arrivals, duplicates included."""
    distinct: int
    lost_runs: int
    ahead: int

    @property
    def lost(self) -> int:
        return self.sent - self.distinct

    @property
    def duplicates(self) -> int:
        return self.receipts - self.distinct

    @classmethod
    def of_summary(cls, summary: SummaryReply) -> Counts:
        return cls(summary.count, summary.receipts, summary.distinct, summary.lost_runs, summary.ahead)


@dataclass(frozen=True)
class DelayStats:
    """A delay distribution in milliseconds, to the microsecond (nearest-rank percentiles)."""

    count: int
    min: float
    p25: float
    p50: float
    mean: float
    p75: float
    p90: float
    p99: float
    max: float
    stdev: float

    @classmethod
    def of(cls, samples_ns: Iterable[int]) -> DelayStats | None:
        """The distribution of ``samples_ns``; None when there are none."""
        ordered = sorted(samples_ns)
        if not ordered:
            return None
        n = len(ordered)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * n) - 1)] / 1e6

        mean = sum(ordered) / n
        variance = sum((x - mean) ** 2 for x in ordered) / (n - 1) if n > 1 else 0.0
        fields = [ordered[0] / 1e6, rank(0.25), rank(0.5), mean / 1e6, rank(0.75), rank(0.9), rank(0.99)]
        fields += [ordered[-1] / 1e6, math.sqrt(variance) / 1e6]
        return cls(n, *(round(value, 3) for value in fields))  # to the microsecond: what the clocks resolve

    @property
    def iqr_sigma(self) -> float:
        """The spread as a normal distribution's sigma, from the quartiles: what a ``jitter`` setting is,
        robust to the few late datagrams a busy host adds (which inflate ``stdev``)."""
        return (self.p75 - self.p25) / 1.349

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DelayStats:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DirectionStats:
    """One direction of a line check: its counts and its one-way delays."""

    counts: Counts
    delay: DelayStats | None

    @property
    def loss(self) -> float:
        return self.counts.lost / self.counts.sent if self.counts.sent else 0.0

    def loss_interval(self, z: float = Z95) -> tuple[float, float]:
        return wilson(self.counts.lost, self.counts.sent, z)

    @property
    def mean_burst(self) -> float:
        """Mean length of a loss burst in datagrams (0 without loss)."""
        return self.counts.lost / self.counts.lost_runs if self.counts.lost_runs else 0.0

    @property
    def duplicate_share(self) -> float:
        return self.counts.duplicates / self.counts.distinct if self.counts.distinct else 0.0

    @property
    def reorder_share(self) -> float:
        return self.counts.ahead / self.counts.distinct if self.counts.distinct else 0.0

    def as_dict(self) -> dict[str, Any]:
        c, (low, high) = self.counts, self.loss_interval()
        return {
            "sent": c.sent,
            "received": c.distinct,
            "receipts": c.receipts,
            "lost": c.lost,
            "loss": round(self.loss, 6),
            "loss_95": [round(low, 6), round(high, 6)],
            "loss_bursts": c.lost_runs,
            "mean_burst": round(self.mean_burst, 3),
            "duplicates": c.duplicates,
            "duplicate_share": round(self.duplicate_share, 6),
            "ahead": c.ahead,
            "reorder_share": round(self.reorder_share, 6),
            "delay_ms": None if self.delay is None else self.delay.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DirectionStats:
        counts = Counts(data["sent"], data["receipts"], data["received"], data["loss_bursts"], data["ahead"])
        delay = data.get("delay_ms")
        return cls(counts, None if delay is None else DelayStats.from_dict(delay))


@dataclass(frozen=True)
class Received:
    """One reply as the sender got it: the reply, and when it arrived (ns, CLOCK_REALTIME, as the kernel stamped it)."""

    reply: DataReply
    at_ns: int


@dataclass(frozen=True)
class LineReport:
    """A whole line check: each direction (None when the echo's summary never came back), the round trip.

    ``rtt`` is the path's: the way out plus the way back, without the echo's own time between receiving a
    datagram and answering it (a busy echo would add its scheduling to every round trip)."""

    sent: int
    answered: int
    """Distinct seqs some reply came back for."""
    up: DirectionStats | None
    down: DirectionStats | None
    rtt: DelayStats | None

    @property
    def round_trip_loss(self) -> float:
        return 1 - self.answered / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "round_trip_loss": round(self.round_trip_loss, 6),
            "up": None if self.up is None else self.up.as_dict(),
            "down": None if self.down is None else self.down.as_dict(),
            "rtt_ms": None if self.rtt is None else self.rtt.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineReport:
        up, down, rtt = data.get("up"), data.get("down"), data.get("rtt_ms")
        return cls(
            data["sent"],
            data["answered"],
            None if up is None else DirectionStats.from_dict(up),
            None if down is None else DirectionStats.from_dict(down),
            None if rtt is None else DelayStats.from_dict(rtt),
        )


def line_report(sent: int, replies: Sequence[Received], summary: SummaryReply | None) -> LineReport:
    """The report from the replies in the order they arrived and the echo's summary (None: never came back,
    so neither direction's loss can be told apart, only the round trip's)."""
    back = Arrivals()
    first: list[Received] = []  # each receipt's first arrival: the way back's duplicates carry no new delay
    for received in replies:
        if received.reply.receipt not in back:
            first.append(received)
        back.add(received.reply.receipt)
    answered = len({r.reply.seq for r in first if r.reply.seq < sent})
    rtt = DelayStats.of(r.at_ns - r.reply.sent_ns - (r.reply.echo_sent_ns - r.reply.echo_received_ns) for r in first)
    if summary is None:
        return LineReport(sent, answered, None, None, rtt)
    up_delays = DelayStats.of(r.reply.echo_received_ns - r.reply.sent_ns for r in first)
    down_delays = DelayStats.of(r.at_ns - r.reply.echo_sent_ns for r in first)
    up = DirectionStats(Counts.of_summary(summary), up_delays)
    down = DirectionStats(back.counts(summary.receipts), down_delays)
    return LineReport(sent, answered, up, down, rtt)
