"""The server's state file: JSON for ``make lab-status``, and the container healthcheck (``test -s``).

Format (times ISO 8601 UTC, addresses as the protocol writes them)::

    {"listen": "0.0.0.0:9000", "started": "2025-01-01T12:00:00+00:00",
     "peers": [{"id": "alice", "addr": "198.18.0.11:40000",
                "registered_at": "...", "last_seen": "...",
                "relay": "198.18.0.20:49160", "extended": true, "keyed": true}],
     "gone": [{"id": "carol", "last_seen": "..."}],
     "counters": {"empty": 0, "oversize": 0, ..., "amplification": 0, "retry": 0, "bad_proof": 0, ...}}

Written atomically (``common.files.write_atomic``: temporary file + ``os.replace``) so a reader never
sees half a file; at most once per ``interval`` seconds after a change, plus once at start and once at
exit. ``extended`` says whether the peer registered with the natlab extension; ``relay`` is its TURN
relayed address, ``null`` when it has none (always for seed-era peers); ``keyed`` whether it proved a key.
A peer listed in ``peers`` is online; ``gone`` lists the peers that expired recently (offline), with when
they were last heard (:mod:`server.presence`). ``counters`` is :attr:`server.handler.Handler.counters`:
every drop and refusal by kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.files import write_atomic
from protocol import Endpoint
from server.table import Peer

log = logging.getLogger(__name__)


def render_state(
    listen: Endpoint,
    *,
    started: float,
    peers: list[Peer],
    counters: Mapping[str, int],
    gone: Sequence[tuple[str, float]] = (),
    now: float,
    wall_now: float,
) -> dict[str, Any]:
    """The state as JSON-ready data. ``started``/``wall_now`` are wall-clock; peer times are monotonic."""

    def wall(monotonic: float) -> str:
        return _iso(wall_now - (now - monotonic))

    return {
        "listen": str(listen),
        "started": _iso(started),
        "peers": [_peer(p, wall) for p in peers],
        "gone": [{"id": peer_id, "last_seen": wall(last_seen)} for peer_id, last_seen in gone],
        "counters": dict(counters),
    }


def _peer(peer: Peer, wall: Callable[[float], str]) -> dict[str, Any]:
    return {
        "id": peer.id,
        "addr": str(peer.addr),
        "registered_at": wall(peer.registered_at),
        "last_seen": wall(peer.last_seen),
        "relay": str(peer.relay) if peer.relay is not None else None,
        "extended": peer.extended,
        "keyed": peer.keyed,
    }


class StateWriter:
    """Writes ``render()`` to ``path`` soon after ``fingerprint()`` changes, at most once per ``interval``."""

    def __init__(
        self,
        path: Path,
        render: Callable[[], dict[str, Any]],
        fingerprint: Callable[[], object],
        interval: float = 0.5,
    ) -> None:
        self.path = path
        self.interval = interval
        self._render = render
        self._fingerprint = fingerprint
        self._loop = asyncio.get_running_loop()
        self._pending: asyncio.TimerHandle | None = None
        self._written: object = None
        self._last_write = -math.inf

    def poke(self) -> None:
        """Schedule a write if something changed since the last one; cheap enough to call per datagram."""
        if self._pending is None and self._fingerprint() != self._written:
            delay = max(0.0, self._last_write + self.interval - self._loop.time())
            self._pending = self._loop.call_later(delay, self.write)

    def write(self) -> None:
        """Write now (and cancel a scheduled write); a failure is logged, never raised."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._written = self._fingerprint()
        self._last_write = self._loop.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # e.g. /run/natlab on a fresh tmpfs
            write_atomic(self.path, json.dumps(self._render(), indent=2) + "\n")
        except OSError:
            log.exception("cannot write state file %s", self.path)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
