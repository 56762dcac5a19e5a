"""The tunnel's overlay addresses: one per keyed host, from a block no lab network uses (pure).

The block is :data:`OVERLAY_NET`, 198.19.255.0/24: inside the lab's own 198.18.0.0/15, above the grid's
networks (198.19.<site>.0/24, sites 1-16) and outside every scenario slot (198.18.0.0/16). A unit test keeps
every lab, grid and slot network out of it. Hosts get ``.1`` to ``.254`` (``.0`` and ``.255`` are the /24's
network and broadcast addresses).

The key maker (:func:`trust.keymaker.make_keys`) assigns them and records them in the registry, so they are
stable for the lab's life: a host keeps its address across restarts, a new id takes the lowest free one, and
a full block is an error (:class:`OverlayFull`), never a reuse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

OVERLAY_NET = ipaddress.IPv4Network("198.19.255.0/24")
"""The overlay block: every host's ``natlab0`` address is in it (``<id>.natlab`` resolves to it)."""
OVERLAY_PREFIX = OVERLAY_NET.prefixlen


class OverlayFull(ValueError):
    """More keyed hosts than the overlay block has addresses for."""


def is_overlay(address: ipaddress.IPv4Address) -> bool:
    """Whether ``address`` is a host address of the overlay block (not its network or broadcast address)."""
    return address in OVERLAY_NET and address not in (OVERLAY_NET.network_address, OVERLAY_NET.broadcast_address)


def assign(ids: Iterable[str], kept: Mapping[str, ipaddress.IPv4Address]) -> dict[str, ipaddress.IPv4Address]:
    """An overlay address for each of ``ids``: its address in ``kept`` (the registry's so far) when that is a
    host address of the block not taken by another id, else the lowest free one, in the order ``ids`` come.
    :class:`OverlayFull` when the block has no address left for an id."""
    ids = list(dict.fromkeys(ids))
    assigned: dict[str, ipaddress.IPv4Address] = {}
    taken: set[ipaddress.IPv4Address] = set()
    for peer_id in ids:
        address = kept.get(peer_id)
        if address is not None and is_overlay(address) and address not in taken:
            assigned[peer_id] = address
            taken.add(address)
    free = (address for address in OVERLAY_NET.hosts() if address not in taken)
    for peer_id in ids:
        if peer_id in assigned:
            continue
        address = next(free, None)
        if address is None:
            raise OverlayFull(f"no overlay address left for {peer_id!r}: {OVERLAY_NET} holds {len(taken)} hosts")
        assigned[peer_id] = address
        taken.add(address)
    return {peer_id: assigned[peer_id] for peer_id in ids}
