"""`make bench`: lab lifecycle timings and connect-to-direct latency, measured on this machine.

Figures: cold `make lab-up` (no natlab images at all, so the base bootstrap runs), warm `make lab-up` (images
built, lab down), `make lab-down`, and the time from `connect` to a confirmed direct path for cone-cone
(median and p95 of ATTEMPTS), as the agent measures it (`time_to_direct_ms` in `client status --json`).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time

from scenarios.harness import REPO, LabError
from scenarios.lab_status import interactive_lab

ATTEMPTS = int(os.environ.get("BENCH_ATTEMPTS", "20"))
ENV = os.environ | {"NAT_A": "cone", "NAT_B": "cone"}


def make(target: str) -> float:
    """Run a make target; return its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(["make", "-s", target], cwd=REPO, env=ENV, capture_output=True, text=True, check=False)
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


def connect_to_direct_ms() -> list[float]:
    lab = interactive_lab()
    samples = []
    for _ in range(ATTEMPTS):
        lab.exec_ok("alice", "client", "disconnect", "bob")
        lab.exec_ok("bob", "client", "disconnect", "alice")
        peer = lab.json("alice", "client", "connect", "bob", "--json")
        if peer.get("path") != "direct":
            raise LabError(f"cone-cone connect did not go direct: {peer}\n{lab.logs('alice', 'bob')}")
        samples.append(float(peer["time_to_direct_ms"]))
    return samples


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def main() -> int:
    make("lab-down")
    remove_images()
    cold = make("lab-up")
    down = make("lab-down")
    warm = make("lab-up")
    samples = connect_to_direct_ms()
    noop = make("lab-up")
    print("natlab bench (this machine)")
    print(f"  make lab-up, cold (no natlab images)   {cold:7.2f} s")
    print(f"  make lab-up, warm (images built)        {warm:7.2f} s   target < 3 s")
    print(f"  make lab-up, again while up             {noop:7.2f} s")
    print(f"  make lab-down                           {down:7.2f} s   target < 2 s")
    print(
        f"  connect -> direct, cone-cone, n={len(samples):<3}      median {statistics.median(samples):.2f} ms, "
        f"p95 {p95(samples):.2f} ms   target median < 20 ms"
    )
    print("The lab is left up; `make lab-down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
