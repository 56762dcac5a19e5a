"""The seed's text requests, as the server answers them next to protocol v2 (see :mod:`server.handler`).

The seed's exchange is unchanged for the ids no key holds: ``register <id>`` stores the source address
(``relay=`` for a natlab text client) and answers ``ok``; ``connect <from_id> <to_id>`` sends each side a
punch; ``keepalive`` refreshes the peer at the source address. What v2's keyed ids changed:

- ``register <id>`` of an id a key holds (in the registry, or bound to the key of a live v2 peer) is
  refused (``err id is keyed``, counted ``keyed_id``): a text client can never take a keyed id. Nor may
  it register any id from the address a keyed peer holds (``err address held by a keyed id``), which would
  otherwise replace that peer.
- ``connect`` is honoured only from the address registered for from_id (``err not from from_id's
  address``, ``wrong_address``), never for a keyed from_id (``err id is keyed``): a seed client may still
  connect its own id to a keyed natlab peer, which gets its punch as a v2 frame.
- A text datagram never refreshes a keyed peer's presence (it carries no cookie: anyone could forge it).
"""

from __future__ import annotations

from protocol import Candidates, Endpoint
from server.refusals import INVALID_PEERS, KEYED_ADDRESS, WRONG_ADDRESS
from server.requests import Requests, Send


class TextRequests(Requests):
    """``register`` and ``connect`` in the seed's text grammar."""

    def register(self, peer_id: str, candidates: Candidates | None, source: Endpoint, now: float) -> Send:
        what = f"register {peer_id}"
        # A key bound to an expired peer no longer holds its id; and a full table must hold only live peers.
        self.presence.expire(now)
        refusal = self.gate.text_refusal(peer_id, self.table.lookup(peer_id, now))
        if refusal is not None:
            return self.refuse(refusal, what, source, None)
        holder = self.table.at(source, now)
        if holder is not None and holder.keyed:
            return self.refuse(KEYED_ADDRESS, what, source, None)
        return self.store(peer_id, source, now, candidates)

    def connect(self, from_id: str, to_id: str, source: Endpoint, now: float) -> list[Send]:
        what = f"connect {from_id} -> {to_id}"
        peers = self.pair(from_id, to_id, now)
        if peers is None:
            return [self.refuse(INVALID_PEERS, what, source, None)]
        first, second = peers
        refusal = self.gate.text_refusal(from_id, first)
        if refusal is None and first.addr != source:
            refusal = WRONG_ADDRESS
        if refusal is not None:
            return [self.refuse(refusal, what, source, None)]
        return self.introduce(first, second, None)
