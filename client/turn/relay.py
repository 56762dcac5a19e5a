"""The agent's TURN relay: one :class:`~client.turn.allocation.TurnAllocation`, kept alive and re-made when it fails.

Pure, time passed in (like the core it serves). What it adds to the allocation:

* the password is read (through ``RelayConfig.password``, e.g. from the file the TURN container writes)
  each time an allocation starts; unreadable or empty means "try again later", with the reason;
* a failed allocation is started again after a backoff (``retry_min`` doubling up to ``retry_max``);
* :meth:`Relay.check` sends a Refresh now, so that a TURN server that went away is noticed within one
  retransmission schedule rather than at the next refresh minutes later (the core calls it every keepalive).

Outputs are the allocation's own (:mod:`client.turn.allocation`: ``Transmit``, ``Relayed``, ``Allocated``,
``Failed``, ...); a password problem comes out as a ``Failed`` too, so the caller has one way to learn that
there is no relay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.turn.allocation import TurnAllocation
from client.turn.outputs import Failed, Output, Retransmit, TurnConfig, TurnError
from client.turn.states import TurnState
from client.turn.wire import is_turn_datagram
from protocol import Endpoint


class PasswordUnavailable(RuntimeError):
    """The TURN password cannot be read yet; the message says why (a log line, then a retry)."""


@dataclass(frozen=True)
class RelayConfig:
    """The TURN server, its user, where the password comes from, and the timings (seconds)."""

    server: Endpoint
    username: str
    password: Callable[[], str]
    """Returns the password, or raises :class:`PasswordUnavailable`; called at every allocation start."""
    retry_min: float = 1.0
    retry_max: float = 8.0
    retransmit: Retransmit = field(default_factory=lambda: Retransmit(rto=0.5, rc=5, rm=4))
    """Given up after 9.5 s: how long a dead TURN server goes unnoticed at most after a check."""


class Relay:
    """Our allocation on the TURN server, re-made after failures; see the module docstring."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.turn: TurnAllocation | None = None
        self.reason: str | None = None
        self._retry_at = math.inf
        self._backoff = config.retry_min

    @property
    def relayed(self) -> Endpoint | None:
        """Our relayed address while allocated, else ``None``."""
        return self.turn.relayed if self.allocated and self.turn is not None else None

    @property
    def allocated(self) -> bool:
        return self.turn is not None and self.turn.state is TurnState.ALLOCATED

    @property
    def state(self) -> str:
        if self.turn is None:
            return (TurnState.IDLE if self.reason is None else TurnState.FAILED).value
        return self.turn.state.value

    def status(self) -> dict[str, Any]:
        reason = self.reason if self.turn is None else (self.turn.reason or self.reason)
        return {"server": str(self.config.server), "state": self.state, "reason": reason}

    def owns(self, data: bytes, source: Endpoint) -> bool:
        """Whether a datagram on the agent's socket is for the allocation (STUN/TURN from our server)."""
        return source == self.config.server and is_turn_datagram(data)

    def start(self, now: float) -> list[Output]:
        """Allocate now (first start, or a retry)."""
        self._retry_at = math.inf
        try:
            password = self.config.password()
        except PasswordUnavailable as exc:
            return self._failed(f"turn: {exc}", now)
        self.reason = None
        config = TurnConfig(self.config.server, self.config.username, password, retransmit=self.config.retransmit)
        self.turn = TurnAllocation(config)
        return self._watch(self.turn.start(now), now)

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Output]:
        if self.turn is None:
            return []
        return self._watch(self.turn.receive(data, source, now), now)

    def tick(self, now: float) -> list[Output]:
        if now >= self._retry_at:
            return self.start(now)
        if self.turn is None:
            return []
        return self._watch(self.turn.tick(now), now)

    def wakeup(self) -> float | None:
        times = [self._retry_at]
        if self.turn is not None and (turn_time := self.turn.wakeup()) is not None:
            times.append(turn_time)
        wakeup = min(times)
        return None if wakeup == math.inf else wakeup

    def check(self, now: float) -> list[Output]:
        """Refresh the allocation now (a liveness check of the TURN server); nothing unless allocated."""
        if self.turn is None or not self.allocated:
            return []
        return self._watch(self.turn.refresh(now), now)

    def permit(self, peer_ip: str, now: float) -> list[Output]:
        if self.turn is None or not self.allocated:
            return []
        return self._watch(self.turn.permit(peer_ip, now), now)

    def send(self, peer: Endpoint, payload: bytes, now: float) -> list[Output]:
        """Relay ``payload`` to ``peer`` through our allocation; nothing while there is none."""
        if self.turn is None or not self.allocated:
            return []
        try:
            return self._watch(self.turn.send_to_peer(peer, payload, now), now)
        except TurnError:
            return []

    def bind(self, peer: Endpoint, now: float) -> list[Output]:
        """Bind a channel to ``peer`` (4 bytes of framing a datagram instead of a Send or Data indication's
        36 or more, and no STUN to encode or parse); nothing while there is no allocation."""
        if self.turn is None or not self.allocated:
            return []
        try:
            return self._watch(self.turn.bind(peer, now), now)
        except TurnError:
            return []

    def close(self, now: float) -> list[Output]:
        self._retry_at = math.inf
        return [] if self.turn is None else self.turn.close(now)

    def _watch(self, outputs: list[Output], now: float) -> list[Output]:
        """Schedule a new allocation after a failure; a success resets the backoff."""
        for output in outputs:
            if isinstance(output, Failed):
                self.reason = output.reason
                self._schedule(now)
            elif self.allocated:
                self._backoff = self.config.retry_min
        return outputs

    def _failed(self, reason: str, now: float) -> list[Output]:
        self.reason = reason
        self.turn = None
        self._schedule(now)
        return [Failed(reason)]

    def _schedule(self, now: float) -> None:
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.config.retry_max)


def password_file(path: str) -> Callable[[], str]:
    """A ``RelayConfig.password`` that reads ``path`` (stripped) each time; missing or empty is unavailable."""

    def read() -> str:
        try:
            with open(path, encoding="utf-8") as file:
                password = file.read().strip()
        except OSError as exc:
            raise PasswordUnavailable(f"cannot read password file {path}: {exc.strerror}") from None
        if not password:
            raise PasswordUnavailable(f"password file {path} is empty")
        return password

    return read
