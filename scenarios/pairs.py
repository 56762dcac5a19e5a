"""Scenarios as data: which NAT pairs the suite runs and the outcome each must give.

The expected path follows from the profiles' RFC 4787 behaviour: both routers filter by address and port
(port-restricted), so a probe only gets in once the receiving side has itself sent to the exact address and
port the probe comes from. That works when both sides map endpoint-independently (the port the server saw
is the port the peer sees): the pair goes direct. A symmetric side picks a fresh random port per
destination, so its probes come from a port the other side never sent to, and the port the other side aims
at is not mapped to anyone: punching fails and the pair talks through the lab's TURN relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Path = Literal["direct", "relay"]

ENDPOINT_INDEPENDENT = {"cone"}


@dataclass(frozen=True)
class Pair:
    """Two sites: NAT profile of router-a (alice's) and of router-b (bob's)."""

    a: str
    b: str

    @property
    def id(self) -> str:
        return f"{self.a}-{self.b}"

    @property
    def expected_path(self) -> Path:
        both_keep_ports = self.a in ENDPOINT_INDEPENDENT and self.b in ENDPOINT_INDEPENDENT
        return "direct" if both_keep_ports else "relay"


PROFILES = ("cone", "symmetric")
PAIRS = tuple(Pair(a, b) for a in PROFILES for b in PROFILES)
