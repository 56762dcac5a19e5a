"""`client linecheck` over loopback: the echo and the sender in threads, first on a clean path, then through a
relay that loses, doubles and reorders chosen datagrams in each direction, so every count is known exactly;
and what the echo refuses (other tokens, other senders, answering with more than it was sent)."""

from __future__ import annotations

import json
import secrets
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from client.cli.main import main
from client.diagnostics import line_check
from client.diagnostics.line_wire import Data, DataReply, Hello, Kind, decode, encode, header_size
from protocol import Endpoint
from tests.support.ports import free_udp_ports

LOOPBACK = "127.0.0.1"


@contextmanager
def running_echo(token: bytes, duration: float = 20.0, idle: float = 5.0) -> Iterator[tuple[int, Future[Any]]]:
    """An echo on a free loopback port in a thread: (its port, its result)."""
    [port] = free_udp_ports(1)
    with ThreadPoolExecutor(1) as pool:
        yield port, pool.submit(line_check.echo, port, token, duration, idle, socket.AF_INET)


Action = Callable[[int], str]
"""A datagram's number -> what the relay does with it: "pass", "drop", "double" or "hold" (sent after the next)."""


class Relay:
    """A path between sender and echo that treats data datagrams by seq (way out) and replies by receipt number
    (way back), so the test knows exactly what each direction lost, doubled and reordered."""

    def __init__(self, token: bytes, echo_port: int, out: Action, back: Action) -> None:
        self.token, self.echo = token, (LOOPBACK, echo_port)
        self.out, self.back = out, back
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the sender sends
        self.rear = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the echo answers
        for sock in (self.front, self.rear):
            sock.bind((LOOPBACK, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.port = self.front.getsockname()[1]
        self.sender: Any = None
        self.held: dict[socket.socket, tuple[bytes, Any] | None] = {self.front: None, self.rear: None}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.front.close()
        self.rear.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.front, selectors.EVENT_READ)
        selector.register(self.rear, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data, source = sock.recvfrom(65536)
                if sock is self.front:
                    self.sender = source
                    self._forward(self.rear, data, self.echo)
                else:
                    self._forward(self.front, data, self.sender)

    def _forward(self, out: socket.socket, data: bytes, to: Any) -> None:
        message = decode(data, self.token)
        match message:
            case Data(seq=number):
                action = self.out(number)
            case DataReply(receipt=number):
                action = self.back(number)
            case _:
                action = "pass"
        held = self.held[out]
        if action == "hold":
            self.held[out] = (data, to)
            return
        if action != "drop":
            out.sendto(data, to)
        if action == "double":
            out.sendto(data, to)
        if held is not None:  # what was held goes after the next datagram: that one overtook it
            out.sendto(*held)
            self.held[out] = None


def way_out(seq: int) -> str:
    if seq % 50 in (10, 11, 12):
        return "drop"  # 20 bursts of 3
    if seq % 100 == 7:
        return "double"  # 10
    return "hold" if seq % 100 == 30 else "pass"  # 31 overtakes 30: 10


def way_back(receipt: int) -> str:
    if receipt % 40 == 5:
        return "drop"
    if receipt % 60 == 0:
        return "double"
    return "hold" if receipt % 100 == 50 else "pass"


def test_a_clean_path_loses_doubles_and_reorders_nothing() -> None:
    token = secrets.token_bytes(16)
    with running_echo(token) as (port, echoed):
        report = line_check.send(Endpoint(LOOPBACK, port), token, line_check.Plan(400, 2000, 100, 5.0))
        echo = echoed.result(timeout=10)
    assert report["summary_error"] is None
    for direction in ("up", "down"):
        figures = report[direction]
        assert (figures["sent"], figures["received"], figures["lost"]) == (400, 400, 0), figures
        assert (figures["duplicates"], figures["ahead"], figures["loss_bursts"]) == (0, 0, 0), figures
        assert figures["delay_ms"]["count"] == 400
        assert figures["delay_ms"]["min"] >= 0
    assert report["answered"] == 400
    assert report["rtt_ms"]["min"] > 0
    assert echo["receipts"] == 400
    assert echo["done"] is True  # the sender's done ended it, not the idle time
    assert echo["peer"] == report["local"]


def test_each_direction_is_counted_on_its_own_through_a_lossy_doubling_reordering_path() -> None:
    token = secrets.token_bytes(16)
    with running_echo(token) as (port, echoed), Relay(token, port, way_out, way_back) as relay:
        report = line_check.send(Endpoint(LOOPBACK, relay.port), token, line_check.Plan(1000, 4000, 100, 5.0))
        echoed.result(timeout=10)
    up, down = report["up"], report["down"]
    # way out: 60 lost in 20 bursts of 3, 10 doubled, 10 overtook; the echo received 940 seqs in 950 receipts
    assert (up["sent"], up["received"], up["receipts"]) == (1000, 940, 950)
    assert (up["lost"], up["loss_bursts"], up["mean_burst"]) == (60, 20, 3.0)
    assert (up["duplicates"], up["ahead"]) == (10, 10)
    # way back, over the 950 replies: receipts 5, 45, ..., 925 lost (24), 0, 60, ..., 900 doubled (16),
    # 51, 151, ..., 851 overtook 50, 150, ..., 850 (9)
    assert (down["sent"], down["received"], down["lost"], down["loss_bursts"]) == (950, 926, 24, 24)
    assert (down["duplicates"], down["ahead"]) == (16, 9)
    assert down["loss"] == pytest.approx(24 / 950, abs=1e-6)
    low, high = down["loss_95"]
    assert low < 24 / 950 < high
    assert report["rtt_ms"]["count"] == 926


def _exchange(sock: socket.socket, data: bytes) -> bytes | None:
    sock.send(data)
    sock.settimeout(0.3)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


def _hello_until_answered(sock: socket.socket, token: bytes) -> bytes:
    """Say hello until the echo (starting in its thread) answers; its answer."""

    def hello() -> bytes | None:
        with suppress(ConnectionRefusedError):  # not listening yet
            return _exchange(sock, encode(Hello(token), 64))
        return None

    retrying = Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.05), retry=retry_if_result(lambda r: r is None))
    answer = retrying(hello)
    assert answer is not None
    return answer


