"""The request-rate generator (``python3 -m client.diagnostics.request_rate``): its request kinds against the
real servers' answers, the loop against real servers on loopback (natlab's, coturn, and a lossy one), and
the bench's server commands."""

import contextlib
import json
import os
import socket
import sys
import threading
import time

import pytest
from aioice import stun

from client.diagnostics import request_rate
from client.diagnostics.rate_loop import Load, Mark, RateError
from client.diagnostics.request_kinds import Answer, signed_register, stun_binding, text_register
from client.turn.wire import CLASS_ERROR, CLASS_REQUEST, CLASS_RESPONSE, encode, parse_stun
from protocol import Endpoint, Frame, parse
from scenarios import server_rate
from server.handler import Handler
from server.table import PeerTable
from tests.support.ports import free_udp_ports

pytestmark = pytest.mark.timeout(30)

LOOPBACK = "127.0.0.1"
QUICK = Load(sockets=8, warmup=0.2, seconds=0.5, resend_after=2.0)
"""Short, and patient with a loaded machine: a resend here means a datagram was really lost."""
two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the server and the generator need a CPU each")


def test_text_register_is_answered_ok_by_the_real_handler():
    exchange = text_register(3)
    request = exchange.request()
    assert request == b"register rate-3"
    source = Endpoint(LOOPBACK, 40003)
    [(reply, to)] = Handler(PeerTable()).handle(request, source, now=1.0)
    assert to == source
    assert exchange.answer(reply) is Answer.REPLY
    assert exchange.answer(b"err invalid id") is Answer.OTHER


