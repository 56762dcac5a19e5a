"""Render a NAT profile into one nftables script: pure text, no I/O.

The script replaces natlab's own table and nothing else (Docker's embedded-DNS rules share the container's
netns), with the ``table X {}`` / ``delete table X`` / ``table X { ... }`` idiom, so ``nft -f`` applies it
as one transaction whether or not the table existed.

How the profile maps onto netfilter (the behaviours' rules come from ``nat.behaviours``):

- mapping + port allocation -> the ``postrouting`` nat chain: ``masquerade`` keeps ports (endpoint-
  independent), ``masquerade fully-random`` gives each flow its own (symmetric), a set of endpoints that
  already hold a mapping keeps only the first one's port, a counter walks through ports in order;
- filtering -> the stateful firewall: conntrack admits only replies to the exact 5-tuple a LAN host
  opened, which is address-and-port-dependent filtering. Looser filtering DNATs inbound UDP to the
  internal endpoint of a mapping the router has learned (``dstnat`` chain, maps filled in ``learn``);
- hairpinning -> the same learned mappings, for LAN traffic to the WAN address, plus an SNAT back;
- UDP timeout -> a ``ct timeout`` object attached to every new UDP flow, and the dynamic sets' timeout;
- UDP blocked -> drops in ``input`` and ``forward`` of UDP from or to WAN addresses outside an allow-list.

Whatever the profile, unsolicited WAN packets that no mapping admits reach ``input`` (they are addressed to
the router) and are dropped there, before conntrack confirms them. Combinations without a rendering raise
:class:`UnsupportedProfile`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from nat.behaviours import MAPPING_PARTS, Part, Router, parts
from nat.profiles import Profile, ProfileError

TABLE = "inet natlab"
"""The only nftables table natlab creates, replaces or reads (family + name, as ``nft`` spells it)."""

TIMEOUT_NAME = "udp_mapping"
BLOCK_SET = "blocked_peers"
"""WAN addresses whose inbound UDP the router drops (``nat block``/``nat unblock`` edit it at run time)."""

# Linux interface names: at most 15 bytes; we also refuse anything that would need nft quoting tricks.
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}\Z")


class UnsupportedProfile(ProfileError):
    """A well-formed profile whose behaviour natlab cannot render into nftables."""

    def __init__(self, profile: Profile, problems: list[str]) -> None:
        super().__init__(f"NAT profile {profile.name!r} is not supported: {'; '.join(problems)}")
        self.profile = profile
        self.problems = problems


def render(
    profile: Profile,
    wan_ifname: str,
    lan_ifname: str,
    lan_subnet: ipaddress.IPv4Network | str,
    blocked: Sequence[ipaddress.IPv4Address] = (),
    *,
    wan_address: ipaddress.IPv4Address | str | None = None,
    udp_allowed: Sequence[ipaddress.IPv4Address] = (),
) -> str:
    """The complete nft script for ``profile`` on a router with these WAN and LAN interfaces.

    ``wan_address`` (the router's own, needed for hairpinning) and ``udp_allowed`` (the WAN addresses a
    ``udp_blocked`` profile still exchanges UDP with) matter only to the profiles that use them.

    Deterministic: the same arguments give the same text. Raises ``UnsupportedProfile`` for behaviours
    without a rendering and ``ValueError`` for an unusable interface name, subnet or address.
    """
    _check_supported(profile)
    router = Router(
        wan=quoted_ifname(wan_ifname),
        lan=quoted_ifname(lan_ifname),
        lan_subnet=ipaddress.IPv4Network(lan_subnet),
        wan_address=None if wan_address is None else ipaddress.IPv4Address(wan_address),
        udp_timeout=profile.udp_timeout,
    )
    part = parts(profile, router, udp_allowed)
    blocks = [
        _declarations(profile, blocked, part),
        _prerouting(),
        _dstnat(part),
        _input(router, part),
        _forward(profile, router, part),
        _postrouting(profile, part),
        _learn(router, part),
    ]
    lines = [
        f"# natlab router ruleset, rendered by nat.render. {profile.describe()}",
        "# Replaces only natlab's own table, as one transaction; Docker's tables are left alone.",
        f"table {TABLE} {{}}",
        f"delete table {TABLE}",
        f"table {TABLE} {{",
        *_indent(_separated(block for block in blocks if block)),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _declarations(profile: Profile, blocked: Sequence[ipaddress.IPv4Address], part: Part) -> list[str]:
    t = profile.udp_timeout
    elements = f" elements = {{ {', '.join(str(ip) for ip in sorted(set(blocked)))} }};" if blocked else ""
    return [
        f"ct timeout {TIMEOUT_NAME} {{",
        "\tprotocol udp",
        "\tl3proto ip",
        f"\tpolicy = {{ unreplied : {t}, replied : {t} }}",
        "}",
        "",
        "# Inbound UDP from these WAN addresses is dropped, even replies: a peer cut off on purpose.",
        f"set {BLOCK_SET} {{ type ipv4_addr;{elements} }}",
        *part.declarations,
    ]


def _prerouting() -> list[str]:
    return _chain(
        "prerouting",
        "type filter hook prerouting priority filter; policy accept;",
        [
            "# After conntrack has made the entry (and dstnat has DNATed it) and before it is confirmed: only",
            "# then can the timeout policy be attached to a new flow, LAN-initiated or admitted inbound.",
            f'meta nfproto ipv4 meta l4proto udp ct timeout set "{TIMEOUT_NAME}"',
        ],
    )


def _dstnat(part: Part) -> list[str]:
    if not part.dstnat:
        return []
    return _chain("dstnat", "type nat hook prerouting priority dstnat; policy accept;", part.dstnat)


def _input(router: Router, part: Part) -> list[str]:
    return _chain(
        "input",
        "type filter hook input priority filter; policy accept;",
        [
            "# Unsolicited packets to the router's own WAN address must die before conntrack confirms them:",
            "# an UNREPLIED entry holding a WAN port makes masquerade re-map a LAN flow that wants that port.",
            _block_rule(router),
            *part.guards,
            "ct state established,related accept",
            f"iifname {router.wan} drop",
        ],
    )


def _forward(profile: Profile, router: Router, part: Part) -> list[str]:
    admitted = [
        "# New flows that the dstnat chain DNATed to a learned mapping.",
        f"oifname {router.lan} ct status dnat accept",
    ]
    hairpin = "on" if profile.hairpinning else "off (LAN traffic to the router's WAN address is not reflected)"
    return _chain(
        "forward",
        "type filter hook forward priority filter; policy drop;",
        [
            f"# Filtering: {profile.filtering}; from the WAN only replies to flows the LAN opened"
            + (" and what a learned mapping admits." if part.dstnat else "."),
            _block_rule(router),
            *part.guards,
            *part.outbound_guards,
            "ct state established,related accept",
            f"iifname {router.lan} oifname {router.wan} accept",
            *(admitted if part.dstnat else []),
            f"# hairpinning: {hairpin}",
        ],
    )


def _postrouting(profile: Profile, part: Part) -> list[str]:
    return _chain(
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        [f"# Mapping: {profile.mapping}, ports: {profile.ports}.", *part.srcnat],
    )


def _learn(router: Router, part: Part) -> list[str]:
    if not part.learn:
        return []
    # The protocol sits in every rule, not in one shared guard: nft 1.0.6 types ``ct ... proto-src`` in a
    # set key only from a protocol match in the same rule ("datatype mismatch" otherwise).
    prefix = f"oifname {router.wan} meta l4proto udp "
    return _chain(
        "learn",
        "type filter hook postrouting priority srcnat + 1; policy accept;",
        [
            "# Outbound UDP after srcnat: udp sport is the external port, ct original the internal endpoint.",
            *(line if line.startswith("#") else prefix + line for line in part.learn),
        ],
    )


def _chain(name: str, hook: str, body: Sequence[str]) -> list[str]:
    return [f"chain {name} {{", f"\t{hook}", *(f"\t{line}" for line in body), "}"]


def _separated(blocks: Iterable[list[str]]) -> list[str]:
    """The blocks' lines with a blank line between blocks."""
    lines: list[str] = []
    for block in blocks:
        lines += [""] * bool(lines) + block
    return lines


def _indent(lines: list[str]) -> list[str]:
    return [f"\t{line}" if line else "" for line in lines]


def _block_rule(router: Router) -> str:
    return f"iifname {router.wan} meta l4proto udp ip saddr @{BLOCK_SET} drop"


def _check_supported(profile: Profile) -> None:
    """Raise ``UnsupportedProfile`` unless the profile's mapping and port allocation have a rendering (every
    filtering behaviour and option does)."""
    if (profile.mapping, profile.ports) not in MAPPING_PARTS:
        supported = ", ".join(f"{mapping}/{ports}" for mapping, ports in MAPPING_PARTS)
        raise UnsupportedProfile(
            profile, [f"mapping={profile.mapping} with ports={profile.ports} (supported: {supported})"]
        )


def quoted_ifname(ifname: str) -> str:
    """``ifname`` in double quotes for an nft script; ``ValueError`` for a name natlab refuses to write."""
    if not _IFNAME_RE.match(ifname):
        raise ValueError(f"unusable interface name {ifname!r}")
    return f'"{ifname}"'
