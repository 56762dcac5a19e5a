"""Each impairment, measured through a real router: configured against measured, within stated tolerances.

One lab (cone routers; only router-a's site, the servers and alice are started), router-a started with
``NAT_A_IMPAIR=lte`` (a preset, through compose) and measured as it comes up; then each test sets one
setting at run time with ``nat impair`` in router-a (cleared afterwards) and measures it the way ``make
impair-check`` does (:mod:`scenarios.line_measure`): ``client linecheck`` from alice to an echo in the server
container on the WAN, so router-a's ``up`` is the way out and its ``down`` the way back, and iperf3 in each
shaped direction. Every quantity of both directions is checked, the unimpaired ones too (a loss setting must
not also delay or double), with these tolerances (:mod:`scenarios.impair_tolerance` says why):

* delay: median one-way delay within setting + one probe's time at the shaped rate ± (2 ms + 5 %);
* jitter: IQR / 1.349 within setting ± (1.5 ms + 25 %); probes at least 4 jitter sigmas apart;
* loss, duplicate, reorder: the setting inside the measured share's 99.9 % Wilson interval, widened by 0.2
  points (bursty loss: over n / (2 burst - 1) datagrams, the correlated chain's effective sample);
* burst: mean loss burst within 3 standard errors (at least 0.5) of ``burst`` (or 1 / (1 - loss));
* reorder: ``reorder x (1 - reorder^k)`` sent ahead, k the probes sent within one delay;
* rate: iperf3 offered 1.5 x the setting; received, counted with headers as the shaper counts, within ± 10 %.

Up and down get different values where a test can, so a direction swapped anywhere shows. Wall time: about
two and a half minutes on an idle 2-core machine (the lab's start, eight line checks of 2-10 s, four iperf3
runs of 3 s). The delay line and the shaper run on the host's CPU: on a saturated host (a run queue of 30 on
2 cores) their timers fire late, delays grow and shaped rates fall short, and these tests say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nat.impair.model import Impairments, LinkImpairment
from nat.impair.presets import PRESETS
from scenarios.harness import Lab, start_lab
from scenarios.impair_tolerance import DELAY_ABS_MS, DELAY_REL, render
from scenarios.line_measure import Measurement, Site, measure, sites

PRESET = "lte"
"""The preset router-a starts with: different delays, jitters and rates each way, and some loss."""
ROUTER = "router-a"


@pytest.fixture(scope="module")
def impair_lab(docker_ready: None) -> Iterator[Lab]:
    """router-a's site (and the servers) with NAT_A_IMPAIR set to the preset."""
    env = {"NAT_A": "cone", "NAT_B": "cone", "NAT_A_IMPAIR": PRESET}
    with start_lab(name="impair", env=env, services=("server", "turn", ROUTER, "alice")) as lab:
        yield lab


@pytest.fixture(scope="module")
def site(impair_lab: Lab) -> Site:
    [found] = sites(impair_lab.running())
    assert found.router == ROUTER, found
    return found


@pytest.fixture(scope="module")
def at_start(impair_lab: Lab, site: Site) -> Measurement:
    """router-a measured as it came up, with the preset: before any test changes it (``impair`` needs this)."""
    return measure(impair_lab, site, seconds=8)


Impair = Callable[..., Measurement]


@pytest.fixture
def impair(impair_lab: Lab, site: Site, at_start: Measurement) -> Iterator[Impair]:
    """``impair(["up", "delay=30ms"], ["down", ...], seconds=S)``: router-a's settings by ``nat impair`` (the
    preset cleared first), measured; cleared after the test."""
    impair_lab.exec_ok(ROUTER, "nat", "impair", "clear")

    def set_and_measure(*settings: list[str], seconds: float) -> Measurement:
        for words in settings:
            impair_lab.exec_ok(ROUTER, "nat", "impair", *words)
        return measure(impair_lab, site, seconds)

    yield set_and_measure
    impair_lab.exec_ok(ROUTER, "nat", "impair", "clear")


def within(measured: Measurement, *quantities: str) -> None:
    """Every row within its tolerance, and each of ``quantities`` actually checked in both directions."""
    checked = {(row.direction, row.quantity) for row in measured.rows if row.ok is not None}
    missing = {(d, q) for q in quantities for d in ("up", "down")} - checked
    assert not missing, f"not measured: {sorted(missing)}\n{render(measured.rows)}"
    assert measured.ok, f"\n{render(measured.rows)}\n{measured.report}"


def test_a_preset_given_at_lab_start_is_in_force_and_measures_as_configured(at_start: Measurement) -> None:
    preset = PRESETS[PRESET]
    assert at_start.impairments == Impairments(preset.up, preset.down)
    within(at_start, "delay", "jitter", "loss", "rate")


def test_delay_and_jitter_per_direction(impair: Impair) -> None:
    measured = impair(["up", "delay=30ms", "jitter=5ms"], ["down", "delay=10ms", "jitter=2ms"], seconds=10)
    assert measured.impairments == Impairments(
        LinkImpairment(delay_ms=30, jitter_ms=5), LinkImpairment(delay_ms=10, jitter_ms=2)
    )
    within(measured, "delay", "jitter")
    # the round trip is both ways' delay: its median within the sum of both ways' allowances
    allowed = sum(DELAY_ABS_MS + DELAY_REL * delay for delay in (30, 10))
    assert abs(measured.report["rtt_ms"]["p50"] - 40) <= allowed, measured.report["rtt_ms"]


def test_random_loss_per_direction(impair: Impair) -> None:
    measured = impair(["up", "loss=2%"], ["down", "loss=10%"], seconds=8)
    within(measured, "loss", "burst")


def test_bursty_loss(impair: Impair) -> None:
    measured = impair(["both", "loss=5%", "burst=4"], seconds=8)
    assert measured.impairments.up == LinkImpairment(loss=0.05, loss_burst=4)
    within(measured, "loss", "burst")


def test_duplicates_per_direction(impair: Impair) -> None:
    measured = impair(["up", "duplicate=5%"], ["down", "duplicate=2%"], seconds=5)
    within(measured, "duplicate")


def test_reordering(impair: Impair) -> None:
    measured = impair(["both", "delay=10ms", "reorder=10%"], seconds=4)
    within(measured, "delay", "reorder")


def test_shaped_rate_up(impair: Impair) -> None:
    measured = impair(["up", "rate=10mbit"], seconds=2)
    rates = [row for row in measured.rows if row.quantity == "rate"]
    assert [(row.direction, row.ok) for row in rates] == [("up", True)], render(measured.rows)
    assert measured.ok, render(measured.rows)


def test_shaped_rate_down(impair: Impair) -> None:
    measured = impair(["down", "rate=5mbit"], seconds=2)
    rates = [row for row in measured.rows if row.quantity == "rate"]
    assert [(row.direction, row.ok) for row in rates] == [("down", True)], render(measured.rows)
    assert measured.ok, render(measured.rows)
