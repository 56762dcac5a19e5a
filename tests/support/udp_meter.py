"""Numbered UDP datagrams through an impaired router, counted at the far end: loss, duplicates and rate.

``python -m tests.support.udp_meter send BIND TARGET COUNT PPS SIZE`` sends COUNT datagrams of SIZE bytes at
PPS, each starting with its sequence number. TARGET ``hello`` first waits (at most HELLO_WAIT) for a
datagram and sends to where it came from: a WAN sender reaching a LAN counter through the NAT's mapping.

``python -m tests.support.udp_meter count BIND IDLE [HELLO_TARGET]`` prints ``ready``, sends ``hello`` to
HELLO_TARGET every 0.2 s until data comes (when given), counts until IDLE seconds pass without a datagram (at
most FIRST_WAIT for the first), and prints one JSON object: ``unique`` sequence numbers, ``received``
datagrams, ``max_copies`` of one sequence number, and ``wire_bits_per_second`` over the arrivals (each
datagram counted as on the wire: payload + UDP, IPv4 and Ethernet headers, as tbf counts it).
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import time

SEQ_BYTES = 8
HEADER_BYTES = 8 + 20 + 14
"""UDP + IPv4 + Ethernet header bytes around each payload."""
FIRST_WAIT = 10.0
HELLO_WAIT = 10.0
RECEIVE_BUFFER = 8 << 20
"""Asked for (the kernel caps it at rmem_max): a burst must not be lost in the counter's own socket."""


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _socket(bind: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(_address(bind))
    return sock


def send(bind: str, target: str, count: int, pps: float, size: int) -> None:
    sock = _socket(bind)
    if target == "hello":
        sock.settimeout(HELLO_WAIT)
        _, peer = sock.recvfrom(2048)
    else:
        peer = _address(target)
    padding = bytes(max(0, size - SEQ_BYTES))
    start = time.monotonic()
    for seq in range(count):
        if (wait := start + seq / pps - time.monotonic()) > 0:
            time.sleep(wait)
        sock.sendto(seq.to_bytes(SEQ_BYTES, "big") + padding, peer)


def count(bind: str, idle: float, hello_target: str | None = None) -> dict[str, float]:
    sock = _socket(bind)
    print("ready", flush=True)
    copies: collections.Counter[int] = collections.Counter()
    first = last = 0.0
    wire_bytes = 0
    deadline = time.monotonic() + FIRST_WAIT
    sock.settimeout(0.2)
    while True:
        if hello_target and not copies:
            sock.sendto(b"hello", _address(hello_target))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if copies or time.monotonic() > deadline:
                break
            continue
        last = time.monotonic()
        if len(data) < SEQ_BYTES:
            continue
        if not copies:
            first = last  # the rate counts what arrives after the first datagram, over the time since it
        else:
            wire_bytes += len(data) + HEADER_BYTES
        copies[int.from_bytes(data[:SEQ_BYTES], "big")] += 1
        sock.settimeout(idle)
    return {
        "unique": len(copies),
        "received": sum(copies.values()),
        "max_copies": max(copies.values(), default=0),
        "wire_bits_per_second": wire_bytes * 8 / (last - first) if last > first else 0.0,
    }


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "send":
        send(args[0], args[1], int(args[2]), float(args[3]), int(args[4]))
    else:
        print(json.dumps(count(args[0], float(args[1]), *args[2:3])), flush=True)
