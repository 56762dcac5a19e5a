"""A paced UDP stream with one-way delays, for the delay line's network-namespace tests.

``python -m tests.support.udp_stream send BIND TARGET COUNT PPS [--first N]`` sends COUNT datagrams at PPS
(0: as fast as it can), each carrying its sequence number (from N) and send time. TARGET ``hello`` waits
for a datagram first and sends back to its source (a WAN sender reaching a LAN receiver through the NAT's
mapping).

``python -m tests.support.udp_stream receive BIND IDLE [--hello TARGET]`` prints ``ready``, optionally sends
``hello`` to TARGET (every 0.2 s until data comes), then collects until IDLE seconds pass without a
datagram (at most FIRST_WAIT for the first one) and prints one JSON line: ``[[seq, send_time, delay], ...]``
(seconds) in arrival order.

The namespaces share the host's clock, so the receiver can subtract. It takes the kernel's receive stamp
(SO_TIMESTAMPNS), not the time its process got round to reading: on a busy host that can be tens of
milliseconds later, and the delay measured would be the receiver's, not the path's. The kernel stamps with
the wall clock, so both ends use it (a step of the wall clock mid-run would show; the tests run seconds).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time

HEADER = struct.Struct("!Qd")  # sequence number, send time (wall clock seconds)
SO_TIMESTAMPNS = 35  # Linux (asm-generic): the socket module does not name it; its control message has the same type
TIMESPEC = struct.Struct("=qq")
FIRST_WAIT = 10.0
"""Seconds the receiver waits for the first datagram (the sender's interpreter starts meanwhile)."""
SIZE = 64
RECEIVE_BUFFER = 4 << 20


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def send(bind: str, target: str, count: int, pps: float, first: int = 0) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(_address(bind))
    if target == "hello":
        _, peer = sock.recvfrom(2048)
    else:
        peer = _address(target)
    padding = b"\0" * (SIZE - HEADER.size)
    start = time.monotonic()
    for index in range(count):
        if pps and (wait := start + index / pps - time.monotonic()) > 0:
            time.sleep(wait)
        sock.sendto(HEADER.pack(first + index, time.time()) + padding, peer)


def receive(bind: str, idle: float, hello: str | None = None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(_address(bind))
    print("ready", flush=True)
    arrivals: list[tuple[int, float, float]] = []
    first_deadline = time.monotonic() + FIRST_WAIT
    sock.settimeout(0.2)
    while True:
        if hello and not arrivals:
            sock.sendto(b"hello", _address(hello))
        try:
            data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(TIMESPEC.size))
        except TimeoutError:
            if arrivals or time.monotonic() > first_deadline:
                break
            continue
        now = _stamp(ancillary)
        if len(data) >= HEADER.size:
            seq, sent = HEADER.unpack_from(data)
            arrivals.append((seq, sent, now - sent))
            sock.settimeout(idle)
    print(json.dumps(arrivals), flush=True)


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanos = TIMESPEC.unpack_from(data)
            return float(seconds + nanos / 1e9)
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(prog="udp_stream")
    commands = parser.add_subparsers(dest="command", required=True)
    sender = commands.add_parser("send")
    sender.add_argument("bind")
    sender.add_argument("target")
    sender.add_argument("count", type=int)
    sender.add_argument("pps", type=float)
    sender.add_argument("--first", type=int, default=0)
    receiver = commands.add_parser("receive")
    receiver.add_argument("bind")
    receiver.add_argument("idle", type=float)
    receiver.add_argument("--hello")
    args = parser.parse_args()
    if args.command == "send":
        send(args.bind, args.target, args.count, args.pps, args.first)
    else:
        receive(args.bind, args.idle, args.hello)


if __name__ == "__main__":
    main()
