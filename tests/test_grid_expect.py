"""The grid's expected outcomes, checked against a packet-level model of two RFC 4787 NATs and our client.

Restating the rules as a second truth table would only test the typing; the model below derives each outcome
from packets instead: both hosts register with the signal server, probe each other's server-reflexive
address, answer any probe at its actual source and move their target there, and nobody predicts ports.
A pair is direct when each host has heard the other.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from scenarios.grid_expect import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    BEHAVIOURS,
    ENDPOINT_INDEPENDENT,
    RULES,
    Site,
    expected_path,
    expected_table,
    explain_rules,
)

EI, AD, APD = ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT
SHORT = {EI: "EI", AD: "AD", APD: "APD"}
SERVER = ("server", 9000)
ROUNDS = 4

KINDS = [
    Site(f"{SHORT[m]}M/{SHORT[f]}F{'+blocked' if blocked else ''}", m, f, blocked)
    for m in BEHAVIOURS
    for f in BEHAVIOURS
    for blocked in (False, True)
]
"""Every combination of mapping, filtering and UDP blocking: 18 kinds of site, 324 ordered pairs."""

# The named profiles of nat.profiles, restated (this test must not break while nat/ is being edited).
CONE = Site("cone", EI, APD, classic="port-restricted cone")
FULL_CONE = Site("full-cone", EI, EI, classic="full cone")
RESTRICTED_CONE = Site("restricted-cone", EI, AD, classic="restricted cone")
SYMMETRIC = Site("symmetric", APD, APD, classic="symmetric")
UDP_BLOCKED = Site("udp-blocked", EI, APD, udp_blocked=True, classic="port-restricted cone")
PROFILES = (CONE, FULL_CONE, RESTRICTED_CONE, SYMMETRIC, UDP_BLOCKED)


class ModelNat:
    """One NAT with one host behind it: mappings per RFC 4787 mapping, admission per RFC 4787 filtering."""

    def __init__(self, ip: str, site: Site) -> None:
        self.ip, self.site = ip, site
        self.ports: dict[tuple, int] = {}
        self.sent: set[tuple[int, tuple[str, int]]] = set()  # (external port, remote endpoint)

    def send(self, dst: tuple[str, int]) -> tuple[str, int] | None:
        """The packet's source as the WAN sees it, or None when the router drops it."""
        if self.site.udp_blocked and dst != SERVER:
            return None
        key = {EI: (), AD: (dst[0],), APD: dst}[self.site.mapping]
        port = self.ports.setdefault(key, 40000 + len(self.ports))
        self.sent.add((port, dst))
        return self.ip, port

    def admits(self, src: tuple[str, int], port: int) -> bool:
        if (self.site.udp_blocked and src != SERVER) or port not in self.ports.values():
            return False
        if self.site.filtering == EI:
            return True
        if self.site.filtering == AD:
            return any(p == port and remote[0] == src[0] for p, remote in self.sent)
        return (port, src) in self.sent


def register(nat: ModelNat) -> tuple[str, int]:
    """The host's server-reflexive address: what the signal server tells the other host."""
    reflexive = nat.send(SERVER)
    assert reflexive is not None, "every router lets its hosts reach the signal server"
    return reflexive


def simulated_path(a: Site, b: Site) -> str:
    """Register, then ROUNDS rounds of simultaneous probes, each answered at its source; direct if both heard."""
    nats = {"a": ModelNat("198.18.0.11", a), "b": ModelNat("198.18.0.12", b)}
    reflexive = {side: register(nat) for side, nat in nats.items()}
    target = {"a": reflexive["b"], "b": reflexive["a"]}
    heard: set[str] = set()
    for _ in range(ROUNDS):
        in_flight = [(src, target[side], "hello") for side in nats if (src := nats[side].send(target[side]))]
        while in_flight:
            src, dst, kind = in_flight.pop(0)
            side = next(s for s, nat in nats.items() if nat.ip == dst[0])
            if not nats[side].admits(src, dst[1]):
                continue
            heard.add(side)
            target[side] = src  # a probe or answer from an unexpected port moves the path there
            if kind == "hello" and (answer_src := nats[side].send(src)):
                in_flight.append((answer_src, src, "ack"))
    return "direct" if heard == {"a", "b"} else "relay"


