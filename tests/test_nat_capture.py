"""``nat capture``: the tcpdump commands, the recorded state, and the processes' life (start, flush, stop).

The lifecycle tests run a stand-in for tcpdump (a shell script named ``tcpdump`` first on the PATH): the host
has no tcpdump, and what is tested here is natlab's handling of the processes, their messages and signals.
The real tcpdump runs in the lab: scenarios/test_captures.py.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from nat import capture, cli, router, state
from nat.capture import Capture, CaptureError, CaptureSettings, CaptureUsageError, Mode, Tcpdump
from nat.profiles import get_profile
from tests.test_nat_cli import LAN, WAN

STAND_IN = """
import os, signal, sys

# A stand-in tcpdump: $FAKE_TCPDUMP says how it behaves; each signal it gets goes into $FAKE_TCPDUMP_LOG.
behaviour = os.environ.get("FAKE_TCPDUMP", "ok")
if behaviour == "fail":
    sys.exit(f"tcpdump: {sys.argv[6]}: No such device exists")
log = os.open(os.environ["FAKE_TCPDUMP_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
stopping = False
def note(signum, frame):
    global stopping
    os.write(log, f"{signal.Signals(signum).name}\\n".encode())  # one write: no signal can split it
    stopping = stopping or (signum == signal.SIGTERM and behaviour != "stubborn")
if behaviour != "silent":
    signal.signal(signal.SIGUSR2, note)
    signal.signal(signal.SIGTERM, note)
    print(f"tcpdump: listening on {sys.argv[6]}, link-type EN10MB (Ethernet)", file=sys.stderr, flush=True)
while not stopping:
    signal.pause()
"""


@pytest.fixture
def state_dir(tmp_path):
    """A router's state directory after `nat run` set up: profile.json names the WAN and LAN links."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / state.PROFILE_FILE).write_text(json.dumps(router.state_record(get_profile("cone"), WAN, LAN)))
    return folder


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """The stand-in tcpdump first on the PATH; returns the file its signals are written to. Any capture
    left running is stopped afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tcpdump"
    script.write_text(f"#!{sys.executable}\n{STAND_IN}")
    script.chmod(0o755)
    signals = tmp_path / "signals"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TCPDUMP_LOG", str(signals))
    yield signals
    for pid in [p.pid for p in _started]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reaped: this test process is their parent
    _started.clear()


_started: list[Tcpdump] = []


def start(state_dir, tmp_path, mode=Mode.RING, settings=None):
    started = capture.start(mode, state_dir, tmp_path / "pcap", settings)
    _started.extend(started.processes)
    return started


def until(condition):
    Retrying(stop=stop_after_delay(5), wait=wait_fixed(0.02), retry=retry_if_result(lambda r: not r))(condition)


# -- pure parts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode"),
    [("ring", Mode.RING), (" Full ", Mode.FULL), ("1", Mode.FULL), ("on", Mode.FULL), ("", None), ("off", None)],
)
def test_modes(text, mode):
    assert capture.parse_mode(text) is mode


def test_an_unknown_mode_is_the_operators_mistake():
    with pytest.raises(CaptureUsageError, match=r"'rng' is not a capture mode: expected ring, full or off"):
        capture.parse_mode("rng")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"snaplen": 10}, "snaplen 10: expected 64..262144"),
        ({"ring_files": 1}, "ring of 1 files: expected 2..100"),
        ({"ring_megabytes": 0}, "ring files of 0 MB: expected 1..1000"),
    ],
)
def test_settings_out_of_range(fields, message):
    with pytest.raises(CaptureUsageError, match=message):
        CaptureSettings(**fields)


def test_a_full_capture_is_one_file_per_interface(tmp_path):
    command = capture.tcpdump_command("eth0", tmp_path / "wan.pcap", Mode.FULL, CaptureSettings())
    assert command == [
        *("tcpdump", "-Z", "root", "-p", "--immediate-mode", "-i", "eth0", "-s", "256"),
        *("-w", str(tmp_path / "wan.pcap")),
    ]


def test_a_ring_is_tcpdumps_own_size_rotation(tmp_path):
    settings = CaptureSettings(snaplen=128, ring_files=3, ring_megabytes=2)
    command = capture.tcpdump_command("eth1", tmp_path / "lan.pcap", Mode.RING, settings)
    assert command[-4:] == ["-C", "2", "-W", "3"]
    assert command[command.index("-s") + 1] == "128"


def test_the_recorded_capture_round_trips(tmp_path):
    process = Tcpdump("wan", "eth0", 42, ("tcpdump", "-i", "eth0"), str(tmp_path / "log"))
    recorded = Capture(Mode.RING, 1700000000.5, "/var/log/natlab/pcap", CaptureSettings(), (process,))
    assert Capture.from_dict(json.loads(json.dumps(recorded.as_dict()))) == recorded


def test_interfaces_come_from_the_routers_state(state_dir, tmp_path):
    assert capture.interfaces(state_dir) == {"wan": "eth0", "lan": "eth1"}
    with pytest.raises(CaptureError, match=r"no router state in .*profile.json \(is `nat run` up\?\)"):
        capture.interfaces(tmp_path)


def test_files_list_the_capture_before_first_then_oldest_first(tmp_path):
    (tmp_path / "previous").mkdir()
    for name, age in [("wan.pcap1", 1), ("wan.pcap0", 3), ("lan.pcap0", 2), ("previous/wan.pcap0", 9), ("x.log", 0)]:
        (tmp_path / name).write_bytes(b"x" * age)
        os.utime(tmp_path / name, (time.time() - age, time.time() - age))
    names = [f.name for f in capture.files(tmp_path)]
    assert names == ["previous/wan.pcap0", "wan.pcap0", "lan.pcap0", "wan.pcap1"]


def test_alive_means_this_tcpdump_still_runs(tmp_path):
    process = subprocess.Popen(["sleep", "30"])
    try:
        mine = Tcpdump("wan", "eth0", process.pid, ("sleep", "30"), "")
        until(mine.alive)  # the kernel fills in /proc/PID/cmdline just after it lets the parent go on
        assert not Tcpdump("wan", "eth0", process.pid, ("tcpdump", "-i", "eth0"), "").alive(), "a reused pid"
        process.kill()
        until(lambda: " Z " in Path(f"/proc/{process.pid}/stat").read_text())  # exited, not yet reaped
        assert not mine.alive(), "a zombie is not a running capture"
    finally:
        process.kill()
        process.wait()
    assert not mine.alive()


# -- the processes (stand-in tcpdump) -----------------------------------------------------------------------


def test_start_records_one_listening_tcpdump_per_interface(state_dir, tmp_path, stand_in):
    started = start(state_dir, tmp_path)
    assert [(p.role, p.ifname) for p in started.processes] == [("wan", "eth0"), ("lan", "eth1")]
    assert all(p.alive() for p in started.processes)
    assert capture.running(state_dir) == started
    assert started.processes[0].command[-5:] == (str(tmp_path / "pcap" / "wan.pcap"), "-C", "1", "-W", "4")


def test_flush_and_stop_signal_every_tcpdump(state_dir, tmp_path, stand_in):
    started = start(state_dir, tmp_path)
    assert capture.flush(state_dir) == 2
    stopped = capture.stop(state_dir)
    assert stopped == started
    assert not any(p.alive() for p in started.processes)
    assert sorted(stand_in.read_text().split()) == ["SIGTERM", "SIGTERM", "SIGUSR2", "SIGUSR2"]
    assert capture.running(state_dir) is None
    assert capture.stop(state_dir) is None
    assert capture.flush(state_dir) == 0


def test_a_tcpdump_that_ignores_sigterm_is_killed(state_dir, tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("FAKE_TCPDUMP", "stubborn")
    monkeypatch.setattr(capture, "STOP_TIMEOUT", 0.3)
    started = start(state_dir, tmp_path)
    capture.stop(state_dir)
    assert not any(p.alive() for p in started.processes)


def test_a_second_capture_is_refused(state_dir, tmp_path, stand_in):
    start(state_dir, tmp_path)
    with pytest.raises(CaptureUsageError, match="a ring capture is already running: `nat capture stop` first"):
        start(state_dir, tmp_path, Mode.FULL)


def test_a_new_capture_keeps_the_files_of_the_one_before(state_dir, tmp_path, stand_in):
    folder = tmp_path / "pcap"
    folder.mkdir()
    (folder / "wan.pcap0").write_text("old ring")
    (folder / "previous").mkdir()
    (folder / "previous" / "wan.pcap").write_text("older, gone")
    start(state_dir, tmp_path)
    assert sorted(p.name for p in (folder / "previous").iterdir()) == ["wan.pcap0"]


def test_tcpdumps_own_error_is_reported_verbatim_and_nothing_is_left(state_dir, tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("FAKE_TCPDUMP", "fail")
    message = r"tcpdump -Z root -p --immediate-mode -i eth0 .* failed: tcpdump: eth0: No such device"
    with pytest.raises(CaptureError, match=message):
        start(state_dir, tmp_path)
    assert capture.running(state_dir) is None


def test_a_tcpdump_that_never_listens_times_out(state_dir, tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("FAKE_TCPDUMP", "silent")
    monkeypatch.setattr(capture, "STARTUP_TIMEOUT", 0.3)
    with pytest.raises(CaptureError, match=r"failed: silent for 0.3s"):
        start(state_dir, tmp_path)


def test_without_tcpdump_the_error_names_the_package(state_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CaptureError, match=r"tcpdump is not installed \(package tcpdump\)"):
        start(state_dir, tmp_path)


# -- at boot and on the command line ------------------------------------------------------------------------


def boot(env, state_dir, tmp_path):
    """``start_at_boot``; returns its status and what it asked to run when `nat run` exits."""
    at_exit = []
    status = capture.start_at_boot(env, state_dir, tmp_path / "pcap", lambda *call: at_exit.append(call))
    return status, at_exit


def test_boot_starts_what_nat_capture_asks_for_and_forgets_an_earlier_boot(state_dir, tmp_path, stand_in):
    (state_dir / capture.STATE_FILE).write_text("{stale from the boot before")
    assert boot({}, state_dir, tmp_path)[0] is None
    assert not (state_dir / capture.STATE_FILE).exists()
    status, [(stop_at_exit, *arguments)] = boot({"NAT_CAPTURE": "ring"}, state_dir, tmp_path)
    assert status is None
    current = capture.running(state_dir)
    assert current is not None
    _started.extend(current.processes)
    assert current.mode is Mode.RING
    stop_at_exit(*arguments)  # `nat run` exits: tcpdump must write what it holds before the container ends
    assert capture.running(state_dir) is None
    assert not any(p.alive() for p in current.processes)
    assert sorted(stand_in.read_text().split()) == ["SIGTERM", "SIGTERM"]


def test_boot_fails_on_a_bad_mode_or_a_failing_tcpdump(state_dir, tmp_path, stand_in, monkeypatch, caplog):
    assert boot({"NAT_CAPTURE": "sometimes"}, state_dir, tmp_path)[0] == 2
    assert "bad configuration: NAT_CAPTURE: 'sometimes' is not a capture mode" in caplog.text
    monkeypatch.setenv("FAKE_TCPDUMP", "fail")
    assert boot({"NAT_CAPTURE": "full"}, state_dir, tmp_path)[0] == 1
    assert "packet capture failed: tcpdump -Z root" in caplog.text


def nat(state_dir, tmp_path, *args):
    return cli.main(["--state-dir", str(state_dir), "capture", "--folder", str(tmp_path / "pcap"), *args])


def test_the_command_line(state_dir, tmp_path, stand_in, capsys):
    assert nat(state_dir, tmp_path, "status") == 0
    assert capsys.readouterr().out.startswith("no capture running\nno pcap files in")
    assert nat(state_dir, tmp_path, "start", "--ring", "--ring-files", "3") == 0
    current = capture.running(state_dir)
    assert current is not None
    _started.extend(current.processes)
    described = "capturing (ring: a ring of 3 files of 1 MB per interface, 256 bytes of each packet)"
    assert described in capsys.readouterr().out
    assert nat(state_dir, tmp_path, "start") == 2
    assert "nat: a ring capture is already running" in capsys.readouterr().err
    (tmp_path / "pcap" / "wan.pcap0").write_bytes(b"\0" * 24)
    assert nat(state_dir, tmp_path, "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["running"] for p in report["capture"]["processes"]] == [True, True]
    assert [(f["name"], f["bytes"]) for f in report["files"]] == [("wan.pcap0", 24)]
    assert nat(state_dir, tmp_path, "flush") == 0
    assert capsys.readouterr().out == "flushed 2 tcpdump process(es)\n"
    assert nat(state_dir, tmp_path, "stop") == 0
    assert "stopped the ring capture" in capsys.readouterr().out
    assert nat(state_dir, tmp_path, "start", "--ring-size", "0") == 2
    assert "ring files of 0 MB" in capsys.readouterr().err


def test_status_fails_when_a_tcpdump_died(state_dir, tmp_path, stand_in, capsys):
    started = start(state_dir, tmp_path)
    os.kill(started.processes[1].pid, signal.SIGKILL)
    until(lambda: not started.processes[1].alive())
    assert nat(state_dir, tmp_path, "status") == 1
    output = capsys.readouterr().out
    assert "lan  eth1   tcpdump pid" in output
    assert "NOT RUNNING" in output
    assert "error: lan tcpdump (pid" in output
    assert "is gone: tcpdump: listening on eth1" in output