def test_signed_register_follows_the_retry_and_is_answered_by_the_real_handler():
    """Without a cookie: Retry (resend, with the cookie); then a proof the server verifies: Ok."""
    handler = Handler(PeerTable())
    exchange, source = signed_register(7), Endpoint(LOOPBACK, 40007)
    request = exchange.request()
    [(retry, _)] = handler.handle(request, source, now=1.0, wall_ms=time.time_ns() // 1_000_000)
    assert exchange.answer(retry) is Answer.RESEND
    second = exchange.request()
    first_frame, second_frame = parse(request), parse(second)
    assert isinstance(first_frame, Frame)
    assert isinstance(second_frame, Frame)
    assert (first_frame.cookie, second_frame.txid) == (None, first_frame.txid + 1)
    assert second_frame.cookie is not None
    [(ok, _)] = handler.handle(second, source, now=1.0, wall_ms=time.time_ns() // 1_000_000)
    assert exchange.answer(ok) is Answer.REPLY
    assert exchange.answer(retry) is Answer.OTHER  # a Retry for an earlier transaction
    peer = handler.table.lookup("rate-7", now=1.0)
    assert peer is not None
    assert peer.keyed


def test_stun_binding_requests_are_real_and_each_a_new_transaction():
    exchange = stun_binding(0)
    first, second = parse_stun(exchange.request()), parse_stun(exchange.request())
    assert (first.method, first.cls) == (stun.Method.BINDING, CLASS_REQUEST)
    assert first.tid != second.tid


def test_stun_binding_answer_is_the_success_response_to_the_last_request():
    exchange = stun_binding(0)
    earlier = parse_stun(exchange.request()).tid
    tid = parse_stun(exchange.request()).tid
    mapped = {"XOR-MAPPED-ADDRESS": (LOOPBACK, 40000)}
    assert exchange.answer(encode(stun.Method.BINDING, CLASS_RESPONSE, mapped, tid)) is Answer.REPLY
    assert exchange.answer(encode(stun.Method.BINDING, CLASS_RESPONSE, mapped, earlier)) is Answer.OTHER
    error = encode(stun.Method.BINDING, CLASS_ERROR, {"ERROR-CODE": (400, "Bad Request")}, tid)
    assert exchange.answer(error) is Answer.OTHER


def test_summary_of_a_window():
    start = Mark(at=10.0, replies=100, resent=1, ignored=0, own_cpu=5.0, server_cpu=7.0)
    end = Mark(at=12.0, replies=2100, resent=3, ignored=1, own_cpu=6.0, server_cpu=9.0)
    result = request_rate.summarise("register", Endpoint(LOOPBACK, 9000), 8, start, end)
    assert (result.replies, result.per_s, result.resent, result.ignored) == (2000, 1000.0, 2, 1)
    assert (result.generator_cpu, result.server_cpu, result.server_us_per_reply) == (0.5, 1.0, 1000.0)


@two_cpus
@pytest.mark.parametrize(
    ("loop", "kind"), [("asyncio", "register"), ("uvloop", "register"), ("uvloop", server_rate.SIGNED)]
)
def test_natlab_server_rate_with_the_bench_command(tmp_path, loop, kind):
    """Each client registered its own id (keyed, for the signed register), and nothing was lost."""
    [port] = free_udp_ports(1)
    mode = server_rate.natlab(loop, port, python=sys.executable, files=str(tmp_path), kind=kind)
    _assert_server_measured(request_rate.run(Endpoint(LOOPBACK, port), mode.kind, QUICK, command=mode.server))
    peers = json.loads((tmp_path / f"natlab-server-{kind}-{loop}.json").read_text())["peers"]
    assert sorted(peer["id"] for peer in peers) == sorted(f"rate-{n}" for n in range(QUICK.sockets))
    assert {peer["keyed"] for peer in peers} == {kind == server_rate.SIGNED}


@two_cpus
@pytest.mark.needs("turnserver")  # apt-get install coturn
def test_coturn_rate_with_the_bench_command(tmp_path):
    [port] = free_udp_ports(1)
    mode = server_rate.coturn(port, files=str(tmp_path))
    _assert_server_measured(request_rate.run(Endpoint(LOOPBACK, port), mode.kind, QUICK, command=mode.server))


def _assert_server_measured(result):
    assert result.replies > 0
    assert result.per_s == pytest.approx(result.replies / result.seconds, rel=0.01)
    assert (result.resent, result.ignored) == (0, 0)
    assert result.server_cpu is not None
    assert result.server_cpu > 0
    assert result.server_us_per_reply is not None
    assert result.server_us_per_reply > 0


class LossyServer:
    """Answers ``ok`` to every datagram but each fourth, which it drops: the generator must resend."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)
        self.address = Endpoint.of(self.sock.getsockname())
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="lossy-server")

    def serve(self) -> None:
        received = 0
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                _, source = self.sock.recvfrom(2048)
                received += 1
                if received % 4:
                    self.sock.sendto(b"ok", source)


@pytest.fixture
def lossy_server():
    server = LossyServer()
    server.thread.start()
    yield server
    server.stopped.set()
    server.thread.join(timeout=5)
    server.sock.close()


def test_lost_requests_are_resent_and_counted(lossy_server):
    load = Load(sockets=4, warmup=0.1, seconds=0.5, resend_after=0.05)
    result = request_rate.run(lossy_server.address, "register", load)
    assert result.replies > 0
    assert result.resent > 0
    assert result.server_cpu is None  # not our child: not measured


def test_no_answer_is_a_clear_error():
    [port] = free_udp_ports(1)
    with pytest.raises(RateError, match=rf"no answer from {LOOPBACK}:{port} within 0.3 s"):
        request_rate.measure(Endpoint(LOOPBACK, port), "register", QUICK, ready_wait=0.3)


@two_cpus
def test_cli_reports_a_server_that_exits_with_its_output(capsys):
    [port] = free_udp_ports(1)
    command = [sys.executable, "-c", "import sys; print('cannot start: no such thing'); sys.exit(3)"]
    assert request_rate.main([f"{LOOPBACK}:{port}", "--seconds", "0.2", "--", *command]) == 1
    err = capsys.readouterr().err
    assert "request_rate: the server exited with status 3 before answering" in err
    assert "the server's last 1 lines of output:\ncannot start: no such thing" in err


@two_cpus
def test_a_server_that_refuses_the_request_is_named_with_its_answer(tmp_path):
    """natlab's server with its default id quota (16 per address) refuses the 17th client (3 s: the first
    client waits for the server to start, the 17th for an answer that does not come)."""
    [port] = free_udp_ports(1)
    command = [sys.executable, "-m", "server", "--listen", f"{LOOPBACK}:{port}"]
    load = Load(sockets=17, warmup=0.1, seconds=0.2)
    with pytest.raises(RateError, match=r"it sent b'err too many ids from this ip' instead") as refused:
        request_rate.run(Endpoint(LOOPBACK, port), "register", load, command=command, ready_wait=3)
    assert "refused rate-16" in str(refused.value)


@two_cpus
def test_cli_json_of_a_real_server(capsys, tmp_path):
    [port] = free_udp_ports(1)
    args = [f"{LOOPBACK}:{port}", "--sockets", "4", "--warmup", "0.1", "--seconds", "0.3", "--json", "--"]
    assert request_rate.main([*args, *server_rate.natlab("uvloop", port, sys.executable, str(tmp_path)).server]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "register"
    assert result["sockets"] == 4
    assert result["replies"] > 0


def test_one_cpu_is_not_enough(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(RateError, match=r"need a CPU each; this process may use \[0\]"):
        request_rate.cpus(None, None)


def test_cpus_default_to_the_last_for_the_server_and_the_first_other_for_us(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 3})
    assert request_rate.cpus(None, None) == (3, 0)
    assert request_rate.cpus(0, None) == (0, 2)


@pytest.mark.parametrize("args", [["--sockets", "0"], ["--seconds", "0"], ["--warmup", "-1"], ["localhost:9000"]])
def test_cli_rejects_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        request_rate.main(["127.0.0.1:9000", *args] if args[0].startswith("--") else args)
    assert exit_.value.code == 2
    assert "request_rate" in capsys.readouterr().err


def test_bench_report_gives_each_natlab_rate_as_a_ratio_to_coturn():
    def result(per_s, cpu, cost):
        return {"per_s": per_s, "server_cpu": cpu, "server_us_per_reply": cost, "generator_cpu": 0.5}

    results = {
        "natlab register, uvloop": result(60000.0, 0.99, 16.5),
        server_rate.COTURN: result(120000.0, 0.97, 8.1),
    }
    header, natlab, coturn = server_rate.report(results, server_rate.Settings(seconds=3, warmup=1, sockets=64))
    assert header == "  server rate, one CPU each, loopback (64 clients, 3 s after 1 s warm-up):"
    assert "60,000 req/s  (server CPU  99%,  16.5 us/request" in natlab
    assert natlab.endswith("0.50x coturn, 0.49x per CPU-second")
    assert "120,000 req/s" in coturn
    assert "x coturn" not in coturn


def test_bench_report_says_when_a_server_did_not_have_its_cpu():
    def result(cpu):
        return {"per_s": 1000.0, "server_cpu": cpu, "server_us_per_reply": 10.0, "generator_cpu": 0.5}

    settings = server_rate.Settings()
    assert len(server_rate.report({"natlab": result(0.95), server_rate.COTURN: result(0.91)}, settings)) == 3
    *_, note = server_rate.report({"natlab": result(0.95), server_rate.COTURN: result(0.5)}, settings)
    assert note == "    (a server had less than 90% of its CPU: the machine was busy; compare per CPU-second)"


def test_bench_runs_the_generator_with_the_server_after_a_double_dash():
    mode = server_rate.natlab("uvloop")
    command = server_rate.generator_command(mode, server_rate.Settings(seconds=2, warmup=0.5, sockets=16))
    split = command.index("--")
    assert command[:4] == ["python3", "-m", "client.diagnostics.request_rate", "127.0.0.1:9000"]
    assert command[split + 1 :] == [
        "python3", "-m", "server", "--listen", "127.0.0.1:9000",
        "--state-file", "/tmp/natlab-server-register-uvloop.json",
        "--ids-per-ip", "1024", "--rate", "10000000", "--burst", "10000000", "--loop", "uvloop",
    ]  # fmt: skip
    assert request_rate._parse_args(command[3:]).command == list(mode.server)


def test_bench_keeps_each_modes_best_round():
    best: dict = {}
    for name, per_s in [("natlab", 10.0), (server_rate.COTURN, 30.0), ("natlab", 20.0), (server_rate.COTURN, 25.0)]:
        server_rate.keep_best(best, name, {"per_s": per_s})
    assert best == {"natlab": {"per_s": 20.0}, server_rate.COTURN: {"per_s": 30.0}}
    header = server_rate.report({}, server_rate.Settings(rounds=3))[0]
    assert header.endswith("1 s warm-up, best of 3 rounds):")
