"""Real agents over loopback: ``python -m client agent`` subprocesses, a fake signal server in a thread,
and the CLI (including the chat, through a pseudo-terminal) driving them. No Docker, no bare sleeps:
every wait polls a condition up to a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pexpect
import pytest

from client.cli.control_client import AgentClient, AgentUnavailable, AsyncAgentClient
from client.cli.main import main
from client.daemon.agent import Agent
from client.daemon.config import AgentConfig
from client.daemon.control import SUBSCRIBER_BACKLOG, ControlServer, Subscription
from client.daemon.eventlog import EventLog
from client.engine.events import MessageReceived
from protocol import Endpoint
from tests.support.signal_server import SignalServer

pytestmark = pytest.mark.timeout(120)  # a hung agent or chat fails the test instead of the whole run

REPO = pathlib.Path(__file__).resolve().parent.parent
PUNCH_TIMEOUT = 1  # seconds: failing tests stay fast


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class FakeSignalServer:
    """The in-memory labs' signal server (tests.support.signal_server: v2 with cookies, keys, proofs and
    presence, text for seed-era clients) on 127.0.0.1, in a thread. ``lies`` overrides the address the server
    hands out for a peer (a port nobody answers on), to make punching fail."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = Endpoint.of(self.sock.getsockname())
        self.signal = SignalServer()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-signal-server", daemon=True)
        self._thread.start()

    @property
    def lies(self) -> dict[str, Endpoint]:
        return self.signal.lies

    @lies.setter
    def lies(self, lies: dict[str, Endpoint]) -> None:
        self.signal.lies = lies

    @property
    def peers(self) -> dict[str, Endpoint]:
        return {peer_id: reg.addr for peer_id, reg in self.signal.peers.items()}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.signal.now = time.monotonic()
            for reply, to in self.signal.receive(data, Endpoint.of(addr)):
                self.sock.sendto(reply, to.sockaddr())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class AgentProcess:
    """``python -m client agent`` as a subprocess with its own socket and event log."""

    def __init__(self, peer_id: str, server: Endpoint, workdir: pathlib.Path) -> None:
        self.id = peer_id
        self.socket = str(workdir / f"{peer_id}.sock")
        self.events = workdir / peer_id / "log" / "events.jsonl"  # the directory does not exist yet
        self.stderr_path = workdir / f"{peer_id}.stderr"
        self.ready_file = workdir / peer_id / "registered"
        self.env = {
            **os.environ,
            "NATLAB_ID": peer_id,
            "NATLAB_SERVER": str(server),
            "NATLAB_SOCKET": self.socket,
            "NATLAB_EVENTS": str(self.events),
            "NATLAB_READY_FILE": str(self.ready_file),
            "NATLAB_PUNCH_TIMEOUT": str(PUNCH_TIMEOUT),
            "NATLAB_LOG": "debug",
        }
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "client", "agent"], env=self.env, cwd=REPO, stderr=stderr
            )
        wait_for(self._registered, f"agent {peer_id} to register; stderr:\n{self.stderr()}")
        assert self.ready_file.exists(), "a registered agent marks itself ready for the healthcheck"

    def _registered(self) -> bool:
        assert self.proc.poll() is None, f"agent {self.id} exited:\n{self.stderr()}"
        try:
            return bool(self.status()["registered"])
        except AgentUnavailable:
            return False

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m client ARGS`` against this agent."""
        return subprocess.run(
            [sys.executable, "-m", "client", *args],
            env={**self.env, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        """The agent's status, asked in-process (the CLI's own output is tested separately)."""
        with AgentClient(self.socket) as agent:
            status: dict[str, Any] = agent.request("status")["status"]
        return status

    def peer(self, peer_id: str) -> dict[str, Any] | None:
        return next((p for p in self.status()["peers"] if p["id"] == peer_id), None)

    def read_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.read_events() if e["event"] == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def workdir() -> Iterator[pathlib.Path]:
    """A short temporary directory (Unix socket paths must stay under 108 bytes)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="natlab-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[FakeSignalServer]:
    """A fake signal server on loopback, stopped afterwards."""
    fake = FakeSignalServer()
    yield fake
    fake.close()


