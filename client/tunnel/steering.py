"""The kernel's fast path for peers on a direct path: nftables steers WireGuard's datagrams through the agent's port.

Why: carried by the agent (:mod:`client.tunnel.links`), every tunnel datagram crosses Python in both agents;
on this 2-core machine that held TCP over the tunnel to a fifth of raw UDP and added 1-4 ms to a ping. On a
direct path the agent adds nothing to a datagram: it only has to leave from the agent's port (the NAT mapping
the punch opened is that port's) and, coming back, reach WireGuard. nftables does both, statelessly, in the
host's own network namespace, so no datagram of a direct peer passes through Python:

- ``output`` (raw priority, before conntrack): a datagram from WireGuard's port to an address in the
  ``direct`` set leaves with the agent's port as its source. ``notrack``: the host's conntrack keeps the
  agent's own flow to the peer as it is (the rewritten datagram has its exact addresses). Any other datagram
  from WireGuard's port that would leave the host is dropped: WireGuard reaches the network only through the
  agent's port, to a peer the agent chose.
- ``prerouting``: a WireGuard-shaped datagram (message type 1-4 and three zero bytes, as
  :func:`protocol.wireguard.is_wireguard` reads it) from an address in the set to the agent's port goes to
  WireGuard's port instead, marked. The agent's probes and messages on the same path are not WireGuard-shaped
  and reach the agent as before; a WireGuard datagram from anyone else reaches the agent too, which drops and
  counts it (``dropped.not_peer``).
- ``input``: WireGuard's port takes loopback (the agent's per-peer sockets) and marked datagrams only.

The agent decides what is in the set (:class:`client.tunnel.links.Tunnel`): a peer's address while it is the
peer's route and direct, and WireGuard's endpoint for the peer is then that address; on the relay, or with no
path, the endpoint is the agent's loopback socket for the peer (the agent carries its datagrams) and the
address leaves the set. IPv4 only (the lab's); an IPv6 peer is carried by the agent.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

from client.tunnel.device import TunnelError, run_tool
from protocol import Endpoint

TABLE = "natlab_tunnel"
SET = "direct"
MARK = 0x4E4C0000
"""The mark prerouting gives a steered datagram ("NL" in the high half: no other mark is used in a host)."""
WIREGUARD_WORDS = "0x01000000, 0x02000000, 0x03000000, 0x04000000"
"""A WireGuard message's first 32 bits: its type (1 initiation, 2 response, 3 cookie, 4 data), then zeros."""

DROP = f"table inet {TABLE}\ndelete table inet {TABLE}\n"
"""Remove the table whether or not it exists (bookworm's nft 1.0.6 has no ``destroy``): add, then delete."""


def table(wireguard_port: int, agent_port: int | None) -> str:
    """The tunnel's nftables table (``nft -f``, after :data:`DROP`): with ``agent_port`` the kernel path; without
    (the agent's socket is not open), only the filter that keeps everyone but the agent away from WireGuard."""
    steer = ""
    if agent_port is not None:
        steer = (
            f"  set {SET} {{\n"
            "    type ipv4_addr . inet_service\n"
            '    comment "natlab: peers whose direct path WireGuard uses through the agent port"\n'
            "  }\n"
            "  chain out {\n"
            "    type filter hook output priority raw; policy accept;\n"
            f"    udp sport {wireguard_port} ip daddr . udp dport @{SET} counter notrack udp sport set {agent_port}"
            ' comment "natlab: to a direct peer from the agent port"\n'
            f'    udp sport {wireguard_port} oifname != "lo" counter drop'
            ' comment "natlab: WireGuard reaches the network only through the agent"\n'
            "  }\n"
            "  chain in {\n"
            "    type filter hook prerouting priority raw; policy accept;\n"
            f"    udp dport {agent_port} ip saddr . udp sport @{SET} @th,64,32 {{ {WIREGUARD_WORDS} }}"
            f" counter notrack meta mark set {MARK:#x} udp dport set {wireguard_port}"
            ' comment "natlab: from a direct peer to WireGuard"\n'
            "  }\n"
        )
    return (
        f"table inet {TABLE} {{\n"
        '  comment "natlab: the tunnel (client/tunnel/steering.py)"\n'
        f"{steer}"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f'    iifname != "lo" udp dport {wireguard_port} meta mark != {MARK:#x} counter drop'
        ' comment "natlab: WireGuard hears only the agent"\n'
        "  }\n"
        "}\n"
    )


def steerable(endpoint: Endpoint) -> bool:
    """Whether the kernel path can carry a peer at ``endpoint`` (the set holds IPv4 addresses)."""
    try:
        return ipaddress.ip_address(endpoint.host).version == 4
    except ValueError:
        return False


def elements(add: Iterable[Endpoint] = (), remove: Iterable[Endpoint] = ()) -> str:
    """The ``nft -f`` script that adds and removes set elements in one transaction (removing one that is not
    there is refused: :class:`Steering` keeps track)."""
    lines = [f"add element inet {TABLE} {SET} {{ {e.host} . {e.port} }}" for e in add]
    lines += [f"delete element inet {TABLE} {SET} {{ {e.host} . {e.port} }}" for e in remove]
    return "".join(line + "\n" for line in lines)


class Steering:
    """The tunnel's table in the host's nftables and the addresses in its set; the tools' errors are
    :class:`TunnelError` with their own words."""

    def __init__(self) -> None:
        self.installed = False
        """Whether the table may be in place (only then does :meth:`uninstall` touch nftables)."""
        self.steering = False
        """Whether the table has the kernel path (the agent's port was known when it was installed)."""
        self.members: set[Endpoint] = set()

    async def install(self, wireguard_port: int, agent_port: int | None) -> None:
        """Replace the table (any earlier one goes, with its set) by a fresh one."""
        self.installed = True
        self.members.clear()
        await run_tool("nft", "-f", "-", stdin=DROP + table(wireguard_port, agent_port))
        self.steering = agent_port is not None

    async def update(self, add: Iterable[Endpoint] = (), remove: Iterable[Endpoint] = ()) -> None:
        """Add and remove addresses of the set (what is already so is left out) in one transaction."""
        adding = {e for e in add if e not in self.members}
        removing = {e for e in remove if e in self.members} - adding
        if not adding and not removing:
            return
        await run_tool("nft", "-f", "-", stdin=elements(sorted(adding, key=str), sorted(removing, key=str)))
        self.members |= adding
        self.members -= removing

    async def uninstall(self) -> None:
        """Remove the table; quiet if it is not there."""
        if self.installed:
            self.installed = self.steering = False
            self.members.clear()
            with contextlib.suppress(TunnelError):
                await run_tool("nft", "-f", "-", stdin=DROP)
