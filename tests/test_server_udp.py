"""The real signal server over loopback UDP: in-process (background event loop) and as `python -m server`."""

import argparse
import asyncio
import contextlib
import json
import logging
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from protocol import Candidates, Endpoint, Err, ErrorCode, Frame, Ok, PresenceReport, Punch, Retry, StatsReport, parse
from server.__main__ import config_of, listen_address, parse_args
from server.app import Config, SignalProtocol, SignalServer
from server.event_loop import choose
from server.handler import Handler
from server.table import PeerTable
from tests.support.v2peer import V2Peer
from trust import Identity, Registry

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def wait_for(check, timeout=5.0):
    """Call ``check`` until it stops raising (AssertionError/OSError/ValueError) or ``timeout`` s pass."""
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.02),
        retry=retry_if_exception_type((AssertionError, OSError, ValueError)),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            return check()
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_server(config):
    """Run a SignalServer in its own thread's event loop; yield (server, bound address); stop it after."""
    started: queue.Queue[Any] = queue.Queue()

    async def main():
        stop = asyncio.Event()
        try:
            async with SignalServer(config) as server:
                started.put((asyncio.get_running_loop(), stop, server, server.address))
                await stop.wait()
        except Exception as exc:  # hand start-up failures to the test thread
            started.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="signal-server")
    thread.start()
    item = started.get(timeout=5)
    if isinstance(item, Exception):
        thread.join(timeout=5)
        raise item
    loop, stop, server, address = item
    try:
        yield server, address
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5)
        assert not thread.is_alive(), "server thread did not stop"


@pytest.fixture
def state_file(tmp_path):
    """The state file's path, in a directory the server has to create."""
    return tmp_path / "run" / "state.json"


@pytest.fixture
def server(state_file):
    """An in-process server on 127.0.0.1, port 0, with a fast state file; yields (server, address)."""
    config = Config(listen=Endpoint(LOOPBACK, 0), state_file=state_file, state_interval=0.05)
    with running_server(config) as running:
        yield running


@pytest.fixture
def client():
    """Factory for UDP client sockets on loopback (2 s receive timeout), all closed afterwards."""
    sockets = []

    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sockets.append(sock)
        sock.bind((LOOPBACK, 0))
        sock.settimeout(2)
        return sock

    yield make
    for sock in sockets:
        sock.close()


def request(sock, address, datagram):
    """Send ``datagram`` and return the next datagram received (from the server)."""
    sock.sendto(datagram, address.sockaddr())
    data, sender = sock.recvfrom(4096)
    assert Endpoint.of(sender) == address
    return data


def own(sock):
    return Endpoint.of(sock.getsockname())


def read_state(path):
    return json.loads(path.read_text())


def test_bound_port_is_exposed(server):
    _, address = server
    assert address.host == LOOPBACK
    assert address.port > 0


def test_register_connect_punch(server, client):
    _, address = server
    alice, bob = client(), client()
    assert request(alice, address, b"register alice") == b"ok"
    assert request(bob, address, b"register bob") == b"ok"
    assert request(alice, address, b"connect alice bob") == f"punch bob {own(bob)}".encode()
    assert bob.recv(4096) == f"punch alice {own(alice)}".encode()


def test_extended_and_seed_clients_get_the_punches_they_understand(server, client):
    _, address = server
    alice, bob, carol = client(), client(), client()
    assert request(alice, address, b"register alice relay=198.18.0.20:49160") == b"ok"
    assert request(bob, address, b"register bob") == b"ok"
    assert request(carol, address, b"register carol relay=-") == b"ok"
    assert request(alice, address, b"connect alice carol") == f"punch carol {own(carol)} relay=-".encode()
    assert carol.recv(4096) == f"punch alice {own(alice)} relay=198.18.0.20:49160".encode()
    assert request(alice, address, b"connect alice bob") == f"punch bob {own(bob)}".encode()
    assert bob.recv(4096) == f"punch alice {own(alice)}".encode()
    # A text client is held to 3x what it sent: carol's keepalive (every 10 s) is the credit for a third punch.
    carol.sendto(b"keepalive", address.sockaddr())
    assert request(bob, address, b"connect bob carol") == f"punch carol {own(carol)}".encode()
    assert carol.recv(4096) == f"punch bob {own(bob)}".encode()


