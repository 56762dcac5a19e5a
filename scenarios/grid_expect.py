"""The grid's expected outcomes: which path each ordered pair of NAT sites should take, derived from RFC 4787.

`make grid` runs every ordered pair of sites (row: the connecting host's site "a", column: the other host's
site "b") and compares what happened with this table, so the table is theory written down, not observation.
The theory is that of our client: the signal server tells both peers each other's server-reflexive address
and both probe it at the same time; a probe that arrives from an unexpected source port is still answered, at
its actual source; nobody predicts ports; the TURN relay is always reachable, also from UDP-blocked sites.

Pure data and functions: no Docker, no I/O, so the rules are unit-tested for every combination of behaviours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.rfc4787 import Behaviour

ENDPOINT_INDEPENDENT = str(Behaviour.ENDPOINT_INDEPENDENT)
ADDRESS_DEPENDENT = str(Behaviour.ADDRESS_DEPENDENT)
ADDRESS_AND_PORT_DEPENDENT = str(Behaviour.ADDRESS_AND_PORT_DEPENDENT)
BEHAVIOURS = tuple(str(behaviour) for behaviour in Behaviour)
"""RFC 4787's words for mapping (section 4.1) and filtering (section 5) behaviour, loosest first."""

DIRECT = "direct"
RELAY = "relay"

RULES = (
    "Either site blocks UDP: relay (no UDP passes between the sites at all; the TURN relay is still reachable).",
    "Both sites map endpoint-independently: direct (each side's probes leave from the port the signal server "
    "saw, and each side's own probe opens its filter for the other's).",
    "One site (X) maps endpoint-independently and filters endpoint-independently or address-dependently, the "
    "other (Y) does not map endpoint-independently: direct (Y's probe reaches X from a fresh port, X lets it "
    "in and answers at its real source, and Y's NAT admits that as a reply).",
    "One site (X) maps endpoint-independently but filters by address and port, the other (Y) does not map "
    "endpoint-independently: relay (X drops Y's probe from the unexpected port; X's probes aim at Y's port "
    "that is mapped towards the signal server only, and whatever Y answers leaves from a fresh port).",
    "Neither site maps endpoint-independently, but one (R) filters endpoint-independently and the other (S) "
    "endpoint-independently or address-dependently: direct (S's probe gets in at R's port mapped towards the "
    "signal server; R answers from a fresh port, which S admits because it has sent to R's address). No "
    "profile has this combination today.",
    "Neither site maps endpoint-independently otherwise: relay (each side's probes leave from a port the other "
    "never sent to, and without port prediction nobody aims at the right one).",
)
"""The expectation rules in the order ``expected_path`` applies them, plain text (Markdown and HTML both)."""


class _ProfileLike(Protocol):
    """What ``Site.from_profile`` reads from a ``nat.profiles.Profile`` (duck-typed: tests pass plain records)."""

    @property
    def name(self) -> str: ...
    @property
    def mapping(self) -> str: ...
    @property
    def filtering(self) -> str: ...
    @property
    def udp_blocked(self) -> bool: ...
    @property
    def classic(self) -> str: ...


@dataclass(frozen=True)
class Site:
    """One NAT site of the grid: its name and the RFC 4787 behaviour the expectation depends on.

    ``classic`` is the pre-RFC 4787 name ("port-restricted cone", "symmetric"), only for people reading a report.
    Mapping and filtering are checked on construction so that a typo cannot silently fall into a rule's "else".
    """

    name: str
    mapping: str
    filtering: str
    udp_blocked: bool = False
    classic: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("site name must not be empty")
        for field in ("mapping", "filtering"):
            value = getattr(self, field)
            if value not in BEHAVIOURS:
                raise ValueError(f"site {self.name!r}: {field} {value!r} is not one of {', '.join(BEHAVIOURS)}")
            # A StrEnum member equals its word; keep the plain word so reprs and JSON stay plain.
            object.__setattr__(self, field, str(value))

    @classmethod
    def from_profile(cls, profile: _ProfileLike) -> Site:
        """The site of a NAT profile, so the grid's sites follow ``nat.profiles`` instead of restating it."""
        return cls(
            name=profile.name,
            mapping=str(profile.mapping),
            filtering=str(profile.filtering),
            udp_blocked=profile.udp_blocked,
            classic=profile.classic,
        )

    @property
    def maps_independently(self) -> bool:
        """Whether the peer sees the port the signal server saw: the one fact punching without prediction needs."""
        return self.mapping == ENDPOINT_INDEPENDENT


