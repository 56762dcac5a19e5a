"""What one allocation has been granted for its peers: permissions (per IP) and channels (per ip:port).

Bookkeeping only: :class:`Grants` records what is asked, installed and due for refresh, and holds the
datagrams waiting for a permission; :class:`client.turn.allocation.TurnAllocation` sends the requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from client.turn.outputs import TurnError
from client.turn.wire import CHANNEL_MAX, CHANNEL_MIN
from protocol import Endpoint


@dataclass
class Permission:
    installed: bool = False
    refresh_at: float = math.inf  # inf while a request is in flight
    queue: list[tuple[Endpoint, bytes]] = field(default_factory=list)


@dataclass
class Channel:
    number: int
    bound: bool = False
    refresh_at: float = math.inf


class Grants:
    """Permissions and channels of one allocation; ``clear`` when the allocation goes."""

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        self._permissions: dict[str, Permission] = {}
        self._channels: dict[Endpoint, Channel] = {}
        self._by_number: dict[int, Endpoint] = {}
        self._next_channel = CHANNEL_MIN

    def clear(self) -> None:
        self._permissions.clear()
        self._channels.clear()
        self._by_number.clear()
        self._next_channel = CHANNEL_MIN

    # -- permissions ---------------------------------------------------------------------------------

    def ask_permission(self, peer_ip: str) -> bool:
        """Record a permission for ``peer_ip`` as asked; ``False`` if it is asked or installed already."""
        if peer_ip in self._permissions:
            return False
        self._permissions[peer_ip] = Permission()
        return True

    def permitted(self, peer_ip: str) -> bool:
        permission = self._permissions.get(peer_ip)
        return permission is not None and permission.installed

    def hold(self, peer: Endpoint, payload: bytes) -> str | None:
        """Keep ``payload`` until the permission of ``peer``'s IP (asked already) is installed; or why not."""
        queue = self._permissions[peer.host].queue
        if len(queue) >= self.max_queued:
            return f"datagram to {peer} dropped: {len(queue)} already wait for its permission"
        queue.append((peer, payload))
        return None

    def installed(self, peer_ip: str, refresh_at: float) -> tuple[bool, list[tuple[Endpoint, bytes]]] | None:
        """The permission is granted (first time or refreshed): whether it is new, and the datagrams it frees.

        ``None`` if it was revoked meanwhile.
        """
        permission = self._permissions.get(peer_ip)
        if permission is None:
            return None
        new = not permission.installed
        permission.installed = True
        permission.refresh_at = refresh_at
        held, permission.queue = permission.queue, []
        return new, held

    def revoke(self, peer_ip: str) -> None:
        """Forget the permission of ``peer_ip`` and its channels (no more refreshes: the server expires them)."""
        self._permissions.pop(peer_ip, None)
        for peer in [p for p in self._channels if p.host == peer_ip]:
            self.unbind(peer)

    def refuse_permission(self, peer_ip: str) -> None:
        self._permissions.pop(peer_ip, None)

    # -- channels ------------------------------------------------------------------------------------

    def new_channel(self, peer: Endpoint) -> int | None:
        """A channel number for ``peer``, recorded as asked; ``None`` if it has one (asked or bound)."""
        if peer in self._channels:
            return None
        if self._next_channel > CHANNEL_MAX:
            raise TurnError("turn: no channel numbers left in this allocation")
        channel = Channel(self._next_channel)
        self._next_channel += 1
        self._channels[peer] = channel
        self._by_number[channel.number] = peer
        return channel.number

    def bound(self, peer: Endpoint, refresh_at: float) -> int | None:
        """The channel of ``peer`` is bound (first time or refreshed): its number if new, else ``None``."""
        channel = self._channels.get(peer)
        if channel is None:
            return None  # revoked meanwhile
        new = not channel.bound
        channel.bound = True
        channel.refresh_at = refresh_at
        return channel.number if new else None

    def unbind(self, peer: Endpoint) -> None:
        channel = self._channels.pop(peer, None)
        if channel is not None:
            del self._by_number[channel.number]

    def channel_of(self, peer: Endpoint) -> int | None:
        """The number of ``peer``'s channel once bound (datagrams then travel as ChannelData)."""
        channel = self._channels.get(peer)
        return channel.number if channel is not None and channel.bound else None

    def peer_of(self, number: int) -> Endpoint | None:
        """Whose channel ``number`` is, from the moment ChannelBind is sent (the server may use it before)."""
        return self._by_number.get(number)

    # -- refreshes -----------------------------------------------------------------------------------

    def due(self, now: float) -> tuple[list[str], list[tuple[Endpoint, int]]]:
        """Permissions and channels to refresh now, marked as in flight."""
        permissions, channels = [], []
        for peer_ip, permission in self._permissions.items():
            if now >= permission.refresh_at:
                permission.refresh_at = math.inf
                permissions.append(peer_ip)
        for peer, channel in self._channels.items():
            if now >= channel.refresh_at:
                channel.refresh_at = math.inf
                channels.append((peer, channel.number))
        return permissions, channels

    def wakeups(self) -> list[float]:
        return [p.refresh_at for p in self._permissions.values()] + [c.refresh_at for c in self._channels.values()]
