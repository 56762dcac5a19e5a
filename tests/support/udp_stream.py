"""A paced UDP stream with one-way delays, for the delay line's network-namespace tests.

``python -m tests.support.udp_stream send BIND TARGET COUNT PPS [SIZE]`` sends COUNT datagrams at PPS, each
carrying its sequence number and CLOCK_MONOTONIC send time (namespaces share the host's clock, so the
receiver can subtract). TARGET ``hello`` waits for a datagram first and sends back to its source (a WAN
sender reaching a LAN receiver through the NAT's mapping).

``python -m tests.support.udp_stream receive BIND IDLE [HELLO_TARGET]`` prints ``ready``, optionally sends
``hello`` to HELLO_TARGET (every 0.2 s until data comes), then collects until IDLE seconds pass without a
datagram (at most FIRST_WAIT for the first one) and prints one JSON line: ``[[seq, delay_seconds], ...]``
in arrival order.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

HEADER = struct.Struct("!Qd")  # sequence number, send time (CLOCK_MONOTONIC seconds)
FIRST_WAIT = 10.0
"""Seconds the receiver waits for the first datagram (the sender's interpreter starts meanwhile)."""


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def send(bind: str, target: str, count: int, pps: float, size: int = 64) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(_address(bind))
    if target == "hello":
        _, peer = sock.recvfrom(2048)
    else:
        peer = _address(target)
    padding = b"\0" * max(0, size - HEADER.size)
    start = time.monotonic()
    for seq in range(count):
        due = start + seq / pps
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        sock.sendto(HEADER.pack(seq, time.monotonic()) + padding, peer)


def receive(bind: str, idle: float, hello_target: str | None = None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(_address(bind))
    print("ready", flush=True)
    arrivals: list[tuple[int, float]] = []
    first_deadline = time.monotonic() + FIRST_WAIT
    sock.settimeout(0.2)
    while True:
        if hello_target and not arrivals:
            sock.sendto(b"hello", _address(hello_target))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if arrivals or time.monotonic() > first_deadline:
                break
            continue
        now = time.monotonic()
        if len(data) >= HEADER.size:
            seq, sent = HEADER.unpack_from(data)
            arrivals.append((seq, now - sent))
            sock.settimeout(idle)
    print(json.dumps(arrivals), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "send":
        send(args[0], args[1], int(args[2]), float(args[3]), *(int(a) for a in args[4:5]))
    else:
        receive(args[0], float(args[1]), *args[2:3])
