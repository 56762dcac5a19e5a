"""NAT behaviour verdicts from RFC 5780 test results: pure functions, no sockets, no clocks.

:mod:`client.diagnostics.nat_discovery` runs the tests against a STUN server and fills in :class:`Observations`;
:func:`classify` turns them into a :class:`NatReport` in RFC 4787's words (the same strings as
``common.rfc4787.Behaviour``), or raises :class:`DiscoveryError` when the answers do not allow a verdict.
A wrong verdict is worse than none: answers that contradict each other (or a server that does not really
answer from its other address) are errors, not guesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.rfc4787 import CLASSIC_CONE, Behaviour
from protocol import Endpoint

ENDPOINT_INDEPENDENT = str(Behaviour.ENDPOINT_INDEPENDENT)
ADDRESS_DEPENDENT = str(Behaviour.ADDRESS_DEPENDENT)
ADDRESS_AND_PORT_DEPENDENT = str(Behaviour.ADDRESS_AND_PORT_DEPENDENT)
BEHAVIOURS = tuple(str(behaviour) for behaviour in Behaviour)
"""RFC 4787 mapping and filtering behaviours, loosest first: the words of ``common.rfc4787.Behaviour``."""


class DiscoveryError(RuntimeError):
    """No verdict: the server does not support RFC 5780, stopped answering, or answered inconsistently."""


def other_address(server: Endpoint, other: Endpoint | None) -> Endpoint:
    """The server's OTHER-ADDRESS, checked: another IP *and* another port than ``server``.

    coturn reports a usable OTHER-ADDRESS only on its first ``--listening-ip``: every other listener names
    its own IP (with the other port) and ignores "change IP", so a test against it would see no NAT.
    """
    if other is None:
        raise DiscoveryError(
            f"{server} does not support RFC 5780 NAT behaviour discovery: its Binding response has no "
            "OTHER-ADDRESS (coturn needs two --listening-ip addresses of one family and no --no-rfc5780)"
        )
    if other.family != server.family:
        raise DiscoveryError(f"{server} reports OTHER-ADDRESS {other} of another address family")
    if other.host == server.host or other.port == server.port:
        raise DiscoveryError(
            f"{server} reports OTHER-ADDRESS {other}: RFC 5780 needs another IP and another port; coturn "
            "reports this on every listener but its first --listening-ip, so ask that one"
        )
    return other


def mapping_behaviour(primary: Endpoint, alternate_ip: Endpoint, alternate_both: Endpoint) -> str:
    """RFC 5780 section 4.3: the mapped addresses seen from one socket by the server's primary address
    (test I), its alternate IP with the primary port (test II) and the alternate IP and port (test III)."""
    if alternate_ip == primary:
        if alternate_both != primary:
            raise DiscoveryError(
                f"mapping changed with the server's port only ({primary} -> {alternate_both}) but not with its "
                f"address ({alternate_ip}): not an RFC 4787 behaviour; refusing to guess"
            )
        return ENDPOINT_INDEPENDENT
    return ADDRESS_DEPENDENT if alternate_both == alternate_ip else ADDRESS_AND_PORT_DEPENDENT


def filtering_behaviour(changed_ip_and_port: bool, changed_port: bool) -> str:
    """RFC 5780 section 4.4: whether the answers to "change IP and port" (test II) and to "change port"
    (test III) got through, each asked from a fresh socket that had talked only to the primary address."""
    if changed_ip_and_port:
        if not changed_port:
            raise DiscoveryError(
                "the answer from the other IP and port got through but the one from the other port did not: "
                "inconsistent (a lost datagram?); refusing to guess"
            )
        return ENDPOINT_INDEPENDENT
    return ADDRESS_DEPENDENT if changed_port else ADDRESS_AND_PORT_DEPENDENT


def check_changed_source(what: str, expected: Endpoint, source: Endpoint | None) -> None:
    """An answer to a CHANGE-REQUEST must come from where it was asked to (or not at all)."""
    if source is not None and source != expected:
        raise DiscoveryError(
            f"the answer to CHANGE-REQUEST ({what}) came from {source}, not {expected}: the server does not "
            "honour CHANGE-REQUEST, so filtering cannot be measured"
        )


def classic_name(nat: bool, mapping: str, filtering: str) -> str:
    """The RFC 3489 name people still use: full cone, restricted cone, port-restricted cone, symmetric."""
    if not nat:
        return "open" if filtering == ENDPOINT_INDEPENDENT else "firewall"
    if mapping != ENDPOINT_INDEPENDENT:
        return "symmetric"
    return CLASSIC_CONE[Behaviour(filtering)]


@dataclass(frozen=True)
class Lifetime:
    """RFC 5780 section 4.6, as measured: ``kept`` the longest idle time after which the mapping still let
    the server's answer in, ``lost`` the shortest after which it did not (None: no such probe)."""

    max_s: float
    kept: float | None
    lost: float | None


