"""Errors a local caller (the CLI, a chat) can cause; each message is the line to show the user."""

from __future__ import annotations

from protocol import ID_RE, ID_SYNTAX


class RequestError(ValueError):
    """A local request (connect, send, ...) that cannot be done; the message says why, for the user."""


class NoPathError(RequestError):
    """A message for a peer we have no path to; it was not sent."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"no path to {peer}: {reason}")
        self.peer = peer
        self.reason = reason


class WindowFullError(RequestError):
    """Too many messages to this peer await acknowledgement; try again when some are settled."""


def check_id(peer_id: str) -> str:
    """``peer_id`` if it is a valid protocol id, else :class:`RequestError`."""
    if not ID_RE.match(peer_id):
        raise RequestError(f"invalid peer id {peer_id!r}: ids match {ID_SYNTAX}")
    return peer_id
