"""Flows from tcpdump's text: what ``tcpdump -nn -tt -e -q -r FILE`` prints, one packet a line, summed per flow.

Pure: lines in, flows out. A flow is one direction of a 5-tuple (protocol, source address and port,
destination address and port; ICMP has no ports), as tcpdump prints it, so a NAT's two sides show as two
flows with different addresses. Its bytes are the frames' lengths on the wire (the ``length`` after the
ethertype, Ethernet header included), not what the snap length kept. Frames that are not IP (ARP, say) count
as one flow per ethertype.

The options: ``-nn`` numbers instead of names, ``-tt`` Unix time, ``-e`` the link header (for the frame's
length), ``-q`` no application decoding (otherwise a datagram to a port tcpdump knows, 53 say, prints as that
protocol instead of ``UDP, length N``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

TCPDUMP_READ = ("tcpdump", "-nn", "-tt", "-e", "-q", "-r")
"""The command (then the file) whose output :func:`parse_line` reads."""

_LINE = re.compile(
    r"^(?P<time>\d+\.\d+) (?P<macs>\S+ > \S+), (?P<ethertype>[^,]+), length (?P<length>\d+): (?P<rest>.*)$"
)
_IP = re.compile(r"^(?P<src>\S+) > (?P<dst>\S+): (?P<what>.*)$")
_IP_ETHERTYPES = frozenset({"IPv4", "IPv6"})


@dataclass(frozen=True, order=True)
class FlowKey:
    proto: str
    """``udp``, ``tcp``, ``icmp``, ``icmp6``, another IP protocol as tcpdump names it, or a non-IP
    ethertype (``arp``)."""
    src: str = ""
    sport: int | None = None
    dst: str = ""
    dport: int | None = None

    def describe(self) -> str:
        if not self.src:
            return self.proto
        return f"{self.proto} {_endpoint(self.src, self.sport)} > {_endpoint(self.dst, self.dport)}"


def _endpoint(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class Packet:
    time: float
    key: FlowKey
    length: int


@dataclass
class Flow:
    key: FlowKey
    packets: int
    bytes: int
    first: float
    last: float

    def describe(self) -> str:
        return (
            f"{self.key.describe():<52} {self.packets:>8,} packets {self.bytes:>12,} bytes  "
            f"{clock(self.first)} - {clock(self.last)}"
        )


def clock(epoch: float) -> str:
    """UTC time of day to the millisecond: a lab's captures span minutes, not days."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


def parse_line(line: str) -> Packet | None:
    """One line of tcpdump's output, or None when it is not a packet line this module knows."""
    match = _LINE.match(line.strip())
    if match is None:
        return None
    ethertype, rest = match["ethertype"], match["rest"]
    if ethertype in _IP_ETHERTYPES:
        key = _ip_key(rest)
        if key is None:
            return None
    else:
        key = FlowKey(ethertype.lower())
    return Packet(float(match["time"]), key, int(match["length"]))


def _ip_key(text: str) -> FlowKey | None:
    match = _IP.match(text)
    if match is None:
        return None
    what = match["what"]
    proto = "udp" if what.startswith("UDP") else what.split(" ", 1)[0].rstrip(",").lower()
    if proto in ("udp", "tcp"):
        src, sport = _split_port(match["src"])
        dst, dport = _split_port(match["dst"])
        if sport is None or dport is None:
            return None
        return FlowKey(proto, src, sport, dst, dport)
    return FlowKey(proto, match["src"], None, match["dst"], None)


def _split_port(text: str) -> tuple[str, int | None]:
    """``198.18.0.11.40000`` -> (``198.18.0.11``, 40000); tcpdump appends the port with a dot (IPv6 too),
    so an IPv4 address has a port only when it has a fifth part."""
    address, _, port = text.rpartition(".")
    has_port = port.isdigit() and (":" in address or address.count(".") == 3)
    return (address, int(port)) if has_port else (text, None)


@dataclass
class Summary:
    flows: list[Flow] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)
    """Lines that were not packets (tcpdump's own messages, protocols this module does not know)."""


def summarise(lines: Iterable[str]) -> Summary:
    """Every packet line summed into its flow; flows in the order of their first packet."""
    flows: dict[FlowKey, Flow] = {}
    summary = Summary()
    for line in lines:
        if not line.strip():
            continue
        packet = parse_line(line)
        if packet is None:
            summary.unparsed.append(line)
            continue
        flow = flows.get(packet.key)
        if flow is None:
            flows[packet.key] = Flow(packet.key, 1, packet.length, packet.time, packet.time)
        else:
            flow.packets += 1
            flow.bytes += packet.length
            flow.first = min(flow.first, packet.time)
            flow.last = max(flow.last, packet.time)
    summary.flows = sorted(flows.values(), key=lambda f: (f.first, f.key))
    return summary
