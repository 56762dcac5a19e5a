"""The headline of traversal under impairment: cone-cone with both routers at ``delay=25ms loss=5%`` both
ways (100 ms round trip between the hosts, 5% loss in each direction of each router) goes direct in at least
19 of 20 connects from clean NATs within 2 s, and 200 messages each way cross exactly once, in order.

One lab for the module (the impairments are applied with ``nat impair`` once it is up). Every attempt starts
cold (:func:`scenarios.traversal.forget_pair`): with warm NATs a lost punch would not matter, as the filters
would still be open from the attempt before.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from scenarios.harness import Lab, start_lab
from scenarios.steps import PEER_OF, connect_expecting, events, flood, flood_texts, received_since
from scenarios.traversal import Link, cold_attempt, impair

HEADLINE = Link(rtt_ms=100, loss=0.05)
ATTEMPTS = 20
NEEDED = 19
WITHIN_MS = 2000
STREAM = 200


@pytest.fixture(scope="module")
def impaired_lab(docker_ready: None) -> Iterator[Lab]:
    # The default keepalive (10 s): a side that stays silent for three periods counts as lost, and a side
    # that lost its peer connects again by itself, so both must forget each other well within 30 s.
    with start_lab(name="impaired", env={"NAT_A": "cone", "NAT_B": "cone"}) as lab:
        impair(lab, HEADLINE.spec)
        yield lab


def test_cone_pair_goes_direct_within_2_s_at_100_ms_rtt_and_5_percent_loss(impaired_lab: Lab) -> None:
    attempts = [cold_attempt(impaired_lab, timeout_s=WITHIN_MS / 1000 + 1) for _ in range(ATTEMPTS)]
    times = [a.time_to_direct_ms for a in attempts if a.path == "direct" and a.time_to_direct_ms is not None]
    in_time = [ms for ms in times if ms <= WITHIN_MS]
    report = "; ".join(a.describe() for a in attempts)
    print(report)
    assert len(in_time) >= NEEDED, f"{len(in_time)}/{ATTEMPTS} direct within {WITHIN_MS} ms: {report}"
    # Nothing faster than the round trip (the connect's way to the server, the punch's back, a probe's from
    # the peer), within the delay line's timer slack: the impairment was in force.
    assert min(in_time) >= 0.9 * HEADLINE.rtt_ms, report
    print(f"direct {len(in_time)}/{ATTEMPTS} within {WITHIN_MS} ms, median {statistics.median(in_time):.0f} ms")


def test_200_messages_each_way_cross_exactly_once_in_order(impaired_lab: Lab) -> None:
    connect_expecting(impaired_lab, "alice", "direct")
    for sender, receiver in PEER_OF.items():
        before = len(events(impaired_lab, receiver, "message_received"))
        result = flood(impaired_lab, sender, STREAM, 100)
        assert (result["delivered"], result["undelivered"]) == (STREAM, 0), result
        assert received_since(impaired_lab, receiver, before) == flood_texts(STREAM, 100), f"{sender}->{receiver}"
