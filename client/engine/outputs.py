"""What the agent core asks its shell to do: datagrams to send, events to emit, lines to log."""

from __future__ import annotations

from dataclasses import dataclass, field

from client.engine.events import Event
from protocol import Endpoint, Frame, Message


@dataclass(frozen=True)
class Send:
    """Send ``message`` to ``to`` from the agent's one UDP socket: a text message, or a v2 frame (a request to
    our server, or a sealed datagram to a keyed peer)."""

    message: Message | Frame
    to: Endpoint
    wire: bytes | None = field(default=None, compare=False)
    """The datagram, when made already (a sealed frame is built as bytes): sent as it is, not encoded again."""


@dataclass(frozen=True)
class SendRaw:
    """Send the bytes ``data`` (STUN/TURN) to ``to`` from the agent's one UDP socket."""

    data: bytes
    to: Endpoint


@dataclass(frozen=True)
class Emit:
    """An event happened (see :mod:`client.engine.events`)."""

    event: Event


@dataclass(frozen=True)
class Log:
    """A log line that is not an event; ``level`` is a :mod:`logging` level."""

    level: int
    text: str


@dataclass(frozen=True)
class TunnelIn:
    """A WireGuard datagram (:func:`protocol.wireguard.is_wireguard`) arrived through our relay from ``source``
    (a peer's relayed address): the tunnel (:mod:`client.tunnel`) hands it to WireGuard if ``source`` is a
    peer's relay path, else drops it."""

    data: bytes
    source: Endpoint


Output = Send | SendRaw | Emit | Log | TunnelIn
