"""The route a peer's messages take: the names status JSON, events, the CLI and the grid use."""

from __future__ import annotations

import enum


class Route(enum.StrEnum):
    """The path in use to a peer (``path`` in status JSON); a StrEnum, so JSON and ``==`` see the plain word."""

    DIRECT = "direct"
    """Confirmed straight between the two NATs' mappings."""
    RELAY = "relay"
    """Confirmed through the two peers' TURN allocations."""
    PUNCHING = "punching"
    """Neither confirmed yet, and a path is still probing."""
    NONE = "none"
    """No path (with a reason, after a failure)."""


USABLE = (Route.DIRECT, Route.RELAY)
"""The routes a message can be sent on."""
