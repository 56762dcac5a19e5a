"""Configured against measured, pure: the probe chosen for a setting, what each setting should look like to it,
each tolerance's edges, the table; and iperf3's JSON (real outputs, tests/fixtures/iperf3) read as rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.diagnostics.line_stats import Counts, DelayStats, DirectionStats
from nat.impair.model import Impairments, LinkImpairment
from scenarios import iperf
from scenarios.impair_tolerance import (
    Probe,
    Row,
    direction_rows,
    expected_ahead,
    expected_burst,
    expected_delay_ms,
    probe_for,
    rate_row,
    render,
)

FIXTURES = Path(__file__).parent / "fixtures" / "iperf3"
FAST = Probe(5000, 1000.0)


def delays(p25: float, p50: float, p75: float) -> DelayStats:
    return DelayStats(1000, p25 - 1, p25, p50, p50, p75, p75 + 1, p75 + 5, p75 + 20, 3.0)


def clean(sent: int = 5000) -> Counts:
    return Counts(sent=sent, receipts=sent, distinct=sent, lost_runs=0, ahead=0)


def rows_by_quantity(rows: list[Row]) -> dict[str, Row]:
    return {row.quantity: row for row in rows}


def test_an_unimpaired_path_is_probed_fast_and_reads_clean() -> None:
    probe = probe_for(Impairments(), seconds=5)
    assert probe == Probe(2500, 500.0)
    measured = DirectionStats(clean(), delays(0.03, 0.04, 0.06))
    rows = direction_rows("router-a", "up", LinkImpairment(), measured, probe)
    assert [row.quantity for row in rows] == ["delay", "jitter", "loss", "duplicate", "reorder"]
    assert all(row.ok for row in rows), render(rows)


def test_jitter_spaces_the_probes_out_and_a_shaped_rate_slows_them() -> None:
    jittery = Impairments(LinkImpairment(delay_ms=20, jitter_ms=5), LinkImpairment(jitter_ms=2))
    assert probe_for(jittery, seconds=10) == Probe(500, 50.0)  # 4 sigmas of the larger jitter apart: 20 ms
    shaped = Impairments(LinkImpairment(rate_bps=1_000_000), LinkImpairment())
    probe = probe_for(shaped, seconds=10)
    assert probe.rate * probe.l2_bits <= 0.1 * 1_000_000  # a tenth of the smallest rate at most
    assert probe_for(jittery, seconds=0.1).count == 200  # never fewer than a few hundred


def test_the_delay_expected_includes_one_probes_time_at_the_shaped_rate() -> None:
    link = LinkImpairment(delay_ms=25, rate_bps=1_000_000)
    assert expected_delay_ms(link, FAST) == pytest.approx(25 + 142 * 8 / 1e3)  # 100 bytes + 42 of headers
    assert expected_delay_ms(LinkImpairment(delay_ms=25), FAST) == 25


@pytest.mark.parametrize(("median", "ok"), [(21.5, False), (22.0, True), (26.0, True), (28.0, True), (28.5, False)])
def test_the_median_delay_may_be_2_ms_and_5_percent_off(median: float, ok: bool) -> None:
    link = LinkImpairment(delay_ms=25)
    rows = direction_rows("r", "up", link, DirectionStats(clean(), delays(median - 1, median, median + 1)), FAST)
    row = rows_by_quantity(rows)["delay"]
    assert row.allowed == "± 3.25 ms"
    assert row.ok is ok


@pytest.mark.parametrize(("sigma", "ok"), [(2.0, False), (2.3, True), (7.7, True), (8.0, False)])
def test_jitter_is_read_from_the_quartiles_within_1_5_ms_and_25_percent(sigma: float, ok: bool) -> None:
    link = LinkImpairment(delay_ms=20, jitter_ms=5)
    half_iqr = sigma * 1.349 / 2
    measured = DirectionStats(clean(), delays(20 - half_iqr, 20, 20 + half_iqr))
    assert rows_by_quantity(direction_rows("r", "up", link, measured, FAST))["jitter"].ok is ok


@pytest.mark.parametrize(("lost", "ok"), [(55, False), (60, True), (100, True), (140, True), (150, False)])
def test_loss_must_be_inside_the_99_9_percent_wilson_interval(lost: int, ok: bool) -> None:
    # 2 % of 5,000 is 100; widened by 0.2 points, the 99.9 % interval of 60/5000 reaches up to 2.02 %, of
    # 55/5000 to 1.90 %; that of 140/5000 down to 1.93 %, of 150/5000 to 2.10 %
    link = LinkImpairment(loss=0.02)
    counts = Counts(5000, 5000 - lost, 5000 - lost, lost, 0)
    row = rows_by_quantity(direction_rows("r", "up", link, DirectionStats(counts, delays(0, 0.1, 0.2)), FAST))["loss"]
    assert row.ok is ok, row


def test_bursty_loss_is_judged_over_fewer_effective_datagrams() -> None:
    # 5 % in bursts of 4: 6,000 datagrams weigh as 6000 / 7; 7 % lost would fail as independent losses
    bursty, independent = LinkImpairment(loss=0.05, loss_burst=4), LinkImpairment(loss=0.05)
    counts = Counts(6000, 5580, 5580, 105, 0)  # 420 lost (7 %) in 105 bursts of 4
    measured = DirectionStats(counts, delays(0, 0.1, 0.2))
    assert rows_by_quantity(direction_rows("r", "up", bursty, measured, FAST))["loss"].ok
    assert not rows_by_quantity(direction_rows("r", "up", independent, measured, FAST))["loss"].ok


@pytest.mark.parametrize(("runs", "ok"), [(70, False), (95, True), (105, True), (120, True), (140, False)])
def test_the_mean_burst_within_3_standard_errors(runs: int, ok: bool) -> None:
    link = LinkImpairment(loss=0.05, loss_burst=4)
    # 420 lost: a mean of 6.0 (70 bursts) is 2 away from 4, beyond 3 standard errors (1.24); 3.0 (140) too
    measured = DirectionStats(Counts(6000, 5580, 5580, runs, 0), delays(0, 0.1, 0.2))
    assert rows_by_quantity(direction_rows("r", "up", link, measured, FAST))["burst"].ok is ok


def test_a_probe_that_lost_nothing_leaves_the_burst_unchecked() -> None:
    # 0.5 % of 250 is about one datagram: losing none is within the loss row's interval, and there is no run
    rows = rows_by_quantity(
        direction_rows("r", "up", LinkImpairment(loss=0.005), DirectionStats(clean(250), None), FAST)
    )
    assert rows["loss"].ok
    assert rows["burst"].ok is None
    assert rows["burst"].measured == "no loss seen"


def test_independent_losses_come_in_runs_of_one_over_one_minus_loss() -> None:
    assert expected_burst(LinkImpairment(loss=0.1)) == pytest.approx(1 / 0.9)
    assert expected_burst(LinkImpairment(loss=0.1, loss_burst=3)) == 3


def test_datagrams_sent_ahead_need_a_delayed_one_to_overtake() -> None:
    assert expected_ahead(LinkImpairment(delay_ms=10, reorder=0.1), FAST) == pytest.approx(0.1 * (1 - 0.1**10))
    assert expected_ahead(LinkImpairment(reorder=0.1), FAST) == 0  # nothing held: nothing to overtake
    # 5 ms apart, 10 ms held: one sent at once overtakes if either of the two before it was delayed
    assert expected_ahead(LinkImpairment(delay_ms=10, reorder=0.5), Probe(100, 200.0)) == pytest.approx(0.375)


def test_duplicates_and_reordering_are_shares_of_what_arrived() -> None:
    link = LinkImpairment(delay_ms=10, duplicate=0.05, reorder=0.1)
    measured = DirectionStats(Counts(5000, 5250, 5000, 0, 500), delays(9.9, 10, 10.1))
    rows = rows_by_quantity(direction_rows("r", "down", link, measured, FAST))
    assert rows["duplicate"].ok
    assert rows["duplicate"].measured == "5.00 % (250/5000)"
    assert rows["reorder"].ok
    assert rows["reorder"].configured == "10.00 % -> 10.00 %"


def test_a_direction_with_nothing_back_fails_its_delay() -> None:
    rows = rows_by_quantity(direction_rows("r", "up", LinkImpairment(), DirectionStats(clean(), None), FAST))
    assert rows["delay"].ok is False


def test_rates_within_ten_percent_and_unshaped_directions_have_no_row() -> None:
    link = LinkImpairment(rate_bps=10_000_000)
    fine = iperf.RateResult("up", 15_000_000, 9_500_000, 0.35)  # 9.83 mbit/s as the shaper counts
    slow = iperf.RateResult("up", 15_000_000, 8_500_000, 0.4)
    assert fine.l2_bps == pytest.approx(9_500_000 * 1242 / 1200)
    assert rate_row("r", link, fine, "up") == Row(
        "r", "up", "rate", "10 mbit/s", "9.83 mbit/s (offered 15, lost 35.00 %)", "± 10 %", True
    )
    row = rate_row("r", link, slow, "up")
    assert row is not None
    assert row.ok is False
    not_measured = rate_row("r", link, None, "up")
    assert not_measured is not None
    assert not_measured.ok is None
    assert rate_row("r", LinkImpairment(), fine, "up") is None


def test_the_table_is_aligned_with_a_verdict_per_row() -> None:
    rows = [
        Row("router-a", "up", "loss", "2.00 %", "2.10 % (105/5000)", "1.39 %-2.89 %", True),
        Row("router-a", "down", "rate", "5 mbit/s", "not measured", "", None),
        Row("router-b", "up", "delay", "20.0 ms", "31.00 ms (median)", "± 3.00 ms", False),
    ]
    lines = render(rows).splitlines()
    assert lines[0].split() == ["ROUTER", "DIR", "QUANTITY", "CONFIGURED", "MEASURED", "ALLOWED"]
    assert [line.split()[-1] for line in lines[1:]] == ["ok", "-", "FAIL"]
    assert len({line.index(line.split()[2]) for line in lines}) == 1  # the quantity column lines up


def test_iperf3_up_and_reverse_read_as_what_the_receiver_got() -> None:
    up = iperf.parse_client((FIXTURES / "udp-up-20mbit.json").read_text(), "up", 20_000_000)
    assert up.payload_bps == pytest.approx(19_627_377.75, abs=1)
    assert up.lost_share == pytest.approx(0.018007, abs=1e-6)
    assert up.datagram == 1200
    down = iperf.parse_client((FIXTURES / "udp-reverse-20mbit.json").read_text(), "down", 20_000_000)
    assert down.payload_bps == pytest.approx(19_933_253.84, abs=1)
    assert down.direction == "down"


def test_iperf3s_own_error_reaches_the_user() -> None:
    with pytest.raises(iperf.IperfError, match=r"^iperf3: unable to connect to server: Connection refused$"):
        iperf.parse_client((FIXTURES / "refused.json").read_text(), "up", 1)
    with pytest.raises(ValueError, match="iperf3 printed no JSON"):
        iperf.parse_client("iperf3: error - something", "up", 1)


def test_iperf3_command_lines() -> None:
    assert iperf.client_command("198.18.0.10", 5301, "down", 15_000_000, 3) == [
        "iperf3", "--client", "198.18.0.10", "--port", "5301", "--udp", "--json",
        "--bitrate", "15000000", "--length", "1200", "--time", "3", "--reverse",
    ]  # fmt: skip
    assert iperf.server_command(5301)[:4] == ["timeout", "60", "iperf3", "--server"]
