"""The delay line on a real kernel: ``nat run`` in a router namespace with NAT_IMPAIR_UP/DOWN, real UDP through
it, one-way delays from the sender's clock to the receiving kernel's stamp (the namespaces share the host's
clock; ``tests/support/udp_stream.py``).

Topology: tests/test_nat_netns.py's (host 198.19.201.2 -> router -> WAN peer 198.19.200.2). ``up`` is what
the host sends, ``down`` what the peer sends back through the NAT's mapping.

Tolerances: the delay line never releases early (min >= the setting less 0.1 ms of clock granularity);
min and median within 2 ms of the setting, with jitter p10 within 2 ms and the median within 3 ms of the
schedule's own model (Python timers on a shared 2-core host: the tail is wider, so p99 is printed, not
asserted). Shares within 4 standard errors (binomial, widened by the Gilbert-Elliott chain's
correlation for bursty loss).
"""

import contextlib
import itertools
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import tenacity

from nat.impair.model import LinkImpairment
from nat.impair.schedule import gilbert_elliott, simulate
from nat.state import IMPAIR_FILE, IMPAIR_STATS_FILE, PID_FILE
from tests.support.nat_router import REPO, running_nat
from tests.test_nat_netns import HOST, NAT_ENV, PEER, Netns

pytestmark = pytest.mark.needs("ip", "nft", "conntrack", "iptables", root=True)

EARLY = 0.1
"""Milliseconds a release may precede its time (clock and timer granularity); never more."""


