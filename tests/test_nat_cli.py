"""``nat`` subcommands with the system tools (nft, conntrack, pyroute2) replaced: exit codes and output."""

import ipaddress
import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from nat import cli, conntrack, interfaces, nft, router, state
from nat.conntrack import Endpoints, Entry
from nat.impair.model import Impairments, LinkImpairment
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


class FakeDelayLines:
    """Stands in for the delay line: records what it was asked, binds no netlink queue on this host."""

    def __init__(self, impairments, stats_file=None):
        self.calls: list[tuple] = [("init", impairments, stats_file)]

    def start(self):
        self.calls.append(("start",))

    def configure(self, impairments):
        self.calls.append(("configure", impairments))

    def stop(self):
        self.calls.append(("stop",))


@pytest.fixture(autouse=True)
def impair(monkeypatch):
    """iptables and the delay line replaced in every test here (they would act on the host): ``applied``,
    the ``apply_impairments`` calls; ``lines``, the fake delay lines made."""
    done = SimpleNamespace(applied=[], lines=[])

    def make_lines(*args, **kwargs):
        done.lines.append(FakeDelayLines(*args, **kwargs))
        return done.lines[-1]

    monkeypatch.setattr(router, "apply_impairments", lambda *args: done.applied.append(args))
    monkeypatch.setattr(router, "DelayLines", make_lines)
    return done


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


def test_setup_applies_the_rendered_script_and_writes_state(state_dir, nft_calls, links, impair):
    router.setup(router.RouterConfig.from_env({**ENV, "NAT_IMPAIR_UP": "delay=40ms"}), state_dir)
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
    impairments = Impairments(up=LinkImpairment(delay_ms=40))
    assert impair.applied == [(impairments, "eth0", "eth1")]
    assert json.loads((state_dir / state.IMPAIR_FILE).read_text()) == impairments.as_dict()
    [lines] = impair.lines
    assert lines.calls == [("init", impairments, state_dir / state.IMPAIR_STATS_FILE), ("start",)]
    assert (state_dir / state.PID_FILE).read_text() == f"{os.getpid()}\n"
    assert (state_dir / state.READY_FILE).exists()
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "impair.json",
        "nat.pid",
        "profile.json",
        "ready",
        "ruleset.nft",
    ]


def test_run_with_a_bad_impairment_exits_2_naming_the_variable(state_dir, caplog):
    with caplog.at_level(logging.INFO, logger="nat"):
        assert router.run({**ENV, "NAT_IMPAIR_DOWN": "delay=soon"}, state_dir) == 2
    [message] = caplog.messages
    assert message.startswith("bad configuration: NAT_IMPAIR_DOWN: 'delay=soon'")


def test_sighup_reconfigures_the_delay_line_from_the_file_and_a_bad_file_keeps_the_old(state_dir, caplog):
    lines = FakeDelayLines(Impairments())
    state_dir.mkdir()
    impairments = Impairments(down=LinkImpairment(delay_ms=5, reorder=0.1))
    (state_dir / state.IMPAIR_FILE).write_text(json.dumps(impairments.as_dict()))
    router.reload_impairments(lines.configure, state_dir)
    for bad in ("{not json", '["up"]', '{"up": {"delay_ms": -1}}', '{"up": {"speed": 1}}'):
        (state_dir / state.IMPAIR_FILE).write_text(bad)
        with caplog.at_level(logging.INFO, logger="nat"):
            router.reload_impairments(lines.configure, state_dir)
    assert lines.calls[1:] == [("configure", impairments)]
    assert len(caplog.messages) == 4
    assert all(m.startswith("impairments not reloaded, the old ones stay: ") for m in caplog.messages)
    assert "unknown field(s) speed" in caplog.messages[-1]


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
