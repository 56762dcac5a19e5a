"""The agent's control socket: JSON lines over a Unix stream socket (NATLAB_SOCKET).

The CLI writes one request object per line; the agent answers each with one response line, in order, and
a connection may carry several requests. Every response has ``ok``; a failure is
``{"ok": false, "error": "<one line for the user>"}``.

=========================================================  ==============================================
request                                                    response
=========================================================  ==============================================
``{"op": "status"}``                                       ``{"ok": true, "status": <status>}``
``{"op": "tunnel", "action": "up"}`` (or ``down``,          ``{"ok": true, "tunnel": <tunnel>}``: the
``status``)                                                tunnel's status after the action; ``up`` that
                                                           fails is ``ok: false`` with the reason
``{"op": "connect", "peer": "bob"}``                       ``{"ok": true, "peer": <peer>}`` once the path
                                                           is direct or failed, or the server refused
                                                           (returns at once if already direct)
``{"op": "settle", "peer": "bob", "timeout": 7}``          ``{"ok": true, "peer": <peer>, "settled": true}``
                                                           once the path has settled (direct confirmed,
                                                           or punching gave up: relay or none is left),
                                                           ``"settled": false`` after ``timeout`` seconds
``{"op": "disconnect", "peer": "bob"}``                    ``{"ok": true, "peer": <peer>}``
``{"op": "send", "peer": "bob", "text": "hi"}``            ``{"ok": true, "peer": <peer>}``; no path is
                                                           ``ok: false``, "no path to bob: ..."; with
                                                           ``"wait": true`` answered once acknowledged
                                                           (or ``ok: false``, "not delivered to bob: ...")
``{"op": "flood", "peer": "bob", "count": 200,             ``{"ok": true, "result": {sent, delivered,
"size": 100}``, optionally ``"rate": 50``                  undelivered, seconds, msgs_per_s, mb_per_s,
                                                           no_path_s}}`` once every message is settled;
                                                           with ``rate``, a paced stream that waits out
                                                           a lost path
``{"op": "subscribe"}`` or ``{..., "peer": "bob"}``        ``{"ok": true}``, then one event object per line
                                                           (as in the event log) until the client closes;
                                                           ``{"ok": false, "error": "fell behind"}`` ends
                                                           a stream whose reader stopped reading
=========================================================  ==============================================

``<status>`` is the status JSON (``client status --json``); ``<peer>`` is one entry of its ``peers``,
``<tunnel>`` its ``tunnel`` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol

from client.daemon.config import AgentStartError
from client.engine.core import RequestError
from client.engine.events import Event

MAX_SETTLE = 3600.0
"""The longest a ``settle`` request may wait (seconds)."""

MAX_RATE = 100_000
"""The highest paced flood rate (messages a second): beyond any the window allows, and a finite number."""

SUBSCRIBER_BACKLOG = 1000
"""Events a subscriber may fall behind by before it is cut off (a chat suspended with Ctrl-Z)."""

logger = logging.getLogger("client")


class Subscription:
    """A stream of events, for one peer or all; ``None`` in the queue means it fell behind and was cut."""

    def __init__(self, peer: str | None) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._cut = False

    def offer(self, ev: Event, line: str) -> None:
        """Queue one event's line (as the event log has it) for the stream, unless for another peer."""
        if self._cut or (self.peer is not None and getattr(ev, "peer", None) != self.peer):
            return
        self._cut = self.queue.qsize() >= SUBSCRIBER_BACKLOG
        self.queue.put_nowait(None if self._cut else line)


class Agent(Protocol):
    """What the control socket asks of the agent (:class:`client.daemon.agent.Agent` is the one)."""

    def status(self) -> dict[str, Any]: ...
    async def tunnel_status(self) -> dict[str, Any]: ...
    async def tunnel_up(self) -> dict[str, Any]: ...
    async def tunnel_down(self) -> dict[str, Any]: ...
    async def connect(self, peer: str) -> dict[str, Any] | None: ...
    async def settle(self, peer: str) -> dict[str, Any] | None: ...
    def peer(self, peer: str) -> dict[str, Any] | None: ...
    def disconnect(self, peer: str) -> dict[str, Any] | None: ...
    async def send(self, peer: str, text: str, wait: bool = False) -> dict[str, Any] | None: ...
    async def flood(self, peer: str, count: int, size: int, rate: float | None = None) -> dict[str, Any]: ...
    def subscribe(self, subscription: Subscription) -> None: ...
    def unsubscribe(self, subscription: Subscription) -> None: ...


Handler = Callable[[Agent, dict[str, Any]], Awaitable[dict[str, Any]]]


class BadRequest(RequestError):
    """A request line that is not a valid request (the CLI's fault)."""


