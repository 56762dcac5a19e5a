"""The router's view of its own links, through pyroute2: which interface is WAN / LAN, and default routes.

Interfaces are found by the subnet their address lies in, never by name or order: Docker numbers a
container's interfaces in whatever order it attached the networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

MAIN_TABLE = 254


class InterfaceNotFound(RuntimeError):
    """The container's network attachments do not match the subnets it was told about."""


@dataclass(frozen=True)
class Link:
    """An interface and its IPv4 address (with prefix) inside the subnet it was looked up by."""

    ifname: str
    address: ipaddress.IPv4Interface

    def __str__(self) -> str:
        return f"{self.ifname} {self.address}"


def pick(links: Iterable[Link], subnet: ipaddress.IPv4Network, role: str) -> Link:
    """The one link whose address is in ``subnet``; ``InterfaceNotFound`` says what was seen instead."""
    seen = list(links)
    matches = [link for link in seen if link.address.ip in subnet]
    if len(matches) == 1:
        return matches[0]
    seen_text = ", ".join(str(link) for link in seen) or "none"
    if not matches:
        raise InterfaceNotFound(f"no interface has an address in the {role} subnet {subnet}; seen: {seen_text}")
    raise InterfaceNotFound(
        f"more than one interface has an address in the {role} subnet {subnet}: "
        + ", ".join(str(link) for link in matches)
    )


def pick_wan_lan(
    links: Iterable[Link], wan_subnet: ipaddress.IPv4Network, lan_subnet: ipaddress.IPv4Network
) -> tuple[Link, Link]:
    """The WAN and LAN links, which must be two different interfaces."""
    seen = list(links)
    wan, lan = pick(seen, wan_subnet, "WAN"), pick(seen, lan_subnet, "LAN")
    if wan.ifname == lan.ifname:
        raise InterfaceNotFound(f"WAN subnet {wan_subnet} and LAN subnet {lan_subnet} are both on {wan}")
    return wan, lan


def ipv4_links() -> list[Link]:
    """Every IPv4 address on this netns's interfaces, as ``Link``s (an interface may appear twice)."""
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return [
            Link(names.get(msg["index"], f"if{msg['index']}"), _interface_address(msg))
            for msg in ipr.get_addr(family=socket.AF_INET)
        ]


def _interface_address(msg: Any) -> ipaddress.IPv4Interface:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    return ipaddress.IPv4Interface(f"{address}/{msg['prefixlen']}")


def delete_default_routes() -> list[str]:
    """Delete every default route (IPv4 and IPv6) in the main table; returns what was deleted, for logs.

    Docker points the container's default route at the host; without it, the lab reaches only the lab.
    """
    deleted = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for route in ipr.get_routes(family=family, table=MAIN_TABLE):
                if route["dst_len"] != 0:
                    continue
                ipr.route("del", **_route_key(route, family, any_addr))
                via, oif = route.get_attr("RTA_GATEWAY"), route.get_attr("RTA_OIF")
                deleted.append(f"default route {any_addr}/0 via {via} dev {names.get(oif, oif)}")
    return deleted


def add_default_route(gateway: ipaddress.IPv4Address) -> str:
    """Route everything via ``gateway`` (an upstream NAT on the WAN subnet: a home router behind a CGNAT)."""
    with IPRoute() as ipr:
        ipr.route("replace", family=socket.AF_INET, dst="0.0.0.0", dst_len=0, gateway=str(gateway), table=MAIN_TABLE)
    return f"default route via {gateway}"


def _route_key(route: Any, family: int, any_addr: str) -> dict[str, Any]:
    key: dict[str, Any] = {"family": family, "dst": any_addr, "dst_len": 0, "table": MAIN_TABLE}
    for attr, name in (("RTA_GATEWAY", "gateway"), ("RTA_OIF", "oif"), ("RTA_PRIORITY", "priority")):
        value = route.get_attr(attr)
        if value is not None:
            key[name] = value
    return key
