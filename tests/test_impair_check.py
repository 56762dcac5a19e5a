"""`make impair-check`'s own parts that need no lab: the heading of a measured router, and usage errors."""

from __future__ import annotations

import pytest

from nat.impair.model import Impairments, LinkImpairment
from scenarios.impair_check import heading, main
from scenarios.impair_tolerance import Probe
from scenarios.line_measure import Measurement, Site


def test_the_heading_names_the_settings_the_path_and_the_probe() -> None:
    impairments = Impairments(LinkImpairment(delay_ms=20, loss=0.005, rate_bps=6_000_000), LinkImpairment())
    measured = Measurement(
        Site("router-a", "alice", "server", "198.18.0.10"),
        impairments,
        Probe(250, 31.2),
        {"answered": 249, "rtt_ms": {"p50": 35.9}},
        [],
    )
    assert heading(measured).splitlines() == [
        "router-a: up delay=20ms loss=0.5% rate=6mbit; down off",
        "  alice -> echo in server (198.18.0.10): 250 datagrams of 100 bytes at 31.2/s; round trip median 35.9 ms,"
        " 249 answered",
    ]


@pytest.mark.parametrize("seconds", ["0", "601", "nan"])
def test_a_probe_length_out_of_range_is_a_usage_error(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--seconds", seconds])
    assert exited.value.code == 2
    assert "expected 1-600" in capsys.readouterr().err
