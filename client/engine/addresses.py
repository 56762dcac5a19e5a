"""Which peers' paths use an address: so that a datagram that names no peer (a keepalive) finds its peer in
O(1), whatever the number of peers, and one from an address no path uses costs a dictionary miss. Pure.

The index follows the paths: the core re-files a peer after every entry point that touched it (a path's
address changes only then: a punch, a probe, a reset), and takes it out when the peer is forgotten.
"""

from __future__ import annotations

from client.engine.peer import Peer
from protocol import Endpoint

Key = tuple[bool, Endpoint]
"""(through the relay, address): a relay path's address is the peer's relayed one, heard through our TURN
allocation; a direct path's, where the peer's datagrams come from."""


class AddressBook:
    """Address -> the peers whose direct or relay path uses it (usually one)."""

    def __init__(self) -> None:
        self._peers: dict[Key, dict[str, Peer]] = {}
        self._filed: dict[str, tuple[Key | None, Key | None]] = {}  # each peer's keys as last filed

    def at(self, addr: Endpoint, via_relay: bool) -> list[Peer]:
        """The peers whose direct path (or relay path, ``via_relay``) uses ``addr``."""
        peers = self._peers.get((via_relay, addr))
        return [] if peers is None else list(peers.values())

    def file(self, peer: Peer) -> None:
        """File ``peer`` under its paths' addresses now (nothing to do if they did not change)."""
        direct = None if peer.path.addr is None else (False, peer.path.addr)
        relay = None if peer.relay.addr is None else (True, peer.relay.addr)
        keys = (direct, relay)
        old = self._filed.get(peer.id)
        if old == keys:
            return
        self.remove(peer.id)
        self._filed[peer.id] = keys
        for key in keys:
            if key is not None:
                self._peers.setdefault(key, {})[peer.id] = peer

    def remove(self, peer_id: str) -> None:
        """Take a peer out of the index (it is forgotten)."""
        for key in self._filed.pop(peer_id, (None, None)):
            if key is None:
                continue
            peers = self._peers[key]
            del peers[peer_id]
            if not peers:
                del self._peers[key]

    def __len__(self) -> int:
        return len(self._peers)
