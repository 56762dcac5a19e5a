"""`client udp-rate`: the raw UDP baseline `make bench` prints next to the flood rates. Both ends on loopback,
each in its own thread: they must find each other by their probes and count every datagram sent."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from client.cli.main import main
from client.diagnostics import udp_rate
from protocol import Endpoint
from tests.support.ports import free_udp_ports


def test_send_and_receive_find_each_other_and_count_every_datagram() -> None:
    sender_port, receiver_port = free_udp_ports(2)
    with ThreadPoolExecutor(1) as pool:
        receiving = pool.submit(
            udp_rate.receive, Endpoint("127.0.0.1", sender_port), receiver_port, 200, 500, 10.0, idle=2.0
        )
        sent = udp_rate.send(Endpoint("127.0.0.1", receiver_port), sender_port, 200, 500, 10.0)
        received = receiving.result(timeout=20)
    assert sent["sent"] == 200
    assert received["received"] == 200  # a few hundred datagrams fit the socket buffers: nothing lost
    assert received["per_s"] > 0
    assert received["mb_per_s"] == pytest.approx(received["per_s"] * 500 / 1e6, rel=0.01)


def test_an_end_that_never_hears_the_other_gives_up_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    (port, silent) = free_udp_ports(2)
    code = main(["udp-rate", "send", f"127.0.0.1:{silent}", "10", "--port", str(port), "--timeout", "0.3"], {})
    assert code == 1
    assert capsys.readouterr().err == f"client: udp-rate: no probe from 127.0.0.1:{silent} within 0.3 s\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["send", "127.0.0.1:1", "0"], "udp-rate: N, --size (1..65507) and --port must be positive"),
        (["recv", "nowhere", "10"], "udp-rate: "),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["udp-rate", *argv], {}) == 2
    assert capsys.readouterr().err.startswith(f"client: {error}")


def test_the_result_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    sender_port, receiver_port = free_udp_ports(2)
    with ThreadPoolExecutor(1) as pool:
        receiving = pool.submit(udp_rate.receive, Endpoint("127.0.0.1", sender_port), receiver_port, 5, 100, 10.0)
        assert main(["udp-rate", "send", f"127.0.0.1:{receiver_port}", "5", "--port", str(sender_port)], {}) == 0
        receiving.result(timeout=20)
    assert set(json.loads(capsys.readouterr().out)) == {"sent", "seconds", "per_s"}
