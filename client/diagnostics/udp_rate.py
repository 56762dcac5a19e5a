"""Raw UDP between two hosts, the ceiling for the agent's data path: ``client udp-rate send|recv``.

Both ends use the same fixed port (``--port``) and name each other by the address the other's router shows
the WAN. Through port-preserving NATs (the lab's cone routers) that makes it a hole punch: each side sends
:data:`PROBE` datagrams until it hears the other's, which opens its own router for exactly that remote
endpoint; then the sender sends ``count`` datagrams of ``size`` bytes as fast as one Python socket can,
and the receiver counts them from the first to the last (no acks, no pacing: losses show as received <
sent). A symmetric NAT maps the port elsewhere, so there the probes time out: relayed paths are compared
with coturn's own ``turnutils_uclient`` instead.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from protocol import Endpoint

PROBE = b"natlab udp-rate probe"
PROBE_INTERVAL = 0.05
"""Seconds between probes while the other side is not heard yet."""
BUFFER = 4 << 20
"""Receive buffer asked for (capped by net.core.rmem_max): a burst must not overflow it before we read."""


class PunchTimeout(RuntimeError):
    """The other side was not heard within the time allowed."""


def _open(port: int, peer: Endpoint) -> socket.socket:
    sock = socket.socket(peer.family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    sock.bind(("::" if peer.family == socket.AF_INET6 else "0.0.0.0", port))
    return sock


def _punch(sock: socket.socket, peer: Endpoint, timeout: float) -> None:
    """Probe ``peer`` until one of its probes arrives from it (or :class:`PunchTimeout`)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.sendto(PROBE, peer.sockaddr())
        sock.settimeout(min(PROBE_INTERVAL, left))
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        if data == PROBE and Endpoint.of(addr) == peer:
            sock.sendto(PROBE, peer.sockaddr())  # it may not have heard ours yet
            return
    raise PunchTimeout(f"no probe from {peer} within {timeout:g} s")


def send(peer: Endpoint, port: int, count: int, size: int, timeout: float) -> dict[str, Any]:
    """Punch to ``peer``, then send ``count`` datagrams of ``size`` bytes; the send rate."""
    with _open(port, peer) as sock:
        _punch(sock, peer, timeout)
        sock.settimeout(None)  # blocking: a full send buffer paces us instead of dropping
        payload, to = b"x" * size, peer.sockaddr()
        started = time.perf_counter()
        for _ in range(count):
            sock.sendto(payload, to)
        seconds = max(time.perf_counter() - started, 1e-9)
    return {"sent": count, "seconds": round(seconds, 3), "per_s": round(count / seconds, 1)}


def receive(peer: Endpoint, port: int, count: int, size: int, timeout: float, *, idle: float = 1.0) -> dict[str, Any]:
    """Punch to ``peer``, then count its datagrams until ``count`` or ``idle`` seconds of silence; the
    receive rate (first to last datagram)."""
    with _open(port, peer) as sock:
        _punch(sock, peer, timeout)
        sock.settimeout(timeout)  # for the first datagram; then ``idle``
        received, first, last = 0, 0.0, 0.0
        while received < count:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if data == PROBE:
                continue  # the sender's answer to our probes, or a late one of its own
            last = time.perf_counter()
            if not received:
                first = last
                sock.settimeout(idle)
            received += 1
    seconds = max(last - first, 1e-9)
    return {
        "received": received,
        "seconds": round(seconds, 3),
        "per_s": round(received / seconds, 1) if received > 1 else 0.0,
        "mb_per_s": round(received * size / seconds / 1e6, 3) if received > 1 else 0.0,
    }
