"""The agent's side of the tunnel: WireGuard's datagrams on each peer's path of the moment, chosen by the agent.

As Tailscale's magicsock does, WireGuard never chooses a path: the agent does, and WireGuard's datagrams go
only where it says, from the agent's own UDP port (the one the punch opened the NATs for). Two carriers:

- The agent itself, always ready: each peer has a UDP socket of the agent on ``127.0.0.1`` (an ephemeral port,
  connected to WireGuard's port) that can be the peer's WireGuard endpoint. What WireGuard sends to it, the
  agent sends on the peer's route, from its own socket: straight to the confirmed direct address, or through
  the TURN allocation to the peer's relayed address (ChannelData), as the agent's own frames go. What arrives
  from that peer's confirmed direct address or relay, shaped as WireGuard
  (:func:`protocol.wireguard.is_wireguard`), is written to WireGuard from that socket. A WireGuard datagram
  from anywhere else is dropped and counted, never forwarded.
- The kernel, for a peer whose route is direct (:mod:`client.tunnel.steering`): the peer's address goes into
  an nftables set, WireGuard's endpoint for the peer becomes that address, and the kernel rewrites the port
  of its datagrams each way, so none passes through Python (the agent's carrying held TCP to a fifth of raw
  UDP on 2 cores and added 1-4 ms to a ping). When the route leaves the direct path (lost, say), the endpoint
  goes back to the loopback socket before the address leaves the set: the agent carries again, through the
  relay. The switch is one UAPI request and one nftables transaction, a few milliseconds.

WireGuard moves a peer's endpoint to wherever its latest authenticated datagram came from (roaming): a
datagram the agent writes from the loopback socket (the peer still sent on the relay, a moment after our
switch to direct) moves it there, and the agent then carries what WireGuard sends until it moves the
endpoint back (at most once a second, :data:`REASSERT`); one from the steered address moves it back by itself.

Carried by the agent, the work per datagram is a dict lookup and a ``send``: reads from WireGuard are drained
in batches (as :mod:`client.daemon.udp` drains the agent's socket), the route looked up once per batch; the
inbound address maps (each peer's confirmed paths) and the kernel's set are brought up to date once per batch
of the agent's (:meth:`Tunnel.refresh`). The agent is told that traffic went out to a peer (:meth:`Carrier.sent`:
the direct path's active check, :meth:`client.engine.path.Path.check`, watches for the peer's answers while it
is used) once per batch it carries, and, for a peer the kernel carries, when WireGuard's byte count for it
grew (looked at every :data:`WATCH_PERIOD` s).

Which peers: every id of the lab's registry with an overlay address (``trust.overlay``) that has a path (direct
or relay) and whose key came in our server's punch (it is the peer's WireGuard key, ``trust.wireguard``). While
the tunnel is up the agent also asks for a path to every such id that has none (a connect, retried with a
backoff), so ``ping bob.natlab`` works without a ``client connect`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tenacity

from client.engine.routes import Route
from client.tunnel import hosts
from client.tunnel.device import Device, TunnelError
from client.tunnel.steering import Steering, steerable
from protocol import Endpoint
from trust import Identity, KeyFileError, Registry
from trust.wireguard import PeerState, private_key, remove_peer, set_endpoint, set_peer

logger = logging.getLogger("client")

DEFAULT_PORT = 51820
"""WireGuard's listen port on each host: only the agent reaches it (loopback; nftables drops the rest)."""
BATCH = 256
"""Most datagrams read from one loopback socket in one callback."""
BUFFER = 4 << 20
"""Loopback socket buffers asked for, as the agent's own socket's (:data:`client.daemon.udp.BUFFER`): WireGuard
sends a TCP window's burst at once, faster than the agent reads it."""
SYNC_PERIOD = 1.0
"""Seconds between looks at the registry and the peers (new peers, keys, connects); routes are followed
after every batch of the agent's, not at this pace."""
CONNECT_RETRY = (2.0, 60.0)
"""A connect to a registry peer with no path is repeated after 2 s, doubling to 60 s."""
REGISTRY_WAIT = 10.0
"""Seconds ``up`` waits for the registry to hold our own overlay address (the server writes it at lab start)."""
REGISTRY_POLL = 0.1
"""Seconds between reads of the registry while ``up`` waits for it."""
KEEPALIVE = 25
"""WireGuard's persistent keepalive (seconds): keeps the peers' handshakes fresh while the tunnel is idle."""
WATCH_PERIOD = 0.1
"""Seconds between looks at WireGuard's byte counts while the kernel carries a peer: traffic to it is what the
direct path's active check watches (CHECK_QUIET is 0.5 s: this adds at most a tenth of a second to a cut)."""
REASSERT = 1.0
"""Seconds at least between two moves of a kernel-carried peer's endpoint back from the loopback socket."""


