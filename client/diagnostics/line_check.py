"""``client linecheck send|echo``: what a path does to datagrams, each direction on its own.

The echo runs beyond the path (in the lab: in the ``server`` container on the WAN, behind no NAT); the sender
behind it (a host, so its router's ``up`` is the way out and its ``down`` the way back). Both are given the
same random ``--token``: the echo answers only datagrams that start with it, from the first address that
presented it, never with more bytes than it was sent, and exits after ``--duration`` or when idle, so it is
no reflector for strangers.

The sender says hello until answered (so no datagram is lost to an echo not yet listening), then sends
``count`` datagrams of ``size`` bytes at ``rate`` a second on a fixed schedule, each with its seq and send
time; the echo answers each with its receipt number and times. After the last one the sender waits until the
replies stop, asks the echo for its tally (repeated until answered) and says done. Pure parts:
:mod:`client.diagnostics.line_wire` (datagrams) and :mod:`client.diagnostics.line_stats` (the figures).
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from client.diagnostics.line_stats import Arrivals, LineReport, Received, line_report
from client.diagnostics.line_wire import (
    MIN_SIZE,
    TOKEN_BYTES,
    Data,
    DataReply,
    Done,
    Hello,
    HelloReply,
    Kind,
    Message,
    Summary,
    SummaryReply,
    decode,
    encode,
    header_size,
)
from protocol import Endpoint

BUFFER = 4 << 20
"""Socket buffers asked for (capped by net.core.[rw]mem_max): a stall of the reading process must not
overflow them, or the host's own drops would look like the path's loss."""
ASK_INTERVAL = 0.1
"""Seconds between hellos and between summary requests, at least (twice the median round trip when longer)."""
MIN_IDLE = 0.5
"""Seconds without a reply after the last datagram before the sender stops waiting for more, at least."""
IDLE_RTTS = 4
"""... or this many of the slowest round trips seen, whichever is longer (a delayed line holds replies)."""
DONE_COPIES = 3
SO_TIMESTAMPNS = 35
"""Linux's socket option (and control message type) for receive times in ns; Python's socket module lacks it."""
TIMESPEC = struct.Struct("@qq")
"""struct timespec on 64-bit Linux: the SO_TIMESTAMPNS control message."""
STAMP_SPACE = socket.CMSG_SPACE(TIMESPEC.size)


class EchoSilent(TimeoutError):
    """The echo did not answer (a hello, or the summary) within the time allowed."""


@dataclass(frozen=True)
class Plan:
    """What the sender sends: ``count`` datagrams of ``size`` bytes, ``rate`` a second; ``timeout`` bounds
    each wait for the echo (hello, summary)."""

    count: int
    rate: float
    size: int
    timeout: float


def parse_token(text: str) -> bytes:
    """The token from its hex form; ``ValueError`` unless it is exactly 16 bytes."""
    try:
        token = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"--token {text!r}: expected {TOKEN_BYTES * 2} hex digits") from None
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"--token {text!r}: expected {TOKEN_BYTES * 2} hex digits")
    return token


def _socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return sock


def receive(sock: socket.socket) -> tuple[bytes, Any, int]:
    """One datagram, its source, and when the kernel received it (ns, CLOCK_REALTIME).

    The kernel's stamp, not the time we read it: on a busy host a process can sit for milliseconds before
    it reads, and that wait is ours, not the path's. (It is CLOCK_REALTIME because that is the clock the
    kernel stamps with; over one delay a clock being slewed drifts by microseconds at most.)
    """
    data, ancillary, _, source = sock.recvmsg(65536, STAMP_SPACE)
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(value)
            return data, source, seconds * 1_000_000_000 + nanoseconds
    return data, source, time.time_ns()


# -- the sender ------------------------------------------------------------------------------------------


class _Sender:
    """One run's socket and what came back on it."""

    def __init__(self, sock: socket.socket, token: bytes, plan: Plan) -> None:
        self.sock, self.token, self.plan = sock, token, plan
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.replies: list[Received] = []
        self.summary: SummaryReply | None = None
        self.hello_answered = False
        self.slowest_ns = 0

    def send(self, message: Message, size: int) -> None:
        # A full buffer or an ICMP error from before: the datagram counts as lost, as on a real path.
        with suppress(BlockingIOError, ConnectionRefusedError):
            self.sock.send(encode(message, size))

    def wait(self, seconds: float) -> None:
        """Take in what arrives during ``seconds`` (at least one look)."""
        if self.selector.select(max(0.0, seconds)):
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data, _, at_ns = receive(self.sock)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # ICMP port unreachable: the echo is not (yet) listening
            try:
                message = decode(data, self.token)
            except ValueError:
                continue
            match message:
                case DataReply():
                    self.replies.append(Received(message, at_ns))
                    self.slowest_ns = max(self.slowest_ns, at_ns - message.sent_ns)
                case HelloReply():
                    self.hello_answered = True
                case SummaryReply() if message.count == self.plan.count:
                    self.summary = message
                case _:
                    pass

    def typical_rtt(self) -> float:
        """The median round trip so far in seconds (0 before any reply): how long an answer usually takes."""
        if not self.replies:
            return 0.0
        trips = sorted(r.at_ns - r.reply.sent_ns for r in self.replies)
        return trips[len(trips) // 2] / 1e9

    def ask(self, message: Message, answered: Callable[[], bool], what: str) -> None:
        """Send ``message`` every ask interval until ``answered()``; :class:`EchoSilent` after the timeout."""
        deadline = time.monotonic() + self.plan.timeout
        interval = max(ASK_INTERVAL, 2 * self.typical_rtt())
        while not answered():
            left = deadline - time.monotonic()
            if left <= 0:
                echo = Endpoint.of(self.sock.getpeername())
                raise EchoSilent(f"no {what} from the echo at {echo} within {self.plan.timeout:g} s")
            self.send(message, self.plan.size)
            until = time.monotonic() + min(interval, left)
            while not answered() and (wait := until - time.monotonic()) > 0:
                self.wait(wait)

    def stream(self) -> float:
        """Send the data on schedule (late ones go at once: the count and span are kept); seconds it took."""
        interval_ns = round(1e9 / self.plan.rate)
        start = time.monotonic_ns()
        for seq in range(self.plan.count):
            due = start + seq * interval_ns
            while (now := time.monotonic_ns()) < due:
                self.wait((due - now) / 1e9)
            self.send(Data(self.token, seq, time.time_ns()), self.plan.size)
        seconds = (time.monotonic_ns() - start) / 1e9
        self.wait(0)
        return seconds

    def linger(self) -> None:
        """Wait until no reply came for a while after the last datagram (the slowest round trips, a few times)."""
        deadline = time.monotonic() + self.plan.timeout
        heard = len(self.replies)
        quiet_since = time.monotonic()
        while (now := time.monotonic()) < deadline:
            idle = max(MIN_IDLE, IDLE_RTTS * self.slowest_ns / 1e9)
            if now - quiet_since >= idle:
                return
            self.wait(min(idle - (now - quiet_since), deadline - now))
            if len(self.replies) != heard:
                heard, quiet_since = len(self.replies), time.monotonic()


def send(target: Endpoint, token: bytes, plan: Plan) -> dict[str, Any]:
    """Run a line check against the echo at ``target``; the JSON report (``EchoSilent`` if it never answers)."""
    with _socket(target.family) as sock:
        sock.connect(target.sockaddr())  # only the echo's datagrams reach us
        sender = _Sender(sock, token, plan)
        sender.ask(Hello(token), lambda: sender.hello_answered, "answer to hello")
        seconds = sender.stream()
        sender.linger()
        summary: str | None = None
        try:
            sender.ask(Summary(token, plan.count), lambda: sender.summary is not None, "summary")
        except EchoSilent as exc:
            summary = str(exc)  # the data went out: report the round trip, with why the directions are missing
        for _ in range(DONE_COPIES):
            sender.send(Done(token), MIN_SIZE)
        report: LineReport = line_report(plan.count, sender.replies, sender.summary)
        local = Endpoint.of(sock.getsockname())
    return {
        "target": str(target),
        "local": str(local),
        "count": plan.count,
        "rate_pps": plan.rate,
        "size": plan.size,
        "seconds": round(seconds, 3),
        **report.as_dict(),
        "summary_error": summary,
    }


# -- the echo --------------------------------------------------------------------------------------------


class _Echo:
    """The echo's state: who it answers, what it received."""

    def __init__(self, sock: socket.socket, token: bytes) -> None:
        self.sock, self.token = sock, token
        self.peer: Any = None
        self.arrivals = Arrivals()
        self.ignored = 0
        self.done = False

    def handle(self, data: bytes, source: Any, at_ns: int) -> bool:
        """Answer one datagram if it is ours; whether it was."""
        try:
            message = decode(data, self.token)
        except ValueError:
            self.ignored += 1
            return False
        if self.peer is None:
            self.peer = source
        if source != self.peer:
            self.ignored += 1
            return False
        reply = self._reply(message, len(data), at_ns)
        if reply is not None:
            with suppress(BlockingIOError):  # a full buffer loses the reply, as a router would
                self.sock.sendto(encode(reply, len(data)), source)
        return True

    def _reply(self, message: Message, size: int, at_ns: int) -> Message | None:
        """The answer to ``message``, padded to ``size`` (the request's length); None when there is none, or
        when its header would not fit in ``size`` (a reply is never larger than its request)."""
        match message:
            case Hello():
                return HelloReply(self.token)
            case Data(seq=seq, sent_ns=sent_ns) if size >= header_size(Kind.DATA_REPLY):
                receipt = self.arrivals.add(seq)
                return DataReply(self.token, seq, sent_ns, receipt, at_ns, time.time_ns())
            case Summary(count=count) if size >= header_size(Kind.SUMMARY_REPLY):
                c = self.arrivals.counts(count)
                return SummaryReply(self.token, count, c.receipts, c.distinct, c.lost_runs, c.ahead)
            case Done():
                self.done = True
        return None


def echo(port: int, token: bytes, duration: float, idle: float, family: socket.AddressFamily) -> dict[str, Any]:
    """Answer one sender's line check on UDP ``port`` until it says done, nothing of ours came for ``idle``
    seconds since the last that did, or ``duration`` seconds passed; what it received (JSON)."""
    with _socket(family) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        state = _Echo(sock, token)
        started = time.monotonic()
        last_heard: float | None = None  # idle counts from the sender's first datagram: it may start late
        while not state.done:
            now = time.monotonic()
            end = started + duration if last_heard is None else min(started + duration, last_heard + idle)
            if now >= end:
                break
            if not selector.select(end - now):
                continue
            while True:
                try:
                    data, source, at_ns = receive(sock)
                except BlockingIOError:
                    break
                if state.handle(data, source, at_ns):
                    last_heard = time.monotonic()
    counts = state.arrivals
    return {
        "port": port,
        "peer": None if state.peer is None else str(Endpoint.of(state.peer)),
        "receipts": counts.total,
        "ignored": state.ignored,
        "done": state.done,
        "seconds": round(time.monotonic() - started, 3),
    }
