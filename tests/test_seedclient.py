"""The seed-era client sends exactly the seed's datagrams, reacts as the seed does, and two of them chat
through natlab's real signal server on loopback."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from seedclient.cli import Printer
from seedclient.client import READ_SIZE, SeedClient, Timing, parse_address
from tests.support.ports import free_udp_ports

REPO = Path(__file__).resolve().parent.parent
FAST = Timing(punch_duration=0.3, punch_interval=0.1, keepalive=0.2)
"""The seed's timing shrunk tenfold (and its keepalive fifty-fold) so a test sees it all in a second."""


class Events:
    """What a client reports, as a queue a test waits on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.queue.put(event)

    def wait(self, **fields) -> dict:
        while True:
            event = self.queue.get(timeout=5)
            self.seen.append(event)
            if all(event.get(k) == v for k, v in fields.items()):
                return event


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


@contextmanager
def seed_client(identity: str, server: tuple[str, int], timing: Timing = FAST) -> Iterator[tuple[SeedClient, Events]]:
    events = Events()
    client = SeedClient(identity, server, events, timing)
    client.start()
    try:
        yield client, events
    finally:
        client.close()


def not_keepalive(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    """The next datagram that is not one of the seed's keepalives (they go every FAST.keepalive s)."""
    while (received := sock.recvfrom(READ_SIZE))[0] == b"keepalive":
        pass
    return received


def test_the_seeds_datagrams_exactly():
    with (
        closing(udp_socket()) as server,
        closing(udp_socket()) as peer,
        seed_client("carol", server.getsockname()) as (client, events),
    ):
        data, carol = server.recvfrom(READ_SIZE)
        assert data == b"register carol"
        client.command("/connect alice")
        assert not_keepalive(server) == (b"connect carol alice", carol)
        server.sendto(f"punch alice 127.0.0.1:{peer.getsockname()[1]}".encode(), carol)
        events.wait(event="punching", peer="alice", addr=f"127.0.0.1:{peer.getsockname()[1]}")
        probes = [peer.recvfrom(READ_SIZE) for _ in range(3)]
        assert probes == [(b"hello", carol)] * 3, "the seed probes with a bare hello, no id"
        assert peer.recvfrom(READ_SIZE) == (b"keepalive", carol), "then keeps the path alive"
        client.command("  hi    there  ")
        assert not_keepalive(peer) == (b"msg carol hi there", carol), "the seed joins the words with one space"


def test_incoming_datagrams_as_the_seed_reacts_to_them():
    with (
        closing(udp_socket()) as server,
        closing(udp_socket()) as peer,
        seed_client("carol", server.getsockname()) as (client, events),
    ):
        _, carol = server.recvfrom(READ_SIZE)
        peer.sendto(b"msg alice gday  mate", carol)
        assert events.wait(event="message")["text"] == "gday mate"
        peer.sendto(b"bogus words", carol)
        assert events.wait(event="unknown")["command"] == "bogus"
        server.sendto(b"err invalid peers", carol)
        assert events.wait(event="error")["reason"] == "invalid peers"
        server.sendto(b"punch alice 127.0.0.1:9 relay=-", carol)  # three arguments: the seed ignores it
        server.sendto(b"punch dave 127.0.0.1:" + str(peer.getsockname()[1]).encode(), carol)
        assert events.wait(event="punching")["peer"] == "dave"
        server.sendto(b"punch dave 127.0.0.1:9", carol)  # a peer already known: ignored
        peer.sendto(b"msg x " + b"y" * 2000, carol)
        assert len(events.wait(event="message", peer="x")["text"]) == READ_SIZE - len("msg x ")
        assert client.peers == {"dave": ("127.0.0.1", peer.getsockname()[1])}
        assert not [e for e in events.seen if e["event"] == "punching" and e["peer"] == "alice"]


@pytest.mark.parametrize(
    ("text", "address"),
    [("198.18.0.11:4000", ("198.18.0.11", 4000)), ("[::1]:9", ("::1", 9)), ("nope", None), ("1.2.3.4:x", None)],
)
def test_punch_addresses_are_read_as_go_reads_a_literal(text, address):
    assert parse_address(text) == address


def test_the_seeds_own_lines_are_printed(capsys):
    printer = Printer(as_json=False)
    printer({"event": "punching", "peer": "bob", "addr": "1.2.3.4:5"})
    printer({"event": "message", "peer": "bob", "text": "gday"})
    printer({"event": "sent", "to": "1.2.3.4:5", "text": "hello"})
    assert capsys.readouterr().out == "[client] punching peer bob (1.2.3.4:5)\n[peer bob] gday\n"


@contextmanager
def signal_server() -> Iterator[tuple[str, int]]:
    """natlab's signal server (``python -m server``) on a free loopback port."""
    (port,) = free_udp_ports(1)
    command = [sys.executable, "-m", "server", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _answering(("127.0.0.1", port))
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=5)


def _answering(server: tuple[str, int]) -> None:
    """Wait until the server answers (the seed registers once and never again, so it must be up first)."""
    with closing(udp_socket()) as probe:
        probe.settimeout(0.1)
        for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.05), reraise=True):
            with attempt:
                probe.sendto(b"connect nobody noone", server)
                assert probe.recvfrom(READ_SIZE)[0] == b"err invalid peers"


def test_two_seed_clients_chat_through_natlabs_server():
    with signal_server() as server, seed_client("carol", server) as (carol, carol_events):
        carol_events.wait(event="received", text="ok")
        with seed_client("dave", server) as (dave, dave_events):
            dave_events.wait(event="received", text="ok")
            carol.command("/connect dave")
            carol_events.wait(event="punching", peer="dave")
            dave_events.wait(event="punching", peer="carol")
            carol.command("hello dave")
            assert dave_events.wait(event="message")["text"] == "hello dave"
            dave.command("gday carol")
            assert carol_events.wait(event="message")["text"] == "gday carol"