def test_errors_are_answered(server, client):
    _, address = server
    carol = client()
    assert request(carol, address, b"connect alice bob") == b"err invalid peers"
    assert request(carol, address, b"register") == b"err invalid register cmd"
    assert request(carol, address, b"connect alice") == b"err invalid connection cmd"


@pytest.fixture
def unlimited_server():
    """An in-process server without a request rate limit (for floods that test something else)."""
    with running_server(Config(listen=Endpoint(LOOPBACK, 0), rate=0)) as running:
        yield running


def test_garbage_flood_gets_no_reply_and_server_still_answers(unlimited_server, client):
    running, address = unlimited_server
    alice = client()
    rng = random.Random(1234)
    garbage = [b"", b"\n", b"x" * 2000, b"\xff" * 1500, b"ok", b"punch bob 1.2.3.4:5", b"hello"]
    garbage += [rng.randbytes(rng.choice([1, 7, 100, 1400, 1401, 2000])) for _ in range(300)]
    for start in range(0, len(garbage), 50):
        for datagram in garbage[start : start + 50]:
            alice.sendto(datagram, address.sockaddr())
        # Loopback keeps order and the server is one loop: if garbage had a reply, it would come first.
        assert request(alice, address, b"register alice") == b"ok"
    assert sum(running.handler.counters.values()) == len(garbage)
    assert running.handler.counters["oversize"] >= 3
    assert running.handler.counters["error"] == 0


def test_server_survives_a_crashing_handler(server, client, monkeypatch, caplog):
    running, address = server
    real_handle = running.handler.handle

    def handle(data, source, now, wall_ms):
        if data == b"boom":
            raise RuntimeError("handler bug")
        return real_handle(data, source, now, wall_ms)

    monkeypatch.setattr(running.handler, "handle", handle)
    alice = client()
    alice.sendto(b"boom", address.sockaddr())
    assert request(alice, address, b"register alice") == b"ok"
    assert running.handler.counters["error"] == 1
    [record] = [r for r in caplog.records if r.name == "server.app"]
    assert record.levelno == logging.ERROR
    assert "handler bug" in str(record.exc_info[1])


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_reply_that_cannot_be_sent_loses_that_reply_not_the_socket(loop, monkeypatch, caplog):
    """A reply the kernel refuses (here to the broadcast address, EACCES; in the lab to a forged off-link
    source, ENETUNREACH) once made uvloop's transport close for good: the server went deaf while running."""
    caplog.set_level(logging.DEBUG, logger="server.app")
    factory = choose(loop).factory
    refused = Endpoint("255.255.255.255", 9)
    served: queue.Queue[bytes] = queue.Queue()

    async def main():
        async with SignalServer(Config(listen=Endpoint(LOOPBACK, 0), rate=0)) as server:
            real_handle = server.handler.handle

            def handle(data, source, now, wall_ms=None):
                return [(b"lost", refused), *real_handle(data, source, now, wall_ms)]

            monkeypatch.setattr(server.handler, "handle", handle)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as alice:
                alice.settimeout(2)
                for peer_id in ("alice", "alicia"):
                    alice.sendto(f"register {peer_id}".encode(), server.address.sockaddr())
                    served.put(await asyncio.to_thread(alice.recv, 100))

    runner = asyncio.Runner(loop_factory=factory)
    with runner:
        runner.run(main())
    assert [served.get_nowait(), served.get_nowait()] == [b"ok", b"ok"]  # the second one too: still serving
    assert any("cannot send 4 bytes to 255.255.255.255:9" in m for m in caplog.messages)


