"""Where a datagram for a peer goes: on the path in use (direct, or through our TURN allocation to the
peer's relayed address), or back the way one came. Pure; the relay's own outputs go to ``on_turn``."""

from __future__ import annotations

from collections.abc import Callable

from client.engine.outputs import Output, Send
from client.engine.peer import Peer
from client.engine.routes import Route
from client.turn import outputs as turn
from client.turn.relay import Relay
from protocol import Endpoint, Message, encode

TurnHandler = Callable[[list[turn.Output], float], list[Output]]
"""Performs what the relay says (the agent core's, since a relayed datagram is a datagram received)."""


class Carrier:
    """Sends to peers on their routes, through ``relay`` (``None``: no TURN) for relayed ones."""

    def __init__(self, relay: Relay | None, on_turn: TurnHandler) -> None:
        self.relay = relay
        self._on_turn = on_turn

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
        return [Send(message, addr)] if kind is Route.DIRECT else self.via_relay(addr, message, now)

    def reply(self, peer: Peer, message: Message, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """Answer on the path in use, or else back the way the datagram came."""
        if self.can_send(peer):
            return self.to_peer(peer, message, now)
        return self.via_relay(source, message, now) if via_relay else [Send(message, source)]

    def via_relay(self, to: Endpoint, message: Message, now: float) -> list[Output]:
        """A datagram to a peer's relayed address always goes through our own allocation."""
        if self.relay is None:
            return []
        return self._on_turn(self.relay.send(to, encode(message), now), now)
