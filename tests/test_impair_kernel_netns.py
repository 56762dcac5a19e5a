"""The impairments the kernel does, measured through a real router: ``nat run`` (cone) in a network namespace,
``nat impair`` in it, numbered UDP datagrams through it, counted on the far side.

Topology: tests/test_nat_netns.py's (host 198.19.201.2 -> router -> WAN peer 198.19.200.2); ``up`` is what
the host sends, ``down`` what the peer sends back through the NAT's mapping.

Tolerances: a share (loss, duplicates) passes when the setting lies inside the measured share's Wilson
interval at z = 4 (a correct router fails about once in 16,000 runs); a rate within 10% of the setting.
Each load is bounded: at most 20,000 datagrams at 5,000 a second, or 2 s of a 20 Mbit/s stream.

``nat impair`` signals the pid in ``nat.pid``; these tests point it at a stand-in that counts the SIGHUPs
(``tests/support/sighup_counter.py``), since they measure what ``nat impair`` applies itself: the delay line,
which the SIGHUP reconfigures, has tests of its own.
"""

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nat import state
from tests.support.nat_router import REPO, running_nat
from tests.test_nat_netns import HOST, NAT_ENV, PEER, Netns

pytestmark = pytest.mark.needs("ip", "nft", "tc", "iptables", "conntrack", root=True)

