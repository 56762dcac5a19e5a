"""The per-source token bucket on requests, and what counts as one source. Time is passed in."""

import pytest

from protocol import Endpoint
from server.ratelimit import DEFAULT_BURST, DEFAULT_RATE, RequestLimiter
from server.sources import source_ip

ALICE = Endpoint("198.18.0.11", 40000)
ALICE_OTHER_PORT = Endpoint("198.18.0.11", 40001)
BOB = Endpoint("198.18.0.12", 40000)


def allowed(limiter, source, now, count):
    """How many of ``count`` datagrams from ``source`` at ``now`` pass."""
    return sum(limiter.allow(source, now) for _ in range(count))


def test_a_burst_passes_then_the_rate_applies():
    limiter = RequestLimiter(rate=4, burst=5)
    assert allowed(limiter, ALICE, 100.0, 8) == 5
    assert allowed(limiter, ALICE, 100.125, 8) == 0, "half a token"
    assert allowed(limiter, ALICE, 100.25, 8) == 1
    assert allowed(limiter, ALICE, 102.25, 30) == 5, "two seconds refill eight tokens, but the bucket holds five"


def test_a_source_is_its_ip_whatever_the_port():
    limiter = RequestLimiter(rate=1, burst=3)
    assert allowed(limiter, ALICE, 0.0, 2) == 2
    assert allowed(limiter, ALICE_OTHER_PORT, 0.0, 2) == 1
    assert allowed(limiter, BOB, 0.0, 5) == 3, "another ip has its own bucket"
    assert len(limiter) == 2


def test_a_sustained_flood_gets_the_rate_and_no_more():
    limiter = RequestLimiter(rate=20, burst=50)
    passed = sum(limiter.allow(ALICE, t / 1000) for t in range(10_000))  # 1,000 a second for 10 s
    assert passed == 50 + 20 * 10 - 1  # the burst, then 20/s (the last token is not quite refilled at 9.999 s)


def test_a_lab_agent_never_meets_the_default_limit():
    """Two agents behind one NAT, each retrying a register and a connect every 250 ms (the agents' retry
    period), plus keepalives: 16.2 requests a second, for a minute."""
    limiter = RequestLimiter(DEFAULT_RATE, DEFAULT_BURST)
    times = sorted([t * 0.25 for t in range(240)] * 4 + [t * 10.0 for t in range(6)] * 2)
    assert all(limiter.allow(ALICE, t) for t in times)


def test_memory_is_bounded_and_a_forgotten_source_starts_full():
    limiter = RequestLimiter(rate=1, burst=2, max_sources=100)
    assert allowed(limiter, ALICE, 0.0, 5) == 2
    for i in range(10_000):
        limiter.allow(Endpoint(f"198.18.{i // 250}.{i % 250 + 1}", 1), 0.0)
        assert limiter.allow(BOB, 0.0) == (i < 2), "a flooding source stays the most recent: never forgotten"
    assert len(limiter) == 100
    assert allowed(limiter, ALICE, 0.0, 5) == 2, "ALICE was forgotten: a full bucket again"


def test_a_clock_that_steps_back_neither_drains_nor_fills():
    limiter = RequestLimiter(rate=1, burst=2)
    assert allowed(limiter, ALICE, 100.0, 1) == 1
    assert allowed(limiter, ALICE, 50.0, 5) == 1
    assert allowed(limiter, ALICE, 100.9, 5) == 0
    assert allowed(limiter, ALICE, 101.0, 5) == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_limits_are_refused(rate, burst):
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        RequestLimiter(rate, burst)


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("198.18.0.11", "198.18.0.11"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.18.0.11", "198.18.0.11"),
        ("::1", "::/64"),
    ],
)
def test_one_source_is_an_ipv4_address_or_an_ipv6_64(host, source):
    assert source_ip(Endpoint(host, 4000)) == source
