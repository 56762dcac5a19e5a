"""The delay line: holds each queued packet's verdict until its schedule says it leaves.

``iptables -t raw ... -j NFQUEUE`` hands every packet of an impaired direction to nfnetlink_queue before
conntrack sees it; the kernel keeps the packet and sends us its id (:mod:`nat.impair.nfqueue`). One thread
serves both directions: it asks the direction's :class:`~nat.impair.schedule.LinkSchedule` when the packet
leaves, keeps a heap of ``(release, seq, queue, packet id)``, and gives ``NF_ACCEPT`` when the time comes
(``NF_DROP`` at once for a packet lost in a burst). Only verdicts cross to the kernel, never packet bytes.

If the process dies, the kernel drops what the line still holds and, thanks to ``--queue-bypass``, lets
every later packet through unimpaired (fails open); :meth:`DelayLines.stop` first releases everything held.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import os
import random
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.files import write_atomic
from nat.impair.model import Impairments, LinkImpairment
from nat.impair.nfqueue import NF_ACCEPT, NF_DROP, Ack, Packet, QueueSocket, parse_proc_queues
from nat.impair.render import QUEUE_DOWN, QUEUE_UP
from nat.impair.schedule import LinkSchedule

log = logging.getLogger("nat")

DEFAULT_QUEUE_LENGTH = 10_000
"""Packets a direction holds when its ``limit`` is not set: 10 s of delay at 1,000 pps."""
STATS_INTERVAL = 1.0
"""Seconds between rewrites of the stats file."""
RECEIVE_BATCH = 512
"""Packet notices read before the line looks at its clock again (bounds the lateness a burst causes)."""
PROC_QUEUES = Path("/proc/net/netfilter/nfnetlink_queue")


@dataclass
class DirectionStats:
    """One direction's counters (``stats()`` and the stats file)."""

    seen: int = 0
    dropped: int = 0
    """Lost in a Gilbert-Elliott burst (random loss is the kernel's and never reaches the line)."""
    delayed: int = 0
    reordered: int = 0
    held: int = 0
    """Held right now."""
    max_held: int = 0
    queue_full: int | None = None
    """Dropped by the kernel before the line saw them (queue at its length, or our socket's buffer full);
    ``None`` when ``/proc/net/netfilter/nfnetlink_queue`` is unreadable."""


class _Direction:
    def __init__(self, name: str, queue: int, link: LinkImpairment, rng: random.Random) -> None:
        self.name, self.queue = name, queue
        self.schedule = LinkSchedule(link, rng)
        self.held = self.max_held = 0

    def stats(self, queue_full: int | None) -> DirectionStats:
        counts = self.schedule.counts
        return DirectionStats(
            counts.seen, counts.dropped, counts.delayed, counts.reordered, self.held, self.max_held, queue_full
        )


def queue_length(link: LinkImpairment) -> int:
    return link.limit or DEFAULT_QUEUE_LENGTH


