"""Configured against measured, pure: how to probe a router's impairments, what each setting should look like
to that probe, and whether a measurement is within its tolerance. ``make impair-check`` prints these rows as
a table; ``scenarios/test_impairments.py`` asserts them.

Tolerances, and why (each row says which applied):

* delay: the median one-way delay within ``setting + serialisation ± (2 ms + 5 %)``. The median, because the
  delay line's timers (Python, on a busy 2-core host) make the tail late by 5-20 ms while the middle stays
  within a millisecond or so; serialisation is the shaper's time to send one probe at ``rate`` (0.1 ms at
  10 mbit/s). An unimpaired path reads about 0.1-0.3 ms.
* jitter: the spread as the quartiles show it (IQR / 1.349, a normal distribution's sigma) within
  ``setting ± (1.5 ms + 25 %)``: robust to the same late tail, which inflates the standard deviation. The
  probe is paced at 4 sigma or more apart, so the delay line's first-in-first-out rule (a datagram never
  leaves before the one ahead of it) hardly ever bends the distribution.
* loss, duplicate, reorder: the setting inside the measured share's 99.9 % Wilson interval (z = 3.29; a
  correct router fails one check in a thousand by chance, where 95 % would fail one in twenty), widened by
  0.2 points for what a busy host drops or doubles on its own. Bursty loss (``burst`` > 1) is correlated,
  which makes its share vary more: the interval is computed over ``n / (2 burst - 1)`` datagrams, the
  effective sample size of a two-state chain with that mean burst.
* burst: the measured mean loss burst within 3 standard errors (at least 0.5 datagram) of what the setting
  gives: ``burst`` for bursty loss, ``1 / (1 - loss)`` for independent random loss (runs of a coin).
* reorder expects ``reorder x (1 - reorder^k)`` datagrams sent ahead, k the probes sent within one delay:
  a datagram sent at once only overtakes if a delayed one is still held (none is without delay).
* rate: iperf3 offered 1.5 times the setting; what arrives, counted as the shaper counts it, within ± 10 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from client.diagnostics.line_stats import DirectionStats, wilson
from nat.impair.model import Impairments, LinkImpairment
from scenarios.iperf import L2_OVERHEAD, RateResult

DELAY_ABS_MS = 2.0
DELAY_REL = 0.05
JITTER_ABS_MS = 1.5
JITTER_REL = 0.25
Z999 = 3.2905
"""The normal quantile of a two-sided 99.9 % interval."""
SHARE_SLACK = 0.002
BURST_SES = 3.0
BURST_MIN_ALLOWANCE = 0.5
RATE_REL = 0.10
RATE_OFFER = 1.5
"""iperf3 offers this many times the shaped rate: the shaper, not the sender, must set what arrives."""

PROBE_SIZE = 100
"""Bytes of payload per probe datagram: small, so the probe stays far below a shaped rate."""
PROBE_MAX_RATE = 500.0
"""Probes a second at most: every one of them crosses the delay line (Python) when a direction is delayed."""
PROBE_MIN_COUNT = 200
PROBE_RATE_SHARE = 0.1
"""The probe uses at most this share of the smallest shaped rate, so the shaper's queue stays empty."""
JITTER_SPACING = 4.0
"""Probes are at least this many jitter sigmas apart (see the module's docstring)."""


@dataclass(frozen=True)
class Probe:
    """What ``client linecheck send`` sends: ``count`` datagrams of ``size`` bytes, ``rate`` a second."""

    count: int
    rate: float
    size: int = PROBE_SIZE

    @property
    def spacing_ms(self) -> float:
        return 1000 / self.rate

    @property
    def l2_bits(self) -> int:
        """One probe's bits as a shaper counts them."""
        return (self.size + L2_OVERHEAD) * 8


def probe_for(impairments: Impairments, seconds: float) -> Probe:
    """A probe for these settings lasting about ``seconds``: as fast as the settings allow (up to 500 a
    second), slower when jitter needs its probes spaced out or a shaped rate must not be filled."""
    links = (impairments.up, impairments.down)
    rate = PROBE_MAX_RATE
    jitter = max(link.jitter_ms for link in links)
    if jitter:
        rate = min(rate, 1000 / (JITTER_SPACING * jitter))
    for link in links:
        if link.rate_bps:
            rate = min(rate, PROBE_RATE_SHARE * link.rate_bps / Probe(1, 1).l2_bits)
    return Probe(max(PROBE_MIN_COUNT, round(rate * seconds)), round(rate, 1))


@dataclass(frozen=True)
class Row:
    """One quantity of one direction: configured, measured, what was allowed, and whether it is within."""

    router: str
    direction: str
    quantity: str
    configured: str
    measured: str
    allowed: str
    ok: bool | None
    """None: not checked (not measured)."""


def _pct(share: float) -> str:
    return f"{share * 100:.2f} %"


def _share_row(
    where: tuple[str, str], quantity: str, setting: float, hits: int, trials: int, *, effective: float
) -> Row:
    """A share's row: ``setting`` inside the 99.9 % Wilson interval of ``hits / trials`` (over ``effective``
    trials' worth of evidence), widened by the slack."""
    share = hits / trials if trials else 0.0
    n = max(1, round(effective))
    low, high = wilson(round(share * n), n, Z999)
    low, high = max(0.0, low - SHARE_SLACK), min(1.0, high + SHARE_SLACK)
    shown, allowed = f"{_pct(share)} ({hits}/{trials})", f"{_pct(low)}-{_pct(high)}"
    return Row(*where, quantity, _pct(setting), shown, allowed, low <= setting <= high)