Z = 4.0
RATE_TOLERANCE = 0.10
METER = [sys.executable, "-m", "tests.support.udp_meter"]
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def namespaces():
    """The namespaces, named after this process so parallel runs do not collide; deleted after."""
    topology = Netns(f"nlk{os.getpid() % 100000}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


@dataclass
class Router:
    """``nat run`` (cone) in the router namespace, its state, and the SIGHUP counter ``nat.pid`` points at."""

    namespaces: Netns
    state_dir: Path
    hangups_file: Path
    counter_pid: int
    stack: contextlib.ExitStack
    nat_process: subprocess.Popen | None = None

    def start_nat(self):
        nat = running_nat(self.namespaces.router, self.state_dir, "198.19.200.254", **NAT_ENV)
        self.nat_process = self.stack.enter_context(nat)
        self.point_pid_file_at_the_counter()

    def stop_nat(self):
        assert self.nat_process is not None
        self.nat_process.send_signal(signal.SIGTERM)
        self.nat_process.communicate(timeout=10)

    def point_pid_file_at_the_counter(self):
        (self.state_dir / state.PID_FILE).write_text(f"{self.counter_pid}\n")

    def impair(self, *words, check=True):
        """``nat impair WORDS`` in the router namespace."""
        command = [sys.executable, "-m", "nat", "--state-dir", str(self.state_dir), "impair", *words]
        in_router = ["ip", "netns", "exec", self.namespaces.router, *command]
        done = subprocess.run(in_router, capture_output=True, text=True, timeout=30, env=PYTHON_ENV, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"nat impair {' '.join(words)} failed ({done.returncode}): {done.stderr}")
        return done

    def hangups(self):
        return len(self.hangups_file.read_text().splitlines()) if self.hangups_file.exists() else 0

    def kernel(self, *command):
        return self.namespaces.exec(self.namespaces.router, *command).stdout


@pytest.fixture(scope="module")
def router(namespaces, tmp_path_factory):
    """``nat run`` (cone) with ``nat.pid`` pointing at the SIGHUP counter, for the whole module."""
    tmp_path = tmp_path_factory.mktemp("impair")
    with contextlib.ExitStack() as stack:
        counter = subprocess.Popen(
            [sys.executable, "-m", "tests.support.sighup_counter", str(tmp_path / "hangups")],
            env=PYTHON_ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(counter.communicate, timeout=10)
        stack.callback(counter.send_signal, signal.SIGTERM)
        assert counter.stdout is not None
        assert counter.stdout.readline().strip() == "ready"
        handle = Router(namespaces, tmp_path / "state", tmp_path / "hangups", counter.pid, stack)
        handle.start_nat()
        yield handle


@pytest.fixture(autouse=True)
def cleared(router):
    """Every test starts and ends with no impairments (``nat impair clear`` afterwards) and no SIGHUPs counted."""
    router.hangups_file.unlink(missing_ok=True)
    yield
    router.point_pid_file_at_the_counter()  # a stopped nat run may have removed it
    router.impair("clear")


@contextlib.contextmanager
def counting(namespaces, ns, bind, *hello_target, idle=0.5):
    """``udp_meter count`` in ``ns``, ready before the block runs; yields a dict filled with its result after."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, *METER, "count", bind, str(idle), *hello_target],
        env=PYTHON_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    result: dict[str, float] = {}
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.stderr.read() if process.stderr else ""
        yield result
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        result.update(json.loads(out))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def send_through(namespaces, direction, count, pps, size):
    """``count`` datagrams through the router, ``up`` (host -> WAN peer) or ``down`` (WAN peer -> host, to the
    mapping the host's hello opened); the far side's counts."""
    wan_end, lan_end = f"{PEER}:7100", f"{HOST}:7101"
    send_timeout = count / pps + 20
    if direction == "up":
        with counting(namespaces, namespaces.wan, wan_end) as counted:
            sending = [*METER, "send", lan_end, wan_end, str(count), str(pps), str(size)]
            in_host = ["ip", "netns", "exec", namespaces.host, *sending]
            subprocess.run(in_host, env=PYTHON_ENV, capture_output=True, check=True, timeout=send_timeout)
        return counted
    sender = subprocess.Popen(
        ["ip", "netns", "exec", namespaces.wan, *METER, "send", wan_end, "hello", str(count), str(pps), str(size)],
        env=PYTHON_ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with counting(namespaces, namespaces.host, lan_end, wan_end) as counted:
            assert sender.wait(timeout=send_timeout) == 0, sender.stderr.read() if sender.stderr else ""
        return counted
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.communicate()


def wilson(successes, trials, z=Z):
    """The Wilson score interval of a share ``successes / trials``."""
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


@pytest.mark.parametrize("direction", ["up", "down"])
def test_random_loss(router, direction):
    router.impair(direction, "loss=10%")
    count = 20_000
    counted = send_through(router.namespaces, direction, count, pps=5000, size=64)
    lost = count - counted["unique"]
    low, high = wilson(lost, count)
    assert low <= 0.10 <= high, f"{lost / count:.2%} lost of {count}, 99.99% interval {low:.2%}..{high:.2%}"
    assert counted["max_copies"] == 1


@pytest.mark.parametrize("direction", ["up", "down"])
def test_duplicates_and_copies_are_not_copied_again(router, direction):
    router.impair(direction, "duplicate=50%")
    count = 5000
    counted = send_through(router.namespaces, direction, count, pps=5000, size=64)
    assert counted["unique"] >= count * 0.995, counted
    copies = counted["received"] - counted["unique"]
    low, high = wilson(copies, counted["unique"])
    # Copies copied again would make 1/(1 - 0.5) - 1 = 100% extra, and some datagrams arrive 3 or more times.
    assert low <= 0.50 <= high, f"{copies / counted['unique']:.2%} duplicated, interval {low:.2%}..{high:.2%}"
    assert counted["max_copies"] == 2


@pytest.mark.parametrize("direction", ["up", "down"])
def test_rate(router, direction):
    # A queue of 200 full frames (240 ms at 10 Mbit/s) keeps the link busy through the sender's stalls on a
    # loaded host: the rate measured is the shaper's, not the sender's.
    router.impair(direction, "rate=10mbit", "limit=200")
    # 2 s at 2,000 datagrams a second of 1,250 bytes: about 20.7 Mbit/s on the wire, twice the rate.
    counted = send_through(router.namespaces, direction, 4000, pps=2000, size=1250)
    measured = counted["wire_bits_per_second"]
    assert abs(measured - 10e6) <= RATE_TOLERANCE * 10e6, f"{measured / 1e6:.2f} Mbit/s"
    assert counted["unique"] < 4000 * 0.6, "the shaper dropped what exceeded the rate"


def nfqueue_counts(router):
    """Packets each NATLAB_IMPAIR rule has sent to a queue, by queue number (``iptables-save -c``)."""
    counts = {}
    for line in router.kernel("iptables-save", "-c", "-t", "raw").splitlines():
        if match := re.match(r"\[(\d+):\d+\] -A NATLAB_IMPAIR .* --queue-num (\d+) --queue-bypass", line):
            counts[int(match[2])] = int(match[1])
    return counts


def bound_queues(router):
    """The nfqueue numbers a process is bound to in the router namespace."""
    try:
        listing = router.kernel("cat", "/proc/net/netfilter/nfnetlink_queue")
    except AssertionError:  # the module is not loaded: nobody has ever bound a queue
        return set()
    return {int(line.split()[0]) for line in listing.splitlines() if line.strip()}


def test_the_delay_line_feed_sits_in_raw_prerouting_and_fails_open(router):
    router.impair("delay=50ms")
    rules = router.kernel("iptables", "-t", "raw", "-S").splitlines()
    assert "-A PREROUTING -j NATLAB_IMPAIR" in rules
    assert "-A NATLAB_IMPAIR -i eth1 -j NFQUEUE --queue-num 1 --queue-bypass" in rules
    assert "-A NATLAB_IMPAIR -i eth0 -j NFQUEUE --queue-num 2 --queue-bypass" in rules
    # With nat run stopped, no delay line is bound: --queue-bypass lets every packet through undelayed.
    router.stop_nat()
    try:
        assert not bound_queues(router) & {1, 2}
        counted = send_through(router.namespaces, "up", 1000, pps=2000, size=64)
        assert counted["unique"] == 1000
        assert nfqueue_counts(router)[1] >= 1000
        counted = send_through(router.namespaces, "down", 1000, pps=2000, size=64)
        assert counted["unique"] == 1000
        assert nfqueue_counts(router)[2] >= 1000
    finally:
        router.start_nat()


def test_everything_applied_then_cleared_leaves_only_the_nat(router):
    router.impair("up", "loss=1%", "duplicate=1%", "rate=10mbit", "delay=20ms")
    router.impair("down", "loss=1%", "burst=2", "duplicate=1%", "rate=20mbit")
    assert "table netdev natlab_impair" in router.kernel("nft", "list", "tables").splitlines()
    assert "qdisc tbf" in router.kernel("tc", "qdisc", "show", "dev", "eth0", "root")
    assert "qdisc tbf" in router.kernel("tc", "qdisc", "show", "dev", "eth1", "root")
    assert sum("NFQUEUE" in line for line in router.kernel("iptables", "-t", "raw", "-S").splitlines()) == 2
    shown = json.loads(router.impair("--json").stdout)
    assert shown["up"] == "delay=20ms loss=1% duplicate=1% rate=10mbit"
    assert shown["down"] == "loss=1% burst=2 duplicate=1% rate=20mbit"

    router.impair("clear")
    tables = router.kernel("nft", "list", "tables").splitlines()
    assert "table inet natlab" in tables, "the NAT is untouched"
    assert "table netdev natlab_impair" not in tables
    for ifname in ("eth0", "eth1"):
        assert "tbf" not in router.kernel("tc", "qdisc", "show", "dev", ifname, "root")
    assert "NATLAB_IMPAIR" not in router.kernel("iptables", "-t", "raw", "-S")
    assert router.hangups() == 3


def test_a_tool_error_reaches_the_user_verbatim(router):
    profile = json.loads((router.state_dir / state.PROFILE_FILE).read_text())
    profile["lan"]["ifname"] = "nosuch0"
    (router.state_dir / state.PROFILE_FILE).write_text(json.dumps(profile))
    recorded = router.state_dir / state.IMPAIR_FILE
    before = recorded.read_text() if recorded.exists() else None
    try:
        done = router.impair("down", "rate=10mbit", check=False)
    finally:
        profile["lan"]["ifname"] = "eth1"
        (router.state_dir / state.PROFILE_FILE).write_text(json.dumps(profile))
    assert done.returncode == 1
    assert done.stderr == (
        "nat: impair: tc qdisc replace dev nosuch0 root tbf rate 10000000bit burst 12500 limit 62500 failed: "
        'Cannot find device "nosuch0"\n'
    )
    assert (recorded.read_text() if recorded.exists() else None) == before, "nothing recorded"
    assert router.hangups() == 0
