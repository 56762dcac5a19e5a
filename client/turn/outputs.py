"""What the TURN allocation is told (its configuration and retransmission schedule) and what it returns.

:class:`TurnConfig` and :class:`Retransmit` go in; every entry point of
:class:`client.turn.allocation.TurnAllocation` returns a list of :data:`Output` for the caller to perform.
Kept apart from the state machine so that the caller (the agent's relay) and the diagnostics that reuse the
retransmission schedule read the vocabulary without the machinery.

Outputs: :class:`Transmit` (send ``data`` to the TURN server from the agent's one socket),
:class:`Allocated` (our relayed and server-reflexive addresses), :class:`Refreshed`, :class:`Permitted`,
:class:`Bound`, :class:`Relayed` (a datagram ``peer`` sent to our relayed address: handle it as if it came
from ``peer`` directly), :class:`Denied` (one peer's permission or channel refused; the allocation stays),
:class:`Failed` (the allocation is gone; ``start`` again for a fresh one), :class:`Closed` and
:class:`Dropped` (a datagram ignored, with why: a log line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import Endpoint


class TurnError(RuntimeError):
    """A call the allocation's state does not allow (e.g. sending with no allocation): the caller's fault."""


@dataclass(frozen=True)
class Retransmit:
    """When to resend an unanswered request (RFC 8489 section 6.2.1), in seconds.

    Sends at 0, rto, 3 rto, 7 rto, ... (``rc`` in all), then waits ``rm`` * rto for the answer. The
    default gives up after 39.5 s; ``Retransmit(rc=5, rm=4)`` after 9.5 s.
    """

    rto: float = 0.5
    rc: int = 7
    rm: int = 16

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.rc < 1 or self.rm < 1:
            raise ValueError(f"invalid retransmission schedule {self}")

    def offsets(self) -> tuple[float, ...]:
        """When each transmission goes out, relative to the first."""
        return tuple(self.rto * (2**i - 1) for i in range(self.rc))

    @property
    def give_up(self) -> float:
        """When the request counts as unanswered, relative to the first transmission."""
        return self.offsets()[-1] + self.rm * self.rto


@dataclass(frozen=True)
class TurnConfig:
    """The TURN server, long-term credentials and timings (seconds; lifetimes as the RFC's integers)."""

    server: Endpoint
    username: str
    password: str
    lifetime: int = 600
    retransmit: Retransmit = field(default_factory=Retransmit)
    permission_refresh: float = 240.0  # permissions last 300 s (RFC 8656 section 9)
    channel_refresh: float = 540.0  # channel bindings last 600 s (RFC 8656 section 12)
    max_queued: int = 16  # datagrams per peer held until its permission is installed
    mismatch_grace: float = 3.0  # coturn answers 437 for about a second after deleting an allocation
    software: str | None = "natlab"


@dataclass(frozen=True)
class Transmit:
    """Send ``data`` to ``to`` (the TURN server) from the agent's one UDP socket."""

    data: bytes
    to: Endpoint


@dataclass(frozen=True)
class Allocated:
    """The allocation is granted: peers reach us at ``relayed``; the server sees us at ``mapped``."""

    relayed: Endpoint
    mapped: Endpoint | None
    lifetime: int


@dataclass(frozen=True)
class Refreshed:
    lifetime: int


@dataclass(frozen=True)
class Permitted:
    """The server now relays datagrams from (and to) ``peer_ip``, any port."""

    peer_ip: str


@dataclass(frozen=True)
class Bound:
    """``channel`` is bound to ``peer``: datagrams to and from it now travel as ChannelData."""

    peer: Endpoint
    channel: int


@dataclass(frozen=True)
class Relayed:
    """``payload`` arrived from ``peer`` at our relayed address."""

    peer: Endpoint
    payload: bytes


@dataclass(frozen=True)
class Denied:
    """A permission or channel for ``peer`` (an IP, or ip:port for a channel) was refused."""

    peer: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """The allocation failed or is gone; ``reason`` says why (also in ``TurnAllocation.reason``)."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The allocation is deleted (or its deletion went unanswered)."""


@dataclass(frozen=True)
class Dropped:
    """A datagram ignored, with why (worth a debug log line)."""

    why: str


Output = Transmit | Allocated | Refreshed | Permitted | Bound | Relayed | Denied | Failed | Closed | Dropped