def expected_delay_ms(link: LinkImpairment, probe: Probe) -> float:
    """The median one-way delay the setting should give a probe: the delay, plus one probe's time at the rate."""
    return link.delay_ms + (probe.l2_bits / link.rate_bps * 1000 if link.rate_bps else 0.0)


def expected_ahead(link: LinkImpairment, probe: Probe) -> float:
    """The share of probes that should arrive ahead of one sent before them (see the module's docstring)."""
    if not link.reorder:
        return 0.0
    within = math.floor(link.delay_ms / probe.spacing_ms)
    return link.reorder * (1 - link.reorder**within)


def expected_burst(link: LinkImpairment) -> float:
    """The mean loss burst the setting gives, and so its continuation probability: ``burst`` for bursty loss,
    runs of independent losses otherwise."""
    return link.loss_burst if link.loss_burst > 1 else 1 / (1 - link.loss)


def direction_rows(
    router: str, direction: str, link: LinkImpairment, measured: DirectionStats, probe: Probe
) -> list[Row]:
    """Every quantity of one direction (the line check's; the rate is :func:`rate_row`'s)."""
    where = (router, direction)
    rows: list[Row] = []
    delay = measured.delay
    want = expected_delay_ms(link, probe)
    allowed = DELAY_ABS_MS + DELAY_REL * want
    if delay is None:
        rows.append(Row(router, direction, "delay", f"{want:.1f} ms", "no datagram came back", "", False))
    else:
        shown = f"{delay.p50:.2f} ms (median; min {delay.min:.2f}, p99 {delay.p99:.2f})"
        ok = abs(delay.p50 - want) <= allowed
        rows.append(Row(router, direction, "delay", f"{want:.1f} ms", shown, f"± {allowed:.2f} ms", ok))
        jitter_allowed = JITTER_ABS_MS + JITTER_REL * link.jitter_ms
        shown = f"{delay.iqr_sigma:.2f} ms (IQR/1.349; stdev {delay.stdev:.2f})"
        ok = abs(delay.iqr_sigma - link.jitter_ms) <= jitter_allowed
        configured = f"{link.jitter_ms:.1f} ms"
        rows.append(Row(router, direction, "jitter", configured, shown, f"± {jitter_allowed:.2f} ms", ok))
    c = measured.counts
    bursty = link.loss_burst > 1 and link.loss > 0
    effective = c.sent / (2 * link.loss_burst - 1) if bursty else c.sent
    rows.append(_share_row(where, "loss", link.loss, c.lost, c.sent, effective=effective))
    if 0 < link.loss < 1:  # (all lost is one burst)
        rows.append(_burst_row(link, measured, where))
    rows.append(_share_row(where, "duplicate", link.duplicate, c.duplicates, c.distinct, effective=c.distinct))
    reorder = expected_ahead(link, probe)
    row = _share_row(where, "reorder", reorder, c.ahead, c.distinct, effective=c.distinct)
    if link.reorder and reorder != link.reorder:
        row = Row(*where, "reorder", f"{_pct(link.reorder)} -> {_pct(reorder)}", row.measured, row.allowed, row.ok)
    rows.append(row)
    return rows


def _burst_row(link: LinkImpairment, measured: DirectionStats, where: tuple[str, str]) -> Row:
    want = expected_burst(link)
    carry_on = 1 - 1 / want  # the chance a loss is followed by another
    runs = measured.counts.lost_runs
    if not runs:  # a small loss may lose nothing in a short probe (the loss row judges that): no run to measure
        return Row(*where, "burst", f"{want:.2f}", "no loss seen", "", None)
    spread = math.sqrt(carry_on) / (1 - carry_on)  # a geometric run length's standard deviation
    allowed = max(BURST_MIN_ALLOWANCE, BURST_SES * spread / math.sqrt(runs))
    shown = f"{measured.mean_burst:.2f} ({runs} bursts)"
    return Row(*where, "burst", f"{want:.2f}", shown, f"± {allowed:.2f}", abs(measured.mean_burst - want) <= allowed)


def rate_row(router: str, link: LinkImpairment, result: RateResult | None, direction: str) -> Row | None:
    """The shaped rate's row (None when the direction is not shaped)."""
    if not link.rate_bps:
        return None
    configured = f"{link.rate_bps / 1e6:g} mbit/s"
    if result is None:
        return Row(router, direction, "rate", configured, "not measured", "", None)
    shown = f"{result.l2_bps / 1e6:.2f} mbit/s (offered {result.offered_bps / 1e6:g}, lost {_pct(result.lost_share)})"
    ok = abs(result.l2_bps - link.rate_bps) <= RATE_REL * link.rate_bps
    return Row(router, direction, "rate", configured, shown, f"± {RATE_REL * 100:.0f} %", ok)


def render(rows: list[Row]) -> str:
    """The rows as an aligned text table, one line each, ``ok``/``FAIL`` (or ``-``) last."""
    header = ("ROUTER", "DIR", "QUANTITY", "CONFIGURED", "MEASURED", "ALLOWED", "")
    cells = [header] + [
        (r.router, r.direction, r.quantity, r.configured, r.measured, r.allowed, _verdict(r.ok)) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else "ok" if ok else "FAIL"
