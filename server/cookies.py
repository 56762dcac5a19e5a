"""Stateless address-validation cookies: proof that a source address receives what the server sends it.

A cookie is 17 bytes: a 1-byte key epoch, then the first 16 bytes of HMAC-SHA256(secret, ip || port ||
epoch) (ip packed, 4 or 16 bytes; port big-endian u16; epoch the same byte). Only the holder of the secret
can make one, and it is good for one ip and port only, so a client that echoes it proves it got it at that
address: :class:`~server.budget.AmplificationBudget` then lifts the address's limit. The server stores
nothing per address for it.

The secret is rotated every ``rotation`` seconds (60): epoch ``n`` covers ``[n * rotation, (n + 1) *
rotation)`` of the clock passed in; cookies of the current and the previous epoch are accepted, so a cookie
lives between one and two rotations and a stolen one soon stops working. Secrets come from
``secret_source`` (``os.urandom``; tests inject their own) and live only in memory: a restarted server
refuses every older cookie, and its clients simply echo a fresh one. Pure apart from that source.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
from collections.abc import Callable

from protocol import Endpoint

COOKIE_BYTES = 17
"""1 epoch byte + 16 bytes of MAC."""
MAC_BYTES = COOKIE_BYTES - 1
SECRET_BYTES = 32
DEFAULT_ROTATION = 60.0


class Cookies:
    """``issue(addr, now)`` makes the cookie for ``addr``; ``check(cookie, addr, now)`` says if it is one."""

    def __init__(self, secret_source: Callable[[int], bytes] = os.urandom, rotation: float = DEFAULT_ROTATION) -> None:
        if not (rotation > 0 and math.isfinite(rotation)):
            raise ValueError(f"rotation must be a positive number of seconds, not {rotation!r}")
        self.rotation = rotation
        self._secret_source = secret_source
        self._epoch: int | None = None  # the current epoch, once a call has said what time it is
        self._current = b""
        self._previous: bytes | None = None  # the previous epoch's secret, if it was in use

    def issue(self, addr: Endpoint, now: float) -> bytes:
        """The cookie for ``addr`` in the current epoch."""
        epoch = self._roll(now) & 0xFF
        return bytes([epoch]) + _mac(self._current, addr, epoch)

    def check(self, cookie: bytes, addr: Endpoint, now: float) -> bool:
        """Whether ``cookie`` was issued to ``addr`` in the current or the previous epoch."""
        epoch = self._roll(now)
        if len(cookie) != COOKIE_BYTES:
            return False
        if cookie[0] == epoch & 0xFF:
            secret = self._current
        elif cookie[0] == (epoch - 1) & 0xFF and self._previous is not None:
            secret = self._previous
        else:
            return False
        return hmac.compare_digest(cookie[1:], _mac(secret, addr, cookie[0]))

    def _roll(self, now: float) -> int:
        """The current epoch, after rotating the secrets if ``now`` is in a later one."""
        epoch = math.floor(now / self.rotation)
        if self._epoch is None or epoch > self._epoch:  # (a clock that steps back rotates nothing)
            follows = epoch - 1 == self._epoch
            self._previous = self._current if follows else None  # two rotations later nothing old is valid
            self._current = self._secret_source(SECRET_BYTES)
            self._epoch = epoch
        return self._epoch


def _mac(secret: bytes, addr: Endpoint, epoch: int) -> bytes:
    message = ipaddress.ip_address(addr.host).packed + addr.port.to_bytes(2, "big") + bytes([epoch])
    return hmac.digest(secret, message, hashlib.sha256)[:MAC_BYTES]
