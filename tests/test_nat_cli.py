"""``nat`` subcommands with the system tools (nft, conntrack, pyroute2) replaced: exit codes and output."""

import ipaddress
import json
import logging
import subprocess
import sys

import pytest

from nat import cli, conntrack, interfaces, nft, router, state
from nat.conntrack import Endpoints, Entry
from nat.interfaces import Link
from nat.profiles import get_profile

WAN = Link("eth0", ipaddress.IPv4Interface("198.18.0.11/24"))
LAN = Link("eth1", ipaddress.IPv4Interface("198.18.1.2/24"))
ENV = {"NAT_WAN_SUBNET": "198.18.0.0/24", "NAT_LAN_SUBNET": "198.18.1.0/24"}
ENTRY = Entry(
    "udp",
    Endpoints("198.18.1.10", 40000, "198.18.0.12", 40000),
    Endpoints("198.18.0.12", 40000, "198.18.0.11", 40000),
    None,
    ("ASSURED",),
    27,
)

KNOWN = "cone, full-cone, restricted-cone, symmetric, symmetric-pp, symmetric-seq, udp-blocked"


@pytest.fixture
def state_dir(tmp_path):
    """A state directory standing in for /run/natlab (not created: ``nat run`` creates it)."""
    return tmp_path / "natlab"


@pytest.fixture
def nft_calls(monkeypatch):
    """nft and conntrack replaced by fakes; returns the calls made, as (args, stdin) pairs."""
    calls = []

    def fake_nft(*args, script=None, timeout=nft.TIMEOUT):
        calls.append((args, script))
        return "table inet natlab {\n}\n"

    monkeypatch.setattr(nft, "run_nft", fake_nft)
    monkeypatch.setattr(conntrack, "list_entries", lambda proto="udp": [ENTRY])
    monkeypatch.setattr(conntrack, "flush", lambda: calls.append((("conntrack", "-F"), None)))
    return calls


@pytest.fixture
def links(monkeypatch):
    """pyroute2 replaced: this 'container' has lo, WAN and LAN, and a default route to delete."""
    loopback = Link("lo", ipaddress.IPv4Interface("127.0.0.1/8"))
    monkeypatch.setattr(interfaces, "ipv4_links", lambda: [loopback, WAN, LAN])
    monkeypatch.setattr(interfaces, "delete_default_routes", lambda: ["default route via 198.18.0.1 dev eth0"])


def write_ready_state(state_dir):
    state_dir.mkdir()
    (state_dir / state.PROFILE_FILE).write_text(json.dumps(router.state_record(get_profile("cone"), WAN, LAN)))
    (state_dir / state.READY_FILE).write_text("")


def main(state_dir, *args):
    return cli.main(["--state-dir", str(state_dir), *args])


def test_setup_applies_the_rendered_script_and_writes_state(state_dir, nft_calls, links):
    router.setup(router.RouterConfig.from_env(ENV), state_dir)
    [(args, script), flushed] = nft_calls
    assert args == ("-f", "-")
    assert flushed == (("conntrack", "-F"), None)  # after the ruleset, so no flow escapes it
    assert (state_dir / state.RULESET_FILE).read_text() == script
    assert "masquerade" in script
    assert json.loads((state_dir / state.PROFILE_FILE).read_text()) == {
        **get_profile("cone").as_dict(),
        "wan": {"ifname": "eth0", "address": "198.18.0.11", "subnet": "198.18.0.0/24"},
        "lan": {"ifname": "eth1", "address": "198.18.1.2", "subnet": "198.18.1.0/24"},
    }
    assert (state_dir / state.READY_FILE).exists()
    assert sorted(p.name for p in state_dir.iterdir()) == ["profile.json", "ready", "ruleset.nft"]


def test_setup_refused_by_nft_logs_the_script_and_is_not_ready(state_dir, links, monkeypatch, caplog):
    def refusing_nft(*args, script=None, timeout=nft.TIMEOUT):
        raise nft.NftError("nft -f - failed: Error: syntax error")

    monkeypatch.setattr(nft, "run_nft", refusing_nft)
    with caplog.at_level(logging.INFO, logger="nat"):
        assert router.run(ENV, state_dir) == 1
    assert "router setup failed: nft -f - failed: Error: syntax error" in caplog.text
    assert "nft rejected this ruleset:\n# natlab router ruleset" in caplog.text
    assert not (state_dir / state.READY_FILE).exists()


