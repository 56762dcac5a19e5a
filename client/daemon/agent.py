"""The agent's thin asyncio shell: one UDP socket and one timer around :class:`client.engine.core.AgentCore`.

Datagrams and timer ticks go into the core with ``loop.time()`` as ``now``; the outputs that come back are
performed here (sendto, event log, log line, subscribers). Local requests from the control socket
(:mod:`client.daemon.control`) call the request methods below. :func:`run` is ``client agent``.

Every event goes to the event log and to the subscribers, messages included; their log lines are another
matter: a flood would spend more on them than on the messages, so a message's line (sent, received,
delivered) is logged at INFO only while they come at a human rate (:class:`MessageLines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

from client.daemon.config import AgentConfig, AgentStartError
from client.daemon.control import ControlServer, Subscription
from client.daemon.eventlog import EventLog
from client.daemon.udp import DatagramSocket
from client.engine.core import (
    AgentCore,
    Emit,
    Log,
    NoPathError,
    Output,
    RequestError,
    Send,
    SendRaw,
    TunnelIn,
    WindowFullError,
    check_id,
)
from client.engine.events import (
    Event,
    MessageDelivered,
    MessageReceived,
    MessageSent,
    MessageUndelivered,
    Registered,
    Ticket,
    describe,
    ticket_of,
)
from client.engine.routes import Route
from client.tunnel.device import TunnelError
from client.tunnel.links import Tunnel, TunnelConfig
from protocol import Endpoint, encode
from protocol.wireguard import is_wireguard

logger = logging.getLogger("client")

MESSAGE_LINES_PER_S = 20
"""Message lines a second logged at INFO; beyond, DEBUG (and a count of those not shown)."""


class MessageLines:
    """The level of each message's log line: INFO for the first :data:`MESSAGE_LINES_PER_S` in a second,
    then DEBUG, with one INFO line at the next second saying how many were not shown. A chat's lines all
    show; a flood's cost no more than a few lines a second (a log line costs more than the message)."""

    def __init__(self, per_second: int = MESSAGE_LINES_PER_S) -> None:
        self.per_second = per_second
        self._second = 0
        self._shown = 0
        self._hidden = 0

    def level(self, now: float) -> int:
        second = int(now)
        if second != self._second:
            if self._hidden:
                logger.info(
                    "(%d more message lines not shown at this log level; NATLAB_LOG=debug shows them)", self._hidden
                )
            self._second, self._shown, self._hidden = second, 0, 0
        if self._shown < self.per_second:
            self._shown += 1
            return logging.INFO
        self._hidden += 1
        return logging.DEBUG


class Tally:
    """A flood's outcomes, counted (a future per message cost a callback per message)."""

    def __init__(self) -> None:
        self.unsettled = 0
        self.delivered = 0
        self.tracked = False
        """Whether any message had a ticket (a seed-era peer's are never acknowledged)."""
        self._done = asyncio.Event()

    def add(self) -> None:
        self.tracked = True
        self.unsettled += 1

    def settle(self, reason: str | None) -> None:
        self.unsettled -= 1
        self.delivered += reason is None
        if not self.unsettled:
            self._done.set()

    async def settled(self) -> None:
        while self.unsettled:
            self._done.clear()
            await self._done.wait()


