"""NAT profiles as data, in RFC 4787 vocabulary, and the registry of named profiles.

A profile says *what* a NAT does (mapping, filtering, port allocation, hairpinning, UDP mapping timeout,
whether UDP to the WAN is blocked); ``nat.render`` decides *how* nftables does it, and refuses combinations
it cannot express.

The named profiles (``NAT_PROFILE``) are ``PROFILES``: ``cone``, ``full-cone``, ``restricted-cone``,
``symmetric``, ``symmetric-pp``, ``symmetric-seq`` and ``udp-blocked``; each one's ``summary`` says in a line
what it is (classic name first) and what the WAN sees.

Options that apply to any of them (``nat.router`` reads them from the environment): hairpinning
(``NAT_HAIRPIN=on|off``), the UDP mapping timeout (``NAT_UDP_TIMEOUT=seconds``) and UDP blocking
(``NAT_UDP_BLOCKED=on|off``, with the allowed WAN addresses in ``NAT_UDP_ALLOW``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.rfc4787 import Behaviour, PortAllocation, classic_name

DEFAULT_UDP_TIMEOUT = 30
"""Seconds an idle UDP mapping survives (RFC 4787 asks for >= 120 s; a lab wants short, visible expiry)."""

MAX_UDP_TIMEOUT = 86_400
"""A day: beyond this a 'timeout' is a typo, and the kernel's jiffies arithmetic is no longer obvious."""


class ProfileError(ValueError):
    """A profile definition or selection that the operator got wrong (unknown name, bad timeout)."""