class DelayLines:
    """Both directions' delay lines in one thread: ``start``, ``configure`` at any time, ``stop``."""

    def __init__(
        self,
        impairments: Impairments,
        stats_file: Path | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        rng = rng or random.Random()
        self._directions = {
            QUEUE_UP: _Direction("up", QUEUE_UP, impairments.up, rng),
            QUEUE_DOWN: _Direction("down", QUEUE_DOWN, impairments.down, rng),
        }
        self._impairments = impairments
        self._stats_file = stats_file
        self._clock = clock
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._pending: Impairments | None = None
        self._stopping = False
        self._queue_full: dict[int, int] | None = None
        self._kernel_errors: set[int] = set()
        self._socket: QueueSocket | None = None
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)

    def start(self) -> None:
        """Bind both queues (``NfqueueError`` when the kernel refuses, e.g. another process holds one) and start
        the thread. Both are bound even when a direction is clear: its iptables rule decides whether packets
        come."""
        sock = QueueSocket()
        try:
            for direction in self._directions.values():
                sock.bind_queue(direction.queue, queue_length(self._link(direction)))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._thread = threading.Thread(target=self._serve, name="delay-line", daemon=True)
        self._thread.start()
        log.info("delay line: up %s; down %s", _describe(self._impairments.up), _describe(self._impairments.down))

    def configure(self, impairments: Impairments) -> None:
        """New settings, taken by the thread before its next packet."""
        with self._lock:
            self._pending = impairments
        os.write(self._wake_write, b"c")

    def stop(self, timeout: float = 5.0) -> None:
        """Release every held packet (``NF_ACCEPT``, in order), let the queues go and end the thread."""
        if self._thread is not None:
            with self._lock:
                self._stopping = True
            os.write(self._wake_write, b"s")
            self._thread.join(timeout)
            self._thread = None
        os.close(self._wake_read)
        os.close(self._wake_write)

    def stats(self) -> dict[str, DirectionStats]:
        """Counters per direction (``up``, ``down``), read while the line runs: a snapshot, not a transaction."""
        queue_full = self._queue_full or {}
        return {
            d.name: d.stats(queue_full.get(d.queue) if self._queue_full is not None else None)
            for d in self._directions.values()
        }

    def _link(self, direction: _Direction) -> LinkImpairment:
        return self._impairments.up if direction.queue == QUEUE_UP else self._impairments.down

    # The thread.

    def _serve(self) -> None:
        sock = self._socket
        assert sock is not None
        # select(2) sleeps to the microsecond; epoll, selectors' default, rounds every timeout up to a millisecond.
        selector = selectors.SelectSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        next_stats = self._clock()
        try:
            while True:
                now = self._clock()
                timeout = next_stats - now
                if self._heap:
                    timeout = min(timeout, self._heap[0][0] - now)
                ready = {key.fd for key, _ in selector.select(max(0.0, timeout))}
                if self._wake_read in ready and self._woken():
                    break
                verdicts: list[tuple[int, int, int]] = []
                if sock.fileno() in ready:
                    self._arrivals(sock.receive(RECEIVE_BATCH), verdicts)
                self._releases(self._clock(), verdicts)
                if verdicts:
                    sock.send_verdicts(verdicts)
                if self._clock() >= next_stats:
                    self._write_stats()
                    next_stats = self._clock() + STATS_INTERVAL
        except Exception:
            log.exception("delay line failed; held packets are dropped, later ones pass unimpaired")
        finally:
            self._shutdown(sock)
            selector.close()

    def _woken(self) -> bool:
        """Take what ``configure``/``stop`` left; True when the line must stop."""
        while True:
            try:
                if not os.read(self._wake_read, 4096):
                    break
            except BlockingIOError:
                break
        with self._lock:
            pending, self._pending = self._pending, None
            stopping = self._stopping
        if pending is not None:
            self._impairments = pending
            for direction in self._directions.values():
                link = self._link(direction)
                direction.schedule.configure(link)
                assert self._socket is not None
                self._socket.set_max_length(direction.queue, queue_length(link))
            log.info("delay line: up %s; down %s", _describe(pending.up), _describe(pending.down))
        return stopping

    def _arrivals(self, messages: list[Packet | Ack], verdicts: list[tuple[int, int, int]]) -> None:
        now = self._clock()
        for message in messages:
            if isinstance(message, Ack):
                self._kernel_error(message)
                continue
            direction = self._directions.get(message.queue)
            if direction is None:  # not ours to delay: never hold a packet nobody will release
                verdicts.append((message.queue, message.packet_id, NF_ACCEPT))
                continue
            release = direction.schedule.decide(now)
            if release is None:
                verdicts.append((message.queue, message.packet_id, NF_DROP))
            elif release <= now:
                verdicts.append((message.queue, message.packet_id, NF_ACCEPT))
            else:
                self._seq += 1
                heapq.heappush(self._heap, (release, self._seq, message.queue, message.packet_id))
                direction.held += 1
                direction.max_held = max(direction.max_held, direction.held)

    def _releases(self, now: float, verdicts: list[tuple[int, int, int]]) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, queue, packet_id = heapq.heappop(heap)
            self._directions[queue].held -= 1
            verdicts.append((queue, packet_id, NF_ACCEPT))

    def _kernel_error(self, ack: Ack) -> None:
        if ack.error and ack.error not in self._kernel_errors:
            self._kernel_errors.add(ack.error)  # logged once per errno: a verdict stream must not flood the log
            log.warning("delay line: the kernel refused a request: %s", os.strerror(ack.error))

    def _write_stats(self) -> None:
        try:
            self._queue_full = parse_proc_queues(PROC_QUEUES.read_text())
        except OSError:
            self._queue_full = None
        if self._stats_file is None:
            return
        record = {name: dataclasses.asdict(stats) for name, stats in self.stats().items()}
        try:
            write_atomic(self._stats_file, json.dumps(record, indent=2))
        except OSError as exc:
            log.warning("delay line: cannot write %s: %s", self._stats_file, exc)

    def _shutdown(self, sock: QueueSocket) -> None:
        """Everything held leaves (in release order), then whatever arrived meanwhile, then the queues go."""
        try:
            verdicts: list[tuple[int, int, int]] = []
            self._releases(float("inf"), verdicts)
            for message in sock.receive(RECEIVE_BATCH):
                if isinstance(message, Packet):
                    verdicts.append((message.queue, message.packet_id, NF_ACCEPT))
            sock.send_verdicts(verdicts)
            self._write_stats()  # while the kernel still lists the queues' drop counts
            for direction in self._directions.values():
                sock.unbind_queue(direction.queue)
        except OSError as exc:
            log.warning("delay line: stopping: %s", exc)
        finally:
            sock.close()


def _describe(link: LinkImpairment) -> str:
    settings = [f"{f.name}={getattr(link, f.name):g}" for f in dataclasses.fields(link) if getattr(link, f.name)]
    return " ".join(settings) or "off"
