"""Scenarios as data: which NAT pairs the two-site suite runs and the outcome each must give.

The expected path is the traversal grid's theory (``scenarios.grid_expect``) applied to the two routers'
profiles: cone-cone goes direct (both map endpoint-independently), and a symmetric side sends its probes
from ports the port-restricted other side never sent to, so such a pair talks through the TURN relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from nat.profiles import get_profile
from scenarios.grid_expect import Site, expected_path

Path = Literal["direct", "relay"]


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
        path, _ = expected_path(Site.from_profile(get_profile(self.a)), Site.from_profile(get_profile(self.b)))
        return cast(Path, path)


PROFILES = ("cone", "symmetric")
PAIRS = tuple(Pair(a, b) for a in PROFILES for b in PROFILES)
