"""The interop drivers' pure parts and `make interop`'s expectations and reports (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interop.nebula import ADDRESSES, config, path_from_log
from interop.report import Report, write_report
from nat.profiles import get_profile
from scenarios.grid_expect import Site
from scenarios.interop_expect import STACK_NAMES, expected
from scenarios.interop_report import Cell, failures, render_html, render_markdown, write_results

PEER = ADDRESSES["b"]


def site(name: str) -> Site:
    return Site.from_profile(get_profile(name))


def test_a_report_round_trips_and_rejects_unknown_paths(tmp_path: Path) -> None:
    report = Report("aiortc", "a", connected=True, path="direct", time_to_connect_ms=12.5, peer_endpoint="1.2.3.4:5")
    write_report(report, tmp_path)
    assert Report.from_json((tmp_path / "result-a.json").read_text()) == report
    with pytest.raises(ValueError, match="path"):
        Report.from_json(json.dumps({"stack": "x", "side": "a", "path": "sideways"}))
    with pytest.raises(ValueError, match="unknown fields"):
        Report.from_json(json.dumps({"stack": "x", "side": "a", "colour": "red"}))


def test_nebula_reads_a_direct_tunnel_from_the_completing_handshake() -> None:
    lines = [
        {"msg": "Handshake message sent", "vpnIp": PEER, "handshake": {"stage": 1}, "udpAddrs": []},
        {"msg": "Handshake message received", "vpnIp": PEER, "handshake": {"stage": 2}, "time": "t",
         "udpAddr": {"ip": "198.18.4.12", "port": 4242}},
    ]  # fmt: skip
    path, how, where = path_from_log(lines, PEER)
    assert (path, where) == ("direct", "198.18.4.12:4242")
    assert "udpAddr 198.18.4.12:4242" in how


def test_nebula_reads_a_relayed_tunnel_and_no_tunnel() -> None:
    lines: list[dict[str, Any]] = [
        {"msg": "Send handshake via relay", "vpnIp": PEER, "relay": ADDRESSES["lighthouse"]},
        {"msg": "Handshake message received", "vpnIp": PEER, "handshake": {"stage": 2}, "udpAddr": None},
    ]
    path, how, where = path_from_log(lines, PEER)
    assert (path, where) == ("relay", None)
    assert ADDRESSES["lighthouse"] in how
    assert path_from_log(lines[:1], PEER)[0] == "none"


def test_nebula_config_relays_only_when_asked(tmp_path: Path) -> None:
    lighthouse = config("lighthouse", tmp_path, "198.18.4.10", relays=True)
    assert lighthouse["relay"]["am_relay"] is True
    assert lighthouse["tun"]["disabled"] is True
    side = config("a", tmp_path, "198.18.4.10", relays=False)
    assert side["relay"] == {"am_relay": False, "use_relays": False, "relays": []}
    assert side["static_host_map"] == {ADDRESSES["lighthouse"]: ["198.18.4.10:4242"]}
    assert side["punchy"]["respond"] is True


@pytest.mark.parametrize(
    ("a", "b", "stack", "allowed"),
    [
        ("cone", "cone", "nebula", {"direct"}),
        ("cone", "symmetric", "nebula", {"none"}),
        ("cone", "symmetric", "nebula-relays", {"relay"}),
        ("cone", "cone", "nebula-relays", {"direct", "relay"}),
        ("cone", "symmetric", "aiortc", {"relay"}),
        ("full-cone", "symmetric", "aiortc", {"direct", "relay"}),
        ("cone", "cone", "natlab", {"direct"}),
    ],
)
def test_expectations_follow_theory_and_each_stack(a: str, b: str, stack: str, allowed: set[str]) -> None:
    assert expected(stack, site(a), site(b))[0] == allowed


def test_every_stack_has_an_expectation_everywhere() -> None:
    for stack in STACK_NAMES:
        for a in ("full-cone", "cone", "symmetric", "udp-blocked"):
            for b in ("full-cone", "cone", "symmetric", "udp-blocked"):
                allowed, theory, _ = expected(stack, site(a), site(b))
                assert allowed
                assert theory in ("direct", "relay")


def cell(stack: str, path: str, allowed: list[str], connected: bool = True) -> Cell:
    result = Cell("cone", "symmetric", stack, "relay", "because", allowed)
    reports = {side: Report(stack, side, connected=connected, path=path, time_to_connect_ms=5.0) for side in "ab"}
    result.attempts.append(reports)
    return result


def test_reports_mark_a_cell_off_its_expectation(tmp_path: Path) -> None:
    good = cell("nebula", "none", ["none"], connected=False)
    bad = cell("aiortc", "direct", ["relay"])
    assert good.matches
    assert not bad.matches
    assert failures([good, bad]) == ["interop: aiortc cone → symmetric: took direct, expected relay"]
    markdown = render_markdown([good, bad], {"wall time": "9 s"})
    assert "✗ direct 1/1 (expected relay)" in markdown
    assert "| cone → symmetric | relay | ✗ direct 1/1 (expected relay) | none 1/1 |" in markdown
    assert "5 ms" in markdown
    assert 'class="bad"' in render_html([good, bad], {})
    _, _, data = write_results(tmp_path, [good, bad], {"wall time": "9 s"})
    assert json.loads(data.read_text())["cells"][1]["matches"] is False


def test_a_cell_the_budget_left_out_is_not_a_failure() -> None:
    left_out = Cell("cone", "cone", "aiortc", "direct", "because", ["direct"])
    assert left_out.summary() == "not run"
    assert failures([left_out]) == []
