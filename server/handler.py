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
else that is not one of the above is dropped silently and counted by kind in :attr:`Handler.dropped`
(the parser's verdict, ``ProtocolError.kind``, names the kind; see :func:`drop_kind`):
garbage (``empty``, ``oversize`` above protocol.MAX_DATAGRAM = 1400 bytes, ``not_utf8``,
``unknown_verb``, and v2's ``truncated`` and ``unknown_type``), valid messages meant for clients
(``not_for_server``: ok, err, punch, hello, hello-ack, msg, and the extension's peer-to-peer data and ack;
v2 frames too, until the server speaks v2), and client verbs with malformed arguments or v2 frames with bad
fields or another version (``malformed``). Dropping garbage silently keeps the server from being a reflector.
Any datagram from a registered peer's address, except garbage, counts as proof that it is present.
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

ERR_PEERS = "invalid peers"
ERR_FULL = "peer table full"

_ANSWERED_VERBS = frozenset({"register", "connect"})


class Handler:
    """Turns datagrams into replies against one :class:`PeerTable`."""

    def __init__(self, table: PeerTable) -> None:
        self.table = table
        self.dropped: dict[str, int] = dict.fromkeys(DROP_KINDS, 0)

    def handle(self, data: bytes, source: Endpoint, now: float) -> list[Reply]:
        """The datagrams to send in answer to ``data`` from ``source`` (often none)."""
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
        if result.outcome is Outcome.FULL:
            log.warning("peer table full (%d): refused %s at %s", self.table.max_peers, peer_id, source)
            return [_err(ERR_FULL, source)]
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

    def _reject(self, source: Endpoint, exc: ProtocolError) -> list[Reply]:
        if exc.verb in _ANSWERED_VERBS and exc.txid is None:  # a v2 request (txid) never gets a text err
            # Wrong argument counts get the seed's fixed reason; bad ids say what is wrong with them.
            log.info("%s from %s refused: %s", exc.verb, source, exc.reason)
            return [_err(exc.reason, source)]
        self._drop(drop_kind(exc.kind), source, exc.reason)
        return []

    def _drop(self, kind: str, source: Endpoint, detail: str) -> None:
        self.dropped[kind] += 1
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
