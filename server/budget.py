"""Return routability, as QUIC has it (RFC 9000 section 8): no more than 3x the bytes an address sent us.

A UDP source address can be forged. Until an address has proved it receives what the server sends it (by
echoing a cookie, :mod:`server.cookies`), the server sends it at most :data:`AMPLIFICATION_FACTOR` times the
bytes it has received from it, so a forged request can never make the server an amplifier against the
address it names. Pure: no I/O, no clock.

The shell is to call ``received(addr, len(datagram))`` for every datagram before handling it, and
``allow(addr, len(reply))`` before every datagram it sends; a ``False`` means "do not send" (the caller
counts it as ``amplification``). ``validate(addr)`` lifts the limit once the address echoed a cookie.

Memory is bounded: at most ``max_addresses`` addresses (default :data:`DEFAULT_MAX_ADDRESSES`, about
350 bytes each with its key, so under 6 MB), least recently used forgotten first. Forgetting is
conservative: a forgotten address starts again with nothing received, nothing sent and not validated, so it
loses its unused credit (and a validated one must echo a cookie again), never gains any: across any number
of evictions it still never gets more than 3x what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.lru import BoundedLRU
from protocol import Endpoint

AMPLIFICATION_FACTOR = 3
DEFAULT_MAX_ADDRESSES = 16384


@dataclass(slots=True)
class _Usage:
    received: int = 0
    sent: int = 0
    validated: bool = False


class AmplificationBudget:
    """Bytes received and sent per source address (ip and port), and whether it is validated."""

    def __init__(self, max_addresses: int = DEFAULT_MAX_ADDRESSES, factor: int = AMPLIFICATION_FACTOR) -> None:
        self.factor = factor
        self._usage: BoundedLRU[Endpoint, _Usage] = BoundedLRU(max_addresses)

    def __len__(self) -> int:
        return len(self._usage)

    @property
    def evicted(self) -> int:
        """Addresses forgotten to make room so far."""
        return self._usage.evicted

    def received(self, addr: Endpoint, nbytes: int) -> None:
        """``addr`` sent us ``nbytes`` (a whole datagram): that much more credit, times the factor."""
        self._usage.entry(addr, _Usage).received += nbytes

    def allow(self, addr: Endpoint, nbytes: int) -> bool:
        """Whether ``nbytes`` may be sent to ``addr`` now; if so they are counted as sent.

        True when ``addr`` is validated, or when what was sent to it plus ``nbytes`` is at most ``factor``
        times what it sent us. An address the budget does not know (never heard, or forgotten) gets nothing.
        """
        usage = self._usage.peek(addr)
        if usage is None:
            return False
        if not usage.validated and usage.sent + nbytes > self.factor * usage.received:
            return False
        self._usage.entry(addr, _Usage)  # now the most recent
        usage.sent += nbytes
        return True

    def validate(self, addr: Endpoint) -> None:
        """``addr`` echoed a valid cookie: it receives what we send, so send it what it asks for."""
        self._usage.entry(addr, _Usage).validated = True

    def is_validated(self, addr: Endpoint) -> bool:
        usage = self._usage.peek(addr)
        return usage is not None and usage.validated