def test_error_received_is_logged_not_raised(caplog):
    caplog.set_level(logging.DEBUG, logger="server.app")
    protocol = SignalProtocol(Handler(PeerTable()), lambda: None)
    protocol.error_received(ConnectionRefusedError(111, "Connection refused"))
    assert caplog.messages == ["socket error: [Errno 111] Connection refused"]
    assert caplog.records[0].levelno == logging.DEBUG


def test_state_file_lists_peers_and_drops(server, client, state_file):
    _, address = server
    assert read_state(state_file)["peers"] == [], "written at start, once listening"
    alice = client()
    assert request(alice, address, b"register alice") == b"ok"
    alice.sendto(b"\xff", address.sockaddr())

    def alice_listed():
        state = read_state(state_file)
        assert [(p["id"], p["addr"]) for p in state["peers"]] == [("alice", str(own(alice)))]
        assert state["counters"]["not_utf8"] == 1
        return state

    state = wait_for(alice_listed)
    assert state["listen"] == str(address)
    assert state["started"].endswith("+00:00")
    assert state["peers"][0]["registered_at"].endswith("+00:00")
    assert not list(state_file.parent.glob(".state.json.*")), "no temporary files left behind"


def test_state_file_shows_relay_and_extended(server, client, state_file):
    running, address = server
    alice, bob = client(), client()
    assert request(alice, address, b"register alice") == b"ok"
    assert request(bob, address, b"register bob relay=198.18.0.20:49161") == b"ok"

    def state_is(peers, not_for_server):
        def check():
            state = read_state(state_file)
            assert [(p["id"], p["relay"], p["extended"]) for p in state["peers"]] == peers
            assert state["counters"]["not_for_server"] == not_for_server

        wait_for(check)

    state_is([("alice", None, False), ("bob", "198.18.0.20:49161", True)], 0)
    bob.sendto(b"data alice 1 0 0 hi", address.sockaddr())
    bob.sendto(b"ack alice 1 1", address.sockaddr())
    assert request(bob, address, b"register bob relay=-") == b"ok", "the relay is gone: re-register"
    assert running.handler.counters["not_for_server"] == 2, "data and ack went before register, and got no reply"
    state_is([("alice", None, False), ("bob", None, True)], 2)


def test_peers_expire_periodically(state_file, client, caplog):
    caplog.set_level(logging.INFO, logger="server.presence")
    config = Config(Endpoint(LOOPBACK, 0), state_file, peer_ttl=0.2, expire_interval=0.05, state_interval=0.05)
    with running_server(config) as (_, address):
        alice = client()
        assert request(alice, address, b"register alice") == b"ok"

        def alice_expired():
            assert f"expired alice at {own(alice)}" in " ".join(caplog.messages)
            assert read_state(state_file)["peers"] == []

        wait_for(alice_expired)