class Agent:
    """The running agent: socket, timer, event log and subscribers around one :class:`AgentCore`."""

    def __init__(self, config: AgentConfig, events: EventLog) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        # The core keeps the loop's clock; proofs and session boots need wall-clock time: the offset, once.
        self.core = AgentCore(config.core(wall_offset=time.time() - self._loop.time()))
        self.events = events
        self.local: Endpoint | None = None
        self._socket: DatagramSocket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._outcomes: dict[Ticket, asyncio.Future[str | None] | Tally] = {}
        self._settled = asyncio.Event()  # a message was settled: a full window has room again
        self._lines = MessageLines()
        self._events: list[Event] = []  # performed, not yet emitted (see _emit)
        self.subscriptions: set[Subscription] = set()
        self.tunnel = Tunnel(
            self._loop,
            TunnelConfig(
                config.id,
                config.identity,
                Path(config.registry),
                config.tunnel_port,
                connect=config.tunnel_connect,
                kernel=config.tunnel_kernel,
            ),
            _TunnelCarrier(self),
        )

    async def open(self) -> None:
        """Bind the UDP socket and start registering."""
        bind = ("::" if self.config.server.is_ipv6 else "0.0.0.0", self.config.port)
        try:
            self._socket = DatagramSocket(self._loop, bind, self.on_datagram, self._after)
        except OSError as exc:
            raise AgentStartError(f"cannot bind UDP port {self.config.port}: {exc.strerror}") from None
        self.local = Endpoint(_route_ip(self.config.server, bind[0]), self._socket.port)
        self._perform(self.core.start(self._loop.time()))
        self._after()

    def close(self) -> None:
        Path(self.config.ready_file).unlink(missing_ok=True)
        if self._timer is not None:
            self._timer.cancel()
        if self._socket is not None:
            # Best effort, one datagram: a lost release only means coturn keeps the allocation until its
            # lifetime ends.
            for output in self.core.stop(self._loop.time()):
                if isinstance(output, SendRaw):
                    self._socket.sendto(output.data, output.to.sockaddr())
            self._socket.close()
        self._emit()
        self._wake()

    # -- requests from the control socket ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "server": str(self.config.server),
            "registered": self.core.registered,
            "local": str(self.local),
            "key": self.config.identity.public.fingerprint,
            "key_file": self.config.key_file,
            **self.core.relay_status(),
            "peers": self.core.peer_statuses(self._loop.time()),
            "dropped": self.core.dropped(),
        }

    async def tunnel_status(self) -> dict[str, Any]:
        """The ``tunnel`` object of status JSON (WireGuard's handshakes and bytes come from its UAPI socket)."""
        return await self.tunnel.status()

    async def tunnel_up(self) -> dict[str, Any]:
        """Bring the tunnel up (:class:`RequestError` with the reason if it cannot come up); its status."""
        try:
            await self.tunnel.bring_up()
        except TunnelError as exc:
            raise RequestError(f"tunnel: {exc}") from None
        return await self.tunnel.status()

    async def tunnel_down(self) -> dict[str, Any]:
        await self.tunnel.bring_down()
        return await self.tunnel.status()

    async def connect(self, peer: str) -> dict[str, Any] | None:
        """Connect (unless direct or punching already) and wait for the outcome; the peer's status."""
        self._request(self.core.connect(peer, self._loop.time()))
        while not self.core.connect_settled(peer):
            await self._changed()
        return self.core.peer_status(peer, self._loop.time())

    async def settle(self, peer: str) -> dict[str, Any] | None:
        """Wait until the path to ``peer`` has settled (direct confirmed, or punching gave up with the relay
        or nothing left); the peer's status. The caller bounds the wait."""
        check_id(peer)
        while not self.core.path_settled(peer):
            await self._changed()
        return self.core.peer_status(peer, self._loop.time())

    def peer(self, peer: str) -> dict[str, Any] | None:
        """The peer's status now (``None`` if unknown)."""
        return self.core.peer_status(peer, self._loop.time())

    async def _changed(self) -> None:
        """Wait until the core has done something (a datagram, a tick, a request)."""
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    def subscribe(self, subscription: Subscription) -> None:
        """Offer every event from now on to ``subscription`` (a chat, ``client events --follow``)."""
        self.subscriptions.add(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def disconnect(self, peer: str) -> dict[str, Any] | None:
        self._request(self.core.disconnect(peer))
        return self.core.peer_status(peer, self._loop.time())

    async def send(self, peer: str, text: str, wait: bool = False) -> dict[str, Any] | None:
        """Send one message; the peer's status. With ``wait``, once the peer has acknowledged it
        (:class:`RequestError` with the reason if given up on); a seed-era peer never acknowledges, so
        there is nothing to wait for."""
        outcome = self._submit(peer, text)
        reason = None if outcome is None or not wait else await outcome
        if reason is not None:
            raise RequestError(f"not delivered to {peer}: {reason}")
        return self.core.peer_status(peer, self._loop.time())

    def _submit(self, peer: str, text: str) -> asyncio.Future[str | None] | None:
        """Send and return a future of the outcome (``None`` delivered, else why not), by the message's
        ticket; ``None`` for a seed-era peer."""
        ticket = self._post(peer, text)
        outcome = None
        if ticket is not None:
            outcome = self._outcomes[ticket] = self._loop.create_future()
        self._after()
        return outcome

    def _post(self, peer: str, text: str) -> Ticket | None:
        """Send one message, its outputs performed (the caller calls :meth:`_after` before it yields)."""
        sent = self.core.send(peer, text, self._loop.time())
        self._perform(sent.outputs)
        return sent.ticket

    async def flood(self, peer: str, count: int, size: int, rate: float | None = None) -> dict[str, Any]:
        """Send ``count`` messages of ``size`` characters as fast as the window allows; wait until all are
        settled. Each text starts with its number (``000001 ``), so a receiver can check order.

        With ``rate`` (messages a second) it is a stream: message i is due ``i / rate`` s after the start (at
        once when the stream is behind), and while there is no path it waits for one instead of failing, as a
        live stream across a fault would; a path gone for longer than the delivery deadline ends it with the
        reason. ``no_path_s`` is how long it waited."""
        started = self._loop.time()
        tally = Tally()
        no_path = 0.0
        try:
            for i in range(count):
                text = f"{i + 1:06d} ".ljust(size, "x")[: max(size, 7)]
                if rate is not None:
                    await self._until(started + i / rate)
                while True:
                    try:
                        ticket = self._post(peer, text)
                        break
                    except WindowFullError:
                        self._after()
                        self._settled.clear()
                        await self._settled.wait()  # not before a message is settled: the window is full till then
                    except NoPathError as error:
                        if rate is None:
                            raise
                        no_path += await self._path_back(peer, error)
                if ticket is not None:
                    self._outcomes[ticket] = tally
                    tally.add()
        finally:
            self._after()  # the timer, for what was sent since the window last filled
        await tally.settled()
        seconds = max(self._loop.time() - started, 1e-9)
        delivered = tally.delivered if tally.tracked else count
        return {
            "sent": count,
            "delivered": delivered,
            "undelivered": count - delivered,
            "seconds": round(seconds, 3),
            "msgs_per_s": round(delivered / seconds, 1),
            "mb_per_s": round(delivered * size / seconds / 1e6, 3),
            "no_path_s": round(no_path, 3),
        }

    async def _until(self, due: float) -> None:
        """Yield until the loop's clock reaches ``due`` (at once if it has)."""
        delay = due - self._loop.time()
        if delay > 0:
            self._after()  # what was sent so far goes out, and the timer is armed, before we sleep
            await asyncio.sleep(delay)

    async def _path_back(self, peer: str, error: NoPathError) -> float:
        """Wait until ``peer`` has a path again (the core reconnects by itself); the seconds waited. Still none
        after the delivery deadline: ``error`` (the send refused for lack of a path, with its reason)."""
        began = self._loop.time()
        deadline = began + self.config.delivery_deadline
        self._after()
        while not self.core.has_path(peer):
            left = deadline - self._loop.time()
            if left <= 0:
                raise error
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed()
        return self._loop.time() - began

    # -- the shell -----------------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: Any) -> None:
        if data and data[0] < 5 and is_wireguard(data):
            self.tunnel.from_direct(data, addr)  # WireGuard's, carried for the tunnel: not the core's
            return
        try:
            outputs = self.core.receive(data, Endpoint.of(addr), self._loop.time())
        except Exception:
            # Never let one datagram stop the agent; the core should not raise, so this is a bug report.
            logger.exception("error handling datagram from %s: %r", addr, data[:64])
            return
        self._perform(outputs)  # the socket calls _after once its batch is read

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._perform(self.core.tick(self._loop.time()))
        except Exception:
            # A bug, but keepalives must go on: try again in a second rather than spin or stop.
            logger.exception("error in timer tick")
            self._emit()
            self._timer = self._loop.call_later(1.0, self._on_timer)
            return
        self._after()

    def _request(self, outputs: list[Output]) -> None:
        self._perform(outputs)
        self._after()

    def _perform(self, outputs: list[Output]) -> None:
        # Dispatch on the exact type: a match on class patterns costs several times more per output.
        sock = self._socket
        for output in outputs:
            kind = type(output)
            if kind is Emit:
                self._events.append(output.event)  # type: ignore[union-attr]
            elif kind is Send:
                if sock is not None:
                    wire = output.wire  # type: ignore[union-attr]
                    data = encode(output.message) if wire is None else wire  # type: ignore[union-attr]
                    sock.sendto(data, output.to.sockaddr())  # type: ignore[union-attr]
            elif kind is SendRaw:
                if sock is not None:
                    sock.sendto(output.data, output.to.sockaddr())  # type: ignore[union-attr]
            elif kind is TunnelIn:
                self.tunnel.from_relay(output.data, output.source)  # type: ignore[union-attr]
            else:
                assert isinstance(output, Log)
                self._emit()  # the lines in the order the core gave them
                logger.log(output.level, output.text)

    def _after(self) -> None:
        """After a batch of datagrams, a tick or a request: its events, the tunnel's inbound maps (a path
        confirmed or lost in it: a peer's datagrams are taken from its new path at once, not at the
        tunnel's next sync), the timer and whoever waits for a change."""
        self._emit()
        if self.tunnel.up:
            self.tunnel.refresh()
        self._reschedule()
        self._wake()

    def _emit(self) -> None:
        """The events performed since the last call: settle their messages' outcomes, then write them to the
        event log in one write, log their lines and offer them to the subscribers. Performed events wait
        here until the batch (of datagrams, or a flood's run of messages) ends: a flood's events are then
        written a few hundred at a time, not one by one. One ``ts`` for them all, as one write puts them in
        the log."""
        events = self._events
        if not events:
            return
        self._events = []
        ts = time.time()
        lines = []
        for ev in events:
            kind = type(ev)
            if kind is MessageDelivered or kind is MessageUndelivered:
                self._settle(ev)  # type: ignore[arg-type]
            elif kind is Registered:
                # The container healthcheck is `test -f` on this file: a file test costs far less CPU than
                # starting Python to ask the agent, and healthchecks run several times a second.
                _touch(self.config.ready_file)
            lines.append(ev.json_line(ts))
        self.events.write(lines)
        now = self._loop.time()
        for ev, line in zip(events, lines, strict=True):
            level = self._lines.level(now) if type(ev) in _MESSAGE_LINES else logging.INFO
            if logger.isEnabledFor(level):
                human = describe(ev)
                logger.log(level, human.text, extra={"speaker": human.speaker})
            for subscription in self.subscriptions:
                subscription.offer(ev, line)

    def _settle(self, ev: MessageDelivered | MessageUndelivered) -> None:
        """A message was settled: whoever waits for its outcome is told, and a full window has room again."""
        self._settled.set()
        outcome = self._outcomes.pop(ticket_of(ev), None)
        reason = ev.reason if isinstance(ev, MessageUndelivered) else None
        if isinstance(outcome, Tally):
            outcome.settle(reason)
        elif outcome is not None and not outcome.done():
            outcome.set_result(reason)

    def _reschedule(self) -> None:
        """Arm the timer for the core's wakeup, unless it is armed for that time or earlier already: it then
        fires early, the tick finds nothing to do, and this arms it again (cheaper than re-arming per datagram
        as a flood's acks keep moving the wakeup later)."""
        if self._socket is None or self._socket.closed:
            return
        at = self.core.wakeup()
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._on_timer)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class _TunnelCarrier:
    """The agent as the tunnel's carrier (:class:`client.tunnel.links.Carrier`): routes and keys from the
    core, datagrams out of the agent's one socket, straight or through its relay."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def route(self, peer_id: str) -> tuple[Route, Endpoint] | None:
        return self._agent.core.route(peer_id)

    def confirmed(self, peer_id: str) -> tuple[Endpoint | None, Endpoint | None]:
        return self._agent.core.confirmed(peer_id)

    def confirmed_version(self) -> object:
        return self._agent.core.confirmed_version()

    def peer_key(self, peer_id: str) -> bytes | None:
        return self._agent.core.peer_box_key(peer_id)

    def send_direct(self, data: bytes, addr: tuple[str, int]) -> None:
        sock = self._agent._socket
        if sock is not None:
            sock.sendto(data, addr)

    def send_relayed(self, data: bytes, to: Endpoint) -> None:
        agent = self._agent
        agent._perform(agent.core.relay_datagram(to, data, agent._loop.time()))

    def sent(self, peer_id: str) -> None:
        """A batch of tunnel datagrams went out to ``peer_id``: the core notes the traffic (its direct path's
        active check), and what the relay did (a refresh, say) or a check now due is followed up."""
        agent = self._agent
        if agent.core.tunnel_sent(peer_id, agent._loop.time()) or agent._events:
            agent._after()

    def local_port(self) -> int | None:
        """The agent's UDP port (the one the punch opened the NATs for), or ``None`` before it is bound."""
        sock = self._agent._socket
        return None if sock is None or sock.closed else sock.port

    def connect(self, peer_id: str) -> None:
        """Ask for a path (the tunnel's own connect: no one waits for it; a refusal is a debug line)."""
        agent = self._agent
        try:
            agent._request(agent.core.connect(peer_id, agent._loop.time()))
        except RequestError as exc:
            logger.debug("tunnel: no connect to %s yet: %s", peer_id, exc)


