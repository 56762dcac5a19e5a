"""`make bench`'s tunnel figures, read and printed (scenarios/tunnel_bench.py): iperf3's TCP JSON and ping's
summary (tests/fixtures/iperf3, tests/fixtures/ping), and the lines with their ratio and aim."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import iperf
from scenarios.tunnel_bench import PingResult, TcpResult, parse_ping, parse_tcp, rtt_line, throughput_line

FIXTURES = Path(__file__).parent / "fixtures"


def test_iperf3_tcp_reads_the_receivers_rate_and_the_senders_retransmissions() -> None:
    result = parse_tcp((FIXTURES / "iperf3" / "tcp-tunnel.json").read_text())
    received = 12_345_678 * 8 / 4.0 / 1e6  # what the fixture's receiver got, over its 4 s
    assert result.mbit_per_s == pytest.approx(received, rel=0.01)
    assert result.retransmits >= 0
    assert result.seconds == pytest.approx(4, abs=0.2)


def test_iperf3s_own_error_reaches_the_user() -> None:
    with pytest.raises(iperf.IperfError, match=r"^iperf3: unable to connect to server: Connection refused$"):
        parse_tcp((FIXTURES / "iperf3" / "refused.json").read_text())


def test_text_that_is_not_iperf3s_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="iperf3 printed no JSON"):
        parse_tcp("iperf3: error - unable to connect")


def test_ping_summary_read() -> None:
    assert parse_ping((FIXTURES / "ping" / "ok.txt").read_text()) == PingResult(20, 20, 0.870, 2.104, 10.712)


def test_ping_without_answers_is_a_value_error_with_pings_words() -> None:
    with pytest.raises(ValueError, match=r"ping got no answer: .*3 packets transmitted, 0 received"):
        parse_ping((FIXTURES / "ping" / "lost.txt").read_text())


def test_throughput_line_gives_the_ratio_and_the_aim() -> None:
    line = throughput_line("TCP, cone-cone (direct)", TcpResult(150.0, 12, 4.0), 600.0, 0.25)
    assert "150.0 Mbit/s (12 retransmits in 4 s)" in line
    assert "raw UDP 600.0 Mbit/s; 25% of raw   aim >= 25%: met" in line
    short = throughput_line("TCP", TcpResult(100.0, 0, 4.0), 600.0, 0.25)
    assert short.endswith("17% of raw   aim >= 25%: not met")
    assert "aim" not in throughput_line("TCP, relayed", TcpResult(40.0, 0, 4.0), 600.0, None)


def test_rtt_line_gives_the_added_round_trip_and_the_aim() -> None:
    tunnel, wan = PingResult(20, 20, 0.8, 1.0, 2.0), PingResult(20, 20, 0.05, 0.1, 0.2)
    line = rtt_line("ping, cone-cone (direct)", tunnel, wan, 0.5)
    assert "avg 1.000 ms (min 0.800, max 2.000, 20/20)" in line
    assert line.endswith("added +0.900 ms   aim < 0.5 ms: not met")
    assert rtt_line("ping", PingResult(20, 20, 0.2, 0.3, 0.4), wan, 0.5).endswith("aim < 0.5 ms: met")
