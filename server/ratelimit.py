"""A token bucket per source (:func:`server.sources.source_ip`) on every request the server receives.

Each source may send ``rate`` requests per second on average and ``burst`` at once: its bucket holds up to
``burst`` tokens, refills at ``rate`` per second, and every datagram takes one; a datagram that finds the
bucket empty is not handled at all (no reply, no parse), and counted ``rate_limited``. One source flooding
the server therefore costs it one dictionary lookup per datagram and takes no more than its share.

Memory is bounded: at most ``max_sources`` buckets (default :data:`DEFAULT_MAX_SOURCES`, about 200 bytes
each with its key, so about 3 MB), least recently used forgotten first. A forgotten source starts again
with a full bucket: it was idle while ``max_sources`` other sources sent, and an idle bucket refills in
``burst / rate`` seconds anyway, while a flooding source is always the most recent and keeps its empty
bucket. Pure: time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.lru import BoundedLRU
from protocol import Endpoint
from server.sources import source_ip

DEFAULT_RATE = 20.0
"""Requests per second per source: two lab agents behind one NAT, each retrying a register and a connect
every 250 ms until answered, send 16 (plus keepalives, one per 10 s)."""
DEFAULT_BURST = 50
"""Requests one source may send at once: a lab agent's start (register, connects, presence queries)."""
DEFAULT_MAX_SOURCES = 16384


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RequestLimiter:
    """``allow(source, now)``: whether a datagram from ``source`` at ``now`` may be handled."""

    def __init__(
        self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, max_sources: int = DEFAULT_MAX_SOURCES
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, not {rate!r} and {burst!r}")
        self.rate = rate
        self.burst = burst
        self._buckets: BoundedLRU[str, _Bucket] = BoundedLRU(max_sources)

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def evicted(self) -> int:
        """Buckets forgotten to make room so far."""
        return self._buckets.evicted

    def allow(self, source: Endpoint, now: float) -> bool:
        """Take a token from ``source``'s bucket if it has one."""
        bucket = self._buckets.entry(source_ip(source), lambda: _Bucket(self.burst, now))
        # max(): a clock that steps back must not drain the bucket
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True
