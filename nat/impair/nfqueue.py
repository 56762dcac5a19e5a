"""nfnetlink_queue, the kernel's packet queue to userspace (``iptables -j NFQUEUE``), over a plain socket.

Debian has libnetfilter_queue but no Python binding, so the few messages the delay line needs are encoded
and decoded here with ``struct``: bind a queue (copy mode META: only the packet's id and hook come up, never
its bytes), set the queue's length, receive packet notices, send verdicts. The functions are pure (bytes in,
bytes or dataclasses out) and tested byte for byte; :class:`QueueSocket` is the thin shell that owns the
``AF_NETLINK`` socket.

Netlink headers are in the host's byte order, the nfnetlink_queue structures inside them in network order
(``include/uapi/linux/netfilter/nfnetlink_queue.h``).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33  # Linux (asm-generic); the socket module names neither
SO_TIMESTAMP = 29

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_TIMESTAMP = 4
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid: host order
_NLATTR = struct.Struct("=HH")  # len, type: host order
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (the queue number): network order
_PACKET_HDR = struct.Struct("!IHB")  # packet_id, hw_protocol, hook
_TIMESTAMP = struct.Struct("!QQ")  # seconds, microseconds (CLOCK_REALTIME)
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

VERDICTS_PER_SEND = 256
"""Verdict messages joined into one ``send`` (40 bytes each): one system call for a burst of releases."""

RECEIVE_BUFFER = 8 << 20
"""The socket's receive buffer: packet notices queue here while the delay line's thread is busy; when it
overflows the kernel drops the packet (``/proc/net/netfilter/nfnetlink_queue`` counts it)."""


class NfqueueError(OSError):
    """The kernel refused a request, or sent something this module cannot read."""


@dataclass(frozen=True)
class Packet:
    """A packet the kernel holds until it gets a verdict for ``packet_id`` on ``queue``."""

    queue: int
    packet_id: int
    hook: int
    timestamp: float | None = None
    """When the interface received it (CLOCK_REALTIME seconds), if the kernel stamped it: it does once any
    socket asks for timestamps, as :class:`QueueSocket` does."""


@dataclass(frozen=True)
class Ack:
    """The kernel's answer to request ``seq``: ``error`` 0 (done) or a positive errno."""

    seq: int
    error: int


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _message(msg_type: int, flags: int, seq: int, queue: int, attributes: bytes) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attributes
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def encode_bind(queue: int, seq: int) -> bytes:
    """Bind ``queue`` to this socket (the kernel answers EBUSY when another socket holds it)."""
    command = struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC)
    return _message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, _attribute(NFQA_CFG_CMD, command))


def encode_unbind(queue: int, seq: int) -> bytes:
    """Let ``queue`` go: the kernel drops whatever it still holds for it."""
    command = struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_UNSPEC)
    return _message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, _attribute(NFQA_CFG_CMD, command))


def encode_params(queue: int, max_length: int, seq: int) -> bytes:
    """Copy mode META (no payload copied) and the queue's length: packets beyond it are dropped."""
    params = _attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = _attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", max_length))
    return _message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, params + maxlen)


def encode_verdict(queue: int, packet_id: int, verdict: int, seq: int) -> bytes:
    """``NF_ACCEPT`` or ``NF_DROP`` for one held packet. No ACK asked: the kernel answers only on error."""
    header = _attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
    return _message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, queue, header)


