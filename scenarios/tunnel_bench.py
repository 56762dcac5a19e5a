"""`make bench`'s tunnel figures (issue 12): TCP over the WireGuard tunnel against raw UDP, ping over it against
ping on the WAN; the measuring in the lab, and the reading and printing, pure.

Throughput is iperf3's TCP test over ``natlab0`` (alice sends to ``bob.natlab``; bob runs a one-test server), the
rate bob received (``end.sum_received``): TCP payload, the same unit as raw UDP's payload rate, so the ratio is
what the tunnel keeps of the path. Raw UDP is ``client udp-rate`` between the same two containers through the
same routers (bench.py's direct-throughput reference); behind a symmetric NAT raw UDP cannot cross (no mapping
to aim at), so the relayed pair is put against the same raw figure, from the cone-cone lab.

RTT is ping's average over :data:`PINGS` pings: alice to ``bob.natlab``, against router-a to the server's WAN
address (one hop on the same WAN bridge: every router's firewall drops an unsolicited echo request, so
router-a cannot ping router-b). The added RTT is the difference, everything the two LANs, both routers'
NAT and the tunnel (both wireguard-go; both agents too where they carry it: relayed, or with
NATLAB_TUNNEL_KERNEL=0) add on top of one WAN hop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scenarios.harness import Lab
from scenarios.iperf import load_report, server_command
from scenarios.tunnel_steps import handshaken

IPERF_PORT = 5210
TCP_SECONDS = 4
PINGS = 20
DIRECT_AIM = 0.25
"""Issue 12: the direct tunnel carries at least a quarter of raw UDP's rate between the same containers."""
ADDED_RTT_AIM_MS = 0.5
"""Issue 12: the tunnel adds less than half a millisecond of round trip."""

_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass(frozen=True)
class TcpResult:
    """One iperf3 TCP test as the receiver measured it, and the sender's retransmissions."""

    mbit_per_s: float
    retransmits: int
    seconds: float


@dataclass(frozen=True)
class PingResult:
    """ping's summary: packets sent and answered, round trips in milliseconds."""

    sent: int
    received: int
    min_ms: float
    avg_ms: float
    max_ms: float


def parse_tcp(output: str) -> TcpResult:
    """iperf3's client ``--json`` of a TCP test; :class:`IperfError` with iperf3's message when it failed,
    ``ValueError`` when the text is not iperf3's JSON."""
    report = load_report(output)
    received, sent = report["end"]["sum_received"], report["end"]["sum_sent"]
    return TcpResult(received["bits_per_second"] / 1e6, int(sent.get("retransmits", 0)), float(received["seconds"]))


def parse_ping(output: str) -> PingResult:
    """ping's summary lines (``-q`` or not); ``ValueError`` with ping's text when it has no round trips."""
    counts, rtt = _COUNTS.search(output), _RTT.search(output)
    if counts is None or rtt is None:
        raise ValueError(f"ping got no answer: {output.strip()[-500:]!r}")
    low, avg, high = (float(rtt[i]) for i in (1, 2, 3))
    return PingResult(int(counts[1]), int(counts[2]), low, avg, high)


def throughput_line(label: str, tcp: TcpResult, raw_mbit: float, aim: float | None) -> str:
    """One throughput figure next to raw UDP, the ratio, and the aim when there is one."""
    ratio = tcp.mbit_per_s / raw_mbit if raw_mbit > 0 else float("nan")
    verdict = f"   aim >= {aim:.0%}: {'met' if ratio >= aim else 'not met'}" if aim is not None else ""
    return (
        f"  {label:<42}{tcp.mbit_per_s:8.1f} Mbit/s ({tcp.retransmits} retransmits in {tcp.seconds:.0f} s); "
        f"raw UDP {raw_mbit:.1f} Mbit/s; {ratio:.0%} of raw{verdict}"
    )


def rtt_line(label: str, tunnel: PingResult, wan: PingResult, aim_ms: float | None) -> str:
    """One RTT figure next to the WAN's, the added average, and the aim when there is one."""
    added = tunnel.avg_ms - wan.avg_ms
    verdict = f"   aim < {aim_ms} ms: {'met' if added < aim_ms else 'not met'}" if aim_ms is not None else ""
    return (
        f"  {label:<42}avg {tunnel.avg_ms:.3f} ms (min {tunnel.min_ms:.3f}, max {tunnel.max_ms:.3f}, "
        f"{tunnel.received}/{tunnel.sent}); WAN hop avg {wan.avg_ms:.3f} ms (min {wan.min_ms:.3f}); "
        f"added {added:+.3f} ms{verdict}"
    )


# -- in the lab --------------------------------------------------------------------------------------------


def tcp_over_tunnel(lab: Lab) -> TcpResult:
    """iperf3 TCP, alice -> bob.natlab, :data:`TCP_SECONDS` s (bob's one-test server detached)."""
    lab.container("bob").exec_run(server_command(IPERF_PORT), detach=True)
    lab.wait_for(
        lambda: lab.exec("bob", "sh", "-c", f"ss -ltn | grep -q ':{IPERF_PORT} '")[0] == 0 or None,
        timeout=10,
        what="bob's iperf3 server to listen",
    )
    client = ["iperf3", "--client", "bob.natlab", "--port", str(IPERF_PORT), "--time", str(TCP_SECONDS), "--json"]
    _, output = lab.exec("alice", "timeout", str(TCP_SECONDS + 30), *client)  # iperf3's JSON says why it failed
    return parse_tcp(output)


def ping(lab: Lab, service: str, target: str) -> PingResult:
    """:data:`PINGS` pings, 0.1 s apart, from ``service`` to ``target``, all within 20 s."""
    _, output = lab.exec(service, "ping", "-q", "-n", "-c", str(PINGS), "-i", "0.1", "-w", "20", target)
    return parse_ping(output)


def measure(lab: Lab, path: str) -> tuple[TcpResult, PingResult]:
    """The tunnel's figures in a fresh lab whose hosts brought it up at start, once WireGuard's handshake is done
    over ``path`` (direct, relay) on both sides: ping alice -> bob.natlab, then TCP alice -> bob."""
    handshaken(lab, "alice", "bob", path)
    handshaken(lab, "bob", "alice", path)
    rtt = ping(lab, "alice", "bob.natlab")
    return tcp_over_tunnel(lab), rtt