def test_unwritable_state_file_is_logged_not_fatal(tmp_path, client, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with running_server(Config(Endpoint(LOOPBACK, 0), blocker / "state.json")) as (_, address):
        assert request(client(), address, b"register alice") == b"ok"
    assert any(m.startswith("cannot write state file") for m in caplog.messages)


def test_start_fails_cleanly_when_port_is_taken(client):
    taken = own(client())
    with pytest.raises(OSError, match="in use"), running_server(Config(listen=taken)):
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_python_m_server_runs_and_stops_on_signal(tmp_path, client, signum):
    state_file = tmp_path / "state.json"
    port = free_udp_port()
    with (tmp_path / "stderr.log").open("w+") as stderr:
        args = ["--listen", f"{LOOPBACK}:{port}", "--state-file", str(state_file), "--log-level", "debug"]
        proc = subprocess.Popen([sys.executable, "-m", "server", *args], cwd=REPO, stderr=stderr)
        try:
            assert wait_for(lambda: read_state(state_file), timeout=10)["listen"] == f"{LOOPBACK}:{port}"
            alice = client()
            assert request(alice, Endpoint(LOOPBACK, port), b"register alice") == b"ok"

            def alice_listed():
                assert [p["id"] for p in read_state(state_file)["peers"]] == ["alice"]

            wait_for(alice_listed)
            proc.send_signal(signum)
            assert proc.wait(timeout=2) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        log = stderr.read()
    assert f"registered alice at {own(alice)}" in log
    assert f"stopping on {signum.name}" in log


def test_flags_make_the_config():
    args = ["--keepalive-interval", "2", "--max-peers", "100", "--unkeyed-share", "0.25", "--ids-per-ip", "4"]
    config = config_of(parse_args([*args, "--rate", "0", "--burst", "7"]))
    assert (config.peer_ttl, config.max_peers, config.unkeyed_share, config.ids_per_ip) == (6.0, 100, 0.25, 4)
    assert (config.rate, config.burst) == (0, 7)
    assert config.handler().requests is None, "--rate 0: no limit"
    defaults = config_of(parse_args([]))
    assert defaults.peer_ttl == 30.0, "three missed keepalives of 10 s, the agents' default"
    assert (defaults.rate, defaults.burst, defaults.ids_per_ip, defaults.unkeyed_share) == (20, 50, 16, 0.5)
    table = defaults.handler().table
    assert (table.ttl, table.max_peers, table.max_unkeyed, table.ids_per_ip) == (30.0, 1024, 512, 16)


def test_python_m_server_limits_and_logs_a_flood_in_a_few_lines(tmp_path, client):
    port = free_udp_port()
    limits = ["--rate", "1", "--burst", "3", "--ids-per-ip", "2", "--keepalive-interval", "0.2", "--log-rate", "2"]
    args = ["--listen", f"{LOOPBACK}:{port}", "--log-level", "debug", *limits]
    server = Endpoint(LOOPBACK, port)
    with (tmp_path / "stderr.log").open("w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "server", *args], cwd=REPO, stderr=stderr)
        try:
            alice, bob, carol = client(), client(), client()
            assert wait_for(lambda: request(alice, server, b"register alice"), timeout=10) == b"ok"
            assert request(bob, server, b"register bob") == b"ok"
            assert request(carol, server, b"register carol") == b"err too many ids from this ip"
            for _ in range(10):
                alice.sendto(b"\x1b[2J\nforged", server.sockaddr())  # over the rate: dropped unparsed

            def summarised():
                stderr.seek(0)
                text = stderr.read()
                assert re.search(r"suppressed \d+ lines like 'rate limited %d bytes from %s'", text), text
                return text

            log = wait_for(summarised)
            assert log.count("rate limited 11 bytes from") == 2, "--log-rate 2"
            assert "forged" not in log
            # bob has been silent for more than three keepalive intervals (0.6 s): gone
            assert wait_for(lambda: request(alice, server, b"connect alice bob"), timeout=10) == b"err invalid peers"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)


@pytest.mark.parametrize(
    ("args", "returncode", "message"),
    [
        (["--listen", "localhost:9000"], 2, "'localhost' is not an IP address"),
        (["--keepalive-interval", "0"], 2, "must be a positive number of seconds"),
        (["--max-peers", "0"], 2, "must be at least 1"),
        (["--ids-per-ip", "0"], 2, "must be at least 1"),
        (["--burst", "0"], 2, "must be at least 1"),
        (["--log-rate", "0"], 2, "must be at least 1"),
        (["--rate", "-1"], 2, "must be a number of requests per second (0: no limit)"),
        (["--rate", "inf"], 2, "must be a number of requests per second (0: no limit)"),
        (["--unkeyed-share", "0"], 2, "must be a share of the table, more than 0 and at most 1"),
        (["--unkeyed-share", "1.01"], 2, "must be a share of the table, more than 0 and at most 1"),
        (["--require-keys"], 2, "--require-keys needs --registry"),
    ],
)
def test_python_m_server_rejects_bad_arguments(args, returncode, message):
    proc = subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
    )
    assert proc.returncode == returncode
    assert message in proc.stderr