def _attributes(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            raise NfqueueError(errno.EPROTO, f"netlink attribute of length {length} overruns its message")
        yield kind & _NLA_TYPE_MASK, data[offset + _NLATTR.size : offset + length]
        offset += _align(length)


def _packet(data: bytes, offset: int, end: int) -> Packet:
    if end - offset < _NFGENMSG.size:
        raise NfqueueError(errno.EPROTO, "nfnetlink_queue packet message without its nfgenmsg header")
    _family, _version, queue = _NFGENMSG.unpack_from(data, offset)
    header: tuple[int, int, int] | None = None
    timestamp = None
    for kind, payload in _attributes(data, offset + _NFGENMSG.size, end):
        if kind == NFQA_PACKET_HDR and len(payload) >= _PACKET_HDR.size:
            header = _PACKET_HDR.unpack_from(payload)
        elif kind == NFQA_TIMESTAMP and len(payload) >= _TIMESTAMP.size:
            seconds, micros = _TIMESTAMP.unpack_from(payload)
            timestamp = seconds + micros / 1e6
    if header is None:
        raise NfqueueError(errno.EPROTO, "nfnetlink_queue packet message without NFQA_PACKET_HDR")
    packet_id, _protocol, hook = header
    return Packet(queue, packet_id, hook, timestamp)


def decode(data: bytes) -> Iterator[Packet | Ack]:
    """The messages in one datagram from the kernel: packet notices and answers to requests (anything else,
    such as a message of another nfnetlink subsystem, is skipped)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _portid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NfqueueError(errno.EPROTO, f"netlink message of length {length} in a datagram of {len(data)}")
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, body)
            yield Ack(seq, -error)
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            yield _packet(data, body, offset + length)
        offset += _align(length)


class QueueSocket:
    """One netlink socket that holds every queue the delay line binds; non-blocking once bound."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._seq = 0
        self._pending: list[Packet | Ack] = []
        try:
            self._sock.bind((0, 0))
            try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN, which a router has
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            # An overflow then costs the packets it drops, not an ENOBUFS that would end the receive loop.
            self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            # The kernel stamps received packets once a socket asks, and reports the stamp with each packet: the
            # delay line times a packet from its arrival, not from when a busy thread got round to reading it.
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _request(self, messages: list[tuple[int, bytes]], what: str) -> None:
        """Send ``(seq, message)`` requests in one datagram and wait (blocking, briefly) for every answer.
        Packet notices that arrive meanwhile are kept for :meth:`receive`: each holds a packet."""
        waiting = {seq for seq, _ in messages}
        self._sock.settimeout(2.0)
        try:
            self._sock.send(b"".join(message for _, message in messages))
            while waiting:
                for message in decode(self._sock.recv(65536)):
                    if isinstance(message, Ack) and message.seq in waiting:
                        waiting.discard(message.seq)
                        if message.error:
                            raise NfqueueError(message.error, f"{what}: {os.strerror(message.error)}")
                    else:
                        self._pending.append(message)
        except TimeoutError:
            raise NfqueueError(errno.ETIMEDOUT, f"{what}: no answer from the kernel") from None
        finally:
            self._sock.setblocking(False)

    def bind_queue(self, queue: int, max_length: int) -> None:
        """Take ``queue`` (META copy mode, at most ``max_length`` packets held). Both settings go in the bind's
        datagram: until the copy mode is set the kernel drops what it would queue."""
        bind, params = self._next_seq(), self._next_seq()
        messages = [(bind, encode_bind(queue, bind)), (params, encode_params(queue, max_length, params))]
        self._request(messages, f"binding nfqueue {queue}")

    def set_max_length(self, queue: int, max_length: int) -> None:
        """A new queue length, not waited for: a refusal comes back later as an :class:`Ack` from ``receive``."""
        seq = self._next_seq()
        self._send(encode_params(queue, max_length, seq))

    def unbind_queue(self, queue: int) -> None:
        seq = self._next_seq()
        self._request([(seq, encode_unbind(queue, seq))], f"unbinding nfqueue {queue}")

    def receive(self, limit: int) -> list[Packet | Ack]:
        """What the kernel has sent, up to ``limit`` datagrams (one packet notice each), without blocking."""
        messages, self._pending = self._pending, []
        for _ in range(limit):
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            messages.extend(decode(data))
        return messages

    def send_verdicts(self, verdicts: Iterable[tuple[int, int, int]]) -> None:
        """``(queue, packet_id, verdict)`` for each, :data:`VERDICTS_PER_SEND` to a system call."""
        batch: list[bytes] = []
        for queue, packet_id, verdict in verdicts:
            batch.append(encode_verdict(queue, packet_id, verdict, self._next_seq()))
            if len(batch) == VERDICTS_PER_SEND:
                self._send(b"".join(batch))
                batch.clear()
        if batch:
            self._send(b"".join(batch))

    def _send(self, data: bytes) -> None:
        # The kernel takes a netlink send whole or not at all; a full send buffer is rare and short-lived.
        self._sock.setblocking(True)
        try:
            self._sock.send(data)
        finally:
            self._sock.setblocking(False)

    def close(self) -> None:
        self._sock.close()


def parse_proc_queues(text: str) -> dict[int, int]:
    """Packets the kernel dropped per queue before userspace saw them, from
    ``/proc/net/netfilter/nfnetlink_queue``: the queue at its length (column 6) plus notices our socket's
    buffer had no room for (column 7). Columns: queue, portid, held, copy mode, copy range, queue dropped,
    user dropped, last id, 1."""
    dropped: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 7 and all(field.isdigit() for field in fields[:7]):
            dropped[int(fields[0])] = int(fields[5]) + int(fields[6])
    return dropped
