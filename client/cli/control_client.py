"""The CLI's side of the control protocol (see :mod:`client.daemon.control`): a blocking client and an asyncio one.

Both raise :class:`AgentUnavailable` when no agent answers and :class:`AgentRefused` when it answers
``ok: false``; each message is the one line the CLI prints after ``client:``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from client.engine.events import JSON

if TYPE_CHECKING:  # asyncio is imported only by the chat, so that `client health` starts fast
    import asyncio


class AgentUnavailable(ConnectionError):
    """No agent on the control socket (not running, or not answering in time)."""


class AgentRefused(RuntimeError):
    """The agent answered ``ok: false``; the message is its ``error``."""


def _unavailable(path: str, exc: OSError | None = None) -> AgentUnavailable:
    if not os.path.exists(path):
        return AgentUnavailable(f"agent not running (no socket at {path})")
    why = exc.strerror if exc is not None and exc.strerror else str(exc or "connection closed")
    return AgentUnavailable(f"agent not running (no answer at {path}: {why})")


def _checked(response: dict[str, Any]) -> dict[str, Any]:
    if not response.get("ok"):
        raise AgentRefused(str(response.get("error", "agent refused the request")))
    return response


class AgentClient:
    """A blocking control connection; ``timeout`` bounds each request (connect waits for a punch)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise _unavailable(path, exc) from None
        self._file = self._sock.makefile("rwb")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its response; raises :class:`AgentRefused` on ``ok: false``."""
        try:
            self._file.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        except TimeoutError:
            raise AgentUnavailable(f"agent did not answer {op} within {self.timeout:g} s") from None
        except OSError as exc:
            raise _unavailable(self.path, exc) from None
        if not line:
            raise _unavailable(self.path)
        return _checked(json.loads(line))

    def subscribe(self, peer: str | None = None) -> Iterator[JSON]:
        """Subscribe (all peers when ``peer`` is None), then the events as the agent emits them, until it
        stops; :class:`AgentRefused` if it cuts the stream (we fell behind). Returns once subscribed."""
        self.request("subscribe", **({} if peer is None else {"peer": peer}))
        self._sock.settimeout(None)  # a stream waits as long as the agent has nothing to say
        return self._events()

    def _events(self) -> Iterator[JSON]:
        while True:
            try:
                line = self._file.readline()
            except OSError:
                return
            if not line:
                return  # the agent stopped: the stream simply ends
            event: JSON = json.loads(line)
            if "ok" in event:
                _checked(event)  # the only non-event line in a stream: the agent cut us off
                continue
            yield event

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncAgentClient:
    """An asyncio control connection, for the chat: requests, or (after :meth:`subscribe`) a stream."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, path: str) -> AsyncAgentClient:
        import asyncio

        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except OSError as exc:
            raise _unavailable(path, exc) from None
        return cls(path, reader, writer)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self._writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        return _checked(await self._read())

    async def subscribe(self, peer: str | None = None) -> AsyncIterator[JSON]:
        """Events as the agent emits them (all peers when ``peer`` is None), until the agent goes away."""
        await self.request("subscribe", **({} if peer is None else {"peer": peer}))
        return self._events()

    async def _events(self) -> AsyncIterator[JSON]:
        while True:
            try:
                event = await self._read()
            except AgentUnavailable:
                return  # the agent stopped: the stream simply ends
            if "ok" in event:
                _checked(event)  # the only non-event line in a stream: the agent cut us off
                continue
            yield event

    async def _read(self) -> dict[str, Any]:
        try:
            await self._writer.drain()
            line = await self._reader.readline()
        except OSError as exc:
            raise _unavailable(self.path, exc) from None
        if not line:
            raise _unavailable(self.path)
        response: dict[str, Any] = json.loads(line)
        return response

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