def test_run_with_unknown_profile_exits_2_with_one_clear_line(state_dir, caplog):
    with caplog.at_level(logging.INFO, logger="nat"):
        assert router.run({**ENV, "NAT_PROFILE": "fullcone"}, state_dir) == 2
    assert caplog.messages == [
        f"bad configuration: NAT_PROFILE: unknown NAT profile 'fullcone'; known profiles: {KNOWN}"
    ]


def test_run_without_interfaces_exits_1_naming_subnets(state_dir, monkeypatch, caplog):
    monkeypatch.setattr(router, "INTERFACE_WAIT", 0.0)
    monkeypatch.setattr(interfaces, "ipv4_links", lambda: [LAN])
    with caplog.at_level(logging.INFO, logger="nat"):
        assert router.run(ENV, state_dir) == 1
    assert "no interface has an address in the WAN subnet 198.18.0.0/24; seen: eth1 198.18.1.2/24" in caplog.text


def test_health_needs_the_ready_file(state_dir, nft_calls, capsys):
    assert main(state_dir, "health") == 1
    assert "not ready" in capsys.readouterr().err
    write_ready_state(state_dir)
    assert main(state_dir, "health") == 0
    assert nft_calls == [(("list", "table", "inet", "natlab"), None)]


def test_health_needs_the_table(state_dir, monkeypatch, capsys):
    def no_table(*args, script=None, timeout=nft.TIMEOUT):
        raise nft.NftError("nft list table inet natlab failed: Error: No such file or directory")

    write_ready_state(state_dir)
    monkeypatch.setattr(nft, "run_nft", no_table)
    assert main(state_dir, "health") == 1
    assert "unhealthy: nft list table inet natlab failed" in capsys.readouterr().err


def test_show_json(state_dir, nft_calls, capsys):
    write_ready_state(state_dir)
    assert main(state_dir, "show", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["profile"]["name"] == "cone"
    assert shown["profile"]["wan"]["address"] == "198.18.0.11"
    assert shown["ruleset"] == "table inet natlab {\n}\n"
    assert shown["conntrack"] == [ENTRY.as_dict()]
    assert shown["errors"] == []


def test_show_text(state_dir, nft_calls, capsys):
    write_ready_state(state_dir)
    assert main(state_dir, "show") == 0
    out = capsys.readouterr().out
    for line in [
        "profile     cone",
        "mapping     endpoint-independent",
        "filtering   address-and-port-dependent",
        "ports       preserve",
        "hairpin     off",
        "udp timeout 30s",
        "wan         eth0 198.18.0.11 (198.18.0.0/24)",
        "# nft list table inet natlab",
        "udp 198.18.1.10:40000 -> 198.18.0.12:40000 via 198.18.0.11:40000 [ASSURED] 27s",
    ]:
        assert line in out.splitlines()


def test_show_reports_what_it_has_when_a_part_is_missing(state_dir, nft_calls, capsys):
    assert main(state_dir, "show", "--json") == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["profile"] is None
    assert shown["conntrack"] == [ENTRY.as_dict()]
    assert shown["errors"][0].startswith(f"no router state in {state_dir / 'profile.json'}")


def test_conntrack_json(nft_calls, capsys, tmp_path):
    assert main(tmp_path, "conntrack", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [ENTRY.as_dict()]


def test_conntrack_failure_is_a_message(monkeypatch, capsys, tmp_path):
    def missing(proto="udp"):
        raise conntrack.ConntrackError("conntrack is not installed (package conntrack)")

    monkeypatch.setattr(conntrack, "list_entries", missing)
    assert main(tmp_path, "conntrack") == 1
    assert capsys.readouterr().err == "nat: conntrack is not installed (package conntrack)\n"


def test_render_prints_the_script(capsys, tmp_path):
    assert main(tmp_path, "render", "symmetric", "--udp-timeout", "9") == 0
    out = capsys.readouterr().out
    assert "masquerade fully-random" in out
    assert "unreplied : 9, replied : 9" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "nope"], f"nat: unknown NAT profile 'nope'; known profiles: {KNOWN}\n"),
        (["render", "--udp-timeout", "0"], "nat: UDP timeout must be a whole number of seconds in 1..86400, got 0\n"),
        (["render", "--lan-subnet", "lan"], "nat: Expected 4 octets in 'lan'\n"),
    ],
)
def test_render_bad_input_exits_2_without_traceback(args, message, capsys, tmp_path):
    assert main(tmp_path, *args) == 2
    assert capsys.readouterr().err == message


def test_healthcheck_path_does_not_import_pyroute2_or_tenacity():
    # Docker runs `nat health` several times a second; pyroute2 alone takes ~0.3 s to import.
    code = "import sys, nat.cli; sys.exit(sorted({'pyroute2', 'tenacity'} & set(sys.modules)) or 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
