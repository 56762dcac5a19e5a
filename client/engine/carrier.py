"""Where a datagram for a peer goes: on the path in use (direct, or through our TURN allocation to the
peer's relayed address), or back the way one came; and in what form: sealed for a keyed peer (``seal``, the
:class:`~client.engine.sealing.Sealer`'s), text for a seed-era one. Pure; the relay's own outputs go to
``on_turn``."""

from __future__ import annotations

from collections.abc import Callable

from client.engine.outputs import Output, Send
from client.engine.peer import Peer
from client.engine.routes import Route
from client.turn import outputs as turn
from client.turn.relay import Relay
from protocol import Endpoint, Frame, Message, encode

TurnHandler = Callable[[list[turn.Output], float], list[Output]]
"""Performs what the relay says (the agent core's, since a relayed datagram is a datagram received)."""
Seal = Callable[[Peer, Message], tuple[Message | Frame, bytes | None]]
"""What goes on the wire to a peer for a message (sealed to a keyed peer), and its bytes if made already."""


class Carrier:
    """Sends to peers on their routes, through ``relay`` (``None``: no TURN) for relayed ones."""

    def __init__(self, relay: Relay | None, on_turn: TurnHandler, seal: Seal) -> None:
        self.relay = relay
        self._on_turn = on_turn
        self._seal = seal

    @property
    def relay_up(self) -> bool:
        return self.relay is not None and self.relay.allocated

    def can_send(self, peer: Peer) -> bool:
        return peer.route(self.relay_up) is not None

    def to_peer(self, peer: Peer, message: Message, now: float) -> list[Output]:
        """``message`` on the path in use (nothing if there is none: retransmissions will come)."""
        route = peer.route(self.relay_up)
        if route is None:
            return []
        kind, addr = route
        if kind is Route.DIRECT:
            peer.path.note_sending(now)  # traffic: the direct path's active check watches for answers
        return self.to(peer, addr, message, now, via_relay=kind is Route.RELAY)

    def reply(self, peer: Peer, message: Message, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """Answer on the path in use, or else back the way the datagram came."""
        if self.can_send(peer):
            return self.to_peer(peer, message, now)
        return self.to(peer, source, message, now, via_relay)

    def to(self, peer: Peer, addr: Endpoint, message: Message, now: float, via_relay: bool) -> list[Output]:
        """``message`` for ``peer`` to ``addr``, straight or through our relay (a probe, an answer, a keepalive)."""
        item, wire = self._seal(peer, message)
        return self.via_relay(addr, item, now, wire) if via_relay else [Send(item, addr, wire)]

    def via_relay(self, to: Endpoint, item: Message | Frame, now: float, wire: bytes | None = None) -> list[Output]:
        """A datagram to a peer's relayed address always goes through our own allocation."""
        if self.relay is None:
            return []
        return self._on_turn(self.relay.send(to, encode(item) if wire is None else wire, now), now)