class Carrier(Protocol):
    """What the tunnel needs from the agent: peers' routes and keys, the agent's socket and relay, connects."""

    def route(self, peer_id: str) -> tuple[Route, Endpoint] | None: ...
    def confirmed(self, peer_id: str) -> tuple[Endpoint | None, Endpoint | None]: ...
    def confirmed_version(self) -> object: ...
    def peer_key(self, peer_id: str) -> bytes | None: ...
    def send_direct(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def send_relayed(self, data: bytes, to: Endpoint) -> None: ...
    def sent(self, peer_id: str) -> None: ...
    def connect(self, peer_id: str) -> None: ...
    def local_port(self) -> int | None: ...


@dataclass
class Link:
    """One peer of the tunnel: its loopback socket (its WireGuard endpoint) and where its datagrams go now."""

    peer_id: str
    overlay: ipaddress.IPv4Address
    public: bytes
    sock: socket.socket
    paths: tuple[Endpoint | None, Endpoint | None] = (None, None)
    """The peer's confirmed direct address and relayed address (either may be ``None``): where its datagrams
    are taken from. Both, not only the route in use: while a path switches, the two sides switch a moment
    apart, and the peer may already send on the path we do not use yet."""
    carried_out: int = 0
    """Datagrams from WireGuard sent to the peer."""
    carried_in: int = 0
    """Datagrams from the peer written to WireGuard."""
    no_path: int = 0
    """Datagrams from WireGuard dropped because the peer had no path at the time."""
    want: Endpoint | None = None
    """Where the kernel should carry the peer: its direct route's address, or ``None`` (the agent carries it)."""
    steered: Endpoint | None = None
    """The address WireGuard was last told for the peer (``None``: the loopback socket)."""
    roamed: bool = False
    """WireGuard moved the endpoint to the loopback socket while the kernel carries the peer: tell it again."""
    reassert_at: float = 0.0
    """The loop's time before which the endpoint is not moved back again (:data:`REASSERT`)."""
    tx_seen: int = 0
    """WireGuard's bytes sent to the peer at the last look (:data:`WATCH_PERIOD`)."""

    @property
    def endpoint(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)


@dataclass
class Retry:
    at: float = 0.0
    wait: float = CONNECT_RETRY[0]


@dataclass
class Counters:
    not_peer: int = 0
    """WireGuard-shaped datagrams from an address that is no peer's current path (dropped)."""
    down: int = 0
    """WireGuard-shaped datagrams while the tunnel was down (dropped)."""
    unwritable: int = 0
    """Datagrams WireGuard's socket would not take (dropped, as the network might)."""

    def as_json(self) -> dict[str, int]:
        return {"not_peer": self.not_peer, "down": self.down, "unwritable": self.unwritable}


@dataclass
class TunnelConfig:
    own_id: str
    identity: Identity
    registry: Path
    port: int = DEFAULT_PORT
    hosts_file: Path = hosts.HOSTS_FILE
    connect: bool = True
    """Ask for a path to every registry peer that has none; ``False`` (NATLAB_TUNNEL_CONNECT=0): carry only the
    peers that have one (the grid, whose attempts each start from scratch)."""
    kernel: bool = True
    """Let the kernel carry peers on a direct path (:mod:`client.tunnel.steering`); ``False``
    (NATLAB_TUNNEL_KERNEL=0): the agent carries every datagram (the bench compares the two)."""


class Tunnel:
    """The tunnel's state in the agent: down, or up with its device and links. See the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: TunnelConfig, carrier: Carrier) -> None:
        self._loop = loop
        self.config = config
        self._carrier = carrier
        self.device = Device()
        self.steering = Steering()
        self.up = False
        self.address: ipaddress.IPv4Address | None = None
        self.reason: str | None = None
        self.counters = Counters()
        self._registry: Registry = Registry()
        self._registry_mtime: float | None = None
        self._links: dict[str, Link] = {}
        self._direct: dict[tuple[str, int], Link] = {}
        self._relayed: dict[Endpoint, Link] = {}
        self._retries: dict[str, Retry] = {}
        self._version: object = None  # the carrier's confirmed_version the inbound maps were made at
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._steerer: asyncio.Task[None] | None = None
        self._busy = asyncio.Lock()

    # -- up and down ---------------------------------------------------------------------------------

    async def bring_up(self) -> None:
        """Start WireGuard on natlab0 with our identity's key at our overlay address, write the names, and
        carry every peer that has a path. :class:`TunnelError` with the reason (the tools' own words)."""
        async with self._busy:
            if self.up:
                return
            try:
                self.address = await self._own_address()
                await self.device.start(private_key(self.config.identity), self.config.port, self.address)
                agent_port = self._carrier.local_port() if self.config.kernel else None
                await self.steering.install(self.config.port, agent_port)
                self.up = True
                self.reason = None
                self._write_hosts()
            except (TunnelError, OSError) as exc:
                self.reason = str(exc)
                self.up = False
                await self.device.stop()
                await self.steering.uninstall()
                raise TunnelError(self.reason) from None
            logger.info(
                "tunnel up: %s at %s, WireGuard on port %d, direct peers carried by %s",
                self.device.interface,
                self.address,
                self.config.port,
                "the kernel" if self.steering.steering else "the agent",
            )
            self._spawn(self._watch())
            self.sync()

    async def bring_down(self) -> None:
        """Stop WireGuard, close the links, remove the names; quiet when already down."""
        async with self._busy:
            was_up, self.up = self.up, False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for link in list(self._links.values()):
                self._close(link)
            self._direct.clear()
            self._relayed.clear()
            for task in list(self._tasks):
                task.cancel()
            await self.device.stop()
            await self.steering.uninstall()
            with contextlib.suppress(OSError):
                text = self.config.hosts_file.read_text(encoding="utf-8")
                hosts.write_in_place(self.config.hosts_file, hosts.without_block(text))
            if was_up:
                logger.info("tunnel down")

    async def _own_address(self) -> ipaddress.IPv4Address:
        """Our overlay address, once the registry holds it (the server writes it as the lab starts)."""

        async def lookup() -> ipaddress.IPv4Address | None:
            self._load_registry()
            return self._registry.overlay.get(self.config.own_id)

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda address: address is None),
            stop=tenacity.stop_after_delay(REGISTRY_WAIT),
            wait=tenacity.wait_fixed(REGISTRY_POLL),
        )
        try:
            address: ipaddress.IPv4Address = await retrying(lookup)
        except tenacity.RetryError:
            raise TunnelError(f"no overlay address for {self.config.own_id} in {self.config.registry}") from None
        return address

    def _load_registry(self) -> bool:
        """Read the registry again if it changed; whether it did."""
        try:
            mtime = self.config.registry.stat().st_mtime
        except OSError:
            return False
        if mtime == self._registry_mtime:
            return False
        try:
            self._registry = Registry.load(self.config.registry)
        except KeyFileError as exc:
            logger.warning("tunnel: %s", exc)
            return False
        self._registry_mtime = mtime
        return True

    def _write_hosts(self) -> None:
        try:
            text = self.config.hosts_file.read_text(encoding="utf-8")
            hosts.write_in_place(self.config.hosts_file, hosts.with_block(text, self._registry.overlay))
        except OSError as exc:
            logger.warning("tunnel: cannot write %s: %s", self.config.hosts_file, exc.strerror)

    # -- peers ---------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Look at the registry and every registry peer: make links for peers with a path and a key, follow
        key changes, ask for paths that are missing. Then again in :data:`SYNC_PERIOD` s."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.up:
            return
        if self._load_registry():
            self._write_hosts()
        now = self._loop.time()
        for peer_id, overlay in self._registry.overlay.items():
            if peer_id == self.config.own_id:
                continue
            route = self._carrier.route(peer_id)
            key = self._carrier.peer_key(peer_id)
            link = self._links.get(peer_id)
            if link is not None and ((key is not None and key != link.public) or link.overlay != overlay):
                self._close(link)
                self._spawn(self._device_request(remove_peer(link.public)))
                link = None
            if link is None and route is not None and key is not None:
                self._open(peer_id, overlay, key)
            if route is None and self.config.connect:
                self._connect(peer_id, now)
            else:
                self._retries.pop(peer_id, None)
        self.refresh(force=True)
        self._timer = self._loop.call_later(SYNC_PERIOD, self.sync)

    def _connect(self, peer_id: str, now: float) -> None:
        retry = self._retries.setdefault(peer_id, Retry())
        if now < retry.at:
            return
        retry.at = now + retry.wait
        retry.wait = min(retry.wait * 2, CONNECT_RETRY[1])
        self._carrier.connect(peer_id)

    def _open(self, peer_id: str, overlay: ipaddress.IPv4Address, key: bytes) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.1", self.config.port))  # hears WireGuard only
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
        except OSError as exc:
            sock.close()
            logger.warning("tunnel: no loopback socket for %s: %s", peer_id, exc.strerror)
            return
        link = Link(peer_id, overlay, key, sock)
        self._links[peer_id] = link
        self._loop.add_reader(sock.fileno(), self._from_wireguard, link)
        self._spawn(self._device_request(set_peer(key, link.endpoint, overlay, KEEPALIVE)))
        logger.info("tunnel: %s.natlab (%s) via loopback %s:%d", peer_id, overlay, *link.endpoint)

    def _close(self, link: Link) -> None:
        self._links.pop(link.peer_id, None)
        self._set_paths(link, (None, None))
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(link.sock.fileno())
        link.sock.close()

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _device_request(self, request: str) -> None:
        try:
            await self.device.uapi(request)
        except TunnelError as exc:
            logger.warning("tunnel: %s", exc)

    def refresh(self, force: bool = False) -> None:
        """Follow each link's confirmed paths and route (after a batch of the agent's datagrams, a tick or a
        request, and on a datagram no map knows): the inbound maps hold each peer's confirmed direct address
        and relayed address, nothing else, looked at only when a path changed (the carrier's version) or on
        ``force``; the kernel carries the peers whose route is direct (a route lookup per link)."""
        version = self._carrier.confirmed_version()
        if version != self._version or force:
            self._version = version
            confirmed = self._carrier.confirmed
            for peer_id, link in self._links.items():
                now = confirmed(peer_id)
                if now != link.paths:
                    self._set_paths(link, now)
        self._follow_routes()

    # -- the kernel's path ---------------------------------------------------------------------------

    def _follow_routes(self) -> None:
        """Each link's wanted carrier from its route; any change starts :meth:`_steer` (unless it runs)."""
        kernel = self.steering.steering
        changed = False
        for link in self._links.values():
            want = None
            if kernel:
                route = self._carrier.route(link.peer_id)
                if route is not None and route[0] is Route.DIRECT and steerable(route[1]):
                    want = route[1]
            if want != link.want:
                link.want = want
                changed = True
        if changed:
            self._start_steering()

    def _start_steering(self) -> None:
        if self.up and (self._steerer is None or self._steerer.done()):
            self._steerer = self._loop.create_task(self._steer())
            self._tasks.add(self._steerer)
            self._steerer.add_done_callback(self._tasks.discard)

    async def _steer(self) -> None:
        """Make the kernel's set and WireGuard's endpoints what the links want, until they stay so: addresses
        join the set before WireGuard is sent to them, and leave it after WireGuard was moved off them."""
        while self.up:
            links = list(self._links.values())
            wanted = {link.want for link in links if link.want is not None}
            joining = wanted - self.steering.members
            moving = [link for link in links if link.steered != link.want or link.roamed]
            leaving = self.steering.members - wanted
            if not joining and not moving and not leaving:
                return
            try:
                await self.steering.update(add=joining)
                for link in moving:
                    if self._links.get(link.peer_id) is not link:
                        continue  # closed meanwhile: its WireGuard peer is gone or going
                    want, link.roamed = link.want, False
                    await self.device.uapi(
                        set_endpoint(link.public, link.endpoint if want is None else want.sockaddr())
                    )
                    if link.steered != want:
                        logger.info(
                            "tunnel: %s carried by %s",
                            link.peer_id,
                            "the agent" if want is None else f"the kernel to {want}",
                        )
                    link.steered = want
                await self.steering.update(remove=leaving)
            except TunnelError as exc:
                if not self.steering.steering:
                    # Moving WireGuard back to the agent failed too (wireguard-go gone, say): nothing more to do
                    # here; the next status says what is wrong.
                    logger.warning("tunnel: %s", exc)
                    return
                self._kernel_off(str(exc))

    def _kernel_off(self, reason: str) -> None:
        """The kernel's path failed (a tool refused): the agent carries every peer from now on."""
        logger.warning("tunnel: the kernel path is off, the agent carries every peer: %s", reason)
        self.steering.steering = False
        self.steering.members.clear()  # what is left in the set only lets a peer's datagrams reach WireGuard
        for link in self._links.values():
            link.want = None

    async def _watch(self) -> None:
        """While the tunnel is up: every :data:`WATCH_PERIOD` s, tell the agent of traffic to each peer the
        kernel carries (WireGuard's bytes sent grew), as it is told of each batch it carries itself. A poll at
        a fixed pace, not a wait: the kernel says nothing when it forwards."""
        while self.up:
            await asyncio.sleep(WATCH_PERIOD)
            steered = [link for link in self._links.values() if link.steered is not None]
            if not steered:
                continue
            try:
                states = await self.device.peers()
            except TunnelError:
                continue  # wireguard-go gone: bring_down or the next status says so
            for link in steered:
                state = states.get(link.public)
                if state is not None and state.tx_bytes > link.tx_seen:
                    link.tx_seen = state.tx_bytes
                    self._carrier.sent(link.peer_id)

    def _set_paths(self, link: Link, paths: tuple[Endpoint | None, Endpoint | None]) -> None:
        direct, relayed = link.paths
        if direct is not None and self._direct.get(direct.sockaddr()) is link:
            del self._direct[direct.sockaddr()]
        if relayed is not None and self._relayed.get(relayed) is link:
            del self._relayed[relayed]
        link.paths = direct, relayed = paths
        if direct is not None:
            self._direct[direct.sockaddr()] = link
        if relayed is not None:
            self._relayed[relayed] = link

    # -- datagrams -----------------------------------------------------------------------------------

    def from_direct(self, data: bytes, addr: tuple[str, int]) -> None:
        """A WireGuard datagram on the agent's socket from ``addr``: to WireGuard if it is a peer's direct path.

        Not in the map: maybe a path confirmed earlier in the agent's batch still being read (the peer moved
        to it at our answer, a round trip ago), so the maps are brought up to date first (O(1) if no path
        changed): a path switch drops none of the datagrams that arrive on the new path."""
        link = self._direct.get(addr)
        if link is None:
            self.refresh()
            link = self._direct.get(addr)
        self._to_wireguard(link, data)

    def from_relay(self, data: bytes, source: Endpoint) -> None:
        """A WireGuard datagram through our relay from ``source``: to WireGuard if it is a peer's relay path."""
        link = self._relayed.get(source)
        if link is None:
            self.refresh()
            link = self._relayed.get(source)
        self._to_wireguard(link, data)

    def _to_wireguard(self, link: Link | None, data: bytes) -> None:
        """``data`` to WireGuard from ``link``'s socket; with no link (not a peer's path), dropped and counted."""
        if link is None:
            if self.up:
                self.counters.not_peer += 1
            else:
                self.counters.down += 1
            return
        try:
            link.sock.send(data)
            link.carried_in += 1
        except OSError:  # full buffer, or WireGuard gone: dropped, as the network might
            self.counters.unwritable += 1

    def _from_wireguard(self, link: Link) -> None:
        """WireGuard sent datagrams to ``link``'s socket: all of them (up to a batch) on the peer's route."""
        recv = link.sock.recv
        route = self._carrier.route(link.peer_id)
        carrier = self._carrier
        sent = 0
        for _ in range(BATCH):
            try:
                data = recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # an ICMP error for an earlier send to WireGuard
            if route is None:
                link.no_path += 1
            elif route[0] is Route.DIRECT:
                carrier.send_direct(data, route[1].sockaddr())
                sent += 1
            else:
                carrier.send_relayed(data, route[1])
                sent += 1
        if sent:
            link.carried_out += sent
            carrier.sent(link.peer_id)  # once a batch: the direct path's active check watches for answers
            if link.steered is not None and link.steered == link.want:
                self._reassert(link)

    def _reassert(self, link: Link) -> None:
        """WireGuard sent to the loopback socket of a peer the kernel carries: it roamed there (a datagram of
        the peer's came through the agent); move it back, at most once a :data:`REASSERT`."""
        now = self._loop.time()
        if now >= link.reassert_at:
            link.reassert_at = now + REASSERT
            link.roamed = True
            self._start_steering()

    # -- status --------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The ``tunnel`` object of status JSON: up or not (and why not), our address, and per peer its
        overlay address, the path carrying it, WireGuard's latest handshake and bytes each way."""
        states: dict[bytes, PeerState] = {}
        reason = self.reason
        if self.up:
            try:
                states = await self.device.peers()
            except TunnelError as exc:
                reason = str(exc)
        wall = time.time()
        peers = []
        for peer_id, link in sorted(self._links.items()):
            state = states.get(link.public)
            handshake = None if state is None or not state.last_handshake else state.last_handshake
            route = self._carrier.route(peer_id)
            peers.append(
                {
                    "id": peer_id,
                    "name": hosts.name(peer_id),
                    "overlay": str(link.overlay),
                    "path": str(Route.NONE if route is None else route[0]),
                    "endpoint": "{}:{}".format(*link.endpoint),
                    "latest_handshake": handshake,
                    "handshake_age_s": None if handshake is None else round(max(0.0, wall - handshake), 1),
                    "rx_bytes": 0 if state is None else state.rx_bytes,
                    "tx_bytes": 0 if state is None else state.tx_bytes,
                    "carrier": "agent" if link.steered is None else "kernel",
                    "carried_out": link.carried_out,
                    "carried_in": link.carried_in,
                    "no_path": link.no_path,
                }
            )
        return {
            "up": self.up,
            "interface": self.device.interface,
            "address": None if self.address is None or not self.up else str(self.address),
            "port": self.config.port,
            "kernel_path": self.up and self.steering.steering,
            "reason": reason,
            "peers": peers,
            "dropped": self.counters.as_json(),
        }

    def peer_ids(self) -> Iterable[str]:
        return self._links.keys()