@pytest.fixture
def sink() -> Iterator[Endpoint]:
    """A UDP port that swallows everything and answers nothing: where lying punches point."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield Endpoint.of(sock.getsockname())


@pytest.fixture
def start_agent(server: FakeSignalServer, workdir: pathlib.Path) -> Iterator[Callable[[str], AgentProcess]]:
    """Start registered agents; each is stopped with SIGTERM afterwards and must exit 0, socket removed."""
    agents: list[AgentProcess] = []

    def start(peer_id: str) -> AgentProcess:
        agents.append(AgentProcess(peer_id, server.addr, workdir))
        return agents[-1]

    yield start
    for agent in agents:
        assert agent.stop() == 0, agent.stderr()
        assert not os.path.exists(agent.socket)
        assert not agent.ready_file.exists(), "a stopped agent is no longer ready"
        assert "Traceback" not in agent.stderr()


@pytest.fixture
def pair(start_agent: Callable[[str], AgentProcess]) -> tuple[AgentProcess, AgentProcess]:
    """Alice and bob, both registered."""
    return start_agent("alice"), start_agent("bob")


# -- the CLI without an agent -----------------------------------------------------------------------


def test_cli_says_when_no_agent_runs(workdir: pathlib.Path) -> None:
    sock = str(workdir / "none.sock")
    for args in (["status"], ["health"], ["send", "bob", "hi"], ["connect", "bob"], ["peers"]):
        result = subprocess.run(
            [sys.executable, "-m", "client", *args],
            env={**os.environ, "NATLAB_SOCKET": sock},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr == f"client: agent not running (no socket at {sock})\n"
        assert result.stdout == ""


def test_stale_socket_is_reported(workdir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(workdir / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # bound, never listening: what a killed agent leaves behind
        assert main(["status"], {"NATLAB_SOCKET": path}) == 1
    assert capsys.readouterr().err.startswith(f"client: agent not running (no answer at {path}: ")


def test_health_gives_up_fast_on_a_hung_agent(workdir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(workdir / "hung.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(path)
        hung.listen()  # accepts connections, never answers
        started = time.monotonic()
        assert main(["health"], {"NATLAB_SOCKET": path}) == 1
        assert time.monotonic() - started < 0.5
    assert "agent did not answer status" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "client: NATLAB_ID is not set (required for the agent)"),
        ({"NATLAB_ID": "alice"}, "client: NATLAB_SERVER is not set (required for the agent)"),
        ({"NATLAB_ID": "al ice", "NATLAB_SERVER": "127.0.0.1:9"}, "client: NATLAB_ID: invalid peer id"),
        ({"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1"}, "client: NATLAB_SERVER='127.0.0.1': expected"),
        (
            {"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9", "NATLAB_PUNCH_TIMEOUT": "soon"},
            "client: NATLAB_PUNCH_TIMEOUT='soon': expected a number of s",
        ),
        (
            {"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9", "NATLAB_PUNCH_INTERVAL": "-5"},
            "client: NATLAB_PUNCH_INTERVAL='-5': expected a positive number of ms",
        ),
        (
            {"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9", "NATLAB_RELAY_HEAD_START": "-1"},
            "client: NATLAB_RELAY_HEAD_START='-1': expected a positive number or 0 of ms",
        ),
        ({"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9", "NATLAB_PORT": "70000"}, "client: NATLAB_PORT="),
    ],
)
def test_agent_bad_config_is_one_line_and_exit_2(env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NATLAB_")}
    result = subprocess.run(
        [sys.executable, "-m", "client", "agent"],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {}) == 2
    with pytest.raises(SystemExit) as exc:
        main(["send", "bob"], {})
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# -- one agent -------------------------------------------------------------------------------------


DOCUMENTED_DROPS = [
    "malformed",
    "not_for_agent",
    "not_from_server",
    "own_id",
    "unknown_peer",
    "unknown_source",
    "wrong_source",
    "intro_rate",
    "peer_table_full",
    "peer_evicted",
    "peer_expired",
    "held_full",
    "probe_budget",
    "relay",
    "unsealed",
    "bad_mac",
    "replayed",
    "old_boot",
    "no_key",
    "wrong_id",
    "unmatched",
]
"""The ``dropped`` object's keys as README.md lists them."""


