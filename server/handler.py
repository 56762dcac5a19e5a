"""What the signal server does with one datagram: parse it, update the peer table, return the replies.

Pure apart from logging: no sockets, no clocks (``now`` is passed in, monotonic seconds, and ``wall_ms``,
wall-clock ms since the Unix epoch, which proofs' timestamps are judged by), so every behaviour is
unit-tested without a network. One datagram goes through, in order:

1. the source's token bucket (:mod:`server.ratelimit`): over it, the datagram is dropped unparsed
   (``rate_limited``);
2. the source's amplification budget (:mod:`server.budget`), credited with the datagram's bytes: every
   reply below, in either version, is sent only while the bytes sent to that address stay within 3x the
   bytes received from it, unless the address is validated (it echoed a cookie, or it is a keyed peer's);
   a reply over the budget is dropped and counted ``amplification``;
3. the parser: a v2 frame (first byte 0xF5) goes to :mod:`server.framerequests` (cookies, keys, proofs,
   presence, stats), a text message to :mod:`server.textrequests` (the seed's exchange, for ids no key
   holds).

The text protocol, as the seed had it: ``register <id>`` (``relay=<ip:port>|-`` from a natlab text
client) stores the source address and answers ``ok``; ``connect <from_id> <to_id>`` sends each side a
punch with the other's address (the punch is the answer); ``keepalive`` is never answered. Errors are
answered for ``register`` and ``connect`` only (``err <reason>``), and for v2 requests (``Err(reason,
code)`` under the request's transaction id: 505 for another version, 400 for bad fields). Everything else
that is not a request is dropped silently and counted by kind in :attr:`Handler.counters` (the parser's
verdict, ``ProtocolError.kind``, names the kind; see :func:`drop_kind`): garbage (``empty``, ``oversize``
above protocol.MAX_DATAGRAM = 1400 bytes, ``not_utf8``, ``unknown_verb``, and v2's ``truncated`` and
``unknown_type``), valid messages meant for clients (``not_for_server``: ok, err, punch, hello,
hello-ack, msg, data, ack, and v2 replies and peer-to-peer frames), and client verbs with malformed
arguments (``malformed``). Dropping garbage silently keeps the server from being a reflector. Any text
datagram from an unkeyed peer's address, except garbage, counts as proof that it is present; a keyed
peer's presence is refreshed only by v2 frames with a valid cookie.

Limits (see :mod:`server.ratelimit` and :mod:`server.table`): a register beyond the source's id quota is
answered ``too many ids from this ip`` (``quota``; registry ids are exempt), one beyond the table's room
or the unkeyed ids' share of it ``peer table full`` (``table_full``). The trust rules' refusals are
counted too (:data:`server.refusals.TRUST_KINDS`). Every counter is in :attr:`Handler.counters`
(:data:`COUNTERS`), in the state file and in a v2 stats-report.

Log lines carry only values the parser checked (ids match ID_SYNTAX, addresses are ``Endpoint``s, reasons
come escaped from ``protocol.shorten``); the log handler (:mod:`server.logs`) escapes whatever else might
slip through, and rate-limits the lines.
"""

from __future__ import annotations

import logging

from protocol import (
    MAX_REASON,
    Connect,
    Endpoint,
    Err,
    ErrorCode,
    ErrorKind,
    Frame,
    Keepalive,
    ProtocolError,
    Register,
    encode,
    parse,
)
from server.auth import Gate
from server.budget import AmplificationBudget
from server.cookies import Cookies
from server.framerequests import FrameRequests
from server.presence import Presence
from server.ratelimit import RequestLimiter
from server.refusals import TRUST_KINDS
from server.requests import Send, answer
from server.table import PeerTable
from server.textrequests import TextRequests

log = logging.getLogger(__name__)

Reply = tuple[bytes, Endpoint]

DROP_KINDS = (
    "empty",
    "oversize",
    "not_utf8",
    "unknown_verb",
    "truncated",
    "unknown_type",
    "not_for_server",
    "malformed",
    "error",
)
"""Every kind of silently dropped datagram; ``error`` (handling raised) is counted by the I/O shell."""
LIMIT_KINDS = ("rate_limited", "quota", "table_full", "amplification")
"""What the server's limits refused, or dropped (``amplification``: a reply over the address's budget)."""
COUNTERS = DROP_KINDS + LIMIT_KINDS + TRUST_KINDS

_ANSWERED_VERBS = frozenset({"register", "connect"})
ERR_BAD_ID = "invalid id"


