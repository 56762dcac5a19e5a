"""The agent's events: names, fields, and the one human line each is logged (and shown in chat) as.

An event is a flat JSON object ``{"ts": <unix seconds>, "event": <name>, ...fields}``; the event log holds
one per line. ``ts`` is added when the event is written, so the pure core never reads a wall clock.

``path_changed`` reports a change of the path *in use* (old is direct or relay): an upgrade from relay to
direct, a fall back to the relay, or a path lost (new is none). How a path first came up is
``direct_confirmed`` or ``relay_confirmed``. ``message_sent``, ``message_delivered`` and
``message_undelivered`` to an extended peer carry the message's ``epoch`` and ``seq``.
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
    "relay_confirmed": "[client] relayed path to {peer} via {relay} in {time_to_relay_ms:.0f} ms",
    "path_changed": "[client] path to {peer}: {old} -> {new} ({reason})",
    "message_delivered": "[client] delivered to {peer}: {text}",
    "message_undelivered": "[client] NOT delivered to {peer}: {text} ({reason})",
    "turn_allocated": "[client] relay allocated: {relay}",
    "turn_failed": "[client] relay unavailable: {reason}",
}
"""Event name -> log line template (the seed's wording where it has one). Also the list of names."""

_CONNECT_REFUSED = "[client] no path to {peer}: server: {reason}"
"""A ``server_error`` that answered (or timed out) a connect to ``peer``."""

_VARIANTS: dict[str, str] = {
    "server_error": _CONNECT_REFUSED,
    "punch_failed": "[client] direct punch to {peer} failed: {reason}",
    "path_changed": "[client] direct path to {peer} ({addr}) (upgraded from relay)",
}
"""The line for an event that has a variant (see :func:`_template`)."""


def _template(ev: Event) -> str | None:
    name = ev.get("event", "")
    variant = (
        (name == "server_error" and ev.get("peer"))
        or (name == "punch_failed" and ev.get("relayed"))
        or (name == "path_changed" and ev.get("old") == "relay" and ev.get("new") == "direct" and ev.get("addr"))
    )
    return _VARIANTS[name] if variant else LINES.get(name)


def event(name: str, **fields: Any) -> Event:
    """A new event (without ``ts``); ``name`` must be one of :data:`LINES`."""
    if name not in LINES:
        raise ValueError(f"unknown event {name!r}")
    return {"event": name, **fields}


def describe(ev: Event) -> str:
    """The human line for an event."""
    name = ev.get("event", "")
    template = _template(ev)
    try:
        return template.format(**ev) if template else f"[client] {name}"
    except (KeyError, ValueError, TypeError):
        # An event from another version of the agent, missing a field: show it raw, never crash a chat.
        return f"[client] {ev}"
