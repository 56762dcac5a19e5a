"""Stateless address-validation cookies: time and secrets passed in, nothing stored per address."""

import hashlib
import hmac
import itertools

import pytest

from protocol import Endpoint
from server.cookies import COOKIE_BYTES, Cookies

ALICE = Endpoint("198.18.0.11", 40000)
SIX = Endpoint("2001:db8::7", 4000)
ROTATION = 60.0


class Secrets:
    """A secret source that hands out secrets 0x0101.., 0x0202.., ... and remembers them."""

    def __init__(self) -> None:
        self.handed: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        self.handed.append(bytes([len(self.handed) + 1]) * n)
        return self.handed[-1]


@pytest.fixture
def secrets():
    return Secrets()


@pytest.fixture
def cookies(secrets):
    return Cookies(secrets, ROTATION)


def test_cookie_is_the_epoch_then_the_truncated_hmac_of_ip_port_epoch(cookies, secrets):
    cookie = cookies.issue(ALICE, now=125.0)  # epoch 2
    packed = bytes([198, 18, 0, 11]) + (40000).to_bytes(2, "big") + bytes([2])
    assert cookie == bytes([2]) + hmac.digest(secrets.handed[0], packed, hashlib.sha256)[:16]
    assert len(cookie) == COOKIE_BYTES == 17


def test_cookie_is_valid_for_its_address_in_this_epoch_and_the_next(cookies):
    cookie = cookies.issue(ALICE, now=120.0)
    assert cookies.check(cookie, ALICE, now=179.9)
    assert cookies.check(cookie, ALICE, now=180.0), "one rotation later: the previous secret still counts"
    assert cookies.check(cookie, ALICE, now=239.9)


def test_cookie_expires_after_two_rotations(cookies):
    cookie = cookies.issue(ALICE, now=120.0)
    assert cookies.check(cookie, ALICE, now=180.0)
    assert not cookies.check(cookie, ALICE, now=240.0)


def test_cookie_expires_when_the_server_was_idle_for_rotations(cookies):
    cookie = cookies.issue(ALICE, now=120.0)
    assert not cookies.check(cookie, ALICE, now=300.0), "rotated three times at once: no previous secret"


@pytest.mark.parametrize(
    "other",
    [Endpoint("198.18.0.11", 40001), Endpoint("198.18.0.12", 40000), Endpoint("::ffff:198.18.0.11", 40000)],
    ids=["other-port", "other-ip", "mapped-v6"],
)
def test_cookie_is_not_valid_for_another_address(cookies, other):
    assert not cookies.check(cookies.issue(ALICE, now=1.0), other, now=1.0)


def test_ipv6_cookie(cookies):
    cookie = cookies.issue(SIX, now=1.0)
    assert cookies.check(cookie, SIX, now=1.0)
    assert not cookies.check(cookie, Endpoint("2001:db8::8", 4000), now=1.0)


def test_every_tampered_byte_is_caught(cookies):
    cookie = cookies.issue(ALICE, now=1.0)
    for i, bit in itertools.product(range(COOKIE_BYTES), range(8)):
        tampered = bytearray(cookie)
        tampered[i] ^= 1 << bit
        assert not cookies.check(bytes(tampered), ALICE, now=1.0), (i, bit)


@pytest.mark.parametrize("length", [0, 1, 16, 18, 32])
def test_wrong_length_is_refused(cookies, length):
    cookie = cookies.issue(ALICE, now=1.0)
    assert not cookies.check((cookie * 2)[:length], ALICE, now=1.0)


def test_a_restarted_server_refuses_its_predecessors_cookies(secrets):
    cookie = Cookies(secrets, ROTATION).issue(ALICE, now=1.0)
    assert not Cookies(secrets, ROTATION).check(cookie, ALICE, now=1.0), "a new secret, same epoch"


def test_secrets_rotate_once_per_epoch(cookies, secrets):
    for now in (0.0, 10.0, 59.9):
        cookies.issue(ALICE, now)
    assert len(secrets.handed) == 1
    cookies.check(b"", ALICE, now=60.0)
    assert len(secrets.handed) == 2
    assert cookies.issue(ALICE, now=60.0)[0] == 1


def test_a_clock_that_steps_back_rotates_nothing(cookies, secrets):
    cookie = cookies.issue(ALICE, now=120.0)
    assert cookies.check(cookie, ALICE, now=10.0)
    assert len(secrets.handed) == 1


def test_the_epoch_byte_wraps(cookies):
    cookie = cookies.issue(ALICE, now=255 * ROTATION)
    assert cookie[0] == 255
    assert cookies.check(cookie, ALICE, now=256 * ROTATION), "previous epoch 255 next to current byte 0"
    assert cookies.issue(ALICE, now=256 * ROTATION)[0] == 0


@pytest.mark.parametrize("rotation", [0, -1, float("inf"), float("nan")])
def test_rotation_must_be_a_positive_number_of_seconds(rotation):
    with pytest.raises(ValueError, match="rotation must be a positive number of seconds"):
        Cookies(rotation=rotation)
