"""`client linecheck`'s figures from in-memory data: the Wilson interval, loss bursts, datagrams sent ahead,
delay percentiles, and the per-direction accounting of a whole run (which direction lost or doubled what)."""

from __future__ import annotations

from dataclasses import astuple

import pytest

from client.diagnostics.line_stats import (
    Arrivals,
    Counts,
    DelayStats,
    DirectionStats,
    LineReport,
    Received,
    ahead,
    line_report,
    lost_runs,
    wilson,
)
from client.diagnostics.line_wire import DataReply, SummaryReply

TOKEN = bytes(16)


def test_wilson_matches_published_values() -> None:
    # Wilson (1927) as tabulated by Newcombe (1998), method 3: 5/100 -> 0.0215-0.1118, 0/100 -> 0-0.0370.
    assert wilson(5, 100) == pytest.approx((0.0215, 0.1118), abs=5e-5)
    assert wilson(0, 100) == pytest.approx((0.0, 0.0370), abs=5e-5)
    assert wilson(100, 100) == pytest.approx((0.9630, 1.0), abs=5e-5)
    assert wilson(0, 0) == (0.0, 1.0)  # nothing measured: anything is possible


def test_a_wider_z_gives_a_wider_interval() -> None:
    low95, high95 = wilson(50, 1000)
    low999, high999 = wilson(50, 1000, z=3.2905)
    assert low999 < low95 < 0.05 < high95 < high999


@pytest.mark.parametrize(
    ("received", "sent", "runs"),
    [
        ([0, 1, 2, 3], 4, 0),
        ([1, 2, 3], 4, 1),  # the first one lost
        ([0, 1, 2], 4, 1),  # the last one lost
        ([0, 3, 4, 8], 10, 3),  # 1-2, 5-7, 9
        ([], 5, 1),  # everything lost: one burst
    ],
)
def test_lost_runs_counts_each_burst_once(received: list[int], sent: int, runs: int) -> None:
    assert lost_runs(received, sent) == runs


@pytest.mark.parametrize(
    ("arrivals", "count"),
    [
        ([0, 1, 2, 3], 0),
        ([1, 0, 2, 3], 1),  # 1 came ahead of 0
        ([5, 0, 1, 2, 3, 4, 6], 1),  # 5 overtook a queue of five: one datagram sent ahead, not five
        ([3, 2, 1, 0], 3),
        ([0, 2, 4, 1, 3], 2),  # 2 ahead of 1; 4 ahead of 1 and 3
    ],
)
def test_ahead_counts_the_datagrams_that_overtook(arrivals: list[int], count: int) -> None:
    assert ahead(arrivals) == count


def test_arrivals_number_every_receipt_and_count_duplicates_once() -> None:
    arrivals = Arrivals()
    assert [arrivals.add(n) for n in (0, 2, 2, 1, 4, 0)] == [0, 1, 2, 3, 4, 5]
    assert 2 in arrivals
    assert 3 not in arrivals
    # of 0..4: 3 never came; 2 and 0 twice; 2 came ahead of 1 (duplicates reorder nothing)
    assert arrivals.counts(5) == Counts(sent=5, receipts=6, distinct=4, lost_runs=1, ahead=1)


def test_delay_stats_are_nearest_rank_in_milliseconds() -> None:
    stats = DelayStats.of(ms * 1_000_000 for ms in range(1, 101))  # 1..100 ms
    assert stats is not None
    assert (stats.min, stats.p25, stats.p50, stats.p75, stats.p90, stats.p99, stats.max) == (1, 25, 50, 75, 90, 99, 100)
    assert stats.mean == pytest.approx(50.5)
    assert stats.stdev == pytest.approx(29.011, abs=1e-3)
    assert stats.iqr_sigma == pytest.approx(50 / 1.349)
    assert DelayStats.from_dict(stats.as_dict()) == stats
    assert DelayStats.of([]) is None