@pytest.mark.parametrize("b", KINDS, ids=lambda s: s.name)
@pytest.mark.parametrize("a", KINDS, ids=lambda s: s.name)
def test_expected_path_agrees_with_the_packet_model(a, b):
    path, why = expected_path(a, b)
    assert path == simulated_path(a, b)
    assert why
    assert "\n" not in why


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations_with_replacement(KINDS, 2)), ids=lambda s: s.name)
def test_which_side_connects_does_not_matter(a, b):
    assert expected_path(a, b)[0] == expected_path(b, a)[0]


@pytest.mark.parametrize(
    ("a", "b", "path"),
    [
        (CONE, CONE, "direct"),
        (CONE, SYMMETRIC, "relay"),
        (SYMMETRIC, CONE, "relay"),
        (SYMMETRIC, SYMMETRIC, "relay"),
        (FULL_CONE, SYMMETRIC, "direct"),
        (SYMMETRIC, RESTRICTED_CONE, "direct"),
        (FULL_CONE, CONE, "direct"),
        (RESTRICTED_CONE, RESTRICTED_CONE, "direct"),
        (UDP_BLOCKED, UDP_BLOCKED, "relay"),
        (UDP_BLOCKED, FULL_CONE, "relay"),
        (CONE, UDP_BLOCKED, "relay"),
    ],
    ids=lambda value: value.name if isinstance(value, Site) else value,
)
def test_named_profiles_get_the_paths_the_readme_promises(a, b, path):
    assert expected_path(a, b)[0] == path


def test_the_reason_names_the_site_that_decides():
    _, why = expected_path(SYMMETRIC, CONE)
    assert "cone filters by address and port" in why
    _, why = expected_path(SYMMETRIC, FULL_CONE)
    assert "full-cone's endpoint-independent filtering" in why
    assert "udp-blocked blocks UDP" in expected_path(CONE, UDP_BLOCKED)[1]
    assert "a and b block UDP" in expected_path(Site("a", EI, EI, True), Site("b", EI, EI, True))[1]


def test_a_loose_filter_rescues_a_pair_that_maps_per_endpoint():
    """No profile has this: both symmetric, one letting anyone in, the other filtering by address only."""
    open_symmetric = Site("open-symmetric", APD, EI)
    address_symmetric = Site("address-symmetric", AD, AD)
    assert expected_path(open_symmetric, address_symmetric)[0] == "direct"
    assert expected_path(open_symmetric, SYMMETRIC)[0] == "relay"
    assert expected_path(address_symmetric, address_symmetric)[0] == "relay"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "x", "mapping": "cone", "filtering": EI},
        {"name": "x", "mapping": EI, "filtering": "port-restricted"},
        {"name": "x", "mapping": "Endpoint-Independent", "filtering": EI},
        {"name": "", "mapping": EI, "filtering": EI},
    ],
)
def test_site_refuses_words_that_are_not_rfc_4787(kwargs):
    with pytest.raises(ValueError, match="site"):
        Site(**kwargs)


def test_site_from_a_profile_keeps_plain_words():
    class Word(str):  # stands in for nat.profiles.Behaviour, a StrEnum
        def __str__(self) -> str:
            return str.__str__(self)

    profile = SimpleNamespace(
        name="cone", mapping=Word(EI), filtering=Word(APD), udp_blocked=False, classic="port-restricted cone"
    )
    site = Site.from_profile(profile)
    assert site == CONE
    assert type(site.mapping) is str
    assert type(site.filtering) is str


def test_table_covers_every_ordered_pair_including_a_site_with_itself():
    table = expected_table(PROFILES)
    names = [site.name for site in PROFILES]
    assert set(table) == set(itertools.product(names, names))
    assert len(table) == len(PROFILES) ** 2
    assert table["cone", "cone"] == expected_path(CONE, CONE)
    assert table["symmetric", "full-cone"] == expected_path(SYMMETRIC, FULL_CONE)


def test_table_of_no_sites_is_empty():
    assert expected_table([]) == {}


def test_table_refuses_two_sites_of_one_name():
    with pytest.raises(ValueError, match="unique: cone"):
        expected_table([CONE, Site("cone", APD, APD)])


def test_rules_are_a_markdown_list_of_one_line_each():
    text = explain_rules()
    lines = text.splitlines()
    assert len(lines) == len(RULES)
    assert all(line.startswith("- ") for line in lines)
    assert text.endswith("\n")
    assert "relay" in text
    assert "direct" in text
