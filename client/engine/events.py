"""The agent's events: one small frozen class per kind, one JSON form, and the human line each is shown as.

An event's JSON is a flat object ``{"ts": <unix seconds>, "event": <name>, ...fields}`` (:meth:`Event.to_json`),
the same in the event log (one per line) and on the control socket's event streams. ``ts`` is added when the
event is written, so the pure core never reads a wall clock. Fields appear in the order the class declares
them; an *optional* field is left out while it holds its default (``epoch``/``seq`` of a message to a seed-era
peer, ``relayed`` of a punch that failed unrelayed, ``peer`` of a server error that answered no connect).

:class:`PathChanged` reports a change of the path *in use* (old is direct or relay): an upgrade from relay to
direct, a fall back to the relay, or a path lost (new is none). How a path first came up is
:class:`DirectConfirmed` or :class:`RelayConfirmed`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, ClassVar, NamedTuple

from client.engine.routes import Route

JSON = dict[str, Any]
"""An event as JSON: what the event log holds and event streams carry."""


class Ticket(NamedTuple):
    """One guaranteed message: its peer, our epoch and its seq (what its settling event names again).

    A named tuple, not a frozen dataclass: every message makes two and hashes them (the agent's outcomes
    are keyed by ticket), and a tuple does both several times faster."""

    peer: str
    epoch: int
    seq: int


def _optional(default: Any = None) -> Any:
    """A field left out of the JSON while it holds ``default``."""
    return dataclasses.field(default=default, metadata={"optional": True})


@dataclass(frozen=True)
class Event:
    """Base of every event; ``name`` is its ``event`` field in JSON, ``line`` its human line's template."""

    name: ClassVar[str]
    line: ClassVar[str]
    speaker: ClassVar[str] = "client"
    """Who the line speaks for, a template too; the log formatter shows it as the ``[client]`` prefix."""

    def json_line(self, ts: float | None = None) -> str:
        """The event as one line of JSON, stamped with ``ts`` (unix seconds, first key) when given: what the
        event log holds and the control socket streams, exactly ``json.dumps(obj, ensure_ascii=False)``.

        The one serialisation of events. It is written straight from the fields, strings and ints inline,
        because every message is two or three events: building a dict for the general encoder was a fifth
        of a flood's CPU, and a call per field still a tenth."""
        head, fields = _spec(type(self))
        parts = [head] if ts is None else [_stamp(ts), head[1:]]
        values = self.__dict__
        for name, key, optional, default in fields:
            value = values[name]
            if optional and value == default:
                continue
            kind = type(value)
            if kind is str:
                parts += (key, encode_basestring(value))
            elif kind is int:
                parts += (key, int.__repr__(value))
            else:
                parts += (key, _json(value))
        parts.append("}")
        return "".join(parts)

    def to_json(self, ts: float | None = None) -> JSON:
        """The event's JSON object: :meth:`json_line` read back (for tests and in-memory labs)."""
        obj: JSON = json.loads(self.json_line(ts))
        return obj


_encode = json.JSONEncoder(ensure_ascii=False).encode


def _json(value: Any) -> str:
    """One value as ``json.dumps(..., ensure_ascii=False)`` writes it (field and event names are identifiers,
    written without escaping)."""
    if type(value) is str:
        return str(encode_basestring(value))
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # what json writes for a finite float (every ts)
    if isinstance(value, Route):
        return str(encode_basestring(str(value)))
    return str(_encode(value))  # None, bool, NaN: rare enough for the general encoder


@functools.lru_cache(maxsize=1)
def _stamp(ts: float) -> str:
    """The line's start with ``ts``: worked out once for the events the agent writes together (one ts)."""
    return f'{{"ts": {_json(round(ts, 6))}, '


_Spec = tuple[str, tuple[tuple[str, str, bool, Any], ...]]
"""A kind's JSON head (``{"event": "<name>"``) and its fields as (name, JSON key with separator, optional,
default)."""
_SPECS: dict[type[Event], _Spec] = {}


