"""The delay line's schedule, without a kernel: FIFO and reordering as properties over generated settings and
arrivals, the shares (jitter, reorder, Gilbert-Elliott loss and burst length) over many seeded packets."""

import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.impair.model import ImpairmentError, LinkImpairment
from nat.impair.schedule import LinkSchedule, gilbert_elliott, simulate

links = st.builds(
    LinkImpairment,
    delay_ms=st.floats(0, 200),
    jitter_ms=st.floats(0, 100),
    reorder=st.sampled_from([0.0, 0.01, 0.25, 0.5]),
    loss=st.sampled_from([0.0, 0.02, 0.3]),
    loss_burst=st.sampled_from([0.0, 1.0, 2.0, 8.0]),
)
arrivals = st.lists(st.floats(0, 0.05), min_size=1, max_size=200).map(lambda gaps: list(itertools.accumulate(gaps)))


def decisions(link, times, seed=1):
    schedule = LinkSchedule(link, random.Random(seed))
    return schedule, [schedule.decide(now) for now in times]


def runs(flags):
    """Lengths of the runs of True in ``flags``."""
    return [len(list(group)) for lost, group in itertools.groupby(flags) if lost]


@settings(max_examples=200, deadline=None)
@given(link=links.map(lambda link: LinkImpairment(link.delay_ms, link.jitter_ms)), times=arrivals)
def test_without_reorder_nothing_leaves_before_it_arrives_or_before_the_packet_ahead(link, times):
    _, releases = decisions(link, times)
    assert all(release >= now for release, now in zip(releases, times, strict=True))
    assert releases == sorted(releases)


@settings(max_examples=200, deadline=None)
@given(link=links, times=arrivals, seed=st.integers(0, 2**32))
def test_with_reorder_the_held_packets_keep_their_order_and_the_rest_leave_at_once(link, times, seed):
    _, releases = decisions(link, times, seed)
    kept = [(now, release) for now, release in zip(times, releases, strict=True) if release is not None]
    held = [release for now, release in kept if release > now]
    assert held == sorted(held)
    assert all(release >= now for now, release in kept)


@settings(max_examples=100, deadline=None)
@given(link=links, times=arrivals, seed=st.integers(0, 2**32))
def test_a_schedule_replays_exactly_from_its_seed(link, times, seed):
    assert decisions(link, times, seed)[1] == decisions(link, times, seed)[1]


def test_delay_alone_holds_every_packet_exactly_that_long():
    times = [i * 0.001 for i in range(1000)]
    schedule, releases = decisions(LinkImpairment(delay_ms=20), times)
    assert all(release - now == pytest.approx(0.020) for release, now in zip(releases, times, strict=True))
    assert schedule.counts.delayed == 1000


def test_jitter_is_normal_around_the_delay_when_packets_are_sparse():
    # 1 s apart, FIFO never holds one packet for another: the delays are the draws themselves.
    delays = simulate(LinkImpairment(delay_ms=40, jitter_ms=5), [float(i) for i in range(20_000)], random.Random(3))
    millis = [1000 * d for d in delays if d is not None]
    assert statistics.mean(millis) == pytest.approx(40, abs=0.15)  # standard error 0.035 ms
    assert statistics.stdev(millis) == pytest.approx(5, abs=0.15)


def test_jitter_is_cut_at_zero():
    delays = simulate(LinkImpairment(delay_ms=1, jitter_ms=20), [float(i) for i in range(5000)], random.Random(4))
    assert min(d for d in delays if d is not None) == 0.0


def test_fifo_lifts_the_delays_when_packets_come_faster_than_the_jitter():
    """At 500 pps, 20 +- 5 ms: a packet that draws a short delay waits for the one ahead."""
    delays = simulate(LinkImpairment(delay_ms=20, jitter_ms=5), [i / 500 for i in range(5000)], random.Random(5))
    millis = sorted(1000 * d for d in delays if d is not None)
    assert 20 < millis[len(millis) // 2] < 30
    assert millis[0] > 20 - 3.5 * 5


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5])
def test_the_reorder_share_leaves_at_once(share):
    n = 20_000
    schedule, releases = decisions(LinkImpairment(delay_ms=20, reorder=share), [i * 0.001 for i in range(n)])
    immediate = sum(release == i * 0.001 for i, release in enumerate(releases))
    assert immediate / n == pytest.approx(share, abs=4 * math.sqrt(share * (1 - share) / n))
    # All but the first few are sent ahead of packets still held.
    assert immediate - 20 <= schedule.counts.reordered <= immediate


@pytest.mark.parametrize(("loss", "burst"), [(0.01, 2), (0.05, 5), (0.3, 3)])
def test_gilbert_elliott_loses_the_share_in_bursts_of_the_mean_length(loss, burst):
    n = 200_000
    schedule, releases = decisions(LinkImpairment(loss=loss, loss_burst=burst), [i * 1e-4 for i in range(n)], seed=6)
    lost = [release is None for release in releases]
    p, r = gilbert_elliott(loss, burst)
    rho = 1 - p - r  # correlation of consecutive packets' fates: widens the interval of the share
    assert sum(lost) / n == pytest.approx(loss, abs=4 * math.sqrt(loss * (1 - loss) / n * (1 + rho) / (1 - rho)))
    bursts = runs(lost)
    assert statistics.mean(bursts) == pytest.approx(burst, abs=4 * math.sqrt(1 - r) / r / math.sqrt(len(bursts)))
    assert schedule.counts.dropped == sum(lost)


def test_the_chains_probabilities_follow_the_model():
    assert gilbert_elliott(0.02, 4) == pytest.approx((0.02 / (4 * 0.98), 0.25))
    assert gilbert_elliott(2 / 3, 2) == pytest.approx((1.0, 0.5))  # the most bursts of 2 can lose


@pytest.mark.parametrize(("loss", "burst"), [(0.7, 2), (0.95, 10), (1.0, 5)])
def test_a_share_the_bursts_cannot_reach_is_refused(loss, burst):
    with pytest.raises(ImpairmentError, match=r"can be at most"):
        LinkImpairment(loss=loss, loss_burst=burst)


def test_random_loss_without_bursts_is_left_to_the_kernel():
    _, releases = decisions(LinkImpairment(loss=0.5), [i * 0.001 for i in range(1000)])
    assert None not in releases


def test_new_settings_keep_the_queues_order():
    schedule = LinkSchedule(LinkImpairment(delay_ms=100), random.Random(7))
    held = schedule.decide(0.0)
    schedule.configure(LinkImpairment(delay_ms=1))
    assert schedule.decide(0.010) == held == pytest.approx(0.1)
    assert schedule.decide(0.2) == pytest.approx(0.201)


def test_clearing_ends_a_burst_in_progress():
    schedule = LinkSchedule(LinkImpairment(loss=0.5, loss_burst=10), random.Random(8))
    now = 0.0
    while schedule.decide(now) is not None:  # into a burst (each lasts 10 packets on average)
        now += 0.001
    schedule.configure(LinkImpairment())
    assert schedule.decide(now) == now
