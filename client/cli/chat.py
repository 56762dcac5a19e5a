"""``client <peer>``: interactive chat through the agent, the seed's stdin client grown a real prompt.

Two control connections: one streams the agent's events (incoming messages, path changes), printed
*above* the prompt through prompt_toolkit's ``patch_stdout``; the other carries requests (connect, send,
status). Typed lines go to the current peer; ``/commands`` are in :data:`COMMANDS`. When stdin is not a
terminal (``echo hi | client bob``), lines are read plainly and sent until end of input.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from client.cli.control_client import AgentRefused, AgentUnavailable, AsyncAgentClient
from client.cli.logs import SPEAKER, chat_logger
from client.cli.render import peer_line
from client.engine.core import RequestError, check_id
from client.engine.events import JSON, describe
from client.engine.routes import Route

QUIET_EVENTS = frozenset({"message_sent", "message_delivered", "registered", "turn_allocated"})
"""Events the chat does not echo: the sent line is already on screen (a message NOT delivered is shown);
registration and the relay allocation are old news."""


def say(text: str, speaker: str = SPEAKER) -> None:
    """Print one line (above the prompt), as ``speaker``'s: the formatter adds the ``[client]`` prefix."""
    chat_logger().info(text, extra={"speaker": speaker})


class Chat:
    """One chat session: the current peer, and the commands a line can carry."""

    def __init__(self, agent: AsyncAgentClient, peer: str) -> None:
        self.agent = agent
        self.peer = peer
        self.agent_gone = False
        self.on_agent_gone: Callable[[], None] = lambda: None

    async def connect(self, peer: str) -> None:
        """Make ``peer`` the current peer and connect unless already direct (progress comes as events)."""
        self.peer = peer
        try:
            status = await self._peer_status(peer)
            if status is not None and status["path"] == Route.DIRECT:
                say(f"direct path to {peer} ({status['addr']})")
                return
            if status is not None and status["path"] == Route.RELAY:
                say(f"relayed path to {peer} via {status['relay']}")
                return
            await self.agent.request("connect", peer=peer)
        except AgentRefused as exc:
            say(f"cannot connect to {peer}: {exc}")

    async def handle(self, line: str) -> bool:
        """Act on one typed line; ``False`` means leave."""
        if not line.strip():
            return True
        if not line.startswith("/"):
            try:
                await self.agent.request("send", peer=self.peer, text=line)
            except AgentRefused as exc:
                say(f"{exc}")
            return True
        name, _, arg = line[1:].partition(" ")
        command = COMMANDS.get(name)
        if command is None:
            say(f"unknown command /{name} (try /help)")
            return True
        return await command[0](self, arg.strip())

    async def print_events(self, events: AsyncIterator[JSON]) -> None:
        """Print the agent's events above the prompt until the stream ends."""
        try:
            async for ev in events:
                if ev.get("event") not in QUIET_EVENTS:
                    line = describe(ev)
                    say(line.text, line.speaker)
        except AgentRefused as exc:
            say(f"event stream ended: {exc}")
        else:
            say("agent stopped")
        self.agent_gone = True
        self.on_agent_gone()

    async def _peer_status(self, peer: str) -> dict[str, Any] | None:
        status = (await self.agent.request("status"))["status"]
        return next((p for p in status["peers"] if p["id"] == peer), None)

    # -- /commands -----------------------------------------------------------------------------------

    async def _quit(self, arg: str) -> bool:
        return False

    async def _connect(self, arg: str) -> bool:
        try:
            await self.connect(check_id(arg))
        except RequestError as exc:
            say(f"usage: /connect <peer> ({exc})")
        return True

    async def _status(self, arg: str) -> bool:
        peer = arg or self.peer
        status = await self._peer_status(peer)
        if status is None:
            say(f"{peer}: unknown peer")
        else:
            say(f"{peer_line(status)}  (sent {status['sent']}, received {status['received']})")
        return True

    async def _peers(self, arg: str) -> bool:
        for peer in (await self.agent.request("status"))["status"]["peers"]:
            say(f"{peer_line(peer)}")
        return True

    async def _help(self, arg: str) -> bool:
        for name, (_, text) in COMMANDS.items():
            say(f"/{name:<16} {text}")
        say("anything else is sent to the current peer; Ctrl-D leaves")
        return True


COMMANDS: dict[str, tuple[Callable[[Chat, str], Awaitable[bool]], str]] = {
    "connect": (Chat._connect, "<peer>  connect to (and chat with) another peer"),
    "status": (Chat._status, "[peer]  the path to the current (or named) peer"),
    "peers": (Chat._peers, "        every peer the agent knows"),
    "quit": (Chat._quit, "        leave (also Ctrl-D, or Ctrl-C on an empty line)"),
    "help": (Chat._help, "        this list"),
}


async def _prompt_loop(chat: Chat) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    bindings = KeyBindings()

    @bindings.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        # Ctrl-C clears a half-typed line; on an empty line it leaves.
        if event.app.current_buffer.text:
            event.app.current_buffer.reset()
        else:
            event.app.exit(exception=EOFError)

    session: PromptSession[str] = PromptSession(key_bindings=bindings)

    def leave() -> None:
        if session.app.is_running:
            session.app.exit(exception=EOFError)

    chat.on_agent_gone = leave
    while not chat.agent_gone:
        try:
            line = await session.prompt_async(f"{chat.peer}> ")
        except EOFError:
            break
        if not await chat.handle(line):
            break
    return 1 if chat.agent_gone else 0


async def _line_loop(chat: Chat) -> int:
    # A daemon thread reads stdin so that leaving never waits for a blocked read (asyncio cannot
    # watch a redirected regular file).
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, "/quit")

    chat.on_agent_gone = lambda: lines.put_nowait("/quit")
    threading.Thread(target=read, name="stdin", daemon=True).start()
    while not chat.agent_gone and await chat.handle(await lines.get()):
        pass
    return 1 if chat.agent_gone else 0


async def run_chat(socket_path: str, peer: str) -> int:
    """``client chat <peer>``; the exit status. No agent raises :class:`AgentUnavailable`."""
    interactive = sys.stdin.isatty()
    async with contextlib.AsyncExitStack() as stack:
        agent = await AsyncAgentClient.open(socket_path)
        stack.push_async_callback(agent.close)
        stream = await AsyncAgentClient.open(socket_path)
        stack.push_async_callback(stream.close)
        events = await stream.subscribe()
        chat = Chat(agent, peer)
        if interactive:
            from prompt_toolkit.patch_stdout import patch_stdout

            stack.enter_context(patch_stdout())
        printer = asyncio.create_task(chat.print_events(events))
        try:
            await chat.connect(peer)
            return await (_prompt_loop(chat) if interactive else _line_loop(chat))
        except AgentUnavailable as exc:
            say(f"{exc}")
            return 1
        finally:
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer
    return 1  # unreachable: the block returns; mypy cannot tell that the exit stack never swallows
