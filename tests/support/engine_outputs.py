"""Reading an agent core's outputs in one place: the events it emitted (by kind) and what it put on the wire.

The engine tests read events only through :func:`kind`, :func:`field` and :func:`events`, so a change in how
an event is represented is adapted here once. They take the typed events a core emits and the JSON an
in-memory lab records (``Event.to_json``) alike.
"""

from __future__ import annotations

from typing import Any

from client.engine.core import Emit, Output, Send
from client.engine.events import JSON, Event
from protocol import Endpoint, Frame, Message, encode


def _json(ev: Event | JSON) -> JSON:
    return ev.to_json() if isinstance(ev, Event) else ev


def kind(ev: Event | JSON) -> str:
    """The event's kind, as the event log names it (``punch_failed``, ``path_changed``, ...)."""
    return str(_json(ev)["event"])


def field(ev: Event | JSON, name: str) -> Any:
    """One field of an event, by its event-log name."""
    return _json(ev)[name]


def events(outputs: list[Output], name: str | None = None) -> list[Event]:
    """The events in ``outputs`` (of kind ``name`` if given), in order."""
    return [o.event for o in outputs if isinstance(o, Emit) and (name is None or kind(o.event) == name)]


def datagrams(outputs: list[Output]) -> list[bytes]:
    """The protocol datagrams ``outputs`` send, as encoded for the wire."""
    return [encode(o.message) for o in outputs if isinstance(o, Send)]


def messages(outputs: list[Output], to: Endpoint) -> list[Message]:
    """The protocol messages ``outputs`` send to ``to``: text messages, and the messages of v2 frames (a sealed
    datagram's is its ``Sealed``: read the plaintext with ``tests.support.signal_server.Wiretap``)."""
    sent = [o.message for o in outputs if isinstance(o, Send) and o.to == to]
    return [m.message if isinstance(m, Frame) else m for m in sent]


def frames(outputs: list[Output], to: Endpoint) -> list[Frame]:
    """The v2 frames ``outputs`` send to ``to``."""
    return [o.message for o in outputs if isinstance(o, Send) and o.to == to and isinstance(o.message, Frame)]