def _spec(kind: type[Event]) -> _Spec:
    """A kind's :data:`_Spec`, worked out once: ``dataclasses.fields`` on every event was a tenth of a flood's
    CPU (every message is two or three events)."""
    spec = _SPECS.get(kind)
    if spec is None:
        fields = tuple(
            (f.name, f', "{f.name}": ', bool(f.metadata.get("optional")), f.default) for f in dataclasses.fields(kind)
        )
        spec = _SPECS[kind] = (f'{{"event": "{kind.name}"', fields)
    return spec


@dataclass(frozen=True)
class Registered(Event):
    name = "registered"
    line = "registered with server {server}"
    server: str


@dataclass(frozen=True)
class PunchStarted(Event):
    name = "punch_started"
    line = "punching peer {peer} ({addr})"
    peer: str
    addr: str


@dataclass(frozen=True)
class DirectConfirmed(Event):
    name = "direct_confirmed"
    line = "direct path to {peer} ({addr}) in {time_to_direct_ms:.0f} ms"
    peer: str
    addr: str
    time_to_direct_ms: float | None


@dataclass(frozen=True)
class PunchFailed(Event):
    name = "punch_failed"
    line = "no path to {peer}: {reason}"
    peer: str
    addr: str
    reason: str | None
    relayed: bool = _optional(False)
    """The relay carries the pair meanwhile (direct probing goes on in the background)."""


@dataclass(frozen=True)
class MessageSent(Event):
    name = "message_sent"
    line = "sent to {peer}: {text}"
    peer: str
    text: str
    epoch: int | None = _optional()
    seq: int | None = _optional()


@dataclass(frozen=True)
class MessageReceived(Event):
    name = "message_received"
    line = "{text}"
    speaker = "peer {peer}"
    peer: str
    text: str
    addr: str
    seed: bool = _optional(False)
    """From a seed-era peer: its text datagrams are not authenticated (anyone could have sent it)."""


@dataclass(frozen=True)
class ServerError(Event):
    name = "server_error"
    line = "server error: {reason}"
    reason: str
    peer: str | None = _optional()
    """The peer whose connect the error answered (or that timed out), if any."""


@dataclass(frozen=True)
class Disconnected(Event):
    name = "disconnected"
    line = "forgot peer {peer}"
    peer: str


@dataclass(frozen=True)
class PeerForgotten(Event):
    """The agent forgot an idle peer by itself: idle too long, or to make room for a new one."""

    name = "peer_forgotten"
    line = "forgot idle peer {peer}: {reason}"
    peer: str
    reason: str


@dataclass(frozen=True)
class RelayConfirmed(Event):
    name = "relay_confirmed"
    line = "relayed path to {peer} via {relay} in {time_to_relay_ms:.0f} ms"
    peer: str
    relay: str
    time_to_relay_ms: float | None


@dataclass(frozen=True)
class PathChanged(Event):
    name = "path_changed"
    line = "path to {peer}: {old} -> {new} ({reason})"
    peer: str
    old: Route
    new: Route
    reason: str
    addr: str | None


@dataclass(frozen=True)
class MessageDelivered(Event):
    name = "message_delivered"
    line = "delivered to {peer}: {text}"
    peer: str
    text: str
    epoch: int
    seq: int


@dataclass(frozen=True)
class MessageUndelivered(Event):
    name = "message_undelivered"
    line = "NOT delivered to {peer}: {text} ({reason})"
    peer: str
    text: str
    reason: str | None
    epoch: int
    seq: int


@dataclass(frozen=True)
class TurnAllocated(Event):
    name = "turn_allocated"
    line = "relay allocated: {relay}"
    relay: str


@dataclass(frozen=True)
class TurnFailed(Event):
    name = "turn_failed"
    line = "relay unavailable: {reason}"
    reason: str


