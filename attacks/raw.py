"""Raw sockets: send datagrams with forged sources, and see datagrams that are not addressed to us.

Sending needs CAP_NET_RAW (lab containers have it): an ``IPPROTO_RAW`` socket implies IP_HDRINCL, so the
kernel sends the header we wrote, forged source included. Seeing needs a packet socket (``AF_PACKET``),
which gets every IPv4 packet on the container's interfaces before netfilter rewrites it (a router's WAN
side, say, before its DNAT), or a raw UDP socket for what arrives at this host on any port.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

from attacks.packets import HEADERS, Datagram, PacketError, build, check_lab, parse

ETH_P_IP = 0x0800
RECEIVE_BUFFER = 65535


@dataclass(frozen=True)
class Sent:
    """What a sender put on the wire: datagrams, their UDP payload bytes and their IP bytes."""

    datagrams: int = 0
    payload_bytes: int = 0

    @property
    def ip_bytes(self) -> int:
        return self.payload_bytes + self.datagrams * HEADERS

    def add(self, payload: bytes) -> Sent:
        return Sent(self.datagrams + 1, self.payload_bytes + len(payload))

    def to_json(self) -> dict[str, int]:
        return {"sent": self.datagrams, "payload_bytes": self.payload_bytes, "ip_bytes": self.ip_bytes}


class Spoofer:
    """A raw socket that sends datagrams with the source their IP header names, counting what it sent.

    Every address must be in the lab (:func:`~attacks.packets.check_lab`): the tools forge lab addresses
    only and send nowhere else. ``with Spoofer() as spoofer: spoofer.send(datagram)``.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = Sent()

    def send(self, datagram: Datagram) -> None:
        check_lab(datagram.src)
        check_lab(datagram.dst)
        self.sock.sendto(build(datagram, ident=self.sent.datagrams), (datagram.dst.host, 0))
        self.sent = self.sent.add(datagram.payload)

    def __enter__(self) -> Spoofer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()


def send_spoofed(datagrams: Sequence[Datagram], count: int = 1, interval: float = 0.0) -> Sent:
    """Send ``datagrams`` ``count`` times over, ``interval`` s between rounds."""
    with Spoofer() as spoofer:
        for round_ in range(count):
            if round_ and interval:
                time.sleep(interval)  # pacing the attack itself, not waiting for a condition
            for datagram in datagrams:
                spoofer.send(datagram)
    return spoofer.sent


def packets_until(sock: socket.socket, deadline: float) -> Iterator[bytes]:
    """What ``sock`` receives until ``deadline`` (monotonic seconds)."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            yield sock.recv(RECEIVE_BUFFER)
        except TimeoutError:
            return


def udp_in(packets: Iterator[bytes]) -> Iterator[Datagram]:
    """The UDP datagrams among IPv4 packets (anything else is skipped)."""
    for packet in packets:
        try:
            yield parse(packet)
        except PacketError:
            continue


def capture(
    wanted: Callable[[Datagram], bool], count: int, timeout: float, on_ready: Callable[[], None] = lambda: None
) -> list[Datagram]:
    """Up to ``count`` datagrams that ``wanted`` accepts, seen on any interface within ``timeout`` s."""
    found: list[Datagram] = []
    with closing(socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))) as sock:
        on_ready()
        for datagram in udp_in(packets_until(sock, time.monotonic() + timeout)):
            if wanted(datagram):
                found.append(datagram)
                if len(found) >= count:
                    break
    return found


def arriving_udp() -> socket.socket:
    """A raw socket that receives a copy of every UDP datagram arriving at this host, whatever its port."""
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
