"""iperf3's UDP test, the rate check of a router's shaper: the command lines, and its JSON read, pure.

iperf3 (Debian's 3.12, in the lab image) is the tool people already measure links with, so a shaped rate is
checked by someone else's meter, not ours. The client runs on a host behind the router and the server (one
test, ``-1``) in the lab's server container on the WAN; ``-R`` makes the server send, so the same pair
measures both directions: up (the host sends) and down (``-R``). The rate is what the receiving end got
(``end.sum_received``) over the test, offered above the shaped rate so the shaper is what limits it.

iperf3 counts UDP payload; a shaper (tc tbf) counts each packet as the interface's queue sees it, Ethernet
header included: payload + 8 (UDP) + 20 (IPv4) + 14 (Ethernet) bytes. :attr:`RateResult.l2_bps` converts,
so a 10 mbit/s setting reads as 10 mbit/s and not as 9.66 (1,200-byte datagrams).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

L2_OVERHEAD = 8 + 20 + 14
"""Bytes a shaper counts on top of a UDP datagram's payload: UDP and IPv4 headers, the Ethernet header."""
DATAGRAM = 1200
"""iperf3's datagram payload (``-l``): below the lab's 1,500-byte MTU with room for headers."""
SERVER_LIFETIME = 60
"""Seconds an iperf3 server waits for its one test before it gives up (``timeout``), so none is left behind."""


class IperfError(RuntimeError):
    """iperf3 said it failed; the message is its own."""


@dataclass(frozen=True)
class RateResult:
    """One direction's rate as the receiving end measured it."""

    direction: str
    """``up`` (the host sent) or ``down`` (the server sent, ``-R``)."""
    offered_bps: int
    payload_bps: float
    lost_share: float
    """Of the datagrams sent, the share that never arrived (the shaper's drops, above all)."""
    datagram: int = DATAGRAM

    @property
    def l2_bps(self) -> float:
        """The rate as a shaper counts it (headers included): what a ``rate=`` setting is compared with."""
        return self.payload_bps * (self.datagram + L2_OVERHEAD) / self.datagram


def server_command(port: int) -> list[str]:
    """A one-test iperf3 server, ended after :data:`SERVER_LIFETIME` s even if no test comes."""
    return ["timeout", str(SERVER_LIFETIME), "iperf3", "--server", "--one-off", "--port", str(port), "--json"]


def client_command(server: str, port: int, direction: str, offered_bps: int, seconds: float) -> list[str]:
    """The client's command line: UDP at ``offered_bps``, ``-R`` for the down direction."""
    command = ["iperf3", "--client", server, "--port", str(port), "--udp", "--json"]
    command += ["--bitrate", str(offered_bps), "--length", str(DATAGRAM), "--time", f"{seconds:g}"]
    return command + (["--reverse"] if direction == "down" else [])


def parse_client(output: str, direction: str, offered_bps: int) -> RateResult:
    """The client's ``--json`` output read; :class:`IperfError` with iperf3's own message when it failed,
    ``ValueError`` when the text is not iperf3's JSON."""
    report = load_report(output)
    received = report["end"]["sum_received"]
    datagram = int(report["start"]["test_start"]["blksize"])
    payload_bps, lost = float(received["bits_per_second"]), received["lost_percent"] / 100
    return RateResult(direction, offered_bps, payload_bps, lost, datagram)


def load_report(output: str) -> dict[str, Any]:
    """iperf3's ``--json`` document; :class:`IperfError` with iperf3's own message when it says it failed,
    ``ValueError`` when the text is not JSON."""
    try:
        report: dict[str, Any] = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ValueError(f"iperf3 printed no JSON ({exc}): {output[:500]!r}") from None
    if "error" in report:
        raise IperfError(f"iperf3: {report['error']}")
    return report
