"""The seed's text client, datagram for datagram: what a seed-era peer sends natlab, and how it reacts.

A translation of the seed's Go client (its blog post's ``main``, ``handlePunchCmd`` and
``handleUserInput``), goroutines as threads, so that natlab is tested against the exchange the seed
really makes, not natlab's idea of it:

- at start ``register <id>`` to the server; ``keepalive`` to the server every 10 s;
- a typed ``/connect <peer>`` sends ``connect <id> <peer>``; any other line goes to every known peer as
  ``msg <id> <the line's words joined by single spaces>``;
- ``punch <peer> <ip:port>`` (exactly two arguments, else ignored; a peer already known is ignored):
  the bare word ``hello`` to that address every 100 ms for 3 s, then ``keepalive`` to it every 10 s;
- received datagrams are read 1024 bytes at a time and split into words (Go's ``strings.Fields``):
  ``msg <peer> <words>`` prints ``[peer <peer>] <words>``; ``hello``, ``keepalive`` and ``ok`` are
  ignored; ``err`` is shown; anything else prints ``[client] unknown command <word>``.

Two departures, neither on the wire: the blog's handler table names the chat verb ``message`` while its
clients send (and its demo shows them printing) ``msg``, so ``msg`` is what is printed; and an empty or
incomplete typed line, which panics the Go client, is ignored. Nothing here imports natlab: the seed
client knows nothing of it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

READ_SIZE = 1024
"""The seed's receive buffer: a longer datagram is cut to this many bytes."""

Address = tuple[str, int]
Report = Callable[[dict[str, Any]], None]
"""Where the client reports what happens: one event (a dict with ``event``) at a time."""


@dataclass(frozen=True)
class Timing:
    """The seed's constants (``punchDuration``, ``punchInterval``, the 10 s keepalive), in seconds."""

    punch_duration: float = 3.0
    punch_interval: float = 0.1
    keepalive: float = 10.0


def parse_address(text: str) -> Address | None:
    """``ip:port`` (IPv6 in brackets) as Go's ResolveUDPAddr reads a literal; None if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


class SeedClient:
    """One seed-era client on one UDP socket. ``start()``, then ``command(line)`` per typed line."""

    def __init__(self, identity: str, server: Address, report: Report, timing: Timing | None = None) -> None:
        self.identity = identity
        self.server = server
        self.report = report
        self.timing = timing or Timing()
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("", 0))
        self.peers: dict[str, Address] = {}
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    @property
    def local(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen, register, and keep the server's mapping alive (the seed's background keepalive)."""
        self.report({"event": "listening", "local": f"{self.local[0]}:{self.local[1]}"})
        threading.Thread(target=self._read_forever, daemon=True).start()
        self.send(f"register {self.identity}", self.server)
        threading.Thread(target=self._keepalive_forever, args=(self.server,), daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()

    def send(self, text: str, to: Address) -> None:
        """Send as the seed does: a failed send (or one racing ``close``) is not its caller's problem."""
        if self.stopped.is_set():
            return
        try:
            self.sock.sendto(text.encode(), to)
        except OSError as exc:  # the seed ignores WriteToUDP's error; we at least say so
            self.report({"event": "send_failed", "to": f"{to[0]}:{to[1]}", "text": text, "error": str(exc)})
            return
        self.report({"event": "sent", "to": f"{to[0]}:{to[1]}", "text": text})

    # -- what the user types ---------------------------------------------------------------------------

    def command(self, line: str) -> None:
        args = line.split()
        if not args:
            return
        if args[0] == "/connect":
            if len(args) > 1:
                self.send(f"connect {self.identity} {args[1]}", self.server)
            return
        text = "msg " + self.identity + " " + " ".join(args)
        with self._lock:
            peers = list(self.peers.values())
        for peer in peers:
            self.send(text, peer)

    # -- what arrives ----------------------------------------------------------------------------------

    def _read_forever(self) -> None:
        while not self.stopped.is_set():
            try:
                data, addr = self.sock.recvfrom(READ_SIZE)
            except OSError:
                return  # closed
            self.on_datagram(data, (str(addr[0]), int(addr[1])))

    def on_datagram(self, data: bytes, source: Address) -> None:
        args = data.decode("utf-8", "replace").split()
        self.report({"event": "received", "from": f"{source[0]}:{source[1]}", "text": " ".join(args)})
        if not args:
            return
        verb, rest = args[0], args[1:]
        if verb == "punch":
            self._on_punch(rest)
        elif verb == "msg":
            if rest:
                self.report({"event": "message", "peer": rest[0], "text": " ".join(rest[1:])})
        elif verb == "err":
            self.report({"event": "error", "reason": " ".join(rest)})
        elif verb not in ("hello", "keepalive", "ok"):
            self.report({"event": "unknown", "command": verb})

    def _on_punch(self, args: list[str]) -> None:
        if len(args) != 2:
            return
        peer_id, addr_text = args
        addr = parse_address(addr_text)
        with self._lock:
            if peer_id in self.peers or addr is None:
                return
            self.peers[peer_id] = addr
        threading.Thread(target=self._punch, args=(peer_id, addr_text, addr), daemon=True).start()

    def _punch(self, peer_id: str, addr_text: str, addr: Address) -> None:
        self.report({"event": "punching", "peer": peer_id, "addr": addr_text})
        for _ in range(round(self.timing.punch_duration / self.timing.punch_interval)):
            self.send("hello", addr)
            if self.stopped.wait(self.timing.punch_interval):  # the seed's time.Sleep(punchInterval)
                return
        self._keepalive_forever(addr)

    def _keepalive_forever(self, to: Address) -> None:
        while not self.stopped.wait(self.timing.keepalive):
            self.send("keepalive", to)
