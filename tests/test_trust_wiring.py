"""The keys where they are used: the agent loads its identity at start (waiting for the lab's server to write it),
and the server loads the registry (``--registry``). Real files, real processes; no Docker."""

from __future__ import annotations

import logging
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from client.daemon.config import AgentConfig, AgentStartError, agent_config, with_identity
from protocol import Endpoint
from server.__main__ import parse_args
from tests.test_client_agent import AgentProcess, FakeSignalServer, wait_for, workdir  # noqa: F401 (fixture)
from trust import Identity, Registry, key_file, make_keys

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVER = Endpoint("127.0.0.1", 9)


def test_agent_config_reads_the_key_file_variable() -> None:
    env = {"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9000"}
    assert agent_config(env).key_file is None
    assert agent_config({**env, "NATLAB_KEY_FILE": "/k/alice.json"}).key_file == "/k/alice.json"


def test_without_a_key_file_the_identity_is_ephemeral(caplog: pytest.LogCaptureFixture) -> None:
    config = AgentConfig("alice", SERVER)
    caplog.set_level(logging.INFO, "client")
    assert with_identity(config) is config
    assert f"no NATLAB_KEY_FILE: ephemeral identity, key {config.identity.public.fingerprint}" in caplog.text
    assert AgentConfig("alice", SERVER).identity.public != config.identity.public  # each one its own
    assert config.core().identity is config.identity


def test_the_identity_comes_from_the_key_file(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    make_keys(["alice"], tmp_path)
    path = key_file(tmp_path, "alice")
    caplog.set_level(logging.INFO, "client")
    config = with_identity(AgentConfig("alice", SERVER, key_file=str(path)))
    expected = Identity.load(path).public
    assert config.identity.public == expected
    assert config.core().identity.public == expected
    assert f"identity from {path}, key {expected.fingerprint}" in caplog.text


def test_the_agent_waits_for_a_key_file_written_after_it_starts(tmp_path: pathlib.Path) -> None:
    """The lab's race: hosts start while the server is still making the keys."""
    path = key_file(tmp_path, "alice")
    writer = threading.Timer(0.4, make_keys, (["alice"], tmp_path))
    started = time.monotonic()
    writer.start()
    try:
        config = with_identity(AgentConfig("alice", SERVER, key_file=str(path)), wait=10)
    finally:
        writer.join()
    assert 0.4 <= time.monotonic() - started < 5
    assert config.identity.public == Identity.load(path).public


def test_a_key_file_that_never_appears_is_a_time_out_naming_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys" / "alice.json"
    started = time.monotonic()
    with pytest.raises(AgentStartError) as caught:
        with_identity(AgentConfig("alice", SERVER, key_file=str(path)), wait=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert str(caught.value) == f"key file {path} did not appear within 0.3 s (NATLAB_KEY_FILE)"


def test_a_damaged_key_file_stops_the_agent_at_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "alice.json"
    path.write_text("{}")
    started = time.monotonic()
    with pytest.raises(AgentStartError, match=r"cannot use key file \(NATLAB_KEY_FILE\): .*alice\.json: format"):
        with_identity(AgentConfig("alice", SERVER, key_file=str(path)), wait=10)
    assert time.monotonic() - started < 2  # no waiting on a file that is there but wrong


def test_a_real_agent_starts_before_its_key_and_runs_with_it(
    workdir: pathlib.Path,  # noqa: F811 (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = workdir / "secrets"
    path = key_file(secrets, "alice")
    monkeypatch.setenv("NATLAB_KEY_FILE", str(path))
    server = FakeSignalServer()
    writer = threading.Timer(0.5, make_keys, (["alice", "bob"], secrets))
    writer.start()
    agent = None
    try:
        agent = AgentProcess("alice", server.addr, workdir)  # returns once registered
        status = agent.status()
        assert status["key"] == Registry.load(secrets / "registry.json")["alice"].fingerprint
        assert status["key_file"] == str(path)
        assert f"identity from {path}, key {status['key']}" in agent.stderr()
        assert f"  key {status['key']} ({path})\n" in agent.cli("status").stdout
    finally:
        writer.join()
        if agent is not None:
            assert agent.stop() == 0
        server.close()


def test_a_real_agent_with_a_damaged_key_file_exits_1_naming_it(workdir: pathlib.Path) -> None:  # noqa: F811
    path = workdir / "alice.json"
    path.write_text("not json")
    env = {"NATLAB_ID": "alice", "NATLAB_SERVER": "127.0.0.1:9", "NATLAB_KEY_FILE": str(path), "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "client", "agent"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert f"client: cannot use key file (NATLAB_KEY_FILE): {path}: not JSON" in done.stderr


def test_server_loads_the_registry(tmp_path: pathlib.Path) -> None:
    made = make_keys(["alice", "bob"], tmp_path)
    args = parse_args(["--registry", str(tmp_path / "registry.json")])
    assert args.registry == made.registry


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "registry.json: no such file"),
        ("{", "registry.json: not JSON"),
        ('{"format": "natlab-registry/1", "ids": {"alice": {"sign": "", "box": ""}}}', "alice: sign: expected 32"),
    ],
)
def test_server_refuses_a_missing_or_damaged_registry(tmp_path: pathlib.Path, content: str | None, message: str):
    path = tmp_path / "registry.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "server", "--registry", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2
    assert f"argument --registry: {path}" in done.stderr
    assert message in done.stderr


def test_server_says_which_ids_its_registry_holds(tmp_path: pathlib.Path) -> None:
    make_keys(["bob", "alice"], tmp_path)
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--listen", "127.0.0.1:0", "--registry", str(tmp_path / "registry.json")],
            cwd=REPO,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "listening on" in log.read_text(), "the server to listen")
        assert "registry: 2 keyed ids (alice, bob)" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
