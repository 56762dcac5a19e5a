"""What the signal server does with one datagram: parse it, update the peer table, return the replies.

Pure apart from logging: no sockets, no clocks (``now`` is passed in, monotonic seconds), so every
behaviour is unit-tested without a network. The protocol, as the server sees it:

- ``register <id>``: store the source address, reply ``ok``. A natlab-extended client adds
  ``relay=<ip:port>|-`` (its TURN relayed address) and re-registers whenever that changes.
- ``connect <from_id> <to_id>``: send ``punch <to_id> <addr>`` to from_id and ``punch <from_id> <addr>``
  to to_id, each address as the server saw it; no ``ok`` (the punch is the answer). Anyone may introduce
  any two registered peers, as in the seed: this is a lab, not an authenticated service.
  A punch gains `` relay=<ip:port>|-`` only when both its recipient and the peer it names are extended:
  a seed-era client drops a punch with extra arguments, and an extended client takes a plain punch to
  mean that the peer is seed-era (so it must use ``msg``, not ``data``/``ack``).
- ``keepalive``: no reply; refreshes the peer registered at the source address.

Only ``register`` and ``connect`` errors are answered (``err <reason>``, the seed's reasons). Everything
else that is not one of the above is dropped silently and counted by kind in :attr:`Handler.counters`
(the parser's verdict, ``ProtocolError.kind``, names the kind; see :func:`drop_kind`):
garbage (``empty``, ``oversize`` above protocol.MAX_DATAGRAM = 1400 bytes, ``not_utf8``,
``unknown_verb``, and v2's ``truncated`` and ``unknown_type``), valid messages meant for clients
(``not_for_server``: ok, err, punch, hello, hello-ack, msg, and the extension's peer-to-peer data and ack;
v2 frames too, until the server speaks v2), and client verbs with malformed arguments or v2 frames with bad
fields or another version (``malformed``). Dropping garbage silently keeps the server from being a reflector.
Any datagram from a registered peer's address, except garbage, counts as proof that it is present.

Limits (see :mod:`server.ratelimit` and :mod:`server.table`): a datagram over its source's token bucket is
dropped before it is even parsed (``rate_limited``); a register beyond the source's id quota is answered
``err too many ids from this ip`` (``quota``), one beyond the table's room or the unkeyed ids' share of it
``err peer table full`` (``table_full``). Every counter is in :attr:`Handler.counters` (:data:`COUNTERS`).

Log lines carry only values the parser checked (ids match ID_SYNTAX, addresses are ``Endpoint``s, reasons
come escaped from ``protocol.shorten``); the log handler (:mod:`server.logs`) escapes whatever else might
slip through, and rate-limits the lines.
"""

from __future__ import annotations

import logging

from protocol import (
    Candidates,
    Connect,
    Endpoint,
    Err,
    ErrorKind,
    Keepalive,
    Ok,
    ProtocolError,
    Punch,
    Register,
    encode,
    parse,
)
from server.ratelimit import RequestLimiter
from server.table import Outcome, Peer, PeerTable

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
"""What the server's limits refused; ``amplification`` (a reply over the address's budget) is for v2."""
COUNTERS = DROP_KINDS + LIMIT_KINDS

ERR_PEERS = "invalid peers"
ERR_FULL = "peer table full"
ERR_QUOTA = "too many ids from this ip"

_ANSWERED_VERBS = frozenset({"register", "connect"})