def test_the_echo_answers_only_its_token_from_its_first_sender_never_with_more_bytes() -> None:
    token = secrets.token_bytes(16)
    with running_echo(token, idle=2.0) as (port, echoed):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        ):
            first.connect((LOOPBACK, port))
            stranger.connect((LOOPBACK, port))
            hello = _hello_until_answered(first, token)
            assert hello == token + b"\x02" + bytes(47)  # a hello reply as long as the hello
            assert _exchange(first, encode(Hello(secrets.token_bytes(16)), 64)) is None  # another run's token
            assert _exchange(stranger, encode(Hello(token), 64)) is None  # the token, but not the first sender
            # a data datagram too short for the reply's header gets no reply (it would be larger) ...
            assert _exchange(first, encode(Data(token, 0, 1))) is None
            # ... a long enough one gets a reply of exactly its own length
            reply = _exchange(first, encode(Data(token, 1, 1), 300))
            assert reply is not None
            assert len(reply) == 300
            assert isinstance(decode(reply, token), DataReply)
        echo = echoed.result(timeout=10)
    assert echo["ignored"] == 2
    assert echo["receipts"] == 1
    assert echo["done"] is False  # it left when idle
    assert header_size(Kind.DATA) < header_size(Kind.DATA_REPLY)


def test_a_silent_echo_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    [silent] = free_udp_ports(1)
    argv = ["linecheck", "send", f"{LOOPBACK}:{silent}", "--token", "ab" * 16, "--timeout", "0.3"]
    assert main(argv, {}) == 1
    echo = f"{LOOPBACK}:{silent}"
    assert capsys.readouterr().err == f"client: linecheck: no answer to hello from the echo at {echo} within 0.3 s\n"


def test_the_command_prints_the_report_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    token = secrets.token_bytes(16)
    with running_echo(token) as (port, echoed):
        argv = ["linecheck", "send", f"{LOOPBACK}:{port}", "--token", token.hex(), "--count", "50", "--rate", "1000"]
        assert main(argv, {}) == 0
        echoed.result(timeout=10)
    report = json.loads(capsys.readouterr().out)
    assert report["up"]["sent"] == 50
    assert report["down"]["received"] == 50


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["send", "127.0.0.1:1", "--token", "xyz"], "--token 'xyz': expected 32 hex digits"),
        (["send", "127.0.0.1:1", "--token", "ab" * 8], "expected 32 hex digits"),
        (["send", "127.0.0.1:1", "--token", "ab" * 16, "--count", "0"], "--count 0: expected 1-1000000"),
        (["send", "127.0.0.1:1", "--token", "ab" * 16, "--rate", "nan"], "--rate nan: expected more than 0"),
        (["send", "127.0.0.1:1", "--token", "ab" * 16, "--size", "63"], "--size 63: expected 64-65507 bytes"),
        (["send", "127.0.0.1:1", "--token", "ab" * 16, "--timeout", "0"], "--timeout 0: expected 0-3600 seconds"),
        (["send", "nowhere", "--token", "ab" * 16], "linecheck: "),
        (["echo", "--token", "ab" * 16, "--port", "0"], "--port 0: expected 1-65535"),
        (["echo", "--token", "ab" * 16, "--idle", "-1"], "--idle -1: expected 0-3600 seconds"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["linecheck", *argv], {}) == 2
    assert error in capsys.readouterr().err


def test_an_echo_that_cannot_bind_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        assert main(["linecheck", "echo", "--token", "ab" * 16, "--port", str(port), "--duration", "1"], {}) == 1
    assert capsys.readouterr().err == f"client: linecheck echo: port {port}: Address already in use\n"
