"""`make bench`: lab lifecycle timings, path latencies and relayed throughput, measured on this machine.

Figures: cold `make lab-up` (no natlab images at all, so the base bootstrap runs), warm `make lab-up` (images
built, lab down), `make lab-down`; the time from `connect` to a confirmed direct path for cone-cone with
relays enabled and without (median and p95 of ATTEMPTS, as the agent measures it: `time_to_direct_ms`);
connect to the first delivered (acknowledged) message for cone-symmetric (`time_to_first_message_ms`); and
relayed throughput for one cone-symmetric pair with 1,000-byte messages (`client flood`), next to coturn's
own `turnutils_uclient` in the same lab; direct throughput for the cone-cone pair, next to raw UDP between the
same two containers through the same routers (`client udp-rate`); and the signal server's sustained requests per
second on one CPU next to coturn's, from the same load generator (`scenarios/server_rate.py`); and the
WireGuard tunnel's figures (`scenarios/tunnel_bench.py`): TCP over it for a direct and a relayed pair against
raw UDP between the same containers, ping over it against a WAN hop, in labs with the tunnel up.

`python -m scenarios.bench --only server-rate` measures only the server's rate (no lab, one container; seconds);
`--only tunnel` only the tunnel's figures and their raw UDP reference (three lab-ups; about a minute).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

from scenarios import results_index, server_rate, tunnel_bench
from scenarios.harness import REPO, Lab, LabError
from scenarios.lab_status import interactive_lab

ATTEMPTS = int(os.environ.get("BENCH_ATTEMPTS", "20"))
FLOOD = int(os.environ.get("BENCH_FLOOD", "2000"))
DIRECT_FLOOD = int(os.environ.get("BENCH_DIRECT_FLOOD", "20000"))
RAW_PORT = "40400"
RAW_TRIES = 3
BENCH_RESULTS = REPO / "results" / "bench"
"""bench.txt: the figures as printed, linked from results/index.html."""
ENV = os.environ | {"NAT_A": "cone", "NAT_B": "cone", "NATLAB_TUNNEL": "0"}
"""The bench's lab runs without the tunnel (README "Tunnel"): its connects and WireGuard's traffic would be
in the connect and throughput figures, measured without them before the tunnel existed."""


def make(target: str, **env: str) -> float:
    """Run a make target (with extra environment); return its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(["make", "-s", target], cwd=REPO, env=ENV | env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise LabError(f"make {target} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def remove_images() -> None:
    ids = subprocess.run(
        ["docker", "images", "-q", "--filter", "label=natlab"], capture_output=True, text=True, check=True
    ).stdout.split()
    if ids:  # newest first, as docker lists them: children go before the base they were built on
        subprocess.run(["docker", "rmi", "-f", *dict.fromkeys(ids)], capture_output=True, check=True)


def sample(action: Callable[[], float]) -> list[float]:
    """ATTEMPTS measurements, each after both hosts forgot each other."""
    with closing(interactive_lab()) as lab:  # its Docker client closed when done
        samples = []
        for _ in range(ATTEMPTS):
            lab.exec_ok("alice", "client", "disconnect", "bob")
            lab.exec_ok("bob", "client", "disconnect", "alice")
            samples.append(action())
        return samples


# `client bench-connect` runs inside alice, so that no `docker exec` (dockerd is busy on 2 cores) overlaps a
# measurement: alice forgets bob, connects, and reads the agent's own time_to_direct_ms; a pause (--gap) lets
# the relay standby settle.
def connect_to_direct_samples() -> list[float]:
    """ATTEMPTS connects from alice to bob, each from scratch on alice's side, in milliseconds to direct."""
    with closing(interactive_lab()) as lab:  # its Docker client closed when done
        lab.exec_ok("alice", "client", "connect", "bob")  # bob learns alice once; later rounds re-punch alice only
        bench = lab.json("alice", "client", "bench-connect", "bob", str(ATTEMPTS), "--timeout", "10")
        return [float(ms) for ms in bench["time_to_direct_ms"]]


def connect_to_first_message_ms() -> float:
    with closing(interactive_lab()) as lab:  # its Docker client closed when done
        lab.exec_ok("alice", "client", "send", "bob", "first")  # connects, sends, waits for the ack
        return float(alice_peer(lab)["time_to_first_message_ms"])


def alice_peer(lab: Lab) -> dict[str, Any]:
    status = lab.json("alice", "client", "status", "--json")
    return next(p for p in status["peers"] if p["id"] == "bob")


def relayed_throughput() -> tuple[dict[str, Any], tuple[float, float]]:
    """`client flood` through the relay, and turnutils_uclient's figure (messages/s, MB/s) in the same lab."""
    with closing(interactive_lab()) as lab:  # its Docker client closed when done
        lab.exec_ok("alice", "client", "connect", "bob")
        flood = lab.json("alice", "client", "flood", "bob", str(FLOOD), "--size", "1000")
        password = lab.exec_ok("alice", "cat", "/run/natlab-secrets/turn-password").strip()
        started = time.perf_counter()
        output = lab.exec_ok(
            "alice", "turnutils_uclient", "-y", "-c", "-z", "0", "-u", "natlab", "-w", password,
            "-n", str(FLOOD), "-l", "1000", "-m", "1", lab.address("turn"),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        received = int(re.findall(r"tot_recv_msgs=(\d+)", output)[-1])
        return flood, (received / seconds, received * 1000 / seconds / 1e6)


def direct_throughput() -> tuple[dict[str, Any], dict[str, Any]]:
    """`client flood` alice -> bob on the direct path, then raw UDP between the same two containers through the
    same routers: `client udp-rate` at both ends, each punching its own router towards the other's WAN address
    (the cone routers keep the port), the rate bob receives at."""
    with closing(interactive_lab()) as lab:  # its Docker client closed when done
        lab.exec_ok("alice", "client", "connect", "bob")
        flood = lab.json("alice", "client", "flood", "bob", str(DIRECT_FLOOD), "--size", "1000")
        return flood, raw_udp(lab)


def raw_udp(lab: Lab) -> dict[str, Any]:
    """`client udp-rate` alice -> bob through both (cone) routers: what bob received."""
    count, router_a, router_b = str(DIRECT_FLOOD), lab.address("router-a", "wan"), lab.address("router-b", "wan")
    with ThreadPoolExecutor(1) as pool:  # both ends at once, each with its own Docker client
        receiving = pool.submit(receive_raw, f"{router_a}:{RAW_PORT}", count)
        sent = lab.json("alice", "client", "udp-rate", "send", f"{router_b}:{RAW_PORT}", count, "--port", RAW_PORT)
        return {**receiving.result(), "sent": sent["sent"]}


def receive_raw(sender: str, count: str) -> dict[str, Any]:
    """bob's end of `client udp-rate`, on a Docker client of its own (it runs in a thread beside alice's)."""
    with closing(interactive_lab()) as lab:
        received: dict[str, Any] = lab.json("bob", "client", "udp-rate", "recv", sender, count, "--port", RAW_PORT)
        return received


def tunnel_figures() -> list[str]:
    """The tunnel's figures (scenarios/tunnel_bench.py), each beside its reference: a fresh cone-cone lab, the same
    with the kernel path off (NATLAB_TUNNEL_KERNEL=0: the agent carries every datagram, for comparison) and a
    fresh cone-symmetric one, all with NATLAB_TUNNEL=1 (only these; the other figures are measured without it). Fresh:
    an agent kept from the lab before would hold a path to a peer that is gone until it times out (30 s). Raw
    UDP alice -> bob is measured in the same cone-cone lab, right after the tunnel's figures, best of
    RAW_TRIES (each a fraction of a second, so one busy moment on the two cores would decide a single one)."""
    make("lab-down")
    make("lab-up", NATLAB_TUNNEL="1")
    with closing(interactive_lab()) as lab:
        direct_tcp, direct_ping = tunnel_bench.measure(lab, "direct")
        wan = tunnel_bench.ping(lab, "router-a", lab.address("server"))
        raw = max((raw_udp(lab) for _ in range(RAW_TRIES)), key=lambda result: float(result["per_s"]))
    make("lab-down")
    make("lab-up", NATLAB_TUNNEL="1", NATLAB_TUNNEL_KERNEL="0")
    with closing(interactive_lab()) as lab:
        agent_tcp, agent_ping = tunnel_bench.measure(lab, "direct")
    make("lab-down")
    make("lab-up", NAT_B="symmetric", NATLAB_TUNNEL="1")
    with closing(interactive_lab()) as lab:
        relayed_tcp, relayed_ping = tunnel_bench.measure(lab, "relay")
    raw_mbit = raw["mb_per_s"] * 8
    agent_label = "(direct, NATLAB_TUNNEL_KERNEL=0)"
    return [
        "  tunnel (WireGuard; direct: the kernel carries it, relayed: the agent;"
        f" iperf3 TCP {tunnel_bench.TCP_SECONDS} s alice -> bob.natlab, {tunnel_bench.PINGS} pings; raw UDP: client"
        f" udp-rate alice -> bob in the cone-cone lab, best of {RAW_TRIES}; WAN hop: router-a -> server):",
        tunnel_bench.throughput_line("TCP, cone-cone (direct)", direct_tcp, raw_mbit, tunnel_bench.DIRECT_AIM),
        tunnel_bench.throughput_line(f"TCP, cone-cone {agent_label}", agent_tcp, raw_mbit, None),
        tunnel_bench.throughput_line("TCP, cone-symmetric (relayed)", relayed_tcp, raw_mbit, None),
        tunnel_bench.rtt_line("ping, cone-cone (direct)", direct_ping, wan, tunnel_bench.ADDED_RTT_AIM_MS),
        tunnel_bench.rtt_line(f"ping, cone-cone {agent_label}", agent_ping, wan, None),
        tunnel_bench.rtt_line("ping, cone-symmetric (relayed)", relayed_ping, wan, None),
    ]


def write_results(lines: list[str]) -> None:
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    (BENCH_RESULTS / "bench.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    results_index.write(BENCH_RESULTS.parent)


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def spread(samples: list[float]) -> str:
    return f"median {statistics.median(samples):6.2f} ms, p95 {p95(samples):6.2f} ms (n={len(samples)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        choices=["server-rate", "tunnel"],
        help="measure only these figures (images kept): server-rate (no lab), tunnel (three lab-ups)",
    )
    only = parser.parse_args(argv).only
    if only == "server-rate":
        return server_rate.main()
    if only == "tunnel":
        tunnel = tunnel_figures()
        print("\n".join(["natlab bench, tunnel only (this machine)", *tunnel]))
        write_results(["natlab bench, tunnel only (this machine)", *tunnel])
        print("The lab is left up; `make lab-down` stops it.")
        return 0
    make("lab-down")
    remove_images()
    cold = make("lab-up")
    down = make("lab-down")
    rate_settings = server_rate.Settings.from_env()
    rate = server_rate.measure(server_rate.lab_image(), rate_settings)  # no lab running: its CPUs are free
    warm = make("lab-up")
    direct = connect_to_direct_samples()
    direct_flood, raw = direct_throughput()
    noop = make("lab-up")
    make("lab-up", NATLAB_TURN_ADDR="")
    direct_without_relay = connect_to_direct_samples()
    make("lab-up", NAT_B="symmetric")
    first_relayed = sample(connect_to_first_message_ms)
    flood, (uclient_msgs, uclient_mb) = relayed_throughput()
    tunnel = tunnel_figures()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line)
        lines.append(line)

    say("natlab bench (this machine)")
    say(f"  make lab-up, cold (no natlab images)   {cold:7.2f} s")
    say(f"  make lab-up, warm (images built)        {warm:7.2f} s   target < 3 s")
    say(f"  make lab-up, again while up             {noop:7.2f} s")
    say(f"  make lab-down                           {down:7.2f} s   target < 2 s")
    say(f"  connect -> direct, cone-cone, relays on     {spread(direct)}   target median < 20 ms")
    say(f"  connect -> direct, cone-cone, relays off    {spread(direct_without_relay)}")
    say(f"  connect -> first delivered, cone-symmetric  {spread(first_relayed)}   target < 50 ms")
    say(
        f"  relayed throughput, 1000-byte messages      client flood: {flood['msgs_per_s']:.0f} msg/s, "
        f"{flood['mb_per_s']:.2f} MB/s ({flood['delivered']}/{flood['sent']} delivered); "
        f"turnutils_uclient: {uclient_msgs:.0f} msg/s, {uclient_mb:.2f} MB/s"
    )
    say(
        f"  direct throughput, cone-cone, 1000 bytes   client flood: {direct_flood['msgs_per_s']:.0f} msg/s, "
        f"{direct_flood['mb_per_s']:.2f} MB/s ({direct_flood['delivered']}/{direct_flood['sent']} delivered); "
        f"raw UDP (client udp-rate): {raw['per_s']:.0f} msg/s, {raw['mb_per_s']:.2f} MB/s "
        f"({raw['received']}/{raw['sent']} received)"
    )
    for line in [*tunnel, *server_rate.report(rate, rate_settings)]:
        say(line)
    write_results(lines)
    print("The lab is left up; `make lab-down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
