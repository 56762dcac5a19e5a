"""``nat impair`` and the impairments in ``nat show``, with the kernel side replaced: exit codes, messages,
the state file, and the SIGHUP (a real one, to this process) that tells ``nat run``."""

import ipaddress
import json
import os
import signal
import subprocess
import sys

import pytest

from nat import cli, conntrack, nft, router, state
from nat.impair import apply, control
from nat.impair.model import Impairments, LinkImpairment
from nat.impair.presets import PRESETS
from nat.interfaces import Link
from nat.profiles import get_profile

WAN = Link("eth0", ipaddress.IPv4Interface("198.18.0.11/24"))
LAN = Link("eth1", ipaddress.IPv4Interface("198.18.1.2/24"))


@pytest.fixture
def state_dir(tmp_path):
    """A router's state directory as ``nat run`` leaves it: the profile with its links, and its pid (ours)."""
    directory = tmp_path / "natlab"
    directory.mkdir()
    (directory / state.PROFILE_FILE).write_text(json.dumps(router.state_record(get_profile("cone"), WAN, LAN)))
    (directory / state.PID_FILE).write_text(f"{os.getpid()}\n")
    return directory


@pytest.fixture
def applied(monkeypatch):
    """The kernel side replaced: the impairments and interfaces each apply was given."""
    calls = []
    monkeypatch.setattr(cli, "apply_impairments", lambda *args: calls.append(args))
    return calls


@pytest.fixture
def hangups():
    """SIGHUPs this process receives while the test runs (``nat impair`` signals the pid in ``nat.pid``)."""
    received = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGHUP, previous)


def impair(state_dir, *args):
    return cli.main(["--state-dir", str(state_dir), "impair", *args])


def recorded(state_dir):
    return Impairments.from_dict(json.loads((state_dir / state.IMPAIR_FILE).read_text()))


def test_both_directions_by_default_applied_recorded_and_signalled(state_dir, applied, hangups, capsys):
    assert impair(state_dir, "delay=80ms", "loss=2%") == 0
    link = LinkImpairment(delay_ms=80, loss=0.02)
    assert applied == [(Impairments(link, link), "eth0", "eth1")]
    assert recorded(state_dir) == Impairments(link, link)
    assert hangups == [signal.SIGHUP]
    assert capsys.readouterr().out == "impair up   delay=80ms loss=2%\nimpair down delay=80ms loss=2%\n"


def test_one_direction_keeps_the_other(state_dir, applied, hangups, capsys):
    assert impair(state_dir, "down", "rate=10mbit") == 0
    assert impair(state_dir, "up", "delay=40ms") == 0
    assert recorded(state_dir) == Impairments(LinkImpairment(delay_ms=40), LinkImpairment(rate_bps=10_000_000))
    assert capsys.readouterr().out.splitlines()[-2:] == ["impair up   delay=40ms", "impair down rate=10mbit"]
    assert len(hangups) == 2


def test_a_preset_for_both_gives_each_direction_its_half(state_dir, applied, hangups):
    assert impair(state_dir, "both", "satellite") == 0
    assert recorded(state_dir) == Impairments(PRESETS["satellite"].up, PRESETS["satellite"].down)


def test_clear(state_dir, applied, hangups, capsys):
    assert impair(state_dir, "lte") == 0
    assert impair(state_dir, "clear") == 0
    assert recorded(state_dir) == Impairments()
    assert applied[-1] == (Impairments(), "eth0", "eth1")
    assert capsys.readouterr().out.endswith("impair up   off\nimpair down off\n")