def _peer_field(request: dict[str, Any]) -> str:
    peer = request.get("peer")
    if not isinstance(peer, str) or not peer:
        raise BadRequest(f"{request.get('op')}: 'peer' must be a peer id")
    return peer


async def _status(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "status": {**agent.status(), "tunnel": await agent.tunnel_status()}}


async def _tunnel(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    action = request.get("action")
    if action == "up":
        return {"ok": True, "tunnel": await agent.tunnel_up()}
    if action == "down":
        return {"ok": True, "tunnel": await agent.tunnel_down()}
    if action == "status":
        return {"ok": True, "tunnel": await agent.tunnel_status()}
    raise BadRequest("tunnel: 'action' must be up, down or status")


async def _connect(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "peer": await agent.connect(_peer_field(request))}


async def _settle(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    timeout = request.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_SETTLE:
        raise BadRequest(f"settle: 'timeout' must be a number of seconds, 0-{MAX_SETTLE:g}")
    peer = _peer_field(request)
    try:
        async with asyncio.timeout(timeout):
            return {"ok": True, "peer": await agent.settle(peer), "settled": True}
    except TimeoutError:
        return {"ok": True, "peer": agent.peer(peer), "settled": False}


async def _disconnect(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "peer": agent.disconnect(_peer_field(request))}


async def _send(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    text = request.get("text")
    if not isinstance(text, str):
        raise BadRequest("send: 'text' must be a string")
    return {"ok": True, "peer": await agent.send(_peer_field(request), text, wait=bool(request.get("wait")))}


async def _flood(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    count, size, rate = request.get("count"), request.get("size", 100), request.get("rate")
    if not isinstance(count, int) or count < 1 or not isinstance(size, int) or size < 1:
        raise BadRequest("flood: 'count' and 'size' must be positive integers")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE):
        raise BadRequest(f"flood: 'rate' must be a number of messages a second, above 0 and at most {MAX_RATE}")
    return {"ok": True, "result": await agent.flood(_peer_field(request), count, size, rate)}


HANDLERS: dict[str, Handler] = {
    "status": _status,
    "tunnel": _tunnel,
    "connect": _connect,
    "settle": _settle,
    "disconnect": _disconnect,
    "send": _send,
    "flood": _flood,
}
"""op -> handler for the request/response ops; ``subscribe`` turns the connection into a stream."""


class ControlServer:
    """Serves the control protocol for ``agent`` on the Unix socket ``path``; removes it on exit."""

    def __init__(self, agent: Agent, path: str) -> None:
        self.agent = agent
        self.path = path
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ControlServer:
        _claim_socket_path(self.path)
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # so shutdown can end streams that would otherwise wait forever
        try:
            while line := await reader.readline():
                request = _decode(line)
                if request is not None and request.get("op") == "subscribe":
                    await self._stream(request, reader, writer)
                    return
                response = await _answer(self.agent, request)
                writer.write(_encode(response))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the CLI went away (Ctrl-C) or sent an over-long line; nothing to answer
        except asyncio.CancelledError:
            # Shutdown. End normally: Python 3.11's start_unix_server logs a cancelled handler as an error.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _stream(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = request.get("peer")
        if peer is not None and not isinstance(peer, str):
            writer.write(_encode({"ok": False, "error": "subscribe: 'peer' must be a peer id"}))
            return
        subscription = Subscription(peer)
        self.agent.subscribe(subscription)
        watcher = asyncio.create_task(_end_at_eof(reader, subscription))
        try:
            writer.write(_encode({"ok": True}))
            while (line := await subscription.queue.get()) is not None:
                writer.write(line.encode() + b"\n")
                await writer.drain()
            if not reader.at_eof():
                writer.write(_encode({"ok": False, "error": "fell behind"}))
        finally:
            watcher.cancel()
            self.agent.unsubscribe(subscription)


async def _end_at_eof(reader: asyncio.StreamReader, subscription: Subscription) -> None:
    """End a stream when its reader hangs up (a chat that left), not at the next event it cannot take."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass
    subscription.queue.put_nowait(None)


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return request if isinstance(request, dict) else None


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def _answer(agent: Agent, request: dict[str, Any] | None) -> dict[str, Any]:
    if request is None:
        return {"ok": False, "error": "bad request: expected one JSON object per line"}
    handler = HANDLERS.get(str(request.get("op")))
    if handler is None:
        return {"ok": False, "error": f"bad request: unknown op {request.get('op')!r}"}
    try:
        return await handler(agent, request)
    except RequestError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        logger.exception("control request %r failed", request)
        return {"ok": False, "error": f"agent error: {exc}"}


def _claim_socket_path(path: str) -> None:
    """Make ``path`` free for our socket: remove a stale one, refuse if a live agent answers there."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AgentStartError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left behind by an agent that was killed
            return
    raise AgentStartError(f"another agent is already running (socket {path} answers)")
