"""The delay line: holds each queued packet's verdict until its schedule says it leaves.

``iptables -t raw ... -j NFQUEUE`` hands every packet of an impaired direction to nfnetlink_queue before
conntrack sees it; the kernel keeps the packet and sends us its id (:mod:`nat.impair.nfqueue`). One thread
serves both directions: :class:`~nat.impair.holding.Holding` decides when each packet leaves, and the
thread gives ``NF_ACCEPT`` when the time comes (``NF_DROP`` at once for a packet lost in a burst). Only
verdicts cross to the kernel, never packet bytes.

If the process dies, the kernel drops what the line still holds and, thanks to ``--queue-bypass``, lets
every later packet through unimpaired (fails open); :meth:`DelayLines.stop` first releases everything held.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import selectors
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.files import write_atomic
from nat.impair.holding import DirectionStats, Holding, Verdict
from nat.impair.model import Impairments, LinkImpairment
from nat.impair.nfqueue import NF_ACCEPT, Ack, Packet, QueueSocket, parse_proc_queues
from nat.impair.spec import format_link

log = logging.getLogger("nat")

DEFAULT_QUEUE_LENGTH = 10_000
"""Packets a direction holds when its ``limit`` is not set: 10 s of delay at 1,000 pps."""
STATS_INTERVAL = 1.0
"""Seconds between looks at the counters; the stats file is rewritten when they changed."""
RECEIVE_BATCH = 512
"""Packet notices read before the line looks at its clock again (bounds the lateness a burst causes)."""
PROC_QUEUES = Path("/proc/net/netfilter/nfnetlink_queue")
WALL_OFFSET_TRIES = 5
WALL_OFFSET_GOOD = 20e-6
"""Seconds between two reads of our clock that bound a read of the wall clock well enough."""


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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._holding = Holding(impairments, rng or random.Random())
        self._impairments = impairments
        self._stats_file = stats_file
        self._clock, self._wall_clock = clock, wall_clock
        self._lock = threading.Lock()
        self._pending: Impairments | None = None
        self._stopping = False
        self._queue_full: dict[int, int] | None = None
        self._written: str | None = None
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
            for direction in self._holding.directions.values():
                sock.bind_queue(direction.queue, queue_length(direction.link))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="delay-line", daemon=True)
        # The thread inherits a mask that blocks every signal: SIGTERM and SIGHUP must reach the main thread's
        # sigwait, never interrupt the line (whose Python handler would then wait for the main thread).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        log.info("delay line: up %s; down %s", format_link(self._impairments.up), format_link(self._impairments.down))

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
        return self._holding.stats(self._queue_full)

    # The thread.

    def _serve(self, sock: QueueSocket) -> None:
        # select(2) sleeps to the microsecond; epoll, selectors' default, rounds every timeout up to a millisecond.
        selector = selectors.SelectSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        holding, next_stats = self._holding, self._clock()
        try:
            while True:
                due = holding.next_release()
                timeout = next_stats - self._clock() if due is None else min(next_stats, due) - self._clock()
                ready = {key.fd for key, _ in selector.select(max(0.0, timeout))}
                if self._wake_read in ready and self._woken(sock):
                    break
                verdicts: list[Verdict] = []
                if sock.fileno() in ready:
                    verdicts += self._arrivals(sock.receive(RECEIVE_BATCH))
                verdicts += holding.release(self._clock())
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

    def _woken(self, sock: QueueSocket) -> bool:
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
            self._holding.configure(pending)
            for direction in self._holding.directions.values():
                sock.set_max_length(direction.queue, queue_length(direction.link))
            log.info("delay line: up %s; down %s", format_link(pending.up), format_link(pending.down))
        return stopping

    def _arrivals(self, messages: list[Packet | Ack]) -> list[Verdict]:
        packets = []
        for message in messages:
            if isinstance(message, Ack):
                self._kernel_error(message)
            else:
                packets.append(message)
        return self._holding.arrive(packets, self._clock(), self._wall_offset())

    def _wall_offset(self) -> float:
        """The wall clock less ours (kernel stamps are wall-clock times), from the narrowest of a few reads
        between two of ours: a thread preempted between its two reads would otherwise skew every stamp of
        the batch, and release its packets early."""
        narrowest, offset = float("inf"), 0.0
        for _ in range(WALL_OFFSET_TRIES):
            before = self._clock()
            wall = self._wall_clock()
            after = self._clock()
            if after - before < narrowest:
                narrowest, offset = after - before, wall - (before + after) / 2
            if narrowest < WALL_OFFSET_GOOD:
                break
        return offset

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
        text = json.dumps({name: dataclasses.asdict(stats) for name, stats in self.stats().items()}, indent=2)
        if text == self._written:
            return  # an idle router's line costs a wake-up a second, not a file write
        try:
            write_atomic(self._stats_file, text)
            self._written = text
        except OSError as exc:
            log.warning("delay line: cannot write %s: %s", self._stats_file, exc)

    def _shutdown(self, sock: QueueSocket) -> None:
        """Everything held leaves (in release order), then whatever arrived meanwhile, then the queues go."""
        try:
            verdicts = self._holding.release(float("inf"))
            verdicts += [
                (m.queue, m.packet_id, NF_ACCEPT) for m in sock.receive(RECEIVE_BATCH) if isinstance(m, Packet)
            ]
            sock.send_verdicts(verdicts)
            self._write_stats()  # while the kernel still lists the queues' drop counts
            for direction in self._holding.directions.values():
                sock.unbind_queue(direction.queue)
        except OSError as exc:
            log.warning("delay line: stopping: %s", exc)
        finally:
            sock.close()
