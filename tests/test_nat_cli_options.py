"""The profile catalogue and its options through the ``nat`` command line: ``render`` flags, ``show`` rows."""

import ipaddress
import json

import pytest

from nat import cli, conntrack, nft, router, state
from nat.interfaces import Link
from nat.profiles import get_profile

WAN = Link("eth0", ipaddress.IPv4Interface("198.18.0.11/24"))
LAN = Link("eth1", ipaddress.IPv4Interface("198.18.1.2/24"))


def main(tmp_path, *args):
    return cli.main(["--state-dir", str(tmp_path), *args])


def test_render_takes_the_options_and_the_wan_address(capsys, tmp_path):
    args = ["render", "full-cone", "--hairpin", "on", "--wan-address", "10.0.0.1", "--udp-blocked", "1"]
    assert main(tmp_path, *args, "--udp-allow", "10.0.0.20", "10.0.0.10") == 0
    out = capsys.readouterr().out
    assert "full-cone (full cone): mapping=endpoint-independent" in out.splitlines()[0]
    assert 'iifname "eth1" ip daddr 10.0.0.1 meta l4proto udp dnat ip to udp dport map @mappings' in out
    assert "set udp_allowed { type ipv4_addr; elements = { 10.0.0.10, 10.0.0.20 }; }" in out


def test_render_without_options_keeps_the_profiles(capsys, tmp_path):
    assert main(tmp_path, "render", "udp-blocked") == 0
    out = capsys.readouterr().out
    assert "hairpin=off udp_blocked=on" in out
    assert "set udp_allowed { type ipv4_addr; }" in out


@pytest.mark.parametrize("args", [["--hairpin", "maybe"], ["--udp-allow", "turn"], ["--wan-address", "x"]])
def test_render_bad_option_exits_2(args, capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(tmp_path, "render", "cone", *args)
    assert exited.value.code == 2
    assert f"nat render: error: argument {args[0]}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("profile", "udp_row"),
    [
        (get_profile("full-cone"), "udp         open"),
        (get_profile("udp-blocked"), "udp         blocked to and from the WAN but for set udp_allowed (below)"),
    ],
)
def test_show_prints_the_summary_and_udp_rows(profile, udp_row, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nft, "run_nft", lambda *args, script=None, timeout=nft.TIMEOUT: "table inet natlab {\n}\n")
    monkeypatch.setattr(conntrack, "list_entries", lambda proto="udp": [])
    (tmp_path / state.PROFILE_FILE).write_text(json.dumps(router.state_record(profile, WAN, LAN)))
    assert main(tmp_path, "show") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"summary     {profile.summary}" in lines
    assert udp_row in lines
