"""The server's event loop: uvloop when importable (``--loop auto``), or as asked; the same server on both."""

import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import uvloop
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from server.__main__ import main
from server.event_loop import LoopUnavailable, choose
from tests.support.ports import free_udp_ports

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent
UVLOOP_VERSION = version("uvloop")


@pytest.fixture
def no_uvloop(monkeypatch):
    """``import uvloop`` raises ImportError, as on a host without it."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_uvloop_when_importable(choice):
    chosen = choose(choice)
    assert chosen.name == f"uvloop {UVLOOP_VERSION}"
    assert chosen.factory is not None
    loop = chosen.factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_when_asked():
    chosen = choose("asyncio")
    assert (chosen.name, chosen.factory) == ("asyncio", None)


def test_auto_falls_back_to_asyncio_without_uvloop(no_uvloop):
    assert choose("auto").name == "asyncio"


def test_uvloop_insisted_on_without_it_is_a_clear_error(no_uvloop):
    with pytest.raises(LoopUnavailable, match="--loop uvloop: cannot import uvloop"):
        choose("uvloop")


def test_python_m_server_exits_2_when_uvloop_is_missing(no_uvloop, caplog):
    assert main(["--listen", "127.0.0.1:0", "--loop", "uvloop"]) == 2
    assert any("cannot import uvloop" in message for message in caplog.messages)


def test_unknown_loop_is_refused():
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        choose("trio")


@pytest.mark.parametrize(("choice", "logged"), [("uvloop", f"uvloop {UVLOOP_VERSION}"), ("asyncio", "asyncio")])
def test_python_m_server_serves_on_the_loop_it_logs(tmp_path, choice, logged):
    """A register answered ``ok`` and a clean stop on SIGTERM, on either loop; the log names the loop."""
    [port] = free_udp_ports(1)
    log = tmp_path / "server.log"
    with log.open("w") as out:
        command = [sys.executable, "-m", "server", "--listen", f"127.0.0.1:{port}", "--loop", choice]
        server = subprocess.Popen(command, cwd=REPO, stderr=out)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.1)
            assert _ask(client, ("127.0.0.1", port), b"register alice") == b"ok"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=5) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert f"event loop: {logged}" in log.read_text()


def _ask(client: socket.socket, server: tuple[str, int], request: bytes) -> bytes:
    """The server's answer, the request repeated on every 0.1 s receive timeout while it starts (10 s at most)."""
    retrying = Retrying(
        stop=stop_after_delay(10), retry=retry_if_exception_type((TimeoutError, ConnectionRefusedError)), reraise=True
    )
    for attempt in retrying:
        with attempt:
            client.sendto(request, server)
            return client.recv(2048)
    raise AssertionError("unreachable")