def expected_path(a: Site, b: Site) -> tuple[str, str]:
    """The path ``a`` and ``b`` should end up on, ``"direct"`` or ``"relay"``, and a one-line reason why.

    Symmetric in its path: which side connects does not matter, because both sides probe at the same time.
    """
    if a.udp_blocked or b.udp_blocked:
        blocked = list(dict.fromkeys(site.name for site in (a, b) if site.udp_blocked))
        verb = "blocks" if len(blocked) == 1 else "block"
        return RELAY, f"{' and '.join(blocked)} {verb} UDP: no UDP passes between the sites, only the relay does"
    if a.maps_independently and b.maps_independently:
        return DIRECT, (
            "both map endpoint-independently: probes leave from the ports the server saw, "
            "and each side's own probe opens its filter for the other's"
        )
    if a.maps_independently or b.maps_independently:
        x, y = (a, b) if a.maps_independently else (b, a)
        return _one_independent(x, y)
    return _none_independent(a, b)


def _one_independent(x: Site, y: Site) -> tuple[str, str]:
    """Only ``x`` keeps its port per endpoint: everything hangs on whether ``x`` lets ``y``'s fresh port in."""
    if x.filtering in (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT):
        return DIRECT, (
            f"{y.name}'s probe reaches {x.name} from a fresh port, which {x.name}'s {x.filtering} filtering "
            f"lets in; {x.name} answers at that port, and {y.name}'s NAT admits the answer as a reply"
        )
    return RELAY, (
        f"{x.name} filters by address and port, so {y.name}'s probe from a fresh port is dropped; "
        f"{x.name}'s probes aim at a port of {y.name} mapped only towards the signal server"
    )


def _none_independent(a: Site, b: Site) -> tuple[str, str]:
    """Nobody's probes come from the port the other aims at, so one side must take in a stranger's port.

    That side (R) needs endpoint-independent filtering to let the other's probe in at its server-facing port;
    R then answers from a fresh port, which the prober (S) admits only if it filters no stricter than by
    address. The rule follows from the same premises as the others; no profile exercises it today.
    """
    for r, s in ((a, b), (b, a)):
        if r.filtering == ENDPOINT_INDEPENDENT and s.filtering in (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT):
            return DIRECT, (
                f"neither maps endpoint-independently, but {s.name}'s probe gets in at {r.name}'s server-facing "
                f"port ({r.name} filters endpoint-independently), and {r.name}'s answer from a fresh port passes "
                f"{s.name}'s {s.filtering} filtering"
            )
    return RELAY, (
        "neither maps endpoint-independently: probes leave from ports the other side never sent to, "
        "nobody predicts ports, and no filter lets a stranger's port in and gets the answer back"
    )


def expected_table(sites: Sequence[Site]) -> dict[tuple[str, str], tuple[str, str]]:
    """``expected_path`` for every ordered pair of site names, a site with itself included.

    In the grid each site exists twice, once per side, so (s, s) is a real pair of two routers of one kind.
    Site names key the table, so they must be unique.
    """
    names = [site.name for site in sites]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"site names must be unique: {', '.join(duplicates)}")
    return {(a.name, b.name): expected_path(a, b) for a in sites for b in sites}


def explain_rules() -> str:
    """The expectation rules as a short Markdown list, for the README and the grid report."""
    return "\n".join(f"- {rule}" for rule in RULES) + "\n"
