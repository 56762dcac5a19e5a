"""The request-rate generator's loop: one request outstanding per socket, each reply answered at once.

N connected UDP sockets (N source ports, N clients) share one epoll; when a socket's datagram answers its
request (the kind's :class:`~client.diagnostics.request_kinds.Exchange` says so) the reply is counted and
the socket sends its next request. The window of outstanding requests is therefore N: enough to keep the
server's receive queue from running dry, bounded so that it never overflows. A request unanswered for
``resend_after`` seconds (it or its reply was lost) is sent again and counted as resent; for a kind without
transaction ids (natlab's text ``register``) a late reply to it may then count for the new request, so
``resent`` bounds that error.

The loop runs for a warm-up, then for the measured window, and returns a :class:`Mark` (counters, clock,
CPU times) at each edge of the window; the figures are their differences.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay

from client.diagnostics.request_kinds import Answer, Exchange
from protocol import Endpoint

RECV_SIZE = 2048
POLL_INTERVAL = 0.05
"""Seconds between looks at the clock (phases, resend timer) when no reply wakes the loop."""
PROBE_INTERVAL = 0.1
"""Seconds between readiness probes while the server is silent."""
SHOWN = 80
"""Bytes of a wrong answer shown in an error."""


class RateError(RuntimeError):
    """The measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Load:
    """How to load the server: clients (one request outstanding each), seconds of warm-up and of counting,
    and how long a request may stay unanswered before it is sent again."""

    sockets: int = 64
    warmup: float = 1.0
    seconds: float = 3.0
    resend_after: float = 0.5


@dataclass
class Tally:
    replies: int = 0
    resent: int = 0
    ignored: int = 0
    """Datagrams that answered nothing outstanding (:attr:`Answer.OTHER`)."""


@dataclass(frozen=True)
class Mark:
    """The counters and clocks at one edge of the measured window."""

    at: float
    replies: int
    resent: int
    ignored: int
    own_cpu: float
    """This process's CPU seconds."""
    server_cpu: float | None
    """The server's CPU seconds (None: its process is not ours to read)."""


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process (all its threads) has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mark(at: float, tally: Tally, server_pid: int | None) -> Mark:
    server = cpu_seconds(server_pid) if server_pid is not None else None
    return Mark(at, tally.replies, tally.resent, tally.ignored, time.process_time(), server)


def open_socket(target: Endpoint) -> socket.socket:
    sock = socket.socket(target.family, socket.SOCK_DGRAM)
    sock.connect(target.sockaddr())  # its own source port; only the server's datagrams reach it
    return sock


def wait_ready(sock: socket.socket, exchange: Exchange, server: subprocess.Popen[bytes] | None, wait: float) -> None:
    """One exchange on ``sock``, the request repeated until answered: the server is up and speaks the kind.
    Leaves ``sock`` non-blocking, for :func:`drive`."""

    other: list[bytes] = []  # the last datagram that was not the reply (the server's refusal, say)

    def probe() -> bool:
        if server is not None and server.poll() is not None:
            raise RateError(f"the server exited with status {server.returncode} before answering")
        with contextlib.suppress(ConnectionRefusedError):  # nothing listens yet: ICMP port unreachable
            sock.send(exchange.request())
            with contextlib.suppress(TimeoutError):
                while (answer := exchange.answer(data := sock.recv(RECV_SIZE))) is not Answer.REPLY:
                    if answer is Answer.RESEND:
                        sock.send(exchange.request())  # (with what the server just sent, a cookie say)
                    else:
                        other[:] = [data]  # a late answer to an earlier probe, or a refusal: wait on
                return True
        return False

    sock.settimeout(PROBE_INTERVAL)
    retrying = Retrying(stop=stop_after_delay(wait), retry=retry_if_result(lambda ok: not ok), reraise=True)
    try:
        retrying(probe)
    except RetryError:
        got = f"; it sent {other[0][:SHOWN]!r} instead" if other else ""
        raise RateError(f"no answer from {Endpoint.of(sock.getpeername())} within {wait:g} s{got}") from None
    finally:
        sock.setblocking(False)


def drive(
    socks: Sequence[socket.socket], exchanges: Sequence[Exchange], load: Load, server_pid: int | None
) -> tuple[Mark, Mark]:
    """Keep one request outstanding on every socket through the warm-up and the window; the window's edges."""
    slots = {sock.fileno(): (sock, exchange) for sock, exchange in zip(socks, exchanges, strict=True)}
    tally = Tally()
    started = time.monotonic()
    window_from, window_to = started + load.warmup, started + load.warmup + load.seconds
    sent_at = dict.fromkeys(slots, started)
    for sock, exchange in slots.values():
        sock.send(exchange.request())
    start: Mark | None = None
    check_at = started + POLL_INTERVAL
    with select.epoll() as poller:
        for fd in slots:
            poller.register(fd, select.EPOLLIN)
        while True:
            now = _serve(poller, slots, sent_at, tally)
            if now < check_at:
                continue  # the clock checks below cost more than a reply: a few per second are enough
            check_at = now + POLL_INTERVAL
            if start is None and now >= window_from:
                start = _mark(now, tally, server_pid)
            elif start is not None and now >= window_to:
                return start, _mark(now, tally, server_pid)
            _resend_overdue(slots, sent_at, now - load.resend_after, now, tally)


def _serve(
    poller: select.epoll, slots: dict[int, tuple[socket.socket, Exchange]], sent_at: dict[int, float], tally: Tally
) -> float:
    """One wake-up: every socket with a datagram waiting reads one and, if it was the reply, sends the next
    request. Returns the time of the wake-up, which stamps the replies it counted."""
    events = poller.poll(POLL_INTERVAL)
    now = time.monotonic()
    for fd, _ in events:
        sock, exchange = slots[fd]
        try:
            answer = exchange.answer(sock.recv(RECV_SIZE))
        except BlockingIOError:
            continue
        except ConnectionRefusedError:
            raise RateError("the server stopped answering (ICMP port unreachable)") from None
        if answer is Answer.REPLY:
            tally.replies += 1
        elif answer is Answer.OTHER:
            tally.ignored += 1
            continue
        sock.send(exchange.request())
        sent_at[fd] = now
    return now


def _resend_overdue(
    slots: dict[int, tuple[socket.socket, Exchange]], sent_at: dict[int, float], before: float, now: float, tally: Tally
) -> None:
    """Send again every request sent before ``before`` and still unanswered (it or its reply was lost)."""
    for fd, sent in sent_at.items():
        if sent < before:
            sock, exchange = slots[fd]
            sock.send(exchange.request())
            sent_at[fd] = now
            tally.resent += 1
