"""nebula (Debian bookworm's 1.6.1): a lighthouse on the lab's WAN, or one side that pings the other through
the overlay.

The host side (scenarios/interop_stacks.py) makes a CA and one certificate per node with ``nebula-cert`` at the
start of each attempt and puts ``ca.crt``, ``host.crt`` and ``host.key`` in each node's ``--exchange`` folder.
This driver writes the node's config there (JSON, which nebula reads as the YAML it is), starts nebula and
keeps it running until ``stop`` appears in the folder. A side (``a`` or ``b``) pings the other's overlay
address once a second until the first answer (time to connect: from the first ping, which makes nebula ask
the lighthouse and start its handshake), then measures the RTT with five pings and reads the path from
nebula's own log: the handshake that completed names the peer's underlay ``udpAddr``, or the relay it went
through (``--relays on``: the lighthouse relays, and 1.6 never moves a relayed tunnel to a direct path).

    python3 -m interop.nebula --side a --exchange /tmp/natlab-interop/x --lighthouse 198.18.4.10 \\
        --peer 198.19.254.20 [--relays off] [--timeout 20]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from interop.report import DIRECT, NONE, RELAY, Report, write_report

STACK = "nebula"
PORT = 4242
OVERLAY = "198.19.254"
"""nebula's overlay /24: inside the lab's 198.18.0.0/15, beside natlab's own tunnel overlay (198.19.255.0/24)
and, like it, outside every lab, grid and slot network (tests/test_topologies.py); it exists only in the tun
devices."""
ADDRESSES = {"lighthouse": f"{OVERLAY}.1", "a": f"{OVERLAY}.10", "b": f"{OVERLAY}.20"}
DEVICE = "nebula1"
LIGHTHOUSE_INTERVAL_S = 4
"""How often a node reports its addresses to the lighthouse: this also keeps its NAT mapping towards the
lighthouse alive, which the lighthouse needs to reach it (punch notifications, relay requests). The grid's
routers forget an idle mapping after 8 s (scenarios.grid.UDP_TIMEOUT_S); nebula's default is 10 s."""
RTT_PINGS = ("ping", "-c", "5", "-i", "0.2", "-W", "1")
RTT = re.compile(r"= [\d.]+/([\d.]+)/")


def config(side: str, folder: Path, lighthouse: str, relays: bool) -> dict[str, Any]:
    """The node's nebula config: pki from the folder, the lighthouse (also the relay when ``relays``), punchy."""
    is_lighthouse = side == "lighthouse"
    lighthouse_vpn = ADDRESSES["lighthouse"]
    node: dict[str, Any] = {
        "pki": {
            name: str(folder / f"{file}")
            for name, file in (("ca", "ca.crt"), ("cert", "host.crt"), ("key", "host.key"))
        },
        "static_host_map": {} if is_lighthouse else {lighthouse_vpn: [f"{lighthouse}:{PORT}"]},
        "lighthouse": {
            "am_lighthouse": is_lighthouse,
            "interval": LIGHTHOUSE_INTERVAL_S,
            "hosts": [] if is_lighthouse else [lighthouse_vpn],
        },
        # A side listens on a fresh port each attempt (0: the kernel picks), so no NAT mapping of an earlier
        # attempt helps it; the lighthouse on its well-known one.
        "listen": {"host": "0.0.0.0", "port": PORT if is_lighthouse else 0},
        # punch: keep the NAT mapping towards the lighthouse open; respond: punch back at a peer the lighthouse
        # says is trying to reach us (the hole punch proper).
        "punchy": {"punch": True, "respond": True, "delay": "1s"},
        "relay": {
            "am_relay": is_lighthouse and relays,
            "use_relays": relays,
            "relays": [] if is_lighthouse or not relays else [lighthouse_vpn],
        },
        "tun": {"disabled": is_lighthouse, "dev": DEVICE, "mtu": 1300},
        "logging": {"level": "info", "format": "json"},
        "firewall": {
            "outbound": [{"port": "any", "proto": "any", "host": "any"}],
            "inbound": [{"port": "any", "proto": "icmp", "host": "any"}],
        },
    }
    return node


def log_lines(log: Path) -> list[dict[str, Any]]:
    """nebula's JSON log lines so far (others skipped)."""
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def endpoint(address: Any) -> str:
    """nebula's JSON ``udpAddr`` ({"ip": ..., "port": ...}) as ``ip:port``."""
    return f"{address['ip']}:{address['port']}" if isinstance(address, dict) else str(address)


