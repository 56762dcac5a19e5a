"""The signal server's asyncio shell: UDP datagram -> :class:`~server.handler.Handler` -> ``sendto``.

All decisions live in the handler and the peer table; this module only owns the socket, the clock, the
periodic expiry and the state file. It must never die on one bad datagram: anything the handler raises
is logged with its traceback, counted as ``counters["error"]``, and the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from protocol import Endpoint
from server.auth import Gate
from server.handler import Handler
from server.ratelimit import DEFAULT_BURST, DEFAULT_MAX_SOURCES, DEFAULT_RATE, RequestLimiter
from server.state import StateWriter, render_state
from server.table import DEFAULT_IDS_PER_IP, DEFAULT_MAX_PEERS, DEFAULT_TTL, DEFAULT_UNKEYED_SHARE, PeerTable
from trust import DEFAULT_MAX_KEYS, Registry, ReplayGuard

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
DEFAULT_LISTEN = Endpoint("127.0.0.1", DEFAULT_PORT)


@dataclass(frozen=True)
class Config:
    listen: Endpoint = DEFAULT_LISTEN
    """Where to listen; port 0 picks a free port (see :attr:`SignalServer.address`)."""
    state_file: Path | None = None
    peer_ttl: float = DEFAULT_TTL
    """Seconds a peer stays without a datagram: three keepalive intervals (``--keepalive-interval``)."""
    max_peers: int = DEFAULT_MAX_PEERS
    ids_per_ip: int = DEFAULT_IDS_PER_IP
    unkeyed_share: float = DEFAULT_UNKEYED_SHARE
    rate: float = DEFAULT_RATE
    """Requests per second per source; 0: no token bucket (a load generator on loopback, say)."""
    burst: int = DEFAULT_BURST
    max_sources: int = DEFAULT_MAX_SOURCES
    """Token buckets kept (one per source), least recently used forgotten first."""
    expire_interval: float = 5.0
    state_interval: float = 0.5
    registry: Registry | None = None
    """Keyed ids and their public keys (``--registry``): admitted only with a proof by their key."""
    require_keys: bool = False
    """Refuse v2 ids that are not in the registry (``--require-keys``) rather than bind them on first use."""
    max_proof_keys: int = DEFAULT_MAX_KEYS
    """Signing keys the replay guard remembers (``--max-proof-keys``), the key admitted longest ago forgotten
    first."""

    def handler(self) -> Handler:
        """A handler with this configuration's peer table, request limit, keyed ids and replay guard."""
        table = PeerTable(self.peer_ttl, self.max_peers, self.ids_per_ip, self.unkeyed_share)
        limiter = RequestLimiter(self.rate, self.burst, self.max_sources) if self.rate > 0 else None
        gate = Gate(self.registry, self.require_keys, ReplayGuard(max_keys=self.max_proof_keys))
        return Handler(table, limiter, gate=gate)


class SignalProtocol(asyncio.DatagramProtocol):
    """Receives datagrams, asks the handler what to send, sends it.

    Replies go out through the socket itself (``sock``, when given), not the transport: uvloop's transport
    closes itself for good when one send fails (a reply to a forged source the server has no route to,
    ENETUNREACH, or to a broadcast address, EACCES), and the server would go deaf while still running. A
    failed send is one lost reply, logged at debug level, as the network may lose any."""

    def __init__(self, handler: Handler, on_datagram: Callable[[], None], sock: socket.socket | None = None) -> None:
        self.handler = handler
        self.on_datagram = on_datagram
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            source = Endpoint.of((addr[0], addr[1]))
            replies = self.handler.handle(data, source, time.monotonic(), time.time_ns() // 1_000_000)
            for payload, destination in replies:
                self._send(payload, destination)
            self.on_datagram()
        except Exception:
            self.handler.counters["error"] += 1
            log.exception("error handling %d bytes from %s:%s", len(data), addr[0], addr[1])

    def _send(self, payload: bytes, destination: Endpoint) -> None:
        if self.sock is None:
            assert self.transport is not None  # datagrams only arrive after connection_made
            self.transport.sendto(payload, destination.sockaddr())
            return
        try:
            self.sock.sendto(payload, destination.sockaddr())
        except OSError as exc:  # no route, not allowed, or a full send buffer: this reply is lost
            log.debug("cannot send %d bytes to %s: %s", len(payload), destination, exc)

    def error_received(self, exc: Exception) -> None:
        # On Linux an ICMP port unreachable (a peer's socket or NAT mapping is gone) surfaces here.
        log.debug("socket error: %s", exc)


class SignalServer:
    """One running signal server: ``async with SignalServer(config) as server: ... server.address``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.handler = config.handler()
        self.started = time.time()
        self._transport: asyncio.DatagramTransport | None = None
        self._writer: StateWriter | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def address(self) -> Endpoint:
        """The bound address (the real port when listening on port 0)."""
        if self._transport is None:
            raise RuntimeError("server not started")
        return Endpoint.of(self._transport.get_extra_info("sockname"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self.config.listen.family, socket.SOCK_DGRAM)
        try:
            sock.bind(self.config.listen.sockaddr())
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        protocol = SignalProtocol(self.handler, self._changed, sock)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        self._transport = transport
        log.info("listening on %s", self.address)
        if self.config.state_file is not None:
            self._writer = StateWriter(
                self.config.state_file, self._render, self._fingerprint, self.config.state_interval
            )
            self._writer.write()  # once listening: the healthcheck waits for a non-empty file
        self._expiry = asyncio.create_task(self._expire_forever())

    async def close(self) -> None:
        """Stop listening and write the final state; safe to call twice."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        if self._writer is not None:
            self._writer.write()
            self._writer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> SignalServer:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _expire_forever(self) -> None:
        # Lookups already ignore expired peers; this removes them so logs and the state file show it.
        while True:
            await asyncio.sleep(self.config.expire_interval)
            try:
                self.handler.expire(time.monotonic())
                self._changed()
            except Exception:
                log.exception("error expiring peers")

    def _changed(self) -> None:
        if self._writer is not None:
            self._writer.poke()

    def _fingerprint(self) -> object:
        return (self.handler.table.version, sum(self.handler.counters.values()))

    def _render(self) -> dict[str, Any]:
        now = time.monotonic()
        peers = self.handler.table.snapshot(now)
        return render_state(
            self.address,
            started=self.started,
            peers=peers,
            gone=self.handler.presence.gone(),
            counters=self.handler.counters,
            now=now,
            wall_now=time.time(),
        )


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run a server until ``stop`` is set."""
    async with SignalServer(config):
        await stop.wait()
