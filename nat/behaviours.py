"""Each behaviour of a NAT profile as the nftables lines it adds to natlab's table: pure text, no I/O.

``nat.render`` assembles the :class:`Part` of every behaviour into one table; a part only says what goes
where (see its fields). Looser-than-conntrack behaviours need state that conntrack does not keep, so the
table learns it in dynamic sets, in the ``learn`` chain: a filter chain at postrouting *after* srcnat, where
an outbound packet already carries its external port (``udp sport``) while ``ct original`` still names the
internal endpoint. Every outbound packet refreshes what it taught (``update``), and an element lives as
long as an idle conntrack mapping: the profile's UDP timeout.

- ``mappings`` (external port -> internal ip . port): what inbound traffic to an external port may be
  DNATed to; filled only when some behaviour reads it (looser filtering, hairpinning);
- ``contacted`` (external port . remote ip): address-dependent filtering;
- ``mapped_endpoints`` (internal ip . port with a live mapping): port-preserving symmetric mapping;
- ``sequential_ports`` (a constant map): sequential port allocation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

from common.rfc4787 import Behaviour, PortAllocation
from nat.profiles import Profile

MAPPINGS = "mappings"
CONTACTED = "contacted"
MAPPED_ENDPOINTS = "mapped_endpoints"
SEQUENTIAL_PORTS = "sequential_ports"
UDP_ALLOWED = "udp_allowed"
"""WAN addresses a ``udp_blocked`` router still exchanges UDP with (the lab's TURN and signal servers)."""

SEQUENTIAL_FIRST_PORT = 50_000
SEQUENTIAL_PORT_COUNT = 256
"""Sequential allocation cycles through this many ports. nft 1.0.6 hands ``numgen``'s host-order integer
to ``masquerade to :PORT`` unconverted (the port comes out byte-swapped: +1 becomes +256), so the counter
indexes a constant map of real ports; 256 keeps that map readable in ``nat show``. A wrapped-around port
still held towards the same remote ip:port fails that one packet; the next gets the next port."""

_ELEMENTS_PER_LINE = 8


@dataclass(frozen=True)
class Router:
    """What the parts need to know about the router: quoted interface names, LAN subnet, WAN address."""

    wan: str
    lan: str
    lan_subnet: ipaddress.IPv4Network
    wan_address: ipaddress.IPv4Address | None
    udp_timeout: int


@dataclass(frozen=True)
class Part:
    """The lines one behaviour adds to each place in the table (comments included, indentation not)."""

    declarations: tuple[str, ...] = ()
    """Named sets and maps."""
    dstnat: tuple[str, ...] = ()
    """A nat chain at prerouting: inbound UDP that a learned mapping admits is DNATed to its endpoint."""
    guards: tuple[str, ...] = ()
    """Drops from the WAN in input and forward, before conntrack's ``established`` accept."""
    outbound_guards: tuple[str, ...] = ()
    """Drops towards the WAN in forward, before conntrack's ``established`` accept."""
    srcnat: tuple[str, ...] = ()
    """The nat chain at postrouting: how a new flow gets its external address and port."""
    learn: tuple[str, ...] = ()
    """The filter chain at postrouting after srcnat: updates of the dynamic sets."""

    @staticmethod
    def join(parts: Iterable[Part]) -> Part:
        """All parts' lines, field by field, in the order given."""
        collected = list(parts)
        return Part(**{f.name: tuple(line for p in collected for line in getattr(p, f.name)) for f in fields(Part)})


def dynamic_set(name: str, key_type: str, router: Router) -> str:
    """A set (or map, ``key_type`` with ``: data``) that the packet path fills, timing out with idle mappings."""
    kind = "map" if ":" in key_type else "set"
    return f"{kind} {name} {{ type {key_type}; flags dynamic,timeout; timeout {router.udp_timeout}s; }}"


# Mapping: how a new outbound flow gets its external port.


def _internal_endpoint(direction: str) -> str:
    """The LAN ip . port of a flow, from the conntrack tuple (``original`` for LAN-initiated flows, ``reply``
    for inbound ones that were DNATed to the LAN), since the packet itself is already translated."""
    return f"ct {direction} ip saddr . ct {direction} proto-src"


def _masquerade(router: Router, statement: str, udp_only: bool = False) -> str:
    udp = " meta l4proto udp" if udp_only else ""
    return f"oifname {router.wan} ip saddr {router.lan_subnet}{udp} {statement}"


def _endpoint_independent(router: Router) -> Part:
    # Linux NAT keeps the source port while the resulting tuple is unique, so one LAN socket gets the
    # same external port towards every destination: endpoint-independent mapping.
    return Part(srcnat=(_masquerade(router, "masquerade"),))


def _random_per_destination(router: Router) -> Part:
    # A random port for each new conntrack entry, i.e. per remote ip:port.
    return Part(srcnat=(_masquerade(router, "masquerade fully-random"),))


def _preserve_first(router: Router) -> Part:
    return Part(
        declarations=(
            "# Internal endpoints that hold a mapping already: their next destinations get random ports.",
            dynamic_set(MAPPED_ENDPOINTS, "ipv4_addr . inet_service", router),
        ),
        srcnat=(
            "# An endpoint's first UDP mapping keeps its port (plain masquerade), later ones are random.",
            _masquerade(router, f"ip saddr . udp sport @{MAPPED_ENDPOINTS} masquerade fully-random", udp_only=True),
            _masquerade(router, "masquerade", udp_only=True),
            _masquerade(router, "masquerade fully-random"),
        ),
        learn=(
            f"ct direction original ct original ip saddr {router.lan_subnet} "
            f"update @{MAPPED_ENDPOINTS} {{ {_internal_endpoint('original')} }}",
        ),
    )


def _sequential(router: Router) -> Part:
    ports = [f"{i} : {SEQUENTIAL_FIRST_PORT + i}" for i in range(SEQUENTIAL_PORT_COUNT)]
    rows = [", ".join(ports[i : i + _ELEMENTS_PER_LINE]) for i in range(0, len(ports), _ELEMENTS_PER_LINE)]
    counter = f"numgen inc mod {SEQUENTIAL_PORT_COUNT}"
    return Part(
        declarations=(
            f"# Counter value -> port: ports {SEQUENTIAL_FIRST_PORT}.. in order (see nat.behaviours for why a map).",
            f"map {SEQUENTIAL_PORTS} {{",
            f"\ttypeof {counter} : udp sport",
            "\telements = {",
            *(f"\t\t{row}," for row in rows),
            "\t}",
            "}",
        ),
        srcnat=(
            "# Every new UDP mapping, whoever makes it, takes the next port of the cycle.",
            _masquerade(router, f"masquerade to :{counter} map @{SEQUENTIAL_PORTS}", udp_only=True),
            _masquerade(router, "masquerade fully-random"),
        ),
    )


MAPPING_PARTS: dict[tuple[Behaviour, PortAllocation], Callable[[Router], Part]] = {
    (Behaviour.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVE): _endpoint_independent,
    (Behaviour.ADDRESS_AND_PORT_DEPENDENT, PortAllocation.RANDOM): _random_per_destination,
    (Behaviour.ADDRESS_AND_PORT_DEPENDENT, PortAllocation.PRESERVE): _preserve_first,
    (Behaviour.ADDRESS_AND_PORT_DEPENDENT, PortAllocation.SEQUENTIAL): _sequential,
}
"""The (mapping, port allocation) pairs natlab can render."""


# Learned mappings: what looser filtering and hairpinning DNAT to.


def learned_mappings(router: Router) -> Part:
    """The ``mappings`` map, learned from outbound packets of LAN-initiated flows and of admitted inbound ones."""
    return Part(
        declarations=(
            "# External port -> the internal endpoint it maps to, for inbound DNAT.",
            dynamic_set(MAPPINGS, "inet_service : ipv4_addr . inet_service", router),
        ),
        learn=(
            f"ct direction original ct original ip saddr {router.lan_subnet} "
            f"update @{MAPPINGS} {{ udp sport : {_internal_endpoint('original')} }}",
            f"ct direction reply ct status dnat update @{MAPPINGS} {{ udp sport : {_internal_endpoint('reply')} }}",
        ),
    )


# Filtering: which inbound UDP reaches a LAN endpoint besides replies conntrack knows.


def _conntrack_only(router: Router) -> Part:
    # Conntrack admits only replies to the exact 5-tuple a LAN host opened: address-and-port-dependent.
    return Part()


def _any_remote(router: Router) -> Part:
    return Part(
        dstnat=(
            "# Endpoint-independent filtering: anyone may use a mapped external port.",
            f"iifname {router.wan} meta l4proto udp dnat ip to udp dport map @{MAPPINGS}",
        ),
    )


def _contacted_addresses(router: Router) -> Part:
    return Part(
        declarations=(
            "# External port . remote address it has sent to: who may come back, from any port.",
            dynamic_set(CONTACTED, "inet_service . ipv4_addr", router),
        ),
        dstnat=(
            "# Address-dependent filtering: any port of an address the mapping has sent to.",
            f"iifname {router.wan} meta l4proto udp udp dport . ip saddr @{CONTACTED} "
            f"dnat ip to udp dport map @{MAPPINGS}",
        ),
        learn=(f"update @{CONTACTED} {{ udp sport . ip daddr }}",),
    )


FILTERING_PARTS: dict[Behaviour, Callable[[Router], Part]] = {
    Behaviour.ADDRESS_AND_PORT_DEPENDENT: _conntrack_only,
    Behaviour.ENDPOINT_INDEPENDENT: _any_remote,
    Behaviour.ADDRESS_DEPENDENT: _contacted_addresses,
}


# Options.


def hairpinning(router: Router) -> Part:
    """LAN traffic to the WAN address and a mapped port is reflected to that mapping's endpoint, from the
    sender's external address (RFC 4787 REQ-9) and its source port when free (whatever the profile's port
    allocation), so the answer comes back through the router too. Hairpinned traffic is not filtered: a LAN
    host reaches any mapped port."""
    if router.wan_address is None:
        raise ValueError("hairpinning needs the router's WAN address")
    return Part(
        dstnat=(
            "# Hairpinning: LAN traffic to a mapped port of the WAN address goes to that mapping's endpoint.",
            f"iifname {router.lan} ip daddr {router.wan_address} meta l4proto udp dnat ip to udp dport map @{MAPPINGS}",
        ),
        srcnat=(
            "# Hairpinning: the reflected flow comes from the sender's external address, and returns via us.",
            f"oifname {router.lan} ip saddr {router.lan_subnet} ct status dnat snat ip to {router.wan_address}",
        ),
    )


def udp_blocked(router: Router, allowed: Sequence[ipaddress.IPv4Address]) -> Part:
    """UDP to and from the WAN dropped, except with the ``allowed`` addresses (the lab's servers)."""
    elements = f" elements = {{ {', '.join(str(ip) for ip in sorted(set(allowed)))} }};" if allowed else ""
    return Part(
        declarations=(
            "# UDP is blocked: only these WAN addresses (the lab's servers) exchange UDP with the LAN.",
            f"set {UDP_ALLOWED} {{ type ipv4_addr;{elements} }}",
        ),
        guards=(f"iifname {router.wan} meta l4proto udp ip saddr != @{UDP_ALLOWED} drop",),
        outbound_guards=(f"oifname {router.wan} meta l4proto udp ip daddr != @{UDP_ALLOWED} drop",),
    )


def parts(profile: Profile, router: Router, udp_allowed: Sequence[ipaddress.IPv4Address] = ()) -> Part:
    """Every behaviour of ``profile`` joined; the caller has checked that its mapping is in MAPPING_PARTS."""
    chosen = [MAPPING_PARTS[(profile.mapping, profile.ports)](router), FILTERING_PARTS[profile.filtering](router)]
    if profile.hairpinning:
        chosen.append(hairpinning(router))
    if any(p.dstnat for p in chosen):
        chosen.insert(0, learned_mappings(router))
    if profile.udp_blocked:
        chosen.append(udp_blocked(router, udp_allowed))
    return Part.join(chosen)
