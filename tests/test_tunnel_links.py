"""The tunnel's links (client.tunnel.links) on real loopback sockets: what "WireGuard" (a UDP socket on the
tunnel's port) sends to a peer's loopback endpoint goes out on the peer's route, what comes from the peer's
current path reaches WireGuard from that endpoint, and anything else is dropped and counted. wireguard-go
itself is not here (scenarios/test_tunnel.py runs it): the device only records its UAPI requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.engine.routes import Route
from client.tunnel import links
from client.tunnel.device import TunnelError
from client.tunnel.links import Tunnel, TunnelConfig
from protocol import Endpoint
from trust import Identity, make_keys
from trust.wireguard import PeerState

WG = bytes([4, 0, 0, 0]) + bytes(60)
"""A transport-data-shaped datagram."""


class Device:
    interface = "natlab0"

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def uapi(self, request: str) -> str:
        self.requests.append(request)
        return "errno=0\n\n"

    async def peers(self) -> dict[bytes, object]:
        return {}

    async def stop(self) -> None:
        pass


class Carrier:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[Route, Endpoint] | None] = {}
        self.paths: dict[str, tuple[Endpoint | None, Endpoint | None]] = {}
        self.keys: dict[str, bytes] = {}
        self.direct: list[tuple[bytes, tuple[str, int]]] = []
        self.relayed: list[tuple[bytes, Endpoint]] = []
        self.connects: list[str] = []
        self.batches: list[str] = []

    def route(self, peer_id: str) -> tuple[Route, Endpoint] | None:
        return self.routes.get(peer_id)

    def confirmed(self, peer_id: str) -> tuple[Endpoint | None, Endpoint | None]:
        return self.paths.get(peer_id, (None, None))

    def confirmed_version(self) -> object:
        return object()  # never the same: the tests change the paths without telling

    def peer_key(self, peer_id: str) -> bytes | None:
        return self.keys.get(peer_id)

    def send_direct(self, data: bytes, addr: tuple[str, int]) -> None:
        self.direct.append((data, addr))

    def send_relayed(self, data: bytes, to: Endpoint) -> None:
        self.relayed.append((data, to))

    def sent(self, peer_id: str) -> None:
        self.batches.append(peer_id)

    def connect(self, peer_id: str) -> None:
        self.connects.append(peer_id)

    def local_port(self) -> int | None:
        return None


@pytest.fixture
def wireguard() -> Iterator[socket.socket]:
    """Stands in for WireGuard's port on loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


async def _up(
    tmp_path: Path, wireguard: socket.socket, carrier: Carrier, connect: bool = True
) -> tuple[Tunnel, Device]:
    made = make_keys(["alice", "bob", "carol"], tmp_path)
    alice = Identity.load(tmp_path / "keys" / "alice.json")
    port = wireguard.getsockname()[1]
    config = TunnelConfig("alice", alice, tmp_path / "registry.json", port, tmp_path / "hosts", connect=connect)
    (tmp_path / "hosts").write_text("127.0.0.1\tlocalhost\n")
    tunnel = Tunnel(asyncio.get_running_loop(), config, carrier)
    device = Device()
    tunnel.device = device  # type: ignore[assignment]
    tunnel._load_registry()
    tunnel.up = True
    carrier.keys["bob"] = made.registry["bob"].box
    return tunnel, device


async def _linked(tmp_path: Path, wireguard: socket.socket, carrier: Carrier) -> tuple[Tunnel, Device, int]:
    """A tunnel up whose link to bob is configured: the loopback port WireGuard was given for bob."""
    tunnel, device = await _up(tmp_path, wireguard, carrier)
    tunnel.sync()
    await _until(lambda: device.requests)
    endpoint = next(line for line in device.requests[0].splitlines() if line.startswith("endpoint="))
    host, port = endpoint.removeprefix("endpoint=").split(":")
    assert host == "127.0.0.1"
    return tunnel, device, int(port)


