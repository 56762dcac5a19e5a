"""NAT profiles as data, in RFC 4787 vocabulary, and the registry of named profiles.

A profile says *what* a NAT does (mapping, filtering, port allocation, hairpinning, UDP mapping timeout);
``nat.render`` decides *how* nftables does it, and refuses combinations it cannot express yet.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_UDP_TIMEOUT = 30
"""Seconds an idle UDP mapping survives (RFC 4787 asks for >= 120 s; a lab wants short, visible expiry)."""

MAX_UDP_TIMEOUT = 86_400
"""A day: beyond this a 'timeout' is a typo, and the kernel's jiffies arithmetic is no longer obvious."""


class Behaviour(enum.StrEnum):
    """How a NAT's mapping or filtering depends on the remote endpoint (RFC 4787 sections 4.1, 5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortAllocation(enum.StrEnum):
    """How the external port of a new mapping is chosen (RFC 4787 section 4.2.1)."""

    PRESERVE = "preserve"
    """Keep the internal source port unless another mapping already holds it."""
    RANDOM = "random"
    """A random port for every new mapping."""


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

    def __post_init__(self) -> None:
        if not self.name:
            raise ProfileError("profile name must not be empty")
        check_udp_timeout(self.udp_timeout)

    def with_udp_timeout(self, seconds: int) -> Profile:
        """This profile with another UDP mapping timeout (validated)."""
        return dataclasses.replace(self, udp_timeout=seconds)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, enum members as their RFC 4787 words."""
        return {
            "name": self.name,
            "mapping": str(self.mapping),
            "filtering": str(self.filtering),
            "ports": str(self.ports),
            "hairpinning": self.hairpinning,
            "udp_timeout": self.udp_timeout,
        }

    def describe(self) -> str:
        """One line for people: ``cone: mapping=... filtering=... ports=... hairpin=off udp_timeout=30s``."""
        return (
            f"{self.name}: mapping={self.mapping} filtering={self.filtering} ports={self.ports} "
            f"hairpin={'on' if self.hairpinning else 'off'} udp_timeout={self.udp_timeout}s"
        )


def check_udp_timeout(seconds: object) -> None:
    """Raise ``ProfileError`` unless ``seconds`` is an int in 1..MAX_UDP_TIMEOUT."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_UDP_TIMEOUT:
        raise ProfileError(f"UDP timeout must be a whole number of seconds in 1..{MAX_UDP_TIMEOUT}, got {seconds!r}")


_EIM = Behaviour.ENDPOINT_INDEPENDENT
_APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT

PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        # Port-restricted cone: Linux MASQUERADE keeps the source port when it is free, so every
        # destination sees the same external port; only the exact remote ip:port a flow went to gets in.
        Profile("cone", mapping=_EIM, filtering=_APDM, ports=PortAllocation.PRESERVE),
        # Symmetric: every new 5-tuple gets its own random external port.
        Profile("symmetric", mapping=_APDM, filtering=_APDM, ports=PortAllocation.RANDOM),
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
