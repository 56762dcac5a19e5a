"""IPv4/UDP packets as an attacker writes and reads them: pure, no sockets.

A spoofed datagram is a whole IPv4 packet (the source address and port are whatever the attacker writes),
sent through a raw socket with IP_HDRINCL; a captured one is parsed back from the IP header on. Only what
the lab needs: IPv4 without options, UDP, checksums per RFC 768 / RFC 791.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from protocol import Endpoint

IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")
UDP_PROTOCOL = 17
DEFAULT_TTL = 64
HEADERS = IPV4_HEADER.size + UDP_HEADER.size
"""Bytes an IPv4/UDP packet adds to its payload (no IP options): 28."""

LAB_NETWORKS = (
    ipaddress.IPv4Network("198.18.0.0/15"),
    ipaddress.IPv4Network("100.64.0.0/10"),
    ipaddress.IPv4Network("127.0.0.0/8"),
)
"""Where attack traffic may go or claim to come from: the lab's ranges and loopback, nothing else."""


class PacketError(ValueError):
    """Bytes that are not an IPv4/UDP packet this module reads."""


class OutsideLab(ValueError):
    """An address outside :data:`LAB_NETWORKS`: the attack tools refuse to send to it or as it."""


def check_lab(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` if its address is in the lab's ranges (or loopback), else :class:`OutsideLab`."""
    try:
        address = ipaddress.IPv4Address(endpoint.host)
    except ValueError:
        raise OutsideLab(f"{endpoint}: the attack tools speak IPv4 only") from None
    if not any(address in network for network in LAB_NETWORKS):
        allowed = ", ".join(map(str, LAB_NETWORKS))
        raise OutsideLab(f"{endpoint} is outside the lab ({allowed}): refused")
    return endpoint


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram with the addresses its IP header names (forged or not)."""

    src: Endpoint
    dst: Endpoint
    payload: bytes

    def to_json(self) -> dict[str, str]:
        return {"src": str(self.src), "dst": str(self.dst), "hex": self.payload.hex()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Datagram:
        return cls(Endpoint.parse(data["src"]), Endpoint.parse(data["dst"]), bytes.fromhex(data["hex"]))


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build(datagram: Datagram, ident: int = 0, ttl: int = DEFAULT_TTL) -> bytes:
    """The whole IPv4 packet carrying ``datagram``, checksums filled in."""
    src, dst = (ipaddress.IPv4Address(e.host).packed for e in (datagram.src, datagram.dst))
    length = UDP_HEADER.size + len(datagram.payload)
    pseudo = src + dst + struct.pack("!BBH", 0, UDP_PROTOCOL, length)
    udp = UDP_HEADER.pack(datagram.src.port, datagram.dst.port, length, 0) + datagram.payload
    # A computed 0 is sent as 0xFFFF: 0 means "no checksum" in UDP over IPv4 (RFC 768).
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    header = IPV4_HEADER.pack(0x45, 0, IPV4_HEADER.size + length, ident & 0xFFFF, 0, ttl, UDP_PROTOCOL, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


def parse(packet: bytes) -> Datagram:
    """The UDP datagram in an IPv4 packet (as a raw or packet socket gives it); :class:`PacketError` if none."""
    if len(packet) < IPV4_HEADER.size:
        raise PacketError(f"{len(packet)} bytes: shorter than an IPv4 header")
    version_ihl, _, total, _, frag, _, proto, _, src, dst = IPV4_HEADER.unpack_from(packet)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < IPV4_HEADER.size:
        raise PacketError("not an IPv4 header")
    if proto != UDP_PROTOCOL:
        raise PacketError(f"IP protocol {proto}, not UDP")
    if frag & 0x1FFF or frag & 0x2000:
        raise PacketError("a fragment")
    end = min(total, len(packet))
    if end < ihl + UDP_HEADER.size:
        raise PacketError("truncated UDP header")
    sport, dport, length, _ = UDP_HEADER.unpack_from(packet, ihl)
    payload = packet[ihl + UDP_HEADER.size : min(end, ihl + length)]
    return Datagram(
        Endpoint(str(ipaddress.IPv4Address(src)), sport), Endpoint(str(ipaddress.IPv4Address(dst)), dport), payload
    )
