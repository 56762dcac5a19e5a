"""The TURN state machine against a real coturn (Debian's ``turnserver``) on loopback, over real UDP sockets.

Skipped when the binary is missing (``apt-get install coturn``). coturn is started without its config file
(``-n``: Debian's /etc/turnserver.conf disables RFC 5780 and logs to syslog) on a free port, is ready when it
answers a STUN Binding request, and is stopped at the end of the module, also when a test fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from client.turn.allocation import TurnAllocation
from client.turn.outputs import (
    Allocated,
    Bound,
    Closed,
    Denied,
    Failed,
    Output,
    Permitted,
    Refreshed,
    Relayed,
    Retransmit,
    Transmit,
    TurnConfig,
)
from client.turn.wire import (
    CLASS_INDICATION,
    binding_request,
    is_channel_data,
    is_turn_datagram,
    parse_binding_response,
    parse_stun,
)
from protocol import Endpoint
from scenarios.processes import logged_process
from tests.support.coturn import turnserver_command
from tests.support.ports import free_udp_ports

TURNSERVER = shutil.which("turnserver")
pytestmark = pytest.mark.needs("turnserver")  # apt-get install coturn

LOOPBACK = "127.0.0.1"
DENIED_PEER = "127.0.0.2"  # coturn is told to refuse this peer: a real 403
RELAY_PORTS = 16
STEP = 5.0  # seconds any one exchange with coturn on loopback may take


@dataclass
class Coturn:
    server: Endpoint
    secret: str
    relay_ports: range
    log: Path

    def config(self, **changes: Any) -> TurnConfig:
        """The natlab user's configuration, with loopback-fast retransmissions (given up after 1.1 s)."""
        config = TurnConfig(self.server, "natlab", self.secret, retransmit=Retransmit(rto=0.1, rc=4, rm=4))
        return dataclasses.replace(config, **changes)


def _free_udp_ports(count: int) -> range:
    """``count`` consecutive loopback UDP ports that are free now."""
    return free_udp_ports(count, (LOOPBACK,))


def _polling_socket(server: Endpoint) -> socket.socket:
    """A loopback socket on any port but the server's: the kernel may hand out the port chosen for coturn
    before coturn binds it (seen under load), and then our requests would come back to ourselves."""
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        if sock.getsockname()[1] != server.port:
            return sock
        sock.close()


def _wait_until_answering(server: Endpoint, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with STUN Binding requests until coturn answers; a time-out or exit fails with its log."""
    deadline = time.monotonic() + 10.0
    sent: set[bytes] = set()  # an answer to an earlier request counts too
    with _polling_socket(server) as sock:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited with {process.returncode}:\n{log.read_text()}")
            request = binding_request()
            sent.add(request.tid)
            sock.sendto(request.data, server.sockaddr())
            if select.select([sock], [], [], 0.05)[0]:
                data, _ = sock.recvfrom(2048)
                tid = parse_stun(data).tid
                if tid in sent and parse_binding_response(data, tid) == Endpoint.of(sock.getsockname()):
                    return
    raise TimeoutError(f"turnserver did not answer a STUN Binding request within 10 s:\n{log.read_text()}")


@contextlib.contextmanager
def running_coturn(workdir: Path, ports: range, secret: str) -> Iterator[Coturn]:
    """coturn listening on ``ports[0]`` and relaying from the rest, answering STUN; terminated (killed if need
    be) on exit, also when start-up fails. Its output is appended to ``workdir/turnserver.log``."""
    assert TURNSERVER is not None
    server, relay_ports = Endpoint(LOOPBACK, ports[0]), ports[1:]
    log = workdir / "turnserver.log"
    command = turnserver_command(
        TURNSERVER,
        workdir,
        listening_ips=[LOOPBACK],
        port=server.port,
        relay_ports=relay_ports,
        secret=secret,
        extra=("--allow-loopback-peers", f"--denied-peer-ip={DENIED_PEER}", "--no-tcp"),  # UDP only
    )
    with logged_process(command, log) as process:
        _wait_until_answering(server, process, log)
        yield Coturn(server, secret, relay_ports, log)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """A coturn on free loopback ports for the whole module."""
    with running_coturn(tmp_path_factory.mktemp("coturn"), _free_udp_ports(1 + RELAY_PORTS), _secret()) as server:
        yield server


def _secret() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class Driver:
    """Runs a :class:`TurnAllocation` on a real socket: Transmits are sent, datagrams and ticks fed in.

    ``skew`` is added to the monotonic clock the machine sees, to bring refreshes forward.
    """

    turn: TurnAllocation
    sock: socket.socket
    events: list[Output] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    skew: float = 0.0

    def now(self) -> float:
        return time.monotonic() + self.skew

    def perform(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Transmit):
                self.sock.sendto(output.data, output.to.sockaddr())
            else:
                self.events.append(output)

    def run(self, until: Callable[[], bool], timeout: float = STEP) -> None:
        """Drive the machine (datagrams in, ticks at its wakeups) until ``until()`` holds; a deadline fails."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not done within {timeout} s; events: {self.events}; answers: {self.answers()}")
            wakeup = self.turn.wakeup()
            wait = left if wakeup is None else min(left, wakeup - self.now())
            if select.select([self.sock], [], [], max(0.0, wait))[0]:
                data, source = self.sock.recvfrom(4096)
                assert is_turn_datagram(data)
                self.received.append(data)
                self.perform(self.turn.receive(data, Endpoint.of(source), self.now()))
            else:
                self.perform(self.turn.tick(self.now()))

    def run_until(self, done: Callable[[Output], bool], timeout: float = STEP) -> Output:
        """Drive the machine until a new event satisfies ``done``, and return that event."""
        seen = len(self.events)

        def match() -> Output | None:
            return next((e for e in self.events[seen:] if done(e)), None)

        self.run(lambda: match() is not None, timeout)
        event = match()
        assert event is not None
        return event

    def answers(self) -> list[str]:
        """The server's answers so far, as "Method code" (200 for success)."""
        messages = [parse_stun(data) for data in self.received if not is_channel_data(data)]
        return [f"{m.name} {(m.error() or (200, ''))[0]}" for m in messages if m.cls != CLASS_INDICATION]

    def start(self) -> Allocated:
        self.perform(self.turn.start(self.now()))
        event = self.run_until(lambda e: isinstance(e, Allocated | Failed))
        assert isinstance(event, Allocated), event
        return event


