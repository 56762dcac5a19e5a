"""Presence: who is online, and since when the server has not heard those who are not.

A peer is online while it is in the peer table (a datagram from it within three keepalive intervals, see
:mod:`server.table`). When it expires, the server keeps its id and last-seen time in a bounded record of
recently expired peers (:data:`DEFAULT_MAX_GONE`, least recently expired forgotten first), so a presence
query can say "offline, last heard 95 s ago" rather than "unknown". Pure: time is passed in.
"""

from __future__ import annotations

import itertools
import logging

from common.lru import BoundedLRU
from protocol import PresenceReport
from server.table import PeerTable

log = logging.getLogger(__name__)

DEFAULT_MAX_GONE = 4096
"""Expired peers remembered: an id (at most 32 characters) and a float each, about 200 bytes with the
dictionary's share, so under 1 MB."""
STATE_GONE = 100
"""Expired peers the state file lists (the lab's hosts are far fewer; a flood of throwaway ids must not make
the file large)."""
MAX_AGE_MS = 2**32 - 1
"""AGE_MS is a u32 on the wire: about 49 days; older ages are written as this."""


class Presence:
    """Expires the table's peers into the record of recently expired ones, and answers presence queries."""

    def __init__(self, table: PeerTable, max_gone: int = DEFAULT_MAX_GONE) -> None:
        self.table = table
        self._gone: BoundedLRU[str, float] = BoundedLRU(max_gone)

    def expire(self, now: float) -> None:
        """Remove, log and remember the peers whose presence expired."""
        for peer in self.table.expire(now):
            log.info("expired %s at %s (not seen for %.0f s)", peer.id, peer.addr, now - peer.last_seen)
            self._gone.put(peer.id, peer.last_seen)

    def report(self, peer_id: str, now: float) -> PresenceReport:
        """Online with the time since it was last heard; offline with it if it expired recently; offline with no
        age if the server does not know it (never registered, or forgotten)."""
        self.expire(now)
        peer = self.table.lookup(peer_id, now)
        if peer is not None:
            return PresenceReport(peer_id, True, _age_ms(now - peer.last_seen))
        last_seen = self._gone.peek(peer_id)
        return PresenceReport(peer_id, False, None if last_seen is None else _age_ms(now - last_seen))

    def gone(self, limit: int = STATE_GONE) -> list[tuple[str, float]]:
        """The ``limit`` peers that expired last, ``(id, last_seen)``, latest first; those registered again
        left out."""
        latest = (item for item in reversed(list(self._gone.items())) if item[0] not in self.table)
        return list(itertools.islice(latest, limit))


def _age_ms(seconds: float) -> int:
    return min(MAX_AGE_MS, max(0, round(seconds * 1000)))
