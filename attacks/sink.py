"""The victim's byte counter: every UDP datagram that arrives at this host, on any port, counted by source.

``serve`` is the victim container's main process: a raw UDP socket sees every datagram whatever its port
(nothing need listen there: a reflected punch is counted even though no socket wants it), and the totals
go to a state file, rewritten at most every ``interval`` seconds while they change. ``show`` prints that
file with how long the victim has been quiet, so a scenario can wait until a reflection has finished.

Bounded: at most :data:`MAX_SOURCES` sources are counted apart; the rest are summed under ``other``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attacks.packets import HEADERS, Datagram
from attacks.raw import arriving_udp, packets_until, udp_in
from common.files import write_atomic

DEFAULT_STATE = Path("/run/natlab/sink.json")
MAX_SOURCES = 4096
OTHER = "other"


@dataclass
class Count:
    datagrams: int = 0
    payload_bytes: int = 0

    def add(self, payload: int) -> None:
        self.datagrams += 1
        self.payload_bytes += payload

    def to_json(self) -> dict[str, int]:
        return {
            "datagrams": self.datagrams,
            "payload_bytes": self.payload_bytes,
            "ip_bytes": self.payload_bytes + self.datagrams * HEADERS,
        }


@dataclass
class Totals:
    """What has arrived, in all and by source (``ip:port``); ``last_at`` is when (wall clock), if ever."""

    total: Count = field(default_factory=Count)
    by_source: dict[str, Count] = field(default_factory=dict)
    last_at: float | None = None

    def add(self, datagram: Datagram, now: float) -> None:
        key = str(datagram.src)
        if key not in self.by_source and len(self.by_source) >= MAX_SOURCES:
            key = OTHER
        self.by_source.setdefault(key, Count()).add(len(datagram.payload))
        self.total.add(len(datagram.payload))
        self.last_at = now

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total.to_json(),
            "by_source": {source: count.to_json() for source, count in sorted(self.by_source.items())},
            "last_at": self.last_at,
        }


def serve(state: Path = DEFAULT_STATE, interval: float = 0.2, stop: threading.Event | None = None) -> None:
    """Count until ``stop`` is set (forever without one); the state file exists (all zeros) as soon as the
    counter listens."""
    totals = Totals()
    stop = stop or threading.Event()
    state.parent.mkdir(parents=True, exist_ok=True)
    with arriving_udp() as sock:
        write_atomic(state, json.dumps(totals.to_json()))
        while not stop.is_set():
            before = totals.total.datagrams
            for datagram in udp_in(packets_until(sock, time.monotonic() + interval)):
                totals.add(datagram, time.time())
            if totals.total.datagrams != before:
                write_atomic(state, json.dumps(totals.to_json()))


def show(state: Path = DEFAULT_STATE, now: float | None = None) -> dict[str, Any]:
    """The totals, and ``idle_s``: seconds since the last datagram arrived (None if none ever did)."""
    totals: dict[str, Any] = json.loads(state.read_text())
    last = totals.get("last_at")
    now = time.time() if now is None else now
    return {**totals, "idle_s": None if last is None else round(now - last, 3)}
