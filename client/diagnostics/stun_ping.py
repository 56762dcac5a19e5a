"""`client stun-ping`: STUN Binding exchanges (RFC 8489) from one socket, each retried until answered.

Used as coturn's readiness check in the lab (it answers its first Binding 60-90 ms after start, and a
request sent before that is simply lost, so the request is repeated rather than awaited once), and by
users to learn their server-reflexive address.

Like ``ping -c N -i S``, it can make ``count`` exchanges from ONE socket, one every ``interval`` seconds: the
same local port, so the same NAT mapping, is used all along, and the mapped address of every reply shows
whether the NAT kept it. The pause between exchanges is the point of the command (traffic on a mapping at
a chosen rate, e.g. to keep it alive while an idle one expires), not a wait for a condition. Exchanges start
on a fixed schedule, ``interval`` apart from the first (one that needed retransmissions delays only itself),
so ``count`` exchanges span ``(count - 1) * interval`` seconds. The pause is spent in the socket's receive
timeout, the same timing the retransmissions use, draining late answers to the previous exchange's
retransmitted requests.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from client.turn.wire import binding_request, parse_binding_response
from protocol import Endpoint

RETRY_INTERVAL = 0.1
"""Seconds between Binding requests while the server stays silent."""


class StunTimeout(TimeoutError):
    """The server never answered within the deadline."""


@dataclass(frozen=True)
class Reply:
    """One answered exchange: our socket's address, the address the server saw, and the round trip."""

    local: Endpoint
    mapped: Endpoint
    rtt_ms: float
    """From the exchange's first request to its answer (retransmissions included)."""


def check_schedule(count: int, interval: float) -> None:
    """``ValueError`` naming the option unless ``count`` >= 1 and ``interval`` is a finite number >= 0."""
    if count < 1:
        raise ValueError(f"--count {count}: expected at least 1 exchange")
    if not (math.isfinite(interval) and interval >= 0):
        raise ValueError(f"--interval {interval:g}: expected a number of seconds >= 0")


def stun_ping(server: Endpoint, wait: float) -> Endpoint:
    """Our address as ``server`` sees it; :class:`StunTimeout` if it does not answer within ``wait`` s."""
    [reply] = stun_pings(server, count=1, interval=0.0, wait=wait)
    return reply.mapped


def stun_pings(server: Endpoint, count: int, interval: float, wait: float) -> Iterator[Reply]:
    """``count`` exchanges with ``server`` from one socket, started ``interval`` s apart, each as it is answered.

    :class:`StunTimeout` when an exchange is not answered within ``wait`` s; ``ValueError`` for a bad schedule.
    """
    check_schedule(count, interval)
    with socket.socket(server.family, socket.SOCK_DGRAM) as sock:
        sock.connect(server.sockaddr())  # only the server's answers reach us, and ICMP errors are reported
        local = Endpoint.of(sock.getsockname())
        start = time.monotonic()
        for n in range(count):
            _pause_until(sock, start + n * interval)
            began = time.monotonic()
            mapped = _exchange(sock, server, wait)
            yield Reply(local, mapped, round((time.monotonic() - began) * 1000, 1))


def summary(server: Endpoint, replies: Sequence[Reply]) -> dict[str, Any]:
    """The JSON `client stun-ping --json` prints: the server, our local address, and each reply."""
    return {
        "server": str(server),
        "local": str(replies[0].local),
        "replies": [{"mapped": str(reply.mapped), "rtt_ms": reply.rtt_ms} for reply in replies],
    }


def _exchange(sock: socket.socket, server: Endpoint, wait: float) -> Endpoint:
    """One Binding exchange on ``sock``: the request repeated every RETRY_INTERVAL until answered or ``wait``."""
    deadline = time.monotonic() + wait
    request = binding_request()
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(RETRY_INTERVAL, left))
        try:
            sock.send(request.data)
            data = sock.recv(2048)
            return parse_binding_response(data, request.tid)
        except TimeoutError:
            continue
        except ValueError:
            continue  # not our answer (or garbage): keep asking until the deadline
        except ConnectionRefusedError:
            # ICMP port unreachable: nothing listens yet; wait out the interval before asking again.
            time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))
    raise StunTimeout(f"no STUN Binding response from {server} within {wait:g} s")


def _pause_until(sock: socket.socket, until: float) -> None:
    """The interval between exchanges: receive (and drop) until ``until``; late duplicate answers land here."""
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            sock.recv(2048)
        except (TimeoutError, ConnectionRefusedError):
            continue  # the timeout ends the loop; an ICMP error is reported once, then we wait on