_MESSAGE_LINES = frozenset((MessageSent, MessageReceived, MessageDelivered))
"""Events whose log line is rate-limited (:class:`MessageLines`); an undelivered message is always shown."""


def _touch(path: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()
    except OSError as exc:
        logger.warning("cannot write ready file %s: %s", path, exc.strerror)


def _route_ip(server: Endpoint, fallback: str) -> str:
    """The local IP the kernel would use to reach the server (what ``local`` in status should show)."""
    with socket.socket(server.family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(server.sockaddr())  # a UDP connect sends nothing; it only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return fallback


async def _tunnel_at_start(agent: Agent) -> None:
    """NATLAB_TUNNEL=1: the tunnel comes up at start; if it cannot, the agent runs on and says why."""
    try:
        await agent.tunnel_up()
    except RequestError as exc:
        logger.error("%s (NATLAB_TUNNEL=1)", exc)


async def run(config: AgentConfig) -> int:
    """Run the agent until SIGTERM or SIGINT; returns the exit status. ``config`` holds the identity
    (:func:`client.daemon.config.with_identity` loads it first)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        events = EventLog(config.events)
    except OSError as exc:
        raise AgentStartError(f"cannot open event log {config.events}: {exc.strerror}") from None
    with events:
        agent = Agent(config, events)
        await agent.open()
        try:
            async with ControlServer(agent, config.socket):
                logger.info("listening on %s as %s (control %s)", agent.local, config.id, config.socket)
                starting = loop.create_task(_tunnel_at_start(agent)) if config.tunnel else None
                await stop.wait()
                if starting is not None:
                    starting.cancel()
        finally:
            await agent.tunnel_down()  # wireguard-go is the agent's: it stops with it
            agent.close()
    logger.info("stopped")
    return 0
