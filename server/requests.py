"""What the text and the v2 requests share: storing a registration, introducing two peers, refusing.

Each answer is a :class:`Send` (a message or a frame, and where to), not bytes yet: the handler encodes it
and holds it to the destination's amplification budget. A peer is answered in its own version:

- a punch to a keyed (v2) peer is a frame under the connect's transaction id (0 when a text client's
  connect caused it) carrying the named peer's candidates and keys (no keys when the named peer is
  text-speaking: the recipient then talks text to it; no candidates when it is seed-era);
- a punch to a text peer is the seed's ``punch <id> <ip:port>``, with `` relay=`` only when both it and the
  named peer are natlab clients (extended), as before v2;
- a refusal is ``err <reason>`` in text, ``Err(reason, code)`` under the request's transaction id in v2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protocol import Candidates, Endpoint, Err, Frame, Keys, Message, Ok, Punch
from server.auth import Gate
from server.presence import Presence
from server.refusals import Refusal, table_refusal
from server.table import Outcome, Peer, PeerTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Send:
    """One datagram to send: ``item`` to ``to``; ``validated`` when the recipient is a peer whose address is
    validated (a keyed peer echoed a cookie from it), so the amplification budget does not apply;
    ``shorter``, what to send instead when ``item`` does not fit the budget (an error with a terser reason)."""

    item: Message | Frame
    to: Endpoint
    validated: bool = False
    shorter: Message | Frame | None = None


def answer(message: Message, to: Endpoint, txid: int | None) -> Send:
    """``message`` to ``to``: as text when the request was (``txid`` None), else in a v2 frame under ``txid``."""
    return Send(message if txid is None else Frame(txid, message), to)


class Requests:
    """The peer table, the keyed-identity rules, presence and the counters, as every request handler uses them."""

    def __init__(self, table: PeerTable, gate: Gate, presence: Presence, counters: dict[str, int]) -> None:
        self.table = table
        self.gate = gate
        self.presence = presence
        self.counters = counters

    def drop(self, kind: str, source: Endpoint, detail: str) -> None:
        """Count a datagram dropped silently as ``kind``."""
        self.counters[kind] += 1
        log.debug("dropped %s datagram from %s: %s", kind, source, detail)

    def refuse(self, refusal: Refusal, what: str, source: Endpoint, txid: int | None) -> Send:
        """Count and log ``refusal`` of request ``what`` (its verb and ids) from ``source``; the answer."""
        log.info("%s from %s refused: %s", what, source, refusal.reason)
        return self._counted(refusal, source, txid)

    def store(
        self,
        peer_id: str,
        source: Endpoint,
        now: float,
        candidates: Candidates | None,
        *,
        keys: Keys | None = None,
        txid: int | None = None,
    ) -> Send:
        """Register ``peer_id`` at ``source`` (the caller expired the table and checked that it may) and log
        it; ``ok`` or the table's refusal."""
        in_registry = self.gate.in_registry(peer_id)
        result = self.table.register(peer_id, source, now, candidates, keys=keys, in_registry=in_registry)
        if result.outcome.refused:
            return self._counted(table_refusal(result.outcome, self.table, peer_id, source), source, txid)
        if result.replaced is not None:
            log.info("%s replaced by %s at %s", result.replaced, peer_id, source)
        if result.outcome is Outcome.MOVED:
            log.info("moved %s from %s to %s", peer_id, result.previous, source)
        elif result.outcome is Outcome.NEW:
            log.info("registered %s at %s%s", peer_id, source, " (keyed)" if keys is not None else "")
        else:
            log.debug("refreshed %s at %s", peer_id, source)
        if result.relay_changed:
            relay = candidates.relay if candidates is not None else None
            log.info("%s relay %s", peer_id, relay or "none")
        return answer(Ok(), source, txid)

    def _counted(self, refusal: Refusal, source: Endpoint, txid: int | None) -> Send:
        if refusal.counter is not None:
            self.counters[refusal.counter] += 1
        return answer(Err(refusal.reason, refusal.code if txid is not None else None), source, txid)

    def pair(self, from_id: str, to_id: str, now: float) -> tuple[Peer, Peer] | None:
        """The two live peers a connect names, or ``None`` when it does not name two (``invalid peers``)."""
        first = self.table.lookup(from_id, now)
        second = self.table.lookup(to_id, now)
        if from_id == to_id or first is None or second is None:
            return None
        return first, second

    def introduce(self, first: Peer, second: Peer, txid: int | None) -> list[Send]:
        """The punches for ``connect first second`` (checked by the caller): each side gets the other."""
        log.info("connect %s -> %s (%s <-> %s)", first.id, second.id, _describe(first), _describe(second))
        return [_punch(first, second, txid or 0), _punch(second, first, txid or 0)]


def _punch(to: Peer, about: Peer, txid: int) -> Send:
    """The punch telling ``to`` about ``about``, in ``to``'s version."""
    if to.keyed:
        punch = Punch(about.id, about.addr, about.candidates)
        return Send(Frame(txid, punch, keys=about.keys), to.addr, validated=True)
    return Send(Punch(about.id, about.addr, about.candidates if to.extended else None), to.addr)


def _describe(peer: Peer) -> str:
    """A peer's address for the connect log; extended peers add their relay, so seed-era lines are unchanged."""
    return f"{peer.addr} {peer.candidates.options()}" if peer.candidates is not None else str(peer.addr)
