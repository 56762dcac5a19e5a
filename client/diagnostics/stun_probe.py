"""STUN Binding probes over UDP, many at once, each retransmitted on RFC 8489's schedule (section 6.2.1).

A :class:`Probe` is one Binding request: the socket it leaves from, where it goes, optional CHANGE-REQUEST
and RESPONSE-PORT attributes (RFC 5780 sections 7.2, 7.5), and the socket its answer is expected on (for
the hairpinning and binding-lifetime tests that is another socket). :func:`run_probes` sends them all,
resends each unanswered one at 0, rto, 3 rto, ... and returns each probe's answer, or None when none came
before its deadline. Answers match by transaction ID *and* by the socket they arrive on; anything else
(strays, garbage, answers to forgotten requests) is ignored.

This is the thin I/O layer of ``client nat-type``; the verdicts are pure (:mod:`client.diagnostics.nat_type`).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aioice import stun

from client.turn.outputs import Retransmit
from client.turn.wire import (
    CLASS_ERROR,
    CLASS_REQUEST,
    CLASS_RESPONSE,
    StunMessage,
    encode,
    new_transaction_id,
    parse_stun,
)
from protocol import Endpoint

CHANGE_IP = 0x04
CHANGE_PORT = 0x02
"""CHANGE-REQUEST flags (RFC 5780 section 7.2)."""

RESPONSE_PORT = 0x0027
"""The RESPONSE-PORT attribute (RFC 5780 section 7.5): not in aioice 0.8's table, so appended by hand."""

LAB_TIMING = Retransmit(rto=0.1, rc=4, rm=4)
"""Sends at 0, 0.1, 0.3 and 0.7 s, gives up at 1.1 s: generous on a lab network, quick to say "no answer"."""


class ProbeError(RuntimeError):
    """A probe could not be sent (no route, firewall): the message names the destination."""


@dataclass
class Probe:
    """One Binding request; ``listen`` is the socket its answer should reach (default: ``sock``)."""

    sock: socket.socket
    to: Endpoint
    change: int = 0
    response_port: int | None = None
    listen: socket.socket | None = None
    delay: float = 0.0
    """Seconds after the batch starts before the first transmission."""
    tid: bytes = field(default_factory=new_transaction_id)

    def request(self) -> bytes:
        attributes = {"CHANGE-REQUEST": self.change} if self.change else {}
        message = encode(stun.Method.BINDING, CLASS_REQUEST, attributes, self.tid)
        if self.response_port is not None:
            message = append_attribute(message, RESPONSE_PORT, struct.pack("!HH", self.response_port, 0))
        return message

    @property
    def receiver(self) -> socket.socket:
        return self.sock if self.listen is None else self.listen


@dataclass(frozen=True)
class Answer:
    """What reached the probe's ``receiver`` with its transaction ID, and where it came from."""

    message: StunMessage
    source: Endpoint

    @property
    def mapped(self) -> Endpoint | None:
        """XOR-MAPPED-ADDRESS of a success response (MAPPED-ADDRESS from RFC 3489 servers)."""
        if self.message.cls != CLASS_RESPONSE:
            return None
        return self.message.endpoint("XOR-MAPPED-ADDRESS") or self.message.endpoint("MAPPED-ADDRESS")

    @property
    def other(self) -> Endpoint | None:
        """OTHER-ADDRESS (RFC 5780), or CHANGED-ADDRESS from RFC 3489 servers."""
        return self.message.endpoint("OTHER-ADDRESS") or self.message.endpoint("CHANGED-ADDRESS")

    @property
    def error(self) -> str | None:
        """ "420 Unknown attribute ..." for an error response, else None."""
        if self.message.cls != CLASS_ERROR:
            return None
        code, phrase = self.message.error() or (0, "no ERROR-CODE")
        return f"{code} {phrase}"


def append_attribute(message: bytes, kind: int, value: bytes) -> bytes:
    """``message`` with one more attribute at the end (so no FINGERPRINT or MESSAGE-INTEGRITY before it)."""
    attribute = struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
    return message[:2] + struct.pack("!H", len(message) - 20 + len(attribute)) + message[4:] + attribute


def local_ip_towards(server: Endpoint) -> str:
    """The address this host sends from to reach ``server`` (a connected UDP socket; nothing is sent)."""
    with socket.socket(server.family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(server.sockaddr())
        except OSError as exc:
            raise ProbeError(f"no route to {server}: {exc.strerror}") from None
        return str(sock.getsockname()[0])


def udp_socket(local_ip: str) -> socket.socket:
    """A UDP socket bound to ``local_ip`` and an ephemeral port (bound to an IP, so its address is known)."""
    sock = socket.socket(socket.AF_INET6 if ":" in local_ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((local_ip, 0))
    except OSError:
        sock.close()
        raise
    return sock


def run_probes(
    probes: Sequence[Probe], timing: Retransmit = LAB_TIMING, clock: Callable[[], float] = time.monotonic
) -> list[Answer | None]:
    """Send every probe (resending each until answered or ``timing.give_up`` after its first send);
    return the answers in the probes' order, None for a probe never answered."""
    start = clock()
    answers: list[Answer | None] = [None] * len(probes)
    data = [probe.request() for probe in probes]
    schedule = [[start + probe.delay + offset for offset in timing.offsets()] for probe in probes]
    deadlines = [start + probe.delay + timing.give_up for probe in probes]
    by_tid = {probe.tid: index for index, probe in enumerate(probes)}
    pending = set(range(len(probes)))
    sockets = list({id(probe.receiver): probe.receiver for probe in probes}.values())
    while pending:
        now = clock()
        for index in sorted(pending):
            probe = probes[index]
            while schedule[index] and schedule[index][0] <= now:
                schedule[index].pop(0)
                try:
                    probe.sock.sendto(data[index], probe.to.sockaddr())
                except OSError as exc:
                    raise ProbeError(f"cannot send a STUN request to {probe.to}: {exc.strerror}") from None
            if now >= deadlines[index]:
                pending.discard(index)
        if not pending:
            break
        wake = min(schedule[index][0] if schedule[index] else deadlines[index] for index in pending)
        readable, _, _ = select.select(sockets, [], [], max(0.0, wake - clock()))
        for sock in readable:
            try:
                datagram, source = sock.recvfrom(4096)
            except OSError:
                continue  # an ICMP error reported on the socket: the probe's deadline decides
            try:
                message = parse_stun(datagram)
            except ValueError:
                continue
            index = by_tid.get(message.tid, -1)
            if index in pending and probes[index].receiver is sock:
                answers[index] = Answer(message, Endpoint.of(source))
                pending.discard(index)
    return answers
