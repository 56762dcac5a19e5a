"""The packets the delay line holds, as data: both directions' schedules and one heap of releases.

Pure (time passed in): :class:`Holding` turns packet notices into verdicts, now or later, and knows when the
next one is due; :mod:`nat.impair.delayline` is the thread and the socket around it.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass

from nat.impair.model import Impairments, LinkImpairment
from nat.impair.nfqueue import NF_ACCEPT, NF_DROP, Packet
from nat.impair.render import QUEUE_DOWN, QUEUE_UP
from nat.impair.schedule import Counts, LinkSchedule

Verdict = tuple[int, int, int]
"""``(queue, packet id, NF_ACCEPT or NF_DROP)``."""

STALE_STAMP = 1.0
"""Seconds: a kernel timestamp older than this is not believed (the wall clock was set); the read time is used."""


@dataclass
class DirectionStats(Counts):
    """One direction's counters (``DelayLines.stats()`` and the stats file): the schedule's and these."""

    held: int = 0
    """Held right now."""
    max_held: int = 0
    queue_full: int | None = None
    """Dropped by the kernel before the line saw them (queue at its length, or our socket's buffer full);
    ``None`` when ``/proc/net/netfilter/nfnetlink_queue`` is unreadable."""


class _Direction:
    def __init__(self, name: str, queue: int, link: LinkImpairment, rng: random.Random) -> None:
        self.name, self.queue, self.link = name, queue, link
        self.schedule = LinkSchedule(link, rng)
        self.held = self.max_held = 0

    def stats(self, queue_full: int | None) -> DirectionStats:
        counts = dataclasses.asdict(self.schedule.counts)
        return DirectionStats(**counts, held=self.held, max_held=self.max_held, queue_full=queue_full)


class Holding:
    """Both directions (``up`` on queue QUEUE_UP, ``down`` on QUEUE_DOWN) and the heap of
    ``(release, seq, queue, packet id)`` they share."""

    def __init__(self, impairments: Impairments, rng: random.Random) -> None:
        self.directions = {
            QUEUE_UP: _Direction("up", QUEUE_UP, impairments.up, rng),
            QUEUE_DOWN: _Direction("down", QUEUE_DOWN, impairments.down, rng),
        }
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0

    def configure(self, impairments: Impairments) -> None:
        """New settings for the packets that arrive from now on (the held ones keep their times)."""
        for direction, link in zip(self.directions.values(), (impairments.up, impairments.down), strict=True):
            direction.link = link
            direction.schedule.configure(link)

    def arrive(self, packets: Iterable[Packet], now: float, wall_offset: float) -> list[Verdict]:
        """Decide each packet (read at ``now``; ``wall_offset``: the wall clock less ours, for kernel stamps).
        Returns the verdicts due at once: drops, and a queue that is not ours (never hold what nobody
        releases). Every kept packet goes on the heap, even one already due: packets held from before may be
        due as well, and go first (:meth:`release`)."""
        verdicts: list[Verdict] = []
        for packet in packets:
            direction = self.directions.get(packet.queue)
            if direction is None:
                verdicts.append((packet.queue, packet.packet_id, NF_ACCEPT))
                continue
            release = direction.schedule.decide(_arrival(packet, now, wall_offset))
            if release is None:
                verdicts.append((packet.queue, packet.packet_id, NF_DROP))
                continue
            self._seq += 1
            heapq.heappush(self._heap, (release, self._seq, packet.queue, packet.packet_id))
            direction.held += 1
            direction.max_held = max(direction.max_held, direction.held)
        return verdicts

    def release(self, now: float) -> list[Verdict]:
        """``NF_ACCEPT`` for every packet due by ``now``, in release order (``inf``: everything held)."""
        verdicts: list[Verdict] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, queue, packet_id = heapq.heappop(heap)
            self.directions[queue].held -= 1
            verdicts.append((queue, packet_id, NF_ACCEPT))
        return verdicts

    def next_release(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def stats(self, queue_full: dict[int, int] | None) -> dict[str, DirectionStats]:
        """Per direction name; ``queue_full``: the kernel's drops per queue, ``None`` if unknown."""
        return {
            d.name: d.stats(None if queue_full is None else queue_full.get(d.queue, 0))
            for d in self.directions.values()
        }


def _arrival(packet: Packet, now: float, wall_offset: float) -> float:
    """When ``packet`` reached the router on our clock: its kernel stamp, or ``now`` (read time) when it has
    none or one not to believe (in the future, or older than ``STALE_STAMP``)."""
    if packet.timestamp is None:
        return now
    stamped = packet.timestamp - wall_offset
    return stamped if 0 <= now - stamped < STALE_STAMP else now
