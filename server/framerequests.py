"""Protocol v2 requests (PROTOCOL.md): cookies first, then keys and proofs, then what the request asks.

Every request (register, connect, keepalive, presence-query, stats-query) must echo a valid cookie
(:mod:`server.cookies`: made for its source ip and port, good for 60 to 120 s). One that does not is not
processed: it gets ``Retry(cookie)`` under its transaction id (counted ``retry``), and the client sends it
again with that cookie (and a new proof). A valid cookie validates the source address
(:mod:`server.budget`: from then on it is sent what it asks for, not 3x what it sent) and refreshes the
presence of the peer registered there. Then:

- register: must carry the id's keys and a fresh proof by them (:mod:`server.auth`: the registry's keys,
  or the key the id is bound to, or, for a free id not in the registry, any key, which it is then bound
  to); answered ``Ok`` or ``Err``. A keyed peer whose address changed (a NAT rebinding) simply registers
  again from the new address (a Retry first: the cookie is bound to the address).
- connect: only from the address registered for from_id, and with a fresh proof by from_id's key when it is
  keyed; answered by the two punches (under the connect's transaction id), or ``Err``.
- presence-query: only from an authenticated peer (from_id registered keyed at the source address, a fresh
  proof by its key); answered ``PresenceReport`` (:mod:`server.presence`), or ``Err 403``.
- stats-query: ``StatsReport`` with every counter, to any address that echoed a valid cookie.
- keepalive: no answer (a proof is not needed, and not checked: the cookie shows the address).

A frame of another type (a reply, a peer-to-peer frame) is dropped silently (``not_for_server``).
"""

from __future__ import annotations

import logging

from protocol import (
    Connect,
    Endpoint,
    Frame,
    Keepalive,
    PresenceQuery,
    Register,
    Retry,
    StatsQuery,
    StatsReport,
)
from server.auth import NO_KEYS, Gate
from server.budget import AmplificationBudget
from server.cookies import Cookies
from server.presence import Presence
from server.refusals import INVALID_PEERS, UNAUTHENTICATED, WRONG_ADDRESS, Refusal
from server.requests import Requests, Send, answer
from server.table import Peer, PeerTable

log = logging.getLogger(__name__)

REQUESTS = (Register, Connect, Keepalive, PresenceQuery, StatsQuery)


class FrameRequests(Requests):
    """v2 requests: the shared state, and the cookies and budget that return routability needs."""

    def __init__(
        self,
        table: PeerTable,
        gate: Gate,
        presence: Presence,
        counters: dict[str, int],
        *,
        cookies: Cookies,
        budget: AmplificationBudget,
    ) -> None:
        super().__init__(table, gate, presence, counters)
        self.cookies = cookies
        self.budget = budget

    def handle(self, frame: Frame, source: Endpoint, now: float, wall_ms: int) -> list[Send]:
        message = frame.message
        if not isinstance(message, REQUESTS):
            self.drop("not_for_server", source, f"v2 {type(message).__name__}")
            return []
        if frame.cookie is None or not self.cookies.check(frame.cookie, source, now):
            self.counters["retry"] += 1
            stale = "a stale" if frame.cookie is not None else "no"
            log.debug("retry for %s from %s (%s cookie)", type(message).__name__, source, stale)
            return [answer(Retry(self.cookies.issue(source, now)), source, frame.txid)]
        self.budget.validate(source)
        self.table.touch(source, now)
        return self._carry_out(frame, source, now, wall_ms)

    def _carry_out(self, frame: Frame, source: Endpoint, now: float, wall_ms: int) -> list[Send]:
        """What a request with a valid cookie asks for."""
        match frame.message:
            case Register() as message:
                return [self._register(frame, message, source, now, wall_ms)]
            case Connect() as message:
                return self._connect(frame, message, source, now, wall_ms)
            case PresenceQuery() as message:
                return [self._presence(frame, message, source, now, wall_ms)]
            case StatsQuery():
                return [answer(StatsReport(tuple(self.counters.items())), source, frame.txid)]
        return []  # a keepalive: the touch above was all it asked for

    def _register(self, frame: Frame, message: Register, source: Endpoint, now: float, wall_ms: int) -> Send:
        what = f"register {message.id}"
        if frame.keys is None:
            return self.refuse(NO_KEYS, what, source, frame.txid)
        # A key bound to an expired peer no longer holds its id; and a full table must hold only live peers.
        self.presence.expire(now)
        holder = self.table.lookup(message.id, now)
        refusal = self.gate.key_refusal(message.id, frame.keys, holder) or self.gate.proof_refusal(
            frame.keys.sign, frame, wall_ms
        )
        if refusal is not None:
            return self.refuse(refusal, what, source, frame.txid)
        return self.store(message.id, source, now, message.candidates, keys=frame.keys, txid=frame.txid)

    def _connect(self, frame: Frame, message: Connect, source: Endpoint, now: float, wall_ms: int) -> list[Send]:
        what = f"connect {message.from_id} -> {message.to_id}"
        peers = self.pair(message.from_id, message.to_id, now)
        if peers is None:
            return [self.refuse(INVALID_PEERS, what, source, frame.txid)]
        first, second = peers
        refusal = self._authenticate(first, source, frame, wall_ms)
        if refusal is not None:
            return [self.refuse(refusal, what, source, frame.txid)]
        return self.introduce(first, second, frame.txid)

    def _presence(self, frame: Frame, message: PresenceQuery, source: Endpoint, now: float, wall_ms: int) -> Send:
        asker = self.table.lookup(message.from_id, now)
        if asker is None or asker.keys is None:
            refusal: Refusal | None = UNAUTHENTICATED
        else:
            refusal = self._authenticate(asker, source, frame, wall_ms)
        if refusal is not None:
            return self.refuse(refusal, f"presence of {message.peer_id} for {message.from_id}", source, frame.txid)
        return answer(self.presence.report(message.peer_id, now), source, frame.txid)

    def _authenticate(self, peer: Peer, source: Endpoint, frame: Frame, wall_ms: int) -> Refusal | None:
        """Why ``frame`` from ``source`` may not act as ``peer``, if it may not: it must come from the peer's
        registered address, with a fresh proof by its key if it has one (a text peer's id has none)."""
        if peer.addr != source:
            return WRONG_ADDRESS
        return self.gate.proof_refusal(peer.keys.sign, frame, wall_ms) if peer.keys is not None else None