def path_from_log(lines: list[dict[str, Any]], peer: str) -> tuple[str, str, str | None]:
    """(path, how it was known, the peer's underlay ``ip:port`` when direct) from the last handshake with
    ``peer`` that completed: its stage-2 message (sent by the responder, received by the initiator). nebula logs
    the peer's ``udpAddr`` there for a direct tunnel, and a ``relay`` (or a null ``udpAddr``) for a relayed one."""
    completed = [
        line for line in lines if line.get("vpnIp") == peer and (line.get("handshake") or {}).get("stage") == 2
    ]
    if not completed:
        return NONE, f"nebula log: no completed handshake with {peer}", None
    line = completed[-1]
    said = f"nebula log, {line.get('msg')!r} (stage 2) for {peer} at {line.get('time')}"
    if line.get("relay") or not line.get("udpAddr"):
        relays = [entry.get("relay") for entry in lines if entry.get("vpnIp") == peer and entry.get("relay")]
        return RELAY, f"{said}: udpAddr null, via relay {line.get('relay') or (relays[-1] if relays else '?')}", None
    where = endpoint(line["udpAddr"])
    return DIRECT, f"{said}: udpAddr {where}", where


def ping_until_answer(peer: str, seconds: float) -> float | None:
    """Ping ``peer`` once a second until it answers; the seconds that took, None if it never did."""
    started = time.perf_counter()
    retrying = Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0), retry=retry_if_result(lambda ok: not ok))
    try:
        retrying(
            lambda: (
                subprocess.run(["ping", "-c", "1", "-W", "1", peer], capture_output=True, check=False).returncode == 0
            )
        )
    except RetryError:
        return None
    return time.perf_counter() - started


def wait_for_file(path: Path, seconds: float) -> bool:
    retrying = Retrying(
        stop=stop_after_delay(seconds), wait=wait_fixed(0.1), retry=retry_if_result(lambda found: not found)
    )
    try:
        retrying(path.exists)
    except RetryError:
        return False
    return True


def run(
    side: str, folder: Path, *, lighthouse: str, peer: str, relays: bool, seconds: float, hold: float
) -> Report | None:
    (folder / "config.yml").write_text(json.dumps(config(side, folder, lighthouse, relays), indent=1))
    log = folder / "nebula.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["nebula", "-config", str(folder / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    (folder / "nebula.pid").write_text(str(process.pid))
    report = None
    try:
        if side != "lighthouse":
            report = Report(STACK + ("-relays" if relays else ""), side)
            up = wait_for_file(Path(f"/sys/class/net/{DEVICE}"), 10)
            took = ping_until_answer(peer, seconds) if up else None
            if not up:
                report.error = f"nebula's {DEVICE} did not appear: {log.read_text()[-400:]}"
            elif took is None:
                report.error = f"no answer from {peer} through the overlay within {seconds} s"
            else:
                report.connected = True
                report.time_to_connect_ms = round(took * 1000, 1)
                done = subprocess.run([*RTT_PINGS, peer], capture_output=True, text=True, check=False)
                found = RTT.search(done.stdout)
                report.rtt_ms = float(found[1]) if found else None
            report.path, report.how_path_was_known, report.peer_endpoint = path_from_log(log_lines(log), peer)
            if not report.connected and report.path != NONE:
                report.how_path_was_known += " (but no ping came back)"
                report.path = NONE
            write_report(report, folder)
        wait_for_file(folder / "stop", hold)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interop.nebula", description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("a", "b", "lighthouse"), required=True)
    parser.add_argument("--exchange", type=Path, required=True, help="folder with ca.crt, host.crt, host.key")
    parser.add_argument("--lighthouse", required=True, help="the lighthouse's underlay (WAN) address")
    parser.add_argument("--peer", default="", help="the other side's overlay address")
    parser.add_argument("--relays", choices=("on", "off"), default="off")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the first answer")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to keep nebula up at most, until stop")
    args = parser.parse_args(argv)
    report = run(
        args.side,
        args.exchange,
        lighthouse=args.lighthouse,
        peer=args.peer,
        relays=args.relays == "on",
        seconds=args.timeout,
        hold=args.hold,
    )
    return 0 if report is None or report.connected else 1


if __name__ == "__main__":
    sys.exit(main())
