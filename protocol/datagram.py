"""One datagram of either protocol version: the first byte tells them apart (see PROTOCOL.md).

``0xF5`` can never start UTF-8 text, so a datagram starting with it is v2 (protocol.binary) and anything
else is the seed's text grammar (protocol.messages), exactly as before v2 existed.
"""

from __future__ import annotations

from protocol import binary, messages
from protocol.binary import Frame
from protocol.messages import Message

_MARKER = bytes([binary.MARKER])
_NAMES: dict[type, str] = {
    **{kind: row.name for kind, row in binary._BY_CLASS.items()},
    **{kind: row.name for kind, row in messages._BY_TYPE.items()},
}
"""Message class -> what the protocol calls it (the two versions agree where both have a class)."""


def parse(data: bytes) -> Message | Frame:
    """A v2 :class:`Frame` when ``data`` starts with the marker byte, else a text message; raises
    :class:`~protocol.messages.ProtocolError` (only that) for anything malformed."""
    if data[:1] == _MARKER:
        return binary.parse(data)
    return messages.parse(data)


def encode(item: Message | Frame) -> bytes:
    """A frame's v2 bytes, or a message's text datagram."""
    if isinstance(item, Frame):
        return binary.encode(item)
    return messages.encode(item)


def message_name(message: object) -> str:
    """What the protocol calls ``message``: its text verb, or its v2 type's name (``hello`` for both hellos);
    the class name for anything else. For log lines: no encoding."""
    kind = type(message)
    return _NAMES.get(kind, kind.__name__)