@dataclass(frozen=True)
class Profile:
    """One NAT behaviour. Validated on construction, so a ``Profile`` that exists is well formed."""

    name: str
    mapping: Behaviour
    filtering: Behaviour
    ports: PortAllocation
    hairpinning: bool = False
    udp_timeout: int = DEFAULT_UDP_TIMEOUT
    udp_blocked: bool = False
    """Drop UDP to and from the WAN except to and from an allow-list the router is given."""
    summary: str = ""
    """One line for people (and the README): ``<classic name>[, UDP blocked]: what the WAN sees, who gets in``."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ProfileError("profile name must not be empty")
        check_udp_timeout(self.udp_timeout)

    @property
    def classic(self) -> str:
        """The pre-RFC 4787 name (RFC 3489 and folklore): ``full cone`` ... ``sequential symmetric``."""
        return classic_name(self.mapping, self.filtering, self.ports)

    def with_udp_timeout(self, seconds: int) -> Profile:
        """This profile with another UDP mapping timeout (validated)."""
        return dataclasses.replace(self, udp_timeout=seconds)

    def with_options(
        self, *, udp_timeout: int | None = None, hairpinning: bool | None = None, udp_blocked: bool | None = None
    ) -> Profile:
        """This profile with the options that are not ``None`` replaced (validated)."""
        return dataclasses.replace(
            self,
            udp_timeout=self.udp_timeout if udp_timeout is None else udp_timeout,
            hairpinning=self.hairpinning if hairpinning is None else hairpinning,
            udp_blocked=self.udp_blocked if udp_blocked is None else udp_blocked,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, enum members as their RFC 4787 words."""
        return {
            "name": self.name,
            "classic": self.classic,
            "mapping": str(self.mapping),
            "filtering": str(self.filtering),
            "ports": str(self.ports),
            "hairpinning": self.hairpinning,
            "udp_timeout": self.udp_timeout,
            "udp_blocked": self.udp_blocked,
            "summary": self.summary,
        }

    def describe(self) -> str:
        """One line for people: ``cone (port-restricted cone): mapping=... hairpin=off ... udp_timeout=30s``."""
        return (
            f"{self.name} ({self.classic}): mapping={self.mapping} filtering={self.filtering} ports={self.ports} "
            f"hairpin={_on_off(self.hairpinning)} udp_blocked={_on_off(self.udp_blocked)} "
            f"udp_timeout={self.udp_timeout}s"
        )


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def check_udp_timeout(seconds: object) -> None:
    """Raise ``ProfileError`` unless ``seconds`` is an int in 1..MAX_UDP_TIMEOUT."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_UDP_TIMEOUT:
        raise ProfileError(f"UDP timeout must be a whole number of seconds in 1..{MAX_UDP_TIMEOUT}, got {seconds!r}")


_EIM = Behaviour.ENDPOINT_INDEPENDENT
_ADM = Behaviour.ADDRESS_DEPENDENT
_APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT
_PRESERVE = PortAllocation.PRESERVE

PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "cone",
            mapping=_EIM,
            filtering=_APDM,
            ports=_PRESERVE,
            summary="port-restricted cone: one external port per internal endpoint, kept from its source port; "
            "only the exact remote ip:port it has sent to gets in",
        ),
        Profile(
            "full-cone",
            mapping=_EIM,
            filtering=_EIM,
            ports=_PRESERVE,
            summary="full cone: one external port per internal endpoint, kept from its source port; once it is "
            "mapped, anyone on the WAN gets in through it",
        ),
        Profile(
            "restricted-cone",
            mapping=_EIM,
            filtering=_ADM,
            ports=_PRESERVE,
            summary="restricted cone: one external port per internal endpoint, kept from its source port; any "
            "port of a remote address it has sent to gets in",
        ),
        Profile(
            "symmetric",
            mapping=_APDM,
            filtering=_APDM,
            ports=PortAllocation.RANDOM,
            summary="symmetric: a new random external port for every remote ip:port; only that ip:port gets in",
        ),
        Profile(
            "symmetric-pp",
            mapping=_APDM,
            filtering=_APDM,
            ports=_PRESERVE,
            summary="port-preserving symmetric: an internal endpoint's first mapping keeps its source port, "
            "later destinations get random ports; only the exact remote ip:port gets in",
        ),
        Profile(
            "symmetric-seq",
            mapping=_APDM,
            filtering=_APDM,
            ports=PortAllocation.SEQUENTIAL,
            summary="sequential symmetric: every new mapping takes the next external port (predictable); "
            "only the exact remote ip:port gets in",
        ),
        Profile(
            "udp-blocked",
            mapping=_EIM,
            filtering=_APDM,
            ports=_PRESERVE,
            udp_blocked=True,
            summary="port-restricted cone, UDP blocked: UDP to and from the WAN is dropped, except with the "
            "lab's own servers (NAT_UDP_ALLOW)",
        ),
    )
}
"""The named profiles that ``NAT_PROFILE`` may select."""

DEFAULT_PROFILE = "cone"


def get_profile(name: str, udp_timeout: int | None = None) -> Profile:
    """The registered profile ``name``, optionally with its UDP timeout overridden.

    Raises ``ProfileError`` listing the known names when ``name`` is not registered.
    """
    try:
        profile = PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ProfileError(f"unknown NAT profile {name!r}; known profiles: {known}") from None
    return profile if udp_timeout is None else profile.with_udp_timeout(udp_timeout)


def parse_udp_timeout(text: str) -> int:
    """Parse an operator-supplied timeout such as ``"45"``; ``ProfileError`` names the bad value."""
    stripped = text.strip()
    if not stripped.isdecimal():
        raise ProfileError(f"UDP timeout must be a whole number of seconds, got {text!r}")
    seconds = int(stripped)
    check_udp_timeout(seconds)
    return seconds


_SWITCH_WORDS = {"on": True, "off": False, "1": True, "0": False, "true": True, "false": False}


def parse_switch(text: str) -> bool:
    """Parse an operator-supplied on/off option (``on``, ``off``, ``1``, ``0``, ``true``, ``false``)."""
    try:
        return _SWITCH_WORDS[text.strip().lower()]
    except KeyError:
        raise ProfileError(f"expected on or off (or 1/0, true/false), got {text!r}") from None
