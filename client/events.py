"""The agent's events: names, fields, and the one human line each is logged (and shown in chat) as.

An event is a flat JSON object ``{"ts": <unix seconds>, "event": <name>, ...fields}``; the event log holds
one per line. ``ts`` is added when the event is written, so the pure core never reads a wall clock.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]

LINES: dict[str, str] = {
    "registered": "[client] registered with server {server}",
    "punch_started": "[client] punching peer {peer} ({addr})",
    "direct_confirmed": "[client] direct path to {peer} ({addr}) in {time_to_direct_ms:.0f} ms",
    "punch_failed": "[client] no path to {peer}: {reason}",
    "message_sent": "[client] sent to {peer}: {text}",
    "message_received": "[peer {peer}] {text}",
    "server_error": "[client] server error: {reason}",
    "disconnected": "[client] forgot peer {peer}",
}
"""Event name -> log line template (the seed's wording where it has one). Also the list of names."""

_CONNECT_REFUSED = "[client] no path to {peer}: server: {reason}"
"""A ``server_error`` that answered (or timed out) a connect to ``peer``."""


def event(name: str, **fields: Any) -> Event:
    """A new event (without ``ts``); ``name`` must be one of :data:`LINES`."""
    if name not in LINES:
        raise ValueError(f"unknown event {name!r}")
    return {"event": name, **fields}


def describe(ev: Event) -> str:
    """The human line for an event."""
    name = ev.get("event", "")
    template = _CONNECT_REFUSED if name == "server_error" and ev.get("peer") else LINES.get(name)
    try:
        return template.format(**ev) if template else f"[client] {name}"
    except (KeyError, ValueError, TypeError):
        # An event from another version of the agent, missing a field: show it raw, never crash a chat.
        return f"[client] {ev}"
