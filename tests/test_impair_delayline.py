"""The delay line's shell without a kernel: how it reads the wall clock against its own (the kernel stamps
packets with the wall clock; a skewed offset would release a whole batch early)."""

import pytest

from nat.impair.delayline import DelayLines
from nat.impair.model import Impairments


def test_the_wall_offset_comes_from_the_narrowest_pair_of_reads():
    # First try: preempted 10 ms between the reads (the wall read could be anywhere in them). Second: 10 us.
    ticks = iter([0.0, 0.010, 0.020, 0.02001])
    walls = iter([100.009, 100.020005])
    lines = DelayLines(Impairments(), clock=lambda: next(ticks), wall_clock=lambda: next(walls))
    try:
        assert lines._wall_offset() == pytest.approx(100.0, abs=1e-9)
    finally:
        lines.stop()
