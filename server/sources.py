"""What counts as one source for the server's per-source limits (request rate, ids per ip).

An IPv4 address; an IPv6 /64, since one host is routinely given a whole /64 and can send from any address
in it (an IPv4-mapped IPv6 address, as a dual-stack socket reports IPv4 peers, is its IPv4 address).
The port never counts: a host opens as many as it likes.
"""

from __future__ import annotations

import ipaddress

from protocol import Endpoint

IPV6_PREFIX = 64


def source_ip(addr: Endpoint) -> str:
    """The source ``addr`` belongs to: ``198.18.0.11``, or ``2001:db8:1:2::/64``."""
    if not addr.is_ipv6:
        return addr.host
    address = ipaddress.IPv6Address(addr.host)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    network = ipaddress.IPv6Network((int(address) >> (128 - IPV6_PREFIX) << (128 - IPV6_PREFIX), IPV6_PREFIX))
    return str(network)