@pytest.fixture
def client(coturn: Coturn) -> Iterator[Driver]:
    """A TURN client on its own loopback socket, not yet allocated."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield Driver(TurnAllocation(coturn.config()), sock)


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    """The peer: a plain loopback UDP socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(STEP)
        yield sock


def test_relay_both_ways_with_send_indications_then_a_channel(
    coturn: Coturn, client: Driver, peer: socket.socket
) -> None:
    allocated = client.start()
    assert allocated.mapped == Endpoint.of(client.sock.getsockname())
    assert allocated.relayed.host == LOOPBACK
    assert allocated.relayed.port in coturn.relay_ports
    assert allocated.lifetime == 600
    peer_addr = Endpoint.of(peer.getsockname())

    # Send before the permission exists: the datagram waits for it, then goes as a Send indication.
    client.perform(client.turn.send_to_peer(peer_addr, b"hello peer", client.now()))
    client.run_until(lambda e: e == Permitted(LOOPBACK))
    data, source = peer.recvfrom(4096)
    assert (data, Endpoint.of(source)) == (b"hello peer", allocated.relayed)

    peer.sendto(b"hello client", allocated.relayed.sockaddr())
    assert client.run_until(lambda e: isinstance(e, Relayed)) == Relayed(peer_addr, b"hello client")
    assert not is_channel_data(client.received[-1])  # a Data indication

    client.perform(client.turn.bind(peer_addr, client.now()))
    assert client.run_until(lambda e: isinstance(e, Bound)) == Bound(peer_addr, 0x4000)
    client.perform(client.turn.send_to_peer(peer_addr, b"via channel", client.now()))
    data, source = peer.recvfrom(4096)
    assert (data, Endpoint.of(source)) == (b"via channel", allocated.relayed)
    peer.sendto(b"back via channel", allocated.relayed.sockaddr())
    assert client.run_until(lambda e: isinstance(e, Relayed)) == Relayed(peer_addr, b"back via channel")
    assert is_channel_data(client.received[-1])

    # Nine minutes on: the allocation, the permission and the channel are all refreshed.
    before = len(client.answers())
    client.skew = 540.0
    assert client.run_until(lambda e: isinstance(e, Refreshed)) == Refreshed(600)
    client.run(lambda: len(client.answers()) >= before + 3)
    assert sorted(client.answers()[before:]) == ["ChannelBind 200", "CreatePermission 200", "Refresh 200"]
    client.perform(client.turn.close(client.now()))
    client.run_until(lambda e: isinstance(e, Closed))


def test_a_restarted_agent_clears_its_old_allocation(coturn: Coturn, client: Driver) -> None:
    first = client.start()
    # A new machine on the same socket (the agent restarted on its fixed port): coturn says 437 first.
    client.turn = TurnAllocation(coturn.config())
    client.received.clear()
    second = client.start()
    assert second.relayed != first.relayed
    answers = client.answers()
    assert answers[:3] == ["Allocate 437", "Refresh 401", "Refresh 200"]
    assert answers[-1] == "Allocate 200"
    # Close, then start again at once: coturn holds the deleted allocation for about a second more.
    client.perform(client.turn.close(client.now()))
    client.run_until(lambda e: isinstance(e, Closed))
    client.start()


def test_wrong_password_fails_with_401(coturn: Coturn, client: Driver) -> None:
    client.turn = TurnAllocation(coturn.config(password="wrong"))
    client.perform(client.turn.start(client.now()))
    assert client.run_until(lambda e: isinstance(e, Failed)) == Failed("turn: Allocate failed: 401 Unauthorized")


def test_denied_peer_is_refused_with_403(client: Driver) -> None:
    client.start()
    client.perform(client.turn.permit(DENIED_PEER, client.now()))
    event = client.run_until(lambda e: isinstance(e, Denied))
    assert event == Denied(DENIED_PEER, f"turn: CreatePermission for {DENIED_PEER} failed: 403 Forbidden IP")


def test_reallocate_after_coturn_restarts_or_goes_away(tmp_path: Path) -> None:
    ports, secret = _free_udp_ports(1 + RELAY_PORTS), _secret()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        with running_coturn(tmp_path, ports, secret) as coturn:
            client = Driver(TurnAllocation(coturn.config()), sock)
            client.start()
        with running_coturn(tmp_path, ports, secret):
            # Restarted, with no memory of us: the refresh learns so (a new nonce, then 437); allocate afresh.
            client.skew += 540
            failed = client.run_until(lambda e: isinstance(e, Failed))
            assert failed == Failed("turn: Refresh failed: 437 Invalid allocation")
            client.start()
        # Gone: the refresh goes unanswered.
        client.skew += 540
        failed = client.run_until(lambda e: isinstance(e, Failed))
        assert failed == Failed(f"turn: no response from {coturn.server} within 1.1 s")
        with running_coturn(tmp_path, ports, secret):
            client.start()
