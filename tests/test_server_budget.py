"""The anti-amplification budget (QUIC's 3x rule) as a pure state machine: bytes in, verdicts out."""

import random

import pytest

from common.lru import BoundedLRU
from protocol import Endpoint
from server.budget import AMPLIFICATION_FACTOR, AmplificationBudget

VICTIM = Endpoint("198.18.0.11", 40000)
OTHER_PORT = Endpoint("198.18.0.11", 40001)


def test_an_address_never_heard_gets_nothing():
    budget = AmplificationBudget()
    assert not budget.allow(VICTIM, 1)
    assert len(budget) == 0, "asking does not make an entry"


def test_an_address_gets_three_times_what_it_sent():
    budget = AmplificationBudget()
    budget.received(VICTIM, 14)
    assert AMPLIFICATION_FACTOR == 3
    assert budget.allow(VICTIM, 40)
    assert budget.allow(VICTIM, 2), "exactly 42 = 3 x 14"
    assert not budget.allow(VICTIM, 1)
    budget.received(VICTIM, 1)
    assert not budget.allow(VICTIM, 4), "a refused reply is not counted as sent, and 4 > 3 more"
    assert budget.allow(VICTIM, 3)


def test_the_budget_is_per_address_and_port():
    budget = AmplificationBudget()
    budget.received(VICTIM, 100)
    assert not budget.allow(OTHER_PORT, 1)
    assert not budget.allow(Endpoint("198.18.0.12", 40000), 1)


def test_a_validated_address_is_not_limited():
    budget = AmplificationBudget()
    budget.received(VICTIM, 10)
    assert not budget.is_validated(VICTIM)
    budget.validate(VICTIM)
    assert budget.is_validated(VICTIM)
    assert all(budget.allow(VICTIM, 1400) for _ in range(100))
    assert not budget.is_validated(OTHER_PORT)


def test_memory_is_bounded_and_the_oldest_address_is_forgotten_first():
    budget = AmplificationBudget(max_addresses=100)
    budget.received(VICTIM, 1000)
    budget.validate(OTHER_PORT)
    for i in range(10_000):
        budget.received(Endpoint("198.18.1.1", 1024 + i), 20)
        if i % 10 == 0:
            budget.received(VICTIM, 0)  # VICTIM keeps being heard: it stays
    assert len(budget) == 100
    assert budget.evicted == 10_000 + 2 - 100
    assert budget.allow(VICTIM, 3000)
    assert not budget.is_validated(OTHER_PORT), "forgotten, so it must prove itself again"


def test_forgetting_an_address_never_gives_it_more_than_three_times_what_it_sent():
    """Whatever the order of requests, replies and evictions, the total sent stays within 3x received."""
    rng = random.Random(7)
    budget = AmplificationBudget(max_addresses=4)
    addresses = [Endpoint("198.18.0.11", 40000 + i) for i in range(8)]
    received = dict.fromkeys(addresses, 0)
    sent = dict.fromkeys(addresses, 0)
    for _ in range(20_000):
        addr = rng.choice(addresses)
        if rng.random() < 0.3:
            n = rng.randrange(1, 100)
            budget.received(addr, n)
            received[addr] += n
        else:
            n = rng.randrange(1, 300)
            if budget.allow(addr, n):
                sent[addr] += n
    assert all(sent[a] <= 3 * received[a] for a in addresses), (sent, received)
    assert sum(sent.values()) > 0, "the test would pass with a budget that allows nothing"


def test_bounded_lru_refuses_a_capacity_below_one():
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        BoundedLRU(0)
