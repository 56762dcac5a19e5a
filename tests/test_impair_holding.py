"""The delay line's held packets without a kernel: which verdicts go when, in which order, and the counters."""

import random

from nat.impair.holding import DirectionStats, Holding
from nat.impair.model import Impairments, LinkImpairment
from nat.impair.nfqueue import NF_ACCEPT, NF_DROP, Packet
from nat.impair.render import QUEUE_DOWN, QUEUE_UP

WALL = 1_000_000.0
"""The wall clock less the line's clock in these tests: a packet stamped WALL + t arrived at t."""


CLEAR = LinkImpairment()


def holding(up=CLEAR, down=CLEAR):
    return Holding(Impairments(up, down), random.Random(1))


def packet(packet_id, queue=QUEUE_UP, arrived=None):
    return Packet(queue, packet_id, 0, None if arrived is None else WALL + arrived)


def accepted(*ids, queue=QUEUE_UP):
    return [(queue, i, NF_ACCEPT) for i in ids]


def test_packets_leave_after_their_delay_in_order():
    line = holding(up=LinkImpairment(delay_ms=20))
    assert line.arrive([packet(1), packet(2)], now=1.0, wall_offset=WALL) == []
    assert line.next_release() == 1.02
    assert line.release(1.019) == []
    assert line.release(1.02) == accepted(1, 2)
    assert line.next_release() is None


def test_a_packet_read_late_is_timed_from_its_kernel_stamp():
    line = holding(up=LinkImpairment(delay_ms=20))
    line.arrive([packet(1, arrived=1.0)], now=1.015, wall_offset=WALL)
    assert line.next_release() == 1.02


def test_a_packet_already_due_when_read_waits_for_those_held_ahead_of_it():
    """The thread stalled: packet 2, stamped long ago, is due at once, and packet 1 (held) is due too: 1 first."""
    line = holding(up=LinkImpairment(delay_ms=20))
    line.arrive([packet(1, arrived=1.0)], now=1.001, wall_offset=WALL)
    assert line.arrive([packet(2, arrived=1.002)], now=1.05, wall_offset=WALL) == []
    assert line.release(1.05) == accepted(1, 2)


def test_stamps_in_the_future_or_too_old_are_not_believed():
    line = holding(up=LinkImpairment(delay_ms=20))
    line.arrive([packet(1, arrived=5.0)], now=3.0, wall_offset=WALL)
    assert line.next_release() == 3.02
    line = holding(up=LinkImpairment(delay_ms=20))
    line.arrive([packet(1, arrived=0.0)], now=3.0, wall_offset=WALL)
    assert line.next_release() == 3.02


def test_a_burst_loss_is_dropped_at_once_and_never_held():
    line = holding(down=LinkImpairment(delay_ms=20, loss=0.5, loss_burst=2))
    verdicts = line.arrive([packet(i, QUEUE_DOWN) for i in range(100)], now=0.0, wall_offset=WALL)
    dropped = {packet_id for _, packet_id, verdict in verdicts if verdict == NF_DROP}
    assert len(dropped) == len(verdicts) > 20
    released = line.release(1.0)
    assert {packet_id for _, packet_id, _ in released} == set(range(100)) - dropped
    assert line.stats(None)["down"].dropped == len(dropped)


def test_a_queue_that_is_not_ours_is_passed_at_once():
    assert holding().arrive([packet(3, queue=9)], now=0.0, wall_offset=WALL) == [(9, 3, NF_ACCEPT)]


def test_the_directions_are_timed_apart_and_released_together_by_time():
    line = holding(up=LinkImpairment(delay_ms=30), down=LinkImpairment(delay_ms=10))
    line.arrive([packet(1, QUEUE_UP), packet(1, QUEUE_DOWN)], now=0.0, wall_offset=WALL)
    assert line.release(float("inf")) == [(QUEUE_DOWN, 1, NF_ACCEPT), (QUEUE_UP, 1, NF_ACCEPT)]


def test_counters_follow_the_packets():
    line = holding(up=LinkImpairment(delay_ms=20))
    line.arrive([packet(i) for i in range(5)], now=0.0, wall_offset=WALL)
    line.release(0.0)
    stats = line.stats({QUEUE_UP: 4})
    assert stats["up"] == DirectionStats(seen=5, delayed=5, held=5, max_held=5, queue_full=4)
    assert stats["down"] == DirectionStats(queue_full=0)
    line.release(1.0)
    assert line.stats(None)["up"] == DirectionStats(seen=5, delayed=5, held=0, max_held=5, queue_full=None)


def test_new_settings_leave_the_held_packets_where_they_are():
    line = holding(up=LinkImpairment(delay_ms=100))
    line.arrive([packet(1)], now=0.0, wall_offset=WALL)
    line.configure(Impairments(up=LinkImpairment(delay_ms=1)))
    line.arrive([packet(2)], now=0.01, wall_offset=WALL)
    assert line.release(0.05) == []
    assert line.release(0.1) == accepted(1, 2)