def test_python_m_server_exits_1_when_port_is_taken(client):
    taken = own(client())
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--listen", str(taken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 1
    assert f"cannot serve on {taken}" in proc.stderr


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("0.0.0.0:9000", Endpoint("0.0.0.0", 9000)),
        ("127.0.0.1:0", Endpoint("127.0.0.1", 0)),
        ("[::]:9000", Endpoint("::", 9000)),
        ("[::1]:0", Endpoint("::1", 0)),
    ],
)
def test_listen_address(text, endpoint):
    assert listen_address(text) == endpoint


@pytest.mark.parametrize("text", ["9000", "host:9000", "1.2.3.4:65536", "1.2.3.4:x", ":0"])
def test_listen_address_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match="invalid address"):
        listen_address(text)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# --- floods: the request rate limit over real sockets ---


@pytest.fixture
def bound():
    """Factory for UDP sockets bound to a given loopback address (127.0.0.0/8 is all loopback on Linux)."""
    sockets = []

    def make(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sockets.append(sock)
        sock.bind((host, 0))
        return sock

    yield make
    for sock in sockets:
        sock.close()


@contextlib.contextmanager
def flooding(address, sources, datagram, limit_s=15.0):
    """Send ``datagram(n)`` to the server round-robin from ``sources``, about 2,000 a second, in a thread,
    until the block ends (at most ``limit_s``); yields {"sent": count, "seconds": duration} (live)."""
    stop = threading.Event()
    progress = {"sent": 0, "seconds": 0.0}

    def run():
        started = time.monotonic()
        n = 0
        while not stop.is_set() and time.monotonic() - started < limit_s:
            for _ in range(100):
                sources[n % len(sources)].sendto(datagram(n), address.sockaddr())
                n += 1
            progress.update(sent=n, seconds=time.monotonic() - started)
            stop.wait(0.05)  # pacing, so the kernel's buffer rarely overflows and what is lost is the server's doing

    thread = threading.Thread(target=run, name="flood")
    thread.start()
    try:
        yield progress
        assert thread.is_alive(), "the flood ended before the block did: nothing happened during it"
    finally:
        stop.set()
        thread.join(timeout=5)


def served(sock, address, datagram, expected):
    """As an agent does: send ``datagram``, again every 250 ms, until ``expected`` comes back (5 s at most);
    returns how many sends it took."""
    sock.settimeout(0.25)
    for sends, attempt in enumerate(Retrying(stop=stop_after_delay(5), reraise=True), start=1):
        with attempt:
            sock.sendto(datagram, address.sockaddr())
            while sock.recv(4096) != expected:  # a late answer to an earlier send: skip it
                pass
            return sends
    raise AssertionError("unreachable")


def test_a_flood_from_one_source_is_rate_limited_while_others_are_served(server, bound, monkeypatch):
    running, address = server
    alice, bob = bound("127.0.0.2"), bound("127.0.0.3")
    flooders = [bound("127.0.0.1") for _ in range(32)]  # one ip, 32 ports: the ids per ip quota is 16
    handled = count_registers(monkeypatch, running.handler.table, prefix="flood")
    assert served(bob, address, b"register bob", b"ok") == 1
    punch = f"punch bob {own(bob)}".encode()
    with flooding(address, flooders, lambda n: f"register flood{n}".encode()) as flood:
        for _ in range(5):  # each answered within an agent's patience (served: 5 s of retries)
            served(alice, address, b"register alice", b"ok")
            served(alice, address, b"connect alice bob", punch)
        counters = running.handler.counters
        wait_for(lambda: _at_least(counters["rate_limited"], 1000), timeout=8)
    table, limiter = running.handler.table, running.handler.requests
    assert handled[0] <= limiter.burst + limiter.rate * (flood["seconds"] + 1), (handled, flood, counters)
    assert counters["quota"] > 0
    assert len(table) == 16 + 2, "the flood's ip holds its quota of ids, no more"
    assert len(limiter) == 3, "one bucket per source ip, however many datagrams"


def count_registers(monkeypatch, table, prefix):
    """Count the registers of ids starting with ``prefix`` that reach ``table`` (past the rate limit)."""
    handled = [0]
    real_register = table.register

    def register(peer_id, *args, **kwargs):
        handled[0] += peer_id.startswith(prefix)
        return real_register(peer_id, *args, **kwargs)

    monkeypatch.setattr(table, "register", register)
    return handled


def test_a_flood_from_many_sources_keeps_a_bounded_number_of_buckets(bound):
    config = Config(listen=Endpoint(LOOPBACK, 0), max_sources=32)
    with running_server(config) as (running, address):
        for i in range(1, 201):
            served(bound(f"127.0.1.{i}"), address, b"connect alice bob", b"err invalid peers")
        limiter = running.handler.requests
        assert (len(limiter), limiter.evicted) == (32, 200 - 32)
        served(bound("127.0.0.2"), address, b"register alice", b"ok")
        assert (len(limiter), limiter.evicted) == (32, 200 + 1 - 32)


def _at_least(value, minimum):
    assert value >= minimum, (value, minimum)


# --- protocol v2 over real sockets: a keyed client built from protocol + trust, beside a seed client ---


def now_ms():
    return time.time_ns() // 1_000_000


def v2_request(sock, address, datagram):
    """Send a v2 request; the frame that comes back from the server."""
    reply = parse(request(sock, address, datagram))
    assert isinstance(reply, Frame), reply
    return reply


def v2_admit(sock, address, peer, txid=1):
    """Register as a v2 client does: no cookie yet, so a Retry; the same request again with its cookie: Ok."""
    peer.cookie = None
    retry = v2_request(sock, address, peer.register(txid=txid, wall_ms=now_ms()))
    assert (retry.txid, type(retry.message)) == (txid, Retry)
    peer.cookie = retry.message.cookie
    assert v2_request(sock, address, peer.register(txid=txid, wall_ms=now_ms())) == Frame(txid, Ok())


@pytest.fixture
def keyed_server(tmp_path):
    """An in-process server whose registry holds alice and bob, run with --require-keys; yields the server,
    its address, alice's and bob's clients (V2Peer) and the state file."""
    alice, bob = V2Peer.new("alice"), V2Peer.new("bob")
    registry = Registry({"alice": alice.identity.public, "bob": bob.identity.public})
    state_file = tmp_path / "state.json"
    config = Config(Endpoint(LOOPBACK, 0), state_file, state_interval=0.05, registry=registry, require_keys=True)
    with running_server(config) as (running, address):
        yield running, address, alice, bob, state_file


def test_v2_clients_register_rebind_and_connect_beside_a_seed_client(keyed_server, client):
    _, address, alice, bob, state_file = keyed_server
    alice_sock, bob_sock, carol_sock = client(), client(), client()
    v2_admit(alice_sock, address, alice)
    v2_admit(bob_sock, address, bob)
    assert request(carol_sock, address, b"register carol") == b"ok", "the seed's exchange, unchanged"

    punch = v2_request(alice_sock, address, alice.connect("bob", txid=50, wall_ms=now_ms()))
    assert punch == Frame(50, Punch("bob", own(bob_sock), Candidates(None)), keys=bob.keys)
    assert parse(bob_sock.recv(4096)) == Frame(50, Punch("alice", own(alice_sock), Candidates(None)), keys=alice.keys)

    # alice's NAT mapping changes: a new socket, a new port. Her cookie is for the old one: Retry, then Ok.
    moved = client()
    v2_admit(moved, address, alice, txid=60)
    punch = v2_request(moved, address, alice.connect("bob", txid=61, wall_ms=now_ms()))
    assert punch.message == Punch("bob", own(bob_sock), Candidates(None))
    assert parse(bob_sock.recv(4096)) == Frame(61, Punch("alice", own(moved), Candidates(None)), keys=alice.keys)
    refused = v2_request(alice_sock, address, alice.connect("bob", txid=62, wall_ms=now_ms(), cookie=None))
    assert isinstance(refused.message, Retry), "the old address has no valid cookie of its own"

    # the seed client connects its own id to keyed alice: a text punch for it, a v2 punch (txid 0) for alice
    assert request(carol_sock, address, b"connect carol alice") == f"punch alice {own(moved)}".encode()
    assert parse(moved.recv(4096)) == Frame(0, Punch("carol", own(carol_sock), None))
    assert request(carol_sock, address, b"register alice") == b"err id is keyed"

    report = v2_request(moved, address, alice.presence("carol", txid=70, wall_ms=now_ms()))
    assert isinstance(report.message, PresenceReport)
    assert (report.txid, report.message.peer_id, report.message.online) == (70, "carol", True)
    stats = v2_request(moved, address, alice.stats(txid=71))
    assert isinstance(stats.message, StatsReport)
    assert dict(stats.message.counters)["retry"] == 4
    assert dict(stats.message.counters)["keyed_id"] == 1

    def state_shows_keys():
        state = read_state(state_file)
        assert [(p["id"], p["keyed"]) for p in state["peers"]] == [("alice", True), ("bob", True), ("carol", False)]
        assert state["counters"]["retry"] == 4

    wait_for(state_shows_keys)


def test_v2_takeover_and_an_unlisted_id_are_refused_over_the_wire(keyed_server, client):
    _, address, alice, _, _ = keyed_server
    alice_sock, mallory_sock = client(), client()
    v2_admit(alice_sock, address, alice)
    mallory = V2Peer.new("alice")
    mallory.cookie = v2_request(mallory_sock, address, mallory.register(wall_ms=now_ms())).message.cookie
    refused = v2_request(mallory_sock, address, mallory.register(txid=2, wall_ms=now_ms()))
    assert refused == Frame(2, Err("id is held by another key", ErrorCode.FORBIDDEN))
    dave = V2Peer("dave", Identity.generate(), cookie=mallory.cookie)
    refused = v2_request(mallory_sock, address, dave.register(txid=3, wall_ms=now_ms()))
    assert refused == Frame(3, Err("id not in the registry", ErrorCode.FORBIDDEN)), "--require-keys"
    report = v2_request(alice_sock, address, alice.presence("alice", txid=4, wall_ms=now_ms()))
    assert report.message.online, "alice is still registered, at her own address"


def test_python_m_server_with_a_registry_and_require_keys_admits_a_keyed_client(tmp_path, client):
    alice = V2Peer.new("alice")
    registry = tmp_path / "registry.json"
    Registry({"alice": alice.identity.public}).save(registry)
    port = free_udp_port()
    args = ["--listen", f"{LOOPBACK}:{port}", "--registry", str(registry), "--require-keys"]
    with (tmp_path / "stderr.log").open("w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "server", *args], cwd=REPO, stderr=stderr)
        try:
            sock = client()
            server = Endpoint(LOOPBACK, port)
            retry = wait_for(lambda: v2_request(sock, server, alice.register(wall_ms=now_ms())), timeout=10)
            alice.cookie = retry.message.cookie
            assert v2_request(sock, server, alice.register(txid=2, wall_ms=now_ms())) == Frame(2, Ok())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
        stderr.seek(0)
        log = stderr.read()
    assert "--require-keys: v2 ids outside the registry are refused" in log
    assert f"registered alice at {own(sock)} (keyed)" in log