async def _until(condition: Callable[[], object], seconds: float = 2.0) -> None:
    """Poll the in-process condition (the loop runs the sockets' callbacks meanwhile), with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_without_connect_the_tunnel_carries_peers_with_a_path_and_asks_for_none(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    async def scenario() -> None:
        carrier = Carrier()
        carrier.routes["bob"] = (Route.DIRECT, Endpoint("198.18.0.12", 40000))
        tunnel, device = await _up(tmp_path, wireguard, carrier, connect=False)
        tunnel.sync()
        await _until(lambda: device.requests)
        assert "bob" in tunnel._links
        assert carrier.connects == []  # no path to carol, and none asked for (NATLAB_TUNNEL_CONNECT=0)
        await tunnel.bring_down()

    asyncio.run(scenario())


def test_a_peer_with_a_path_and_a_key_gets_a_loopback_endpoint_and_its_datagrams_go_both_ways(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    async def scenario() -> None:
        carrier = Carrier()
        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.routes["bob"] = (Route.DIRECT, bob_direct)
        carrier.paths["bob"] = (bob_direct, None)
        tunnel, device, port = await _linked(tmp_path, wireguard, carrier)
        request = device.requests[0]
        assert "allowed_ip=198.19.255.2/32\n" in request
        assert f"public_key={carrier.keys['bob'].hex()}\n" in request
        assert carrier.connects == ["carol"]  # no path to carol: the tunnel asks for one

        # WireGuard -> bob: out on the direct path.
        wireguard.sendto(WG, ("127.0.0.1", port))
        await _until(lambda: carrier.direct)
        assert carrier.direct == [(WG, bob_direct.sockaddr())]
        assert carrier.batches == ["bob"]  # the agent is told once per batch (the direct path's active check)

        # bob's direct path -> WireGuard, from bob's loopback endpoint; a stranger's is dropped and counted.
        tunnel.from_direct(WG + b"in", bob_direct.sockaddr())
        data, source = wireguard.recvfrom(100)
        assert (data, source) == (WG + b"in", ("127.0.0.1", port))
        tunnel.from_direct(WG, ("198.18.0.66", 40000))
        tunnel.from_relay(WG, Endpoint("198.18.0.20", 50000))
        assert tunnel.counters.not_peer == 2

        # The relay confirms too (direct still in use): datagrams are taken from both paths.
        relayed = Endpoint("198.18.0.20", 50123)
        carrier.paths["bob"] = (bob_direct, relayed)
        tunnel.refresh()
        tunnel.from_relay(WG + b"r", relayed)
        assert wireguard.recvfrom(100) == (WG + b"r", ("127.0.0.1", port))

        # Direct is lost, the route switches to the relay: WireGuard's endpoint stays, the datagrams follow.
        carrier.routes["bob"] = (Route.RELAY, relayed)
        carrier.paths["bob"] = (None, relayed)
        tunnel.refresh()
        wireguard.sendto(WG, ("127.0.0.1", port))
        await _until(lambda: carrier.relayed)
        assert carrier.relayed == [(WG, relayed)]
        tunnel.from_direct(WG, bob_direct.sockaddr())  # the old direct address is no path of bob's now
        assert tunnel.counters.not_peer == 3
        tunnel.from_relay(WG + b"r2", relayed)
        assert wireguard.recvfrom(100) == (WG + b"r2", ("127.0.0.1", port))

        # No path: dropped and counted, never sent.
        carrier.routes["bob"] = None
        carrier.paths["bob"] = (None, None)
        tunnel.refresh()
        wireguard.sendto(WG, ("127.0.0.1", port))
        await _until(lambda: tunnel._links["bob"].no_path == 1)

        status = await tunnel.status()
        assert status["peers"][0]["overlay"] == "198.19.255.2"
        assert status["peers"][0]["path"] == "none"
        await tunnel.bring_down()
        assert tunnel._direct == {}
        assert tunnel._relayed == {}

    asyncio.run(scenario())


def test_a_peer_without_a_key_from_the_punch_gets_no_link(tmp_path: Path, wireguard: socket.socket) -> None:
    async def scenario() -> None:
        carrier = Carrier()
        carrier.routes["bob"] = (Route.DIRECT, Endpoint("198.18.0.12", 40000))
        tunnel, device = await _up(tmp_path, wireguard, carrier)
        del carrier.keys["bob"]
        tunnel.sync()
        await asyncio.sleep(0.05)
        assert device.requests == []
        assert (await tunnel.status())["peers"] == []
        await tunnel.bring_down()

    asyncio.run(scenario())


def test_a_datagram_on_a_path_confirmed_since_the_last_refresh_is_taken(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    """A path switch back to direct: the peer moves its datagrams there at our answer, maybe before the
    agent's batch that confirmed the path has ended (when the maps are refreshed): a miss looks again."""

    async def scenario() -> None:
        carrier = Carrier()
        relayed = Endpoint("198.18.0.20", 50123)
        carrier.routes["bob"] = (Route.RELAY, relayed)
        carrier.paths["bob"] = (None, relayed)
        tunnel, _, port = await _linked(tmp_path, wireguard, carrier)
        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.paths["bob"] = (bob_direct, relayed)  # confirmed; no refresh yet
        tunnel.from_direct(WG + b"d", bob_direct.sockaddr())
        assert wireguard.recvfrom(100) == (WG + b"d", ("127.0.0.1", port))
        assert tunnel.counters.not_peer == 0
        await tunnel.bring_down()

    asyncio.run(scenario())