@pytest.fixture(scope="module")
def netns():
    """The namespaces, named after this process so parallel runs do not collide; deleted after."""
    topology = Netns(f"nli{os.getpid() % 100000}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


def impaired_router(netns, state_dir, up="", down="", log=None):
    """``nat run`` with these impairments; its log (stderr) appended to ``log`` when it has stopped."""
    env = {**NAT_ENV, "NAT_IMPAIR_UP": up, "NAT_IMPAIR_DOWN": down}
    return running_nat(netns.router, state_dir, "198.19.200.254", log, **env)


def stream(netns, direction, count, pps, *, port=7000, idle=1.0, sent=None):
    """``count`` datagrams at ``pps`` one way; ``[(seq, delay_ms)]`` in arrival order. ``sent``, if given, is
    filled with each datagram's send time (wall clock seconds) by sequence number."""
    module = [sys.executable, "-m", "tests.support.udp_stream"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if direction == "up":
        receiver = [netns.wan, *module, "receive", f"{PEER}:{port}", str(idle)]
        sender = [netns.host, *module, "send", f"{HOST}:0", f"{PEER}:{port}", str(count), str(pps)]
    else:  # the LAN host opens the mapping with a hello, the WAN peer answers through it
        receiver = [netns.host, *module, "receive", f"{HOST}:{port}", str(idle), "--hello", f"{PEER}:{port}"]
        sender = [netns.wan, *module, "send", f"{PEER}:{port}", "hello", str(count), str(pps)]
    ip_exec = ["ip", "netns", "exec"]
    with subprocess.Popen([*ip_exec, *receiver], stdout=subprocess.PIPE, text=True, env=env) as listening:
        assert listening.stdout is not None
        assert listening.stdout.readline().strip() == "ready"
        subprocess.run([*ip_exec, *sender], env=env, check=True, timeout=count / pps + 30)
        out, _ = listening.communicate(timeout=60)
    arrivals = json.loads(out)
    if sent is not None:
        sent.update({seq: when for seq, when, _ in arrivals})
    return [(seq, delay * 1000) for seq, _, delay in arrivals]


def summary(arrivals):
    delays = sorted(delay for _, delay in arrivals)
    return {
        "n": len(delays),
        "min": delays[0],
        "p10": delays[int(0.1 * (len(delays) - 1))],
        "median": statistics.median(delays),
        "p99": delays[int(0.99 * (len(delays) - 1))],
        "max": delays[-1],
    }


def inversions(arrivals):
    return sum(1 for (a, _), (b, _) in itertools.pairwise(arrivals) if b < a)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def router_stats(state_dir):
    return json.loads((state_dir / IMPAIR_STATS_FILE).read_text())


def report(name, **figures):
    print(f"\n{name}: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


def test_delay_alone_at_1000_pps_holds_each_packet_its_time_in_order(netns, tmp_path):
    count, pps = 3000, 1000
    with impaired_router(netns, tmp_path, up="delay=20ms") as router:
        before = cpu_seconds(router.pid)
        arrivals = stream(netns, "up", count, pps)
        cpu = cpu_seconds(router.pid) - before
    figures = summary(arrivals)
    report("delay 20ms at 1000 pps", **figures, cpu_us_per_packet=cpu / count * 1e6)
    assert figures["n"] == count
    assert inversions(arrivals) == 0
    assert 20 - EARLY <= figures["min"] <= 22
    assert figures["median"] <= 22
    assert cpu / count < 300e-6  # measured ~50-90 us a packet on the shared 2-core host


def test_jitter_at_500_pps_follows_the_fifo_model_and_keeps_order(netns, tmp_path):
    """20 ms +- 5 ms: each packet draws its delay, and waits for the packet ahead (FIFO), which at 2 ms
    spacing lifts the median above 20 ms: compared with the schedule's own simulation of the same stream
    (its real send times: a sender the host delays sends a burst, which FIFO lifts further)."""
    count, pps = 2500, 500
    sent: dict[int, float] = {}
    with impaired_router(netns, tmp_path, up="delay=20ms jitter=5ms"):
        arrivals = stream(netns, "up", count, pps, sent=sent)
    figures = summary(arrivals)
    link = LinkImpairment(delay_ms=20, jitter_ms=5)
    times = [sent[seq] for seq in sorted(sent)]  # the sender's real pacing, bursts and all
    models = [summary(_model_arrivals(simulate(link, times, random.Random(seed)))) for seed in range(10)]
    model = {key: statistics.mean(m[key] for m in models) for key in ("min", "p10", "median")}
    report("delay 20ms jitter 5ms at 500 pps", **figures, **{f"model_{k}": v for k, v in model.items()})
    assert figures["n"] == count
    assert inversions(arrivals) == 0
    assert abs(figures["p10"] - model["p10"]) <= 2
    # Wider than a fixed delay's 2 ms: the few packets a busy host releases late move the median of a spread
    # distribution, where a constant delay's median ignores them (measured +1 to +2.1 ms at load 40 on 2 cores).
    assert abs(figures["median"] - model["median"]) <= 3
    assert figures["min"] >= min(m["min"] for m in models) - 2  # the minimum is one draw: compared loosely


def _model_arrivals(delays):
    return [(seq, 1000 * delay) for seq, delay in enumerate(delays) if delay is not None]


def test_the_reorder_share_overtakes_the_held_packets(netns, tmp_path):
    count, pps, share = 3000, 1000, 0.1
    with impaired_router(netns, tmp_path, up="delay=20ms reorder=10%"):
        arrivals = stream(netns, "up", count, pps)
    immediate = sum(1 for _, delay in arrivals if delay < 10)
    overtaking = _overtaking(arrivals)
    report("reorder 10% at delay 20ms", share=immediate / count, overtaking=overtaking)
    assert len(arrivals) == count
    assert immediate / count == pytest.approx(share, abs=4 * math.sqrt(share * (1 - share) / count))
    assert overtaking >= 0.9 * immediate  # nearly every one arrives ahead of a packet still held


def _overtaking(arrivals):
    """Packets that arrived while one sent before them had not yet."""
    arrived, lowest_missing, overtaking = set(), 0, 0
    for seq, _ in arrivals:
        arrived.add(seq)
        while lowest_missing in arrived:
            lowest_missing += 1
        overtaking += lowest_missing < seq
    return overtaking


def test_bursty_loss_over_20000_packets_has_the_share_and_the_mean_burst(netns, tmp_path):
    count, pps, loss, burst = 20_000, 4000, 0.05, 4.0
    with impaired_router(netns, tmp_path, up="loss=5% burst=4") as router:
        before = cpu_seconds(router.pid)
        arrivals = stream(netns, "up", count, pps)
        cpu = cpu_seconds(router.pid) - before
        stats = _stats_when(tmp_path, lambda s: s["up"]["seen"] >= count)
    received = {seq for seq, _ in arrivals}
    lost = [seq not in received for seq in range(count)]
    bursts = [len(run) for run in "".join("x" if x else "." for x in lost).split(".") if run]
    p, r = gilbert_elliott(loss, burst)
    rho = 1 - p - r
    share = sum(lost) / count
    report("loss 5% burst 4", share=share, mean_burst=statistics.mean(bursts), cpu_us_per_packet=cpu / count * 1e6)
    assert stats["up"]["dropped"] == sum(lost)  # every loss is the delay line's, none the host's
    assert stats["up"]["queue_full"] == 0
    assert share == pytest.approx(loss, abs=4 * math.sqrt(loss * (1 - loss) / count * (1 + rho) / (1 - rho)))
    assert statistics.mean(bursts) == pytest.approx(burst, abs=4 * math.sqrt(1 - r) / r / math.sqrt(len(bursts)))


def test_each_direction_has_its_own_queue(netns, tmp_path):
    with impaired_router(netns, tmp_path, up="delay=10ms", down="delay=30ms"):
        up = summary(stream(netns, "up", 300, 300))
        down = summary(stream(netns, "down", 300, 300, port=7001))
    report("up 10ms / down 30ms", up_median=up["median"], down_median=down["median"])
    assert up["min"] >= 10 - EARLY
    assert up["median"] <= 12
    assert down["min"] >= 30 - EARLY
    assert down["median"] <= 32


def test_nat_impair_reconfigures_the_running_line_and_a_bad_file_keeps_the_old(netns, tmp_path):
    """The real path: ``nat impair`` applies the feed, rewrites impair.json and sends SIGHUP to ``nat run``,
    which started with no delay at all; then a file the line cannot read leaves the settings in force."""
    log: list[str] = []
    with impaired_router(netns, tmp_path, log=log) as router:
        before = summary(stream(netns, "up", 200, 200))
        assert int((tmp_path / PID_FILE).read_text()) == router.pid
        netns.nat("--state-dir", str(tmp_path), "impair", "up", "delay=40ms")
        _until(lambda: summary(stream(netns, "up", 50, 200))["min"] > 30)
        after = summary(stream(netns, "up", 200, 200))
        (tmp_path / IMPAIR_FILE).write_text('{"up": {"delay_ms": "soon"}}')
        os.kill(router.pid, signal.SIGHUP)
        kept = summary(stream(netns, "up", 200, 200))
    report("nat impair + sighup", before=before["median"], after=after["median"], kept=kept["median"])
    assert before["median"] < 5
    for figures in (after, kept):
        assert figures["min"] >= 40 - EARLY
        assert figures["median"] <= 40 + 5  # which settings are in force; accuracy is the tests' above
    [text] = log
    assert "delay line: up delay=40ms; down off" in text
    assert "impairments not reloaded, the old ones stay" in text


def test_stop_releases_every_held_packet_at_once(netns, tmp_path):
    sent = 20
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(impaired_router(netns, tmp_path, up="delay=10s"))
        listening = stack.enter_context(_receiver(netns))
        _send(netns, sent)
        _stats_when(tmp_path, lambda s: s["up"]["held"] == sent)
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=5)
        arrivals = json.loads(listening.communicate(timeout=10)[0])
    assert len(arrivals) == sent
    assert max(delay for _, _, delay in arrivals) < 8  # released at the stop, well before their 10 s


def test_a_dead_delay_line_loses_what_it_held_and_fails_open(netns, tmp_path):
    """SIGKILL: the kernel drops the held packets when the socket goes; --queue-bypass passes the rest."""
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(impaired_router(netns, tmp_path, up="delay=10s"))
        listening = stack.enter_context(_receiver(netns))
        _send(netns, 10)
        _stats_when(tmp_path, lambda s: s["up"]["held"] == 10)
        router.kill()
        router.wait(timeout=5)
        _send(netns, 10, first=100)
        arrivals = json.loads(listening.communicate(timeout=10)[0])
    assert [seq for seq, _, _ in arrivals] == list(range(100, 110))
    assert max(delay for _, _, delay in arrivals) < 0.5


@contextlib.contextmanager
def _receiver(netns, idle=1.5):
    command = [sys.executable, "-m", "tests.support.udp_stream", "receive", f"{PEER}:7002", str(idle)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        ["ip", "netns", "exec", netns.wan, *command], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process


def _send(netns, count, first=0):
    """``count`` datagrams numbered from ``first``, all at once, to the receiver of ``_receiver``."""
    args = ["send", f"{HOST}:0", f"{PEER}:7002", str(count), "0", "--first", str(first)]
    netns.exec(netns.host, sys.executable, "-m", "tests.support.udp_stream", *args)


def _until(condition, timeout=10.0):
    tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda ok: not ok),
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(0.1),
        reraise=True,
    )(condition)


def _stats_when(state_dir, condition, timeout=10.0):
    """The router's stats file once ``condition`` holds for it (it is rewritten about once a second)."""
    found = {}

    def check():
        try:
            found["stats"] = router_stats(state_dir)
        except (OSError, ValueError):
            return False
        return condition(found["stats"])

    _until(check, timeout)
    return found["stats"]
