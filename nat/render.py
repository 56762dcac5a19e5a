"""Render a NAT profile into one nftables script: pure text, no I/O.

The script replaces natlab's own table and nothing else (Docker's embedded-DNS rules share the container's
netns), with the ``table X {}`` / ``delete table X`` / ``table X { ... }`` idiom, so ``nft -f`` applies it
as one transaction whether or not the table existed.

How the profile maps onto netfilter:

- mapping + port allocation -> the ``masquerade`` statement (table ``_MASQUERADE``);
- filtering -> the stateful firewall: conntrack admits only replies to the exact 5-tuple a LAN host
  opened, which is address-and-port-dependent filtering; looser filtering needs explicit rules (later);
- hairpinning -> nothing while it is off (a marked place in the forward chain);
- UDP timeout -> a ``ct timeout`` object attached to new LAN UDP flows.

Combinations without a rendering raise :class:`UnsupportedProfile`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from nat.profiles import Behaviour, PortAllocation, Profile, ProfileError

TABLE = "inet natlab"
"""The only nftables table natlab creates, replaces or reads (family + name, as ``nft`` spells it)."""

TIMEOUT_NAME = "udp_mapping"
BLOCK_SET = "blocked_peers"
"""WAN addresses whose inbound UDP the router drops (``nat block``/``nat unblock`` edit it at run time)."""

_MASQUERADE: dict[tuple[Behaviour, PortAllocation], str] = {
    # Linux NAT keeps the source port while the resulting tuple is unique, so one LAN socket gets the
    # same external port towards every destination: endpoint-independent mapping.
    (Behaviour.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVE): "masquerade",
    # A random port for each new conntrack entry, i.e. per remote ip:port.
    (Behaviour.ADDRESS_AND_PORT_DEPENDENT, PortAllocation.RANDOM): "masquerade fully-random",
}

_FILTERING_BY_CONNTRACK = frozenset({Behaviour.ADDRESS_AND_PORT_DEPENDENT})

# Linux interface names: at most 15 bytes; we also refuse anything that would need nft quoting tricks.
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}\Z")


class UnsupportedProfile(ProfileError):
    """A well-formed profile whose behaviour natlab cannot render into nftables (yet)."""

    def __init__(self, profile: Profile, problems: list[str]) -> None:
        super().__init__(f"NAT profile {profile.name!r} is not supported yet: {'; '.join(problems)}")
        self.profile = profile
        self.problems = problems


def render(
    profile: Profile,
    wan_ifname: str,
    lan_ifname: str,
    lan_subnet: ipaddress.IPv4Network | str,
    blocked: Sequence[ipaddress.IPv4Address] = (),
) -> str:
    """The complete nft script for ``profile`` on a router with these WAN and LAN interfaces.

    Deterministic: the same arguments give the same text. Raises ``UnsupportedProfile`` for behaviours
    without a rendering and ``ValueError`` for an unusable interface name or subnet.
    """
    _check_supported(profile)
    masquerade = _MASQUERADE[(profile.mapping, profile.ports)]
    wan, lan = _quoted_ifname(wan_ifname), _quoted_ifname(lan_ifname)
    subnet = ipaddress.IPv4Network(lan_subnet)
    t = profile.udp_timeout
    elements = f" elements = {{ {', '.join(str(ip) for ip in sorted(set(blocked)))} }};" if blocked else ""
    block_rule = f"\t\tiifname {wan} meta l4proto udp ip saddr @{BLOCK_SET} drop"
    lines = [
        f"# natlab router ruleset, rendered by nat.render. {profile.describe()}",
        "# Replaces only natlab's own table, as one transaction; Docker's tables are left alone.",
        f"table {TABLE} {{}}",
        f"delete table {TABLE}",
        f"table {TABLE} {{",
        f"\tct timeout {TIMEOUT_NAME} {{",
        "\t\tprotocol udp",
        "\t\tl3proto ip",
        f"\t\tpolicy = {{ unreplied : {t}, replied : {t} }}",
        "\t}",
        "",
        "\t# Inbound UDP from these WAN addresses is dropped, even replies: a peer cut off on purpose.",
        f"\tset {BLOCK_SET} {{ type ipv4_addr;{elements} }}",
        "",
        "\t# Runs after conntrack has made the entry and before it is confirmed: only then can the",
        "\t# timeout policy be attached to a new flow.",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority filter; policy accept;",
        f'\t\tiifname {lan} meta nfproto ipv4 meta l4proto udp ct timeout set "{TIMEOUT_NAME}"',
        "\t}",
        "",
        "\t# Unsolicited packets to the router's own WAN address must die before conntrack confirms them:",
        "\t# an UNREPLIED entry holding a WAN port makes masquerade re-map a LAN flow that wants that port.",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        block_rule,
        "\t\tct state established,related accept",
        f"\t\tiifname {wan} drop",
        "\t}",
        "",
        f"\t# Filtering: {profile.filtering}; from the WAN only replies to flows the LAN opened.",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        block_rule,
        "\t\tct state established,related accept",
        f"\t\tiifname {lan} oifname {wan} accept",
        # Hairpinning on (a later issue) goes here, with a dstnat rule for the WAN address and a
        # masquerade for LAN-to-LAN traffic; _check_supported refuses it until then.
        "\t\t# hairpinning: off (LAN traffic to the router's WAN address is not reflected)",
        "\t}",
        "",
        f"\t# Mapping: {profile.mapping}, ports: {profile.ports}.",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f"\t\toifname {wan} ip saddr {subnet} {masquerade}",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _check_supported(profile: Profile) -> None:
    """Raise ``UnsupportedProfile`` listing every behaviour of ``profile`` that has no rendering."""
    problems = []
    if (profile.mapping, profile.ports) not in _MASQUERADE:
        problems.append(f"mapping={profile.mapping} with ports={profile.ports}")
    if profile.filtering not in _FILTERING_BY_CONNTRACK:
        problems.append(f"filtering={profile.filtering}")
    if profile.hairpinning:
        problems.append("hairpinning=on")
    if problems:
        raise UnsupportedProfile(profile, problems)


def _quoted_ifname(ifname: str) -> str:
    if not _IFNAME_RE.match(ifname):
        raise ValueError(f"unusable interface name {ifname!r}")
    return f'"{ifname}"'