def test_no_spec_prints_what_is_in_force(state_dir, applied, hangups, capsys):
    assert impair(state_dir) == 0
    assert capsys.readouterr().out == "impair      (none recorded: no impair.json)\n"
    assert impair(state_dir, "up", "duplicate=5%") == 0
    (state_dir / state.IMPAIR_STATS_FILE).write_text(json.dumps({"up": {"seen": 10, "held": 2}, "down": {}}))
    capsys.readouterr()
    assert impair(state_dir, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["up"] == "duplicate=5%"
    assert shown["down"] == "off"
    assert shown["settings"] == Impairments(LinkImpairment(duplicate=0.05)).as_dict()
    assert shown["stats"] == {"up": {"seen": 10, "held": 2}, "down": {}}
    assert impair(state_dir) == 0
    assert "delay line  up: seen=10 held=2" in capsys.readouterr().out.splitlines()
    assert applied == [(Impairments(LinkImpairment(duplicate=0.05)), "eth0", "eth1")]


@pytest.mark.parametrize(
    "case",
    [
        (["loss=2"], "nat: impair: 'loss=2': expected a percentage with %, such as 2% or 0.5%\n"),
        (["up", "fast"], "nat: impair: 'fast': expected key=value (key delay, jitter, reorder, loss, burst, "
         "duplicate, rate, limit), a preset (cable, dsl, lossy-wifi, lte, satellite) or off\n"),
        (["down"], "nat: impair down: expected settings after the direction (key=value, a preset, or off)\n"),
        (["up", "down", "delay=1ms"], "nat: impair: 'down': expected key=value (key delay, jitter, reorder, loss, "
         "burst, duplicate, rate, limit), a preset (cable, dsl, lossy-wifi, lte, satellite) or off\n"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_and_changes_nothing(state_dir, applied, hangups, capsys, case):
    args, message = case
    assert impair(state_dir, *args) == 2
    assert capsys.readouterr().err == message
    assert applied == []
    assert hangups == []
    assert not (state_dir / state.IMPAIR_FILE).exists()


def test_no_router_pid_exits_1_before_touching_the_kernel(state_dir, applied, capsys):
    (state_dir / state.PID_FILE).unlink()
    assert impair(state_dir, "delay=80ms") == 1
    assert capsys.readouterr().err == f"nat: impair: no {state_dir / 'nat.pid'}: `nat run` is not running here\n"
    assert applied == []


def test_a_stale_pid_exits_1(state_dir, applied, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    (state_dir / state.PID_FILE).write_text(f"{gone.pid}\n")
    assert impair(state_dir, "delay=80ms") == 1
    assert capsys.readouterr().err == (
        f"nat: impair: `nat run` (pid {gone.pid} in {state_dir / 'nat.pid'}) is not running: the file is stale\n"
    )
    assert applied == []


def test_no_router_state_exits_1(tmp_path, applied, capsys):
    assert impair(tmp_path, "delay=80ms") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nat: impair: no router state in {tmp_path / 'profile.json'} (")
    assert err.endswith("): is `nat run` running?\n")


def test_a_tool_error_exits_1_verbatim_and_records_nothing(state_dir, hangups, monkeypatch, capsys):
    def refuse(*args):
        raise apply.ApplyError('tc qdisc replace dev eth1 root tbf ... failed: Cannot find device "eth1"')

    monkeypatch.setattr(cli, "apply_impairments", refuse)
    assert impair(state_dir, "rate=10mbit") == 1
    assert capsys.readouterr().err == (
        'nat: impair: tc qdisc replace dev eth1 root tbf ... failed: Cannot find device "eth1"\n'
    )
    assert not (state_dir / state.IMPAIR_FILE).exists()
    assert hangups == []


def test_a_corrupt_state_file_is_reported(state_dir, applied, capsys):
    (state_dir / state.IMPAIR_FILE).write_text('{"up": {"speed": 1}}')
    assert impair(state_dir) == 1
    assert capsys.readouterr().err == (
        f"nat: impair: {state_dir / 'impair.json'} holds no impairments: up: unknown field(s) speed\n"
    )


def test_show_includes_the_impairments(state_dir, applied, hangups, monkeypatch, capsys):
    monkeypatch.setattr(nft, "list_table", lambda: "table inet natlab {\n}\n")
    monkeypatch.setattr(conntrack, "list_entries", lambda: [])
    assert impair(state_dir, "up", "lte") == 0
    capsys.readouterr()
    assert cli.main(["--state-dir", str(state_dir), "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["impairments"]
    assert shown == control.describe(Impairments(PRESETS["lte"].up), None)
    assert shown["up"] == "delay=20ms jitter=8ms loss=0.5% rate=6mbit"
    assert cli.main(["--state-dir", str(state_dir), "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "impair up   delay=20ms jitter=8ms loss=0.5% rate=6mbit" in lines
    assert "impair down off" in lines