class Handler:
    """Turns datagrams into replies against one :class:`PeerTable`; ``requests`` (none: no limit) is the
    token bucket every datagram must pass first."""

    def __init__(self, table: PeerTable, requests: RequestLimiter | None = None) -> None:
        self.table = table
        self.requests = requests
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    def handle(self, data: bytes, source: Endpoint, now: float) -> list[Reply]:
        """The datagrams to send in answer to ``data`` from ``source`` (often none)."""
        if self.requests is not None and not self.requests.allow(source, now):
            self.counters["rate_limited"] += 1
            log.debug("rate limited %d bytes from %s", len(data), source)
            return []
        try:
            message = parse(data)
        except ProtocolError as exc:
            return self._reject(source, exc)
        self.table.touch(source, now)
        match message:
            case Register(peer_id, candidates):
                return self._register(peer_id, candidates, source, now)
            case Connect(from_id, to_id):
                return self._connect(from_id, to_id, source, now)
            case Keepalive():
                return []
            case _:
                self._drop("not_for_server", source, type(message).__name__)
                return []

    def expire(self, now: float) -> None:
        """Remove and log the peers whose presence expired."""
        for peer in self.table.expire(now):
            log.info("expired %s at %s (not seen for %.0f s)", peer.id, peer.addr, now - peer.last_seen)

    def _register(self, peer_id: str, candidates: Candidates | None, source: Endpoint, now: float) -> list[Reply]:
        self.expire(now)  # make room first, so a full table holds only live peers
        result = self.table.register(peer_id, source, now, candidates)
        if result.outcome.refused:
            return [self._refuse(result.outcome, peer_id, source)]
        if result.replaced is not None:
            log.info("%s replaced by %s at %s", result.replaced, peer_id, source)
        if result.outcome is Outcome.MOVED:
            log.info("moved %s from %s to %s", peer_id, result.previous, source)
        elif result.outcome is Outcome.NEW:
            log.info("registered %s at %s", peer_id, source)
        else:
            log.debug("refreshed %s at %s", peer_id, source)
        if result.relay_changed:
            relay = candidates.relay if candidates is not None else None
            log.info("%s relay %s", peer_id, relay or "none")
        return [(encode(Ok()), source)]

    def _connect(self, from_id: str, to_id: str, source: Endpoint, now: float) -> list[Reply]:
        first = self.table.lookup(from_id, now)
        second = self.table.lookup(to_id, now)
        if from_id == to_id or first is None or second is None:
            log.info("connect %s -> %s from %s refused: %s", from_id, to_id, source, ERR_PEERS)
            return [_err(ERR_PEERS, source)]
        log.info("connect %s -> %s (%s <-> %s)", from_id, to_id, _describe(first), _describe(second))
        return [_punch(to=first, about=second), _punch(to=second, about=first)]

    def _refuse(self, outcome: Outcome, peer_id: str, source: Endpoint) -> Reply:
        """The ``err`` for a register the table refused, counted and logged."""
        table = self.table
        if outcome is Outcome.QUOTA:
            self.counters["quota"] += 1
            log.warning("ids per ip quota (%d) reached: refused %s at %s", table.ids_per_ip, peer_id, source)
            return _err(ERR_QUOTA, source)
        self.counters["table_full"] += 1
        if outcome is Outcome.UNKEYED_FULL:
            limit = f"for unkeyed ids ({table.max_unkeyed} of {table.max_peers})"
            log.warning("peer table full %s: refused %s at %s", limit, peer_id, source)
        else:
            log.warning("peer table full (%d): refused %s at %s", table.max_peers, peer_id, source)
        return _err(ERR_FULL, source)

    def _reject(self, source: Endpoint, exc: ProtocolError) -> list[Reply]:
        if exc.verb in _ANSWERED_VERBS and exc.txid is None:  # a v2 request (txid) never gets a text err
            # Wrong argument counts get the seed's fixed reason; bad ids say what is wrong with them.
            log.info("%s from %s refused: %s", exc.verb, source, exc.reason)
            return [_err(exc.reason, source)]
        self._drop(drop_kind(exc.kind), source, exc.reason)
        return []

    def _drop(self, kind: str, source: Endpoint, detail: str) -> None:
        self.counters[kind] += 1
        log.debug("dropped %s datagram from %s: %s", kind, source, detail)


def _punch(to: Peer, about: Peer) -> Reply:
    """The punch telling ``to`` about ``about``: with ``about``'s candidates only if both are extended."""
    candidates = about.candidates if to.extended else None
    return (encode(Punch(about.id, about.addr, candidates)), to.addr)


def _describe(peer: Peer) -> str:
    """A peer's address for the connect log; extended peers add their relay, so seed-era lines are unchanged."""
    return f"{peer.addr} {peer.candidates.options()}" if peer.candidates is not None else str(peer.addr)


def _err(reason: str, to: Endpoint) -> Reply:
    return (encode(Err(reason)), to)


def drop_kind(kind: ErrorKind) -> str:
    """The drop counter for a datagram the parser rejected as ``kind`` (and that gets no ``err``)."""
    # Garbage (no known verb) is counted under the parser's own word for it; a known verb's bad form is one
    # counter. Which kinds are garbage is the parser's to say (ErrorKind.garbage), not repeated here.
    return str(kind.value) if kind.garbage else "malformed"