class Steering:
    """Stands in for the kernel path's table: records the set's changes in ``log`` (with the device's UAPI
    requests, so the order of the two shows); ``fail`` makes the next change refused, as nft might."""

    def __init__(self, log: list[str]) -> None:
        self.steering = True
        self.members: set[Endpoint] = set()
        self.log = log
        self.fail = False

    async def update(self, add: object = (), remove: object = ()) -> None:
        adding, removing = set(add) - self.members, set(remove) & self.members  # type: ignore[call-overload]
        if not adding and not removing:
            return
        if self.fail:
            raise TunnelError("nft: Error: Could not process rule: No such file or directory")
        self.members |= adding
        self.members -= removing
        self.log += [f"add {e}" for e in adding] + [f"remove {e}" for e in removing]

    async def uninstall(self) -> None:
        self.members.clear()


class LoggingDevice(Device):
    """Records each endpoint move in the shared log; ``tx`` is WireGuard's bytes sent to bob."""

    def __init__(self, log: list[str], bob: bytes) -> None:
        super().__init__()
        self.log = log
        self.bob = bob
        self.tx = 0
        self.gone = False

    async def uapi(self, request: str) -> str:
        if self.gone:
            self.log.append("refused")
            raise TunnelError("cannot reach wireguard-go at /var/run/wireguard/natlab0.sock: Connection refused")
        if "update_only=true" in request:
            self.log.append(next(line for line in request.splitlines() if line.startswith("endpoint=")))
        return await super().uapi(request)

    async def peers(self) -> dict[bytes, object]:
        return {self.bob: PeerState(self.bob, None, 0.0, 0, self.tx)}


async def _steered(
    tmp_path: Path, wireguard: socket.socket, carrier: Carrier
) -> tuple[Tunnel, LoggingDevice, Steering, list[str], int]:
    """A tunnel whose kernel path is on (fakes): its link to bob configured, bob's route as the carrier says."""
    log: list[str] = []
    tunnel, _, port = await _linked(tmp_path, wireguard, carrier)
    device = LoggingDevice(log, carrier.keys["bob"])
    steering = Steering(log)
    tunnel.device = device  # type: ignore[assignment]
    tunnel.steering = steering  # type: ignore[assignment]
    return tunnel, device, steering, log, port