@dataclass(frozen=True)
class PeerOffline(Event):
    """Our server says ``peer`` (one we have a path or a chat with) is offline; ``last_seen_s`` since it last
    heard the peer (``None``: it does not remember it). A chat prints ``[bob is offline]``."""

    name = "peer_offline"
    line = ""
    speaker = "{peer} is offline"
    peer: str
    last_seen_s: float | None = None


@dataclass(frozen=True)
class PeerBack(Event):
    """``peer``, reported offline before, is online again. A chat prints ``[bob is back]``."""

    name = "peer_back"
    line = ""
    speaker = "{peer} is back"
    peer: str


def ticket_of(settled: MessageDelivered | MessageUndelivered) -> Ticket:
    """The ticket of the message a settling event is about (as :class:`MessageSent`'s send returned it)."""
    return Ticket(settled.peer, settled.epoch, settled.seq)


KINDS: dict[str, type[Event]] = {
    kind.name: kind
    for kind in (
        Registered,
        PunchStarted,
        DirectConfirmed,
        PunchFailed,
        MessageSent,
        MessageReceived,
        ServerError,
        Disconnected,
        PeerForgotten,
        RelayConfirmed,
        PathChanged,
        MessageDelivered,
        MessageUndelivered,
        TurnAllocated,
        TurnFailed,
        PeerOffline,
        PeerBack,
    )
}
"""Event name -> its class: every kind of event there is."""

LINES: dict[str, str] = {name: kind.line for name, kind in KINDS.items()}
"""Event name -> log line template (the seed's wording where it has one)."""

_VARIANTS: dict[str, str] = {
    "server_error": "no path to {peer}: server: {reason}",
    "punch_failed": "direct punch to {peer} failed: {reason}",
    "path_changed": "direct path to {peer} ({addr}) (upgraded from relay)",
}
"""The line for an event that has a variant (see :func:`_template`)."""


_SPEAKER_VARIANTS: dict[str, str] = {
    "message_received": "peer {peer}, seed-era, unauthenticated",
}
"""Who a line speaks for when its event has a variant (a seed-era peer's message, see :func:`_speaker`)."""


def event(name: str, **fields: Any) -> Event:
    """The event of kind ``name`` with ``fields``; ValueError for an unknown name."""
    kind = KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown event {name!r}")
    return kind(**fields)


def _template(ev: Mapping[str, Any]) -> str | None:
    name = ev.get("event", "")
    variant = (
        (name == "server_error" and ev.get("peer"))
        or (name == "punch_failed" and ev.get("relayed"))
        or (name == "path_changed" and ev.get("old") == "relay" and ev.get("new") == "direct" and ev.get("addr"))
    )
    return _VARIANTS[name] if variant else LINES.get(name)


def _speaker(kind: type[Event], ev: Mapping[str, Any]) -> str:
    """The speaker template: a seed-era peer's message says that nothing proves who sent it."""
    name = ev.get("event", "")
    return _SPEAKER_VARIANTS[name] if name == "message_received" and ev.get("seed") else kind.speaker


@dataclass(frozen=True)
class Line:
    """An event as a human line: ``text`` and who it speaks for (``client``, or ``peer bob`` for a message
    received), which the CLI's log formatter prints as ``[client] text``."""

    speaker: str
    text: str


def describe(ev: Event | Mapping[str, Any]) -> Line:
    """The human line for an event, or for its JSON as read from a stream (maybe another agent version's)."""
    data = ev.to_json() if isinstance(ev, Event) else ev
    template = _template(data)
    kind = KINDS.get(data.get("event", ""))
    try:
        if template is None or kind is None:
            return Line("client", str(data.get("event", "")))
        return Line(_speaker(kind, data).format(**data), template.format(**data))
    except (KeyError, ValueError, TypeError):
        # An event from another version of the agent, missing a field: show it raw, never crash a chat.
        return Line("client", str(dict(data)))