def binding_lifetime(max_s: float, samples: Sequence[tuple[float, bool]]) -> Lifetime:
    """``samples``: (idle seconds, mapping still there) for each probe, each on its own socket."""
    kept = max((idle for idle, alive in samples if alive), default=None)
    lost = min((idle for idle, alive in samples if not alive), default=None)
    if kept is not None and lost is not None and kept > lost:
        raise DiscoveryError(
            f"binding lifetime inconsistent: a mapping survived {kept:g} s idle but another was gone after "
            f"{lost:g} s (a lost datagram?)"
        )
    return Lifetime(max_s, kept, lost)


@dataclass(frozen=True)
class Observations:
    """What the RFC 5780 tests saw; :func:`classify` judges it.

    ``mapped*``: XOR-MAPPED-ADDRESS from one socket for the primary address (test I), the alternate IP with
    the primary port (test II) and the alternate IP and port (test III). ``changed_*_from``: where the
    answer to each filtering test's CHANGE-REQUEST came from, None when none arrived. ``hairpinning``:
    whether a Binding request sent from a second socket to ``mapped`` arrived at the first.
    """

    server: Endpoint
    other: Endpoint
    local: Endpoint
    mapped: Endpoint
    mapped_alternate_ip: Endpoint
    mapped_alternate_both: Endpoint
    changed_both_from: Endpoint | None
    changed_port_from: Endpoint | None
    hairpinning: bool
    lifetime: Lifetime | None = None


@dataclass(frozen=True)
class NatReport:
    """The verdict: RFC 4787 words, plus the facts behind it."""

    server: Endpoint
    other: Endpoint
    local: Endpoint
    mapped: Endpoint
    nat: bool
    mapping: str
    filtering: str
    port_preserved: bool
    hairpinning: bool
    mapped_ports: tuple[int, ...]
    lifetime: Lifetime | None = None

    @property
    def classic(self) -> str:
        return classic_name(self.nat, self.mapping, self.filtering)

    def as_dict(self) -> dict[str, Any]:
        """The ``client nat-type --json`` schema (stable: add keys, never rename them)."""
        lifetime = self.lifetime
        return {
            "server": str(self.server),
            "other": str(self.other),
            "local": str(self.local),
            "mapped": str(self.mapped),
            "nat": self.nat,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "classic": self.classic,
            "port_preserved": self.port_preserved,
            "hairpinning": self.hairpinning,
            "mapped_ports": list(self.mapped_ports),
            "lifetime_max_s": lifetime.max_s if lifetime else 0,
            "lifetime_s": lifetime.kept if lifetime else None,
            "lifetime_lost_s": lifetime.lost if lifetime else None,
        }

    def lines(self) -> list[str]:
        """The human form, one fact a line."""
        ports = ", ".join(str(port) for port in self.mapped_ports)
        lines = [
            f"server       {self.server} (other address {self.other})",
            f"local        {self.local}",
            f"mapped       {self.mapped}",
            f"nat          {'yes' if self.nat else 'no (mapped address == local address)'}",
            f"mapping      {self.mapping} (mapped ports {ports})",
            f"filtering    {self.filtering}",
            f"classic      {self.classic}",
            f"port         {'preserved' if self.port_preserved else 'not preserved'}",
            f"hairpinning  {'yes' if self.hairpinning else 'no'}",
        ]
        lifetime = self.lifetime
        if lifetime is None:
            lines.append("lifetime     not measured (--lifetime-max 0)")
        else:
            kept = "no probe kept it" if lifetime.kept is None else f">= {lifetime.kept:g} s"
            lost = f", gone after {lifetime.lost:g} s" if lifetime.lost is not None else ""
            lines.append(f"lifetime     {kept}{lost} (probed up to {lifetime.max_s:g} s)")
        return lines


def classify(seen: Observations) -> NatReport:
    """The verdict on ``seen``, or :class:`DiscoveryError` when the answers contradict each other."""
    other = other_address(seen.server, seen.other)
    check_changed_source("change IP and port", other, seen.changed_both_from)
    check_changed_source("change port", Endpoint(seen.server.host, other.port), seen.changed_port_from)
    mapping = mapping_behaviour(seen.mapped, seen.mapped_alternate_ip, seen.mapped_alternate_both)
    filtering = filtering_behaviour(seen.changed_both_from is not None, seen.changed_port_from is not None)
    return NatReport(
        server=seen.server,
        other=other,
        local=seen.local,
        mapped=seen.mapped,
        nat=seen.mapped != seen.local,
        mapping=mapping,
        filtering=filtering,
        port_preserved=seen.mapped.port == seen.local.port,
        hairpinning=seen.hairpinning,
        mapped_ports=(seen.mapped.port, seen.mapped_alternate_ip.port, seen.mapped_alternate_both.port),
        lifetime=seen.lifetime,
    )