class Handler:
    """Turns datagrams into replies against one :class:`PeerTable`; ``requests`` (none: no limit) is the
    token bucket every datagram must pass first; ``gate`` holds the registry and the replay guard (default:
    no registry, ids first-come); ``budget`` and ``cookies`` are return routability's (defaults: fresh)."""

    def __init__(
        self,
        table: PeerTable,
        requests: RequestLimiter | None = None,
        *,
        gate: Gate | None = None,
        budget: AmplificationBudget | None = None,
        cookies: Cookies | None = None,
    ) -> None:
        self.table = table
        self.requests = requests
        self.gate = gate if gate is not None else Gate()
        self.budget = budget if budget is not None else AmplificationBudget()
        self.cookies = cookies if cookies is not None else Cookies()
        self.presence = Presence(table)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.text = TextRequests(table, self.gate, self.presence, self.counters)
        self.frames = FrameRequests(
            table, self.gate, self.presence, self.counters, cookies=self.cookies, budget=self.budget
        )

    def handle(self, data: bytes, source: Endpoint, now: float, wall_ms: int | None = None) -> list[Reply]:
        """The datagrams to send in answer to ``data`` from ``source`` (often none). ``wall_ms`` defaults to
        ``now`` in ms, for callers whose clock is wall-clock time anyway (tests, the fuzzer)."""
        if self.requests is not None and not self.requests.allow(source, now):
            self.counters["rate_limited"] += 1
            log.debug("rate limited %d bytes from %s", len(data), source)
            return []
        # After the token bucket: a datagram dropped unparsed gets no reply, so it needs no credit, and a flood
        # of them must cost one lookup, not churn every address's budget out of its bounded map.
        self.budget.received(source, len(data))
        sends = self._answer(data, source, now, round(now * 1000) if wall_ms is None else wall_ms)
        return self._send(sends)

    def expire(self, now: float) -> None:
        """Remove and log the peers whose presence expired (remembered for presence queries)."""
        self.presence.expire(now)

    def _answer(self, data: bytes, source: Endpoint, now: float, wall_ms: int) -> list[Send]:
        try:
            message = parse(data)
        except ProtocolError as exc:
            return self._reject(source, exc)
        if isinstance(message, Frame):
            return self.frames.handle(message, source, now, wall_ms)
        self.table.touch(source, now, keyed_too=False)
        match message:
            case Register(peer_id, candidates):
                return [self.text.register(peer_id, candidates, source, now)]
            case Connect(from_id, to_id):
                return self.text.connect(from_id, to_id, source, now)
            case Keepalive():
                return []
            case _:
                self.text.drop("not_for_server", source, type(message).__name__)
                return []

    def _send(self, sends: list[Send]) -> list[Reply]:
        """The datagrams of ``sends`` that their destinations' budgets allow; the rest counted and dropped."""
        replies = []
        for send in sends:
            data = encode(send.item)
            if not send.validated and not self.budget.allow(send.to, len(data)):
                shorter = encode(send.shorter) if send.shorter is not None else None
                if shorter is None or not self.budget.allow(send.to, len(shorter)):
                    self.counters["amplification"] += 1
                    log.info("amplification limit: dropped %d bytes to %s", len(data), send.to)
                    continue
                data = shorter
            replies.append((data, send.to))
        return replies

    def _reject(self, source: Endpoint, exc: ProtocolError) -> list[Send]:
        if exc.txid is not None and not exc.kind.garbage:  # v2, with a header to answer under
            return [_reject_frame(source, exc, exc.txid)]
        if exc.verb in _ANSWERED_VERBS:
            # Wrong argument counts get the seed's fixed reason; bad ids say what is wrong with them, or, when
            # that does not fit the source's budget (a first datagram of 12 bytes: 36), just "invalid id".
            log.info("%s from %s refused: %s", exc.verb, source, exc.reason)
            terse = Err(ERR_BAD_ID) if exc.kind is ErrorKind.BAD_ID else None
            return [Send(Err(exc.reason), source, shorter=terse)]
        self.text.drop(drop_kind(exc.kind), source, exc.reason)
        return []


def _reject_frame(source: Endpoint, exc: ProtocolError, txid: int) -> Send:
    """The answer to a malformed v2 request: Err 505 for another version, else 400 with the parser's reason
    (or none, 19 bytes in all, when that does not fit the source's budget)."""
    log.info("v2 %s from %s refused: %s", exc.verb or "frame", source, exc.reason)
    if exc.kind is ErrorKind.VERSION:
        return answer(Err("", ErrorCode.VERSION_NOT_SUPPORTED), source, txid)
    reason = exc.reason.encode()[:MAX_REASON].decode("utf-8", "ignore")
    terse = Frame(txid, Err("", ErrorCode.BAD_REQUEST))
    return Send(Frame(txid, Err(reason, ErrorCode.BAD_REQUEST)), source, shorter=terse)


def drop_kind(kind: ErrorKind) -> str:
    """The drop counter for a datagram the parser rejected as ``kind`` (and that gets no ``err``)."""
    # Garbage (no known verb) is counted under the parser's own word for it; a known verb's bad form is one
    # counter. Which kinds are garbage is the parser's to say (ErrorKind.garbage), not repeated here.
    return str(kind.value) if kind.garbage else "malformed"