def test_the_kernel_carries_a_direct_peer_and_hands_it_back_to_the_agent_when_the_route_leaves_it(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    """Direct: the address joins the set before WireGuard is sent there. Relay: WireGuard is moved back to
    the loopback socket before the address leaves the set (no datagram to it leaves un-steered)."""

    async def scenario() -> None:
        carrier = Carrier()
        relayed = Endpoint("198.18.0.20", 50123)
        carrier.routes["bob"] = (Route.RELAY, relayed)
        tunnel, _, steering, log, port = await _steered(tmp_path, wireguard, carrier)
        tunnel.refresh()
        await asyncio.sleep(0.01)
        assert log == []  # relayed: the agent carries it, nothing to steer

        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.routes["bob"] = (Route.DIRECT, bob_direct)
        tunnel.refresh()
        await _until(lambda: len(log) == 2)
        assert log == [f"add {bob_direct}", f"endpoint={bob_direct}"]
        status = await tunnel.status()
        assert status["peers"][0]["carrier"] == "kernel"

        carrier.routes["bob"] = (Route.RELAY, relayed)
        tunnel.refresh()
        await _until(lambda: len(log) == 4)
        assert log[2:] == [f"endpoint=127.0.0.1:{port}", f"remove {bob_direct}"]
        assert steering.members == set()
        assert (await tunnel.status())["peers"][0]["carrier"] == "agent"
        await tunnel.bring_down()

    asyncio.run(scenario())


def test_a_refused_change_turns_the_kernel_path_off_and_the_agent_carries_every_peer(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    async def scenario() -> None:
        carrier = Carrier()
        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.routes["bob"] = (Route.DIRECT, bob_direct)
        tunnel, _, steering, log, port = await _steered(tmp_path, wireguard, carrier)
        steering.fail = True
        tunnel.refresh()
        await _until(lambda: not steering.steering)
        await asyncio.sleep(0.01)
        assert log == []  # never sent to the address it could not steer
        assert (await tunnel.status())["peers"][0]["carrier"] == "agent"
        wireguard.sendto(WG, ("127.0.0.1", port))
        await _until(lambda: carrier.direct)  # the agent carries it, on the direct route
        await tunnel.bring_down()

    asyncio.run(scenario())


def test_wireguard_roaming_to_the_agent_is_undone_and_kernel_traffic_reaches_the_active_check(
    tmp_path: Path, wireguard: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A datagram of bob's through the agent (the relay, a moment after our switch to direct) moves
    WireGuard's endpoint to the loopback socket: the agent carries what WireGuard then sends and moves it
    back. Traffic the kernel carries reaches the agent as WireGuard's byte count growing."""
    monkeypatch.setattr(links, "WATCH_PERIOD", 0.01)

    async def scenario() -> None:
        carrier = Carrier()
        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.routes["bob"] = (Route.DIRECT, bob_direct)
        tunnel, device, _, log, port = await _steered(tmp_path, wireguard, carrier)
        tunnel._spawn(tunnel._watch())
        tunnel.refresh()
        await _until(lambda: len(log) == 2)

        device.tx = 1000
        await _until(lambda: carrier.batches == ["bob"])  # told once per growth, not per look
        await asyncio.sleep(0.05)
        assert carrier.batches == ["bob"]

        wireguard.sendto(WG, ("127.0.0.1", port))  # WireGuard roamed to the loopback socket
        await _until(lambda: len(log) == 3)
        assert carrier.direct == [(WG, bob_direct.sockaddr())]  # carried by the agent meanwhile
        assert log[2] == f"endpoint={bob_direct}"
        wireguard.sendto(WG, ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert len(log) == 3  # at most once a REASSERT
        await tunnel.bring_down()

    asyncio.run(scenario())


def test_with_wireguard_gone_the_kernel_path_gives_up_after_one_try_each_way(
    tmp_path: Path, wireguard: socket.socket
) -> None:
    """A refused move to the kernel turns the kernel path off, and the move back that follows is tried once:
    no loop of refused requests while wireguard-go is gone."""

    async def scenario() -> None:
        carrier = Carrier()
        bob_direct = Endpoint("198.18.0.12", 40000)
        carrier.routes["bob"] = (Route.DIRECT, bob_direct)
        tunnel, device, steering, log, _ = await _steered(tmp_path, wireguard, carrier)
        tunnel.refresh()
        await _until(lambda: len(log) == 2)  # added, moved
        device.gone = True
        carrier.routes["bob"] = (Route.RELAY, Endpoint("198.18.0.20", 50123))
        tunnel.refresh()
        await _until(lambda: tunnel._steerer is not None and tunnel._steerer.done())
        assert log[2:] == ["refused", "refused"]  # the move back, then (the kernel path off) once more
        assert not steering.steering
        await tunnel.bring_down()

    asyncio.run(scenario())