def test_status_json(start_agent: Callable[[str], AgentProcess], server: FakeSignalServer) -> None:
    alice = start_agent("alice")
    result = alice.cli("status", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    status = json.loads(result.stdout)
    assert status == {
        "id": "alice",
        "server": str(server.addr),
        "registered": True,
        "local": str(server.peers["alice"]),  # loopback: what the server sees is our socket
        "key": status["key"],  # no NATLAB_KEY_FILE: an ephemeral identity (tests/test_trust_wiring.py)
        "key_file": None,
        "relay": None,  # no NATLAB_TURN: no relay
        "turn": None,
        "peers": [],
        "dropped": dict.fromkeys(DOCUMENTED_DROPS, 0),  # every reason there, in the README's order
        "tunnel": {  # down: no NATLAB_TUNNEL (README "Tunnel")
            "up": False,
            "interface": "natlab0",
            "address": None,
            "port": 51820,
            "kernel_path": False,
            "reason": None,
            "peers": [],
            "dropped": {"not_peer": 0, "down": 0, "unwritable": 0},
        },
    }
    assert list(status["dropped"]) == DOCUMENTED_DROPS
    assert alice.named("registered") == [
        {"ts": alice.named("registered")[0]["ts"], "event": "registered", "server": str(server.addr)}
    ]
    assert "[client] registered with server" in alice.stderr()
    assert f"no NATLAB_KEY_FILE: ephemeral identity, key {status['key']}" in alice.stderr()


def test_health_is_fast(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    started = time.monotonic()
    assert main(["health"], {"NATLAB_SOCKET": alice.socket}) == 0
    assert time.monotonic() - started < 0.5


def test_second_agent_on_the_same_socket_refuses(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    result = alice.cli("agent")
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"client: another agent is already running (socket {alice.socket} answers)")


def test_garbage_datagrams_do_not_hurt_the_agent(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    local = Endpoint.parse(alice.status()["local"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for data in (b"", b"\xff\xfe", b"x" * 1500, b"punch bob 1.2.3.4:5", b"msg", b"hello !!"):
            attacker.sendto(data, local.sockaddr())
    wait_for(lambda: "dropped punch" in alice.stderr(), "the agent to log the dropped datagrams")
    status = alice.status()
    assert status["registered"]
    dropped = {reason: n for reason, n in status["dropped"].items() if n}
    assert dropped == {"malformed": 5, "not_from_server": 1}
    assert "  dropped: malformed 5, not_from_server 1\n" in alice.cli("status").stdout
    assert "Traceback" not in alice.stderr()


def test_control_protocol_rejects_bad_requests(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
        ctl.settimeout(5)
        ctl.connect(alice.socket)
        stream = ctl.makefile("rwb")
        answers = []
        for line in (b"not json\n", b'{"op": "fly"}\n', b'{"op": "send", "peer": "bob"}\n', b'{"op": "status"}\n'):
            stream.write(line)
            stream.flush()
            answers.append(json.loads(stream.readline()))
        stream.close()
    assert answers[0] == {"ok": False, "error": "bad request: expected one JSON object per line"}
    assert answers[1] == {"ok": False, "error": "bad request: unknown op 'fly'"}
    assert answers[2] == {"ok": False, "error": "send: 'text' must be a string"}
    assert answers[3]["ok"] is True


def test_sigterm_exits_0_and_removes_the_socket(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    assert alice.stop() == 0
    assert not os.path.exists(alice.socket)
    assert "[client] stopped" in alice.stderr()


# -- two agents ------------------------------------------------------------------------------------


def test_connect_send_and_events(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, bob = pair
    result = alice.cli("connect", "bob", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["path"] == "direct"
    assert status["addr"] == bob.status()["local"]
    assert isinstance(status["time_to_direct_ms"], float)
    assert status["reason"] is None
    wait_for(lambda: (p := bob.peer("alice")) and p["path"] == "direct", "bob to see the path as direct")

    result = alice.cli("send", "bob", "Hello,", "World?")
    assert result.returncode == 0, result.stderr
    received = wait_for(lambda: bob.named("message_received"), "bob to receive the message")
    assert [(e["peer"], e["text"], e["addr"]) for e in received] == [
        ("alice", "Hello, World?", alice.status()["local"])  # loopback: no NAT rewrites the source
    ]
    assert "[peer alice] Hello, World?" in bob.stderr()

    events = alice.read_events()
    kinds = ["registered", "punch_started", "direct_confirmed", "message_sent", "message_delivered"]
    assert [e["event"] for e in events] == kinds  # a keyed peer acknowledges (sealed data and ack)
    assert all(isinstance(e["ts"], float) and abs(e["ts"] - time.time()) < 60 for e in events)
    assert events[1] == {"ts": events[1]["ts"], "event": "punch_started", "peer": "bob", "addr": status["addr"]}
    sent = {"event": "message_sent", "peer": "bob", "text": "Hello, World?"}
    assert events[3] == {"ts": events[3]["ts"], **sent, "epoch": events[3]["epoch"], "seq": 0}
    assert "[client] punching peer bob (" in alice.stderr()

    peer = alice.peer("bob")
    assert peer is not None
    assert (peer["sent"], peer["received"]) == (1, 0)
    assert set(peer) == {
        "id",
        "addr",
        "path",
        "reason",
        "time_to_direct_ms",
        "time_to_first_message_ms",
        "relay",
        "sent",
        "delivered",
        "retransmitted",
        "duplicates",
        "received",
        "seed",
        "online",
        "last_seen_s",
        "keepalive_s",
    }
    assert peer["seed"] is False  # keyed: authenticated


def test_send_connects_first(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, bob = pair
    result = alice.cli("send", "bob", "no connect needed")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: bob.named("message_received"), "bob to receive the message")


def test_punch_failure_is_reported_with_the_exact_reason(
    pair: tuple[AgentProcess, AgentProcess], server: FakeSignalServer, sink: Endpoint
) -> None:
    alice, _ = pair
    server.lies = {"alice": sink, "bob": sink}
    reason = f"punch failed: no response from {sink} within {PUNCH_TIMEOUT} s"

    result = alice.cli("connect", "bob", "--json")
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert (status["path"], status["reason"], status["addr"]) == ("none", reason, str(sink))

    result = alice.cli("send", "bob", "hello?")
    assert result.returncode == 1
    assert result.stderr == f"client: no path to bob: {reason}\n"
    assert alice.named("message_sent") == []
    assert [e["reason"] for e in alice.named("punch_failed")] == [reason, reason]
    assert "Traceback" not in alice.stderr()


def test_connect_settle_reports_the_settled_path_and_the_probe(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, bob = pair
    result = alice.cli("connect", "bob", "--settle", "--timeout", "8", "--probe", "are you there", "--json")
    assert result.returncode == 0, result.stderr
    settled = json.loads(result.stdout)
    assert list(settled) == ["peer", "settled", "time_to_direct_ms", "delivered", "error"]
    assert (settled["peer"]["path"], settled["settled"], settled["delivered"], settled["error"]) == (
        "direct",
        True,
        True,
        None,
    )
    assert settled["time_to_direct_ms"] == settled["peer"]["time_to_direct_ms"] is not None
    received = wait_for(lambda: bob.named("message_received"), "bob to receive the probe")
    assert [e["text"] for e in received] == ["are you there"]


def test_connect_settle_waits_for_the_punch_to_give_up(
    pair: tuple[AgentProcess, AgentProcess], server: FakeSignalServer, sink: Endpoint
) -> None:
    alice, _ = pair
    server.lies = {"alice": sink, "bob": sink}
    result = alice.cli("connect", "bob", "--settle", "--probe", "hello?", "--json")
    assert result.returncode == 1
    settled = json.loads(result.stdout)
    reason = f"punch failed: no response from {sink} within {PUNCH_TIMEOUT} s"
    assert (settled["peer"]["path"], settled["peer"]["reason"], settled["settled"]) == ("none", reason, True)
    assert (settled["delivered"], settled["error"]) == (False, f"no path to bob: {reason}")
    assert settled["time_to_direct_ms"] is None


def test_connect_options_need_settle(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, _ = pair
    result = alice.cli("connect", "bob", "--probe", "x")
    assert (result.returncode, result.stderr) == (2, "client: connect: --probe and --timeout go with --settle\n")
    result = alice.cli("connect", "bob", "--settle", "--timeout", "0")
    assert (result.returncode, result.stderr) == (2, "client: --timeout 0: expected 0-3600 seconds\n")


def test_bench_connect_measures_each_connect_from_scratch(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, _ = pair
    assert alice.cli("connect", "bob").returncode == 0
    result = alice.cli("bench-connect", "bob", "3", "--gap", "0.05")
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["peer"] == "bob"
    assert len(bench["time_to_direct_ms"]) == 3
    assert all(isinstance(ms, float) and ms >= 0 for ms in bench["time_to_direct_ms"])
    assert len(alice.named("disconnected")) == 3
    assert len(alice.named("direct_confirmed")) == 1 + 3  # each bench connect confirmed anew


def test_connect_to_an_unregistered_peer(start_agent: Callable[[str], AgentProcess]) -> None:
    alice = start_agent("alice")
    result = alice.cli("connect", "carol")
    assert result.returncode == 1
    assert "none" in result.stdout
    assert "server: invalid peers" in result.stdout
    assert alice.named("server_error")[0]["reason"] == "invalid peers"
    result = alice.cli("send", "carol", "hi")
    assert result.stderr == "client: no path to carol: server: invalid peers\n"


def test_peers_disconnect_and_events(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, _ = pair
    assert alice.cli("connect", "bob").returncode == 0
    peers = alice.cli("peers")
    assert peers.returncode == 0
    [line] = peers.stdout.splitlines()
    peer_id, addr, path, *_ = line.split()
    assert (peer_id, addr, path) == ("bob", alice.status()["peers"][0]["addr"], "direct")

    result = alice.cli("disconnect", "bob")
    assert result.returncode == 0, result.stderr
    forgotten = alice.peer("bob")
    assert forgotten is not None
    assert (forgotten["path"], forgotten["reason"]) == ("none", None)
    result = alice.cli("send", "bob", "hi")  # connects again, then sends
    assert result.returncode == 0, result.stderr

    result = alice.cli("disconnect", "carol")  # idempotent, so scenarios can reset both sides blindly
    assert (result.returncode, result.stdout.split()) == (0, ["carol", "-", "none"])

    printed = alice.cli("events")
    assert printed.returncode == 0
    names = [json.loads(line)["event"] for line in printed.stdout.splitlines()]
    assert names.count("disconnected") == 1
    assert names.count("direct_confirmed") == 2


# -- the chat, through a pseudo-terminal -----------------------------------------------------------


@contextlib.contextmanager
def chat(agent: AgentProcess, peer: str) -> Iterator[pexpect.spawn]:
    """``client <peer>`` on a pseudo-terminal; closed (killed if need be) afterwards."""
    env = {**agent.env, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    child = pexpect.spawn(sys.executable, ["-m", "client", peer], env=env, cwd=str(REPO), encoding="utf-8", timeout=10)
    try:
        yield child
    finally:
        child.close(force=True)


def test_chat(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, bob = pair
    with chat(alice, "bob") as child:
        child.expect_exact("[client] punching peer bob (")
        child.expect(r"\[client\] direct path to bob \(127\.0\.0\.1:\d+\) in \d+ ms")
        child.expect_exact("bob>")

        child.sendline("Hello, World?")
        received = wait_for(lambda: bob.named("message_received"), "bob to receive the typed line")
        assert [e["text"] for e in received] == ["Hello, World?"]

        assert bob.cli("send", "alice", "gday").returncode == 0
        child.expect_exact("[peer bob] gday")

        child.sendline("/status")
        child.expect(r"\[client\] bob\s+127\.0\.0\.1:\d+\s+direct")

        child.send("half a line")
        child.sendcontrol("c")  # clears the line, does not leave
        child.sendline("second")
        received = wait_for(lambda: len(bob.named("message_received")) == 2 and bob.named("message_received"), "line 2")
        assert [e["text"] for e in received] == ["Hello, World?", "second"]

        child.sendline("/quit")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0


def test_chat_leaves_on_ctrl_d_and_reports_failure(
    pair: tuple[AgentProcess, AgentProcess], server: FakeSignalServer, sink: Endpoint
) -> None:
    alice, _ = pair
    server.lies = {"alice": sink, "bob": sink}
    with chat(alice, "bob") as child:
        child.expect_exact(f"[client] no path to bob: punch failed: no response from {sink} within 1 s")
        child.sendline("anyone?")
        child.expect_exact("[client] no path to bob: punch failed")
        child.expect_exact("bob>")  # back at the prompt: Ctrl-D now means "leave"
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0


@pytest.mark.parametrize("key", ["d", "c"], ids=["ctrl-d", "ctrl-c"])
def test_chat_leaves_on_ctrl_d_or_ctrl_c_at_an_empty_prompt(pair: tuple[AgentProcess, AgentProcess], key: str) -> None:
    alice, _ = pair
    with chat(alice, "bob") as child:
        child.expect_exact("[client] direct path to bob")
        child.expect_exact("bob>")
        child.sendcontrol(key)
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0


def test_chat_ends_when_the_agent_stops(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, _ = pair
    with chat(alice, "bob") as child:
        child.expect_exact("bob>")
        assert alice.stop() == 0
        child.expect_exact("[client] agent stopped")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 1


def test_events_follow(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, _ = pair
    env = {**alice.env, "PYTHONUNBUFFERED": "1"}
    child = pexpect.spawn(
        sys.executable, ["-m", "client", "events", "--follow"], env=env, cwd=str(REPO), encoding="utf-8", timeout=10
    )
    printed = io.StringIO()
    child.logfile_read = printed
    try:
        child.expect_exact('"event": "registered"')
        assert alice.cli("connect", "bob").returncode == 0
        child.expect_exact('"event": "direct_confirmed"')
        assert alice.cli("disconnect", "bob").returncode == 0
        child.expect_exact('"event": "disconnected"')  # streamed from the agent's subscription, not polled
        child.expect_exact("\n")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    names = [json.loads(line)["event"] for line in printed.getvalue().splitlines() if line.startswith("{")]
    assert names == [e["event"] for e in alice.read_events()]  # the log, then the stream: each event once


def test_events_follow_needs_the_agent(workdir: pathlib.Path) -> None:
    env = {**os.environ, "NATLAB_SOCKET": str(workdir / "none.sock"), "NATLAB_EVENTS": str(workdir / "e.jsonl")}
    (workdir / "e.jsonl").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "client", "events", "--follow"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr.strip()) == (
        1,
        f"client: agent not running (no socket at {workdir}/none.sock)",
    )


def test_chat_without_a_terminal_reads_lines(pair: tuple[AgentProcess, AgentProcess]) -> None:
    alice, bob = pair
    result = subprocess.run(
        [sys.executable, "-m", "client", "chat", "bob"],
        input="one\ntwo\n",
        env=alice.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    received = wait_for(lambda: len(bob.named("message_received")) == 2 and bob.named("message_received"), "2 lines")
    assert [e["text"] for e in received] == ["one", "two"]


# -- the control socket's event stream, in-process -------------------------------------------------


async def _until(condition: Callable[[], Any], what: str) -> None:
    """Poll ``condition`` in the event loop; fail naming ``what`` after 5 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out after 5 s waiting for {what}")


def test_subscription_streams_a_peers_events_and_ends_when_the_reader_leaves(
    workdir: pathlib.Path, server: FakeSignalServer
) -> None:
    async def scenario() -> None:
        config = AgentConfig(
            id="alice", server=server.addr, socket=str(workdir / "a.sock"), events=str(workdir / "a.jsonl")
        )
        with EventLog(config.events) as log:
            agent = Agent(config, log)
            await agent.open()
            try:
                async with ControlServer(agent, config.socket):
                    await _until(lambda: agent.core.registered, "registration")
                    watcher = await AsyncAgentClient.open(config.socket)
                    events = await watcher.subscribe("bob")
                    assert agent.local is not None
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bob:
                        bob.bind(("127.0.0.1", 0))
                        bob.setblocking(False)  # the agent answers in this very event loop
                        # The server introduces carol (not bob: filtered out) and bob, who answers the probe.
                        server.sock.sendto(b"punch carol 127.0.0.1:9", agent.local.sockaddr())
                        server.sock.sendto(
                            f"punch bob 127.0.0.1:{bob.getsockname()[1]}".encode(), agent.local.sockaddr()
                        )
                        loop = asyncio.get_running_loop()
                        assert await asyncio.wait_for(loop.sock_recv(bob, 100), 5) == b"hello alice"
                        bob.sendto(b"hello bob", agent.local.sockaddr())
                        assert await asyncio.wait_for(loop.sock_recv(bob, 100), 5) == b"hello-ack alice"
                        first = await asyncio.wait_for(anext(events), 5)
                        second = await asyncio.wait_for(anext(events), 5)
                    assert (first["event"], first["peer"]) == ("punch_started", "bob")
                    assert (second["event"], second["peer"]) == ("direct_confirmed", "bob")
                    assert len(agent.subscriptions) == 1
                    await watcher.close()
                    await _until(lambda: not agent.subscriptions, "the stream to end")
            finally:
                agent.close()

    asyncio.run(scenario())


def test_a_subscriber_that_falls_behind_is_cut_off() -> None:
    subscription = Subscription(None)
    for n in range(SUBSCRIBER_BACKLOG + 10):
        ev = MessageReceived("bob", f"m{n}", "198.18.0.12:40000")
        subscription.offer(ev, ev.json_line(float(n)))
    assert subscription.queue.qsize() == SUBSCRIBER_BACKLOG + 1
    items = [subscription.queue.get_nowait() for _ in range(SUBSCRIBER_BACKLOG + 1)]
    assert items[-1] is None
    last = MessageReceived("bob", f"m{SUBSCRIBER_BACKLOG - 1}", "198.18.0.12:40000")
    assert items[-2] == last.json_line(float(SUBSCRIBER_BACKLOG - 1))


def test_a_peer_subscription_gets_only_that_peers_events() -> None:
    subscription = Subscription("bob")
    for ev in (MessageReceived("carol", "hi", "198.18.0.13:40000"), MessageReceived("bob", "hi", "198.18.0.12:1")):
        subscription.offer(ev, ev.json_line(1.0))
    assert subscription.queue.qsize() == 1
    assert json.loads(subscription.queue.get_nowait() or "")["peer"] == "bob"


# -- against the real signal server, when there is one ---------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("server.app") is None, reason="no signal server in server/ yet")
def test_with_the_real_signal_server(workdir: pathlib.Path) -> None:
    address = Endpoint("127.0.0.1", free_udp_port())
    command = [sys.executable, "-m", "server", "--listen", str(address), "--state-file", str(workdir / "s.json")]
    with open(workdir / "server.stderr", "wb") as stderr:
        real = subprocess.Popen(command, cwd=REPO, stderr=stderr)
    agents: list[AgentProcess] = []
    try:
        agents += [AgentProcess("alice", address, workdir), AgentProcess("bob", address, workdir)]
        alice, bob = agents
        result = alice.cli("send", "bob", "via the real server")
        assert result.returncode == 0, result.stderr
        received = wait_for(lambda: bob.named("message_received"), "bob to receive the message")
        assert [e["text"] for e in received] == ["via the real server"]
        result = alice.cli("connect", "nobody")
        assert (result.returncode, "server: invalid peers" in result.stdout) == (1, True)
    finally:
        for agent in agents:
            assert agent.stop() == 0, agent.stderr()
        real.send_signal(signal.SIGTERM)
        real.wait(timeout=10)
