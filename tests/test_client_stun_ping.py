"""`client stun-ping` against a loopback STUN responder that stays silent for its first requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from aioice import stun

from client.cli.main import main
from client.diagnostics.stun_ping import StunTimeout, stun_ping, stun_pings
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
        self.arrivals: list[float] = []
        """time.monotonic() of each request received (answered or not)."""
        self.sources: set[Endpoint] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.arrivals.append(time.monotonic())
            self.sources.add(Endpoint.of(source))
            self.requests += 1
            if self.requests <= self.silent:
                continue
            request = parse_stun(data)
            reply = encode(stun.Method.BINDING, CLASS_RESPONSE, {"XOR-MAPPED-ADDRESS": source}, request.tid)
            self.sock.sendto(reply, source)

    def __enter__(self) -> LateStunServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def late_server() -> Iterator[LateStunServer]:
    with LateStunServer(silent=3) as server:
        yield server


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


@pytest.fixture
def prompt_server() -> Iterator[LateStunServer]:
    with LateStunServer(silent=0) as server:
        yield server


def test_count_exchanges_from_one_socket_after_retransmissions(late_server: LateStunServer) -> None:
    replies = list(stun_pings(late_server.addr, count=3, interval=0.0, wait=3))
    assert len(replies) == 3
    assert late_server.requests == 6, "three lost requests, then one per exchange"
    assert len({r.local for r in replies}) == 1, replies
    assert len({r.mapped for r in replies}) == 1, replies
    assert late_server.sources == {replies[0].mapped}, "every request came from the same socket"
    assert replies[0].local.port == replies[0].mapped.port  # loopback: no NAT in between


def test_exchanges_start_an_interval_apart(prompt_server: LateStunServer) -> None:
    began = time.monotonic()
    replies = list(stun_pings(prompt_server.addr, count=4, interval=0.25, wait=3))
    elapsed = time.monotonic() - began
    assert len(replies) == 4
    assert prompt_server.requests == 4, "one request per exchange, each answered"
    gaps = [b - a for a, b in zip(prompt_server.arrivals, prompt_server.arrivals[1:], strict=False)]
    assert all(gap >= 0.25 - 0.02 for gap in gaps), gaps  # arrival jitter only: sends are >= 0.25 s apart
    # (count - 1) intervals; a --wait (3 s) per exchange would take 9 s or more: generous for a loaded host
    assert 0.75 <= elapsed < 6, elapsed


def test_an_unanswered_exchange_ends_the_run(prompt_server: LateStunServer) -> None:
    replies = stun_pings(prompt_server.addr, count=3, interval=0.0, wait=0.3)
    assert next(replies).mapped.host == "127.0.0.1"
    prompt_server.silent = 10**6  # the server goes quiet
    with pytest.raises(StunTimeout, match=r"within 0\.3 s"):
        next(replies)


def test_cli_prints_one_mapped_address_per_reply(
    prompt_server: LateStunServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stun-ping", str(prompt_server.addr), "--count", "3", "--interval", "0"], {}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    assert len(set(lines)) == 1, lines
    assert Endpoint.parse(lines[0]) in prompt_server.sources


def test_cli_json_names_the_local_address_and_each_reply(
    prompt_server: LateStunServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["stun-ping", str(prompt_server.addr), "--count", "2", "--interval", "0.1", "--json"]
    assert main(argv, {}) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["server"] == str(prompt_server.addr)
    assert len(report["replies"]) == 2, report
    assert prompt_server.requests == 2, report
    local = Endpoint.parse(report["local"])
    assert {Endpoint.parse(r["mapped"]) for r in report["replies"]} == {local} == prompt_server.sources
    assert all(r["rtt_ms"] >= 0 for r in report["replies"]), report


def test_cli_json_for_a_single_exchange(late_server: LateStunServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stun-ping", str(late_server.addr), "--json"], {}) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["replies"]) == 1, report
    assert late_server.requests == 4, report
    assert report["replies"][0]["mapped"] == report["local"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--count", "0"], "--count 0: expected at least 1 exchange"),
        (["--count", "-3"], "--count -3: expected at least 1 exchange"),
        (["--interval", "-0.5"], "--interval -0.5: expected a number of seconds >= 0"),
        (["--interval", "nan"], "--interval nan: expected a number of seconds >= 0"),
        (["--interval", "inf"], "--interval inf: expected a number of seconds >= 0"),
    ],
)
def test_cli_rejects_a_bad_schedule(
    prompt_server: LateStunServer, option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stun-ping", str(prompt_server.addr), *option], {}) == 2
    assert message in capsys.readouterr().err
    assert prompt_server.requests == 0, "nothing is sent before the options are checked"


def test_cli_reports_a_timeout_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        addr = Endpoint.of(silent.getsockname())
        assert main(["stun-ping", str(addr), "--wait", "0.2", "--count", "2", "--json"], {}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no STUN Binding response from {addr} within 0.2 s" in captured.err