def _reply(seq: int, receipt: int, sent_ms: float, out_ms: float, back_ms: float) -> Received:
    """A reply as received: sent at ``sent_ms``, ``out_ms`` on the way out, answered at once, ``back_ms`` back."""
    sent, at_echo = round(sent_ms * 1e6), round((sent_ms + out_ms) * 1e6)
    return Received(DataReply(TOKEN, seq, sent, receipt, at_echo, at_echo), at_echo + round(back_ms * 1e6))


def test_a_run_tells_each_directions_loss_duplicates_and_order_apart() -> None:
    # Ten sent. Way out: seq 3 lost, 6 doubled, 8 overtook 7; the echo's tally of that is its summary (see
    # test_arrivals_...). Its replies are receipts 0..9. Way back: receipt 2 lost, 4 doubled, 7 overtook 6.
    echo_arrivals = [0, 1, 2, 4, 5, 6, 6, 8, 7, 9]
    tally = Arrivals()
    replies = [_reply(seq, tally.add(seq), seq, 10, 30) for seq in echo_arrivals]
    summary = SummaryReply(TOKEN, 10, *astuple(tally.counts(10))[1:])
    back = [replies[i] for i in (0, 1, 3, 4, 4, 5, 7, 6, 8, 9)]
    report = line_report(10, back, summary)
    assert report.up is not None
    assert report.down is not None
    up, down = report.up.counts, report.down.counts
    assert (up.sent, up.distinct, up.lost, up.lost_runs, up.duplicates, up.ahead) == (10, 9, 1, 1, 1, 1)
    assert (down.sent, down.distinct, down.lost, down.lost_runs, down.duplicates, down.ahead) == (10, 9, 1, 1, 1, 1)
    assert report.up.delay is not None
    assert report.up.delay.p50 == pytest.approx(10)
    assert report.down.delay is not None
    assert report.down.delay.p50 == pytest.approx(30)
    assert report.rtt is not None
    assert report.rtt.p50 == pytest.approx(40)
    assert report.answered == 8  # 3 was lost on the way out, 2's only reply on the way back


def test_a_reply_doubled_on_the_way_back_adds_no_delay_sample() -> None:
    first = _reply(0, 0, 0, 5, 5)
    late_copy = Received(first.reply, first.at_ns + 50_000_000)
    report = line_report(1, [first, late_copy], SummaryReply(TOKEN, 1, 1, 1, 0, 0))
    assert report.rtt is not None
    assert report.rtt.count == 1
    assert report.rtt.max == pytest.approx(10)
    assert report.down is not None
    assert report.down.counts.duplicates == 1


def test_without_the_echos_summary_only_the_round_trip_is_known() -> None:
    report = line_report(4, [_reply(0, 0, 0, 1, 1), _reply(2, 1, 2, 1, 1)], None)
    assert (report.up, report.down) == (None, None)
    assert report.round_trip_loss == 0.5
    assert LineReport.from_dict(report.as_dict()) == report


def test_direction_figures_and_their_json_round_trip() -> None:
    stats = DirectionStats(Counts(sent=1000, receipts=960, distinct=950, lost_runs=10, ahead=19), None)
    assert stats.loss == pytest.approx(0.05)
    assert stats.mean_burst == pytest.approx(5.0)
    assert stats.duplicate_share == pytest.approx(10 / 950)
    assert stats.reorder_share == pytest.approx(19 / 950)
    low, high = stats.loss_interval()
    assert low < 0.05 < high
    assert DirectionStats.from_dict(stats.as_dict()) == stats
    clean = DirectionStats(Counts(100, 100, 100, 0, 0), None)
    assert (clean.loss, clean.mean_burst, clean.duplicate_share) == (0.0, 0.0, 0.0)


def test_the_round_trip_leaves_out_the_echos_own_time() -> None:
    # 10 ms out, the echo took 500 ms to answer (a starved process), 20 ms back: the path's round trip is 30 ms.
    reply = DataReply(TOKEN, 0, 0, 0, echo_received_ns=10_000_000, echo_sent_ns=510_000_000)
    report = line_report(1, [Received(reply, 530_000_000)], SummaryReply(TOKEN, 1, 1, 1, 0, 0))
    assert report.rtt is not None
    assert report.rtt.p50 == pytest.approx(30)
