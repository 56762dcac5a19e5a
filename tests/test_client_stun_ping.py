"""`client stun-ping` against a loopback STUN responder that stays silent for its first requests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from aioice import stun

from client.cli.main import main
from client.diagnostics.stun_ping import StunTimeout, stun_ping
from client.turn.wire import CLASS_RESPONSE, encode, parse_stun
from protocol import Endpoint


class LateStunServer:
    """Answers Binding requests with XOR-MAPPED-ADDRESS, but ignores the first `silent` (a server starting)."""

    def __init__(self, silent: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = Endpoint.of(self.sock.getsockname())
        self.silent = silent
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.requests += 1
            if self.requests <= self.silent:
                continue
            request = parse_stun(data)
            reply = encode(stun.Method.BINDING, CLASS_RESPONSE, {"XOR-MAPPED-ADDRESS": source}, request.tid)
            self.sock.sendto(reply, source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def late_server() -> Iterator[LateStunServer]:
    server = LateStunServer(silent=3)
    yield server
    server.close()


def test_repeats_the_request_until_the_server_answers(late_server: LateStunServer) -> None:
    mapped = stun_ping(late_server.addr, wait=3)
    assert mapped.host == "127.0.0.1"
    assert mapped.port != late_server.addr.port
    assert late_server.requests == 4, "three lost requests, the fourth answered"


def test_times_out_with_the_server_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        addr = Endpoint.of(silent.getsockname())
        with pytest.raises(StunTimeout, match=rf"no STUN Binding response from {addr} within 0.3 s"):
            stun_ping(addr, wait=0.3)


def test_cli_prints_the_mapped_address(late_server: LateStunServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stun-ping", str(late_server.addr), "--wait", "3"], {}) == 0
    assert Endpoint.parse(capsys.readouterr().out.strip()).host == "127.0.0.1"


def test_cli_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stun-ping", "nowhere"], {}) == 2
    assert "invalid address 'nowhere'" in capsys.readouterr().err
