"""The agent's one UDP socket on the event loop, read in batches.

asyncio's datagram transport reads one datagram per readiness event, so a flood costs an ``epoll`` round and
a loop iteration per datagram. Here a readable socket is drained (up to :data:`BATCH` datagrams) in one
callback, and ``on_batch`` runs once after it: the agent re-arms its timer and wakes its waiters once per
batch, not per datagram. Sends go straight to the socket; a datagram the kernel will not take now (a full
send buffer) is dropped, as the network may drop it anyway: guaranteed delivery retransmits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("client")

BATCH = 256
"""Most datagrams read in one callback: a flood's whole window, while other callbacks (the control socket,
timers) still get their turn."""
BUFFER = 4 << 20
"""Socket buffers asked for (the kernel caps them at net.core.[rw]mem_max): a burst of a window of
1,000-byte messages is more than Linux's default receive buffer holds."""


class DatagramSocket:
    """A bound, non-blocking UDP socket that hands each datagram to ``on_datagram`` and each batch's end to
    ``on_batch``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        bind: tuple[str, int],
        on_datagram: Callable[[bytes, Any], None],
        on_batch: Callable[[], None],
    ) -> None:
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind(bind)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self._sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
        self._loop = loop
        self._on_datagram = on_datagram
        self._on_batch = on_batch
        self.closed = False
        self.dropped = 0
        """Datagrams the kernel would not take (full send buffer)."""
        loop.add_reader(self._sock.fileno(), self._readable)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def sendto(self, data: bytes, addr: Any) -> None:
        if self.closed:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            # An unreachable peer must not stop the socket serving the others.
            logger.debug("cannot send to %s: %s", addr, exc)

    def _readable(self) -> None:
        recvfrom, handle = self._sock.recvfrom, self._on_datagram
        try:
            for _ in range(BATCH):
                try:
                    data, addr = recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # an ICMP error for an earlier send: not about this socket
                    logger.debug("socket error: %s", exc)
                    continue
                handle(data, addr)
        finally:
            self._on_batch()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
