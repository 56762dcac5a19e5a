"""What a path's state changes mean to people and to the event log: events, log lines and reasons, pure."""

from __future__ import annotations

import logging

from client.engine.events import DirectConfirmed, PunchFailed, PunchStarted, RelayConfirmed
from client.engine.outputs import Emit, Log, Output
from client.engine.path import Path, PathState
from client.engine.peer import RELAYED_SUFFIX, Peer
from client.engine.routes import Route


def direct_path_event(peer: Peer, new: PathState, relayed: bool) -> list[Output]:
    """The event for the direct path to ``peer`` entering ``new``; ``relayed``: the relay carries the pair."""
    path, addr = peer.path, str(peer.path.addr)
    if new is PathState.PUNCHING:
        return [Emit(PunchStarted(path.peer, addr))]
    if new is PathState.DIRECT:
        ms = path.time_to_direct_ms
        return [Emit(DirectConfirmed(path.peer, addr, ms))]
    if new is PathState.FAILED:
        if relayed:
            reason = f"{path.reason}{RELAYED_SUFFIX}"
            return [Emit(PunchFailed(path.peer, addr, reason, relayed=True))]
        return [Emit(PunchFailed(path.peer, addr, path.reason))]
    return []


def relay_path_event(path: Path, new: PathState) -> list[Output]:
    """The event (or log line) for a relay path entering ``new``."""
    relay = str(path.addr)
    if new is PathState.DIRECT:
        ms = path.time_to_direct_ms
        return [Emit(RelayConfirmed(path.peer, relay, ms))]
    if new is PathState.FAILED:
        return [Log(logging.INFO, f"relay path to {path.peer} ({relay}): {path.reason}")]
    return []


def change_reason(old: Route, new: Route, reason: str | None) -> str:
    """Why the route moved from ``old`` to ``new`` (a ``path_changed`` event's reason)."""
    if new is Route.DIRECT:
        return f"direct path confirmed (upgraded from {old})"
    if new is Route.RELAY:
        return f"{reason or 'direct path lost'}; moved to relay"
    return reason or "no path"


def no_path_reason(peer: Peer | None, relay_up: bool) -> str:
    """Why a message to ``peer`` cannot be sent now."""
    if peer is None:
        return "not connected"
    reason = peer.reason(relay_up)
    if reason:
        return reason
    if peer.pending is not None or peer.path_name(relay_up) is Route.PUNCHING:
        return "still punching"
    return "not connected"
