"""The allocation's requests in flight: signing with the long-term credentials, retransmission, matching.

One :class:`Transactions` per allocation holds what :class:`client.turn.allocation.TurnAllocation` has asked
and not yet heard back about, and the credentials (REALM, NONCE, key) its requests are signed with. It knows
nothing of what a request is for beyond its :class:`Job`; what an answer or a time-out does is the state
machine's business.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from aioice import stun

from client.turn.outputs import Retransmit, Transmit, TurnConfig
from client.turn.wire import CLASS_ERROR, CLASS_REQUEST, StunMessage, encode, long_term_key, new_transaction_id
from protocol import Endpoint


class Job(enum.Enum):
    """What a request is for; the value is its STUN method."""

    ALLOCATE = "allocate"
    REFRESH = "refresh"
    CLEAR = "clear"  # Refresh LIFETIME=0 of a stale allocation of ours, before allocating again
    CLOSE = "close"
    PERMISSION = "permission"
    CHANNEL = "channel"


METHODS: dict[Job, int] = {
    Job.ALLOCATE: stun.Method.ALLOCATE,
    Job.REFRESH: stun.Method.REFRESH,
    Job.CLEAR: stun.Method.REFRESH,
    Job.CLOSE: stun.Method.REFRESH,
    Job.PERMISSION: stun.Method.CREATE_PERMISSION,
    Job.CHANNEL: stun.Method.CHANNEL_BIND,
}


class Transaction:
    """One request's retransmissions, time passed in: the same bytes each time, then a deadline."""

    def __init__(self, tid: bytes, data: bytes, now: float, timing: Retransmit) -> None:
        self.tid = tid
        self.data = data
        self.deadline = now + timing.give_up
        self._sends = [now + offset for offset in timing.offsets()[1:]]

    def due(self, now: float) -> bool:
        """Whether to resend now; after a stall, once rather than a burst of catch-up copies."""
        due = bool(self._sends) and self._sends[0] <= now
        self._sends = [t for t in self._sends if t > now]
        return due

    def wakeup(self) -> float:
        return self._sends[0] if self._sends else self.deadline


@dataclass
class Request:
    job: Job
    attributes: dict[str, object]  # without the credentials, so that a retry can sign with a new NONCE
    txn: Transaction
    signed: bool
    stale: int = 0
    peer_ip: str | None = None
    peer: Endpoint | None = None

    def label(self) -> str:
        if self.job is Job.PERMISSION:
            return f"CreatePermission for {self.peer_ip}"
        if self.job is Job.CHANNEL:
            return f"ChannelBind for {self.peer}"
        return "Allocate" if self.job is Job.ALLOCATE else "Refresh"


class Transactions:
    """Requests in flight to one TURN server, keyed by transaction id, and the credentials that sign them."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self._requests: dict[bytes, Request] = {}
        self._realm: str | None = None
        self._nonce: bytes | None = None
        self._key: bytes | None = None

    def forget_credentials(self) -> None:
        self._realm = self._nonce = self._key = None

    def learn(self, realm: str | None, nonce: bytes) -> None:
        """REALM and NONCE from a challenge (401) or a 438 Stale Nonce: sign from now on with them."""
        self._nonce = nonce
        self._realm = realm or self._realm
        self._key = long_term_key(self.config.username, self._realm or "", self.config.password)

    def send(
        self,
        job: Job,
        attributes: dict[str, object],
        now: float,
        stale: int = 0,
        *,
        peer_ip: str | None = None,
        peer: Endpoint | None = None,
    ) -> Transmit:
        """Send a new request (signed once we know REALM and NONCE) and track its retransmissions."""
        tid = new_transaction_id()
        signed = dict(attributes)
        if self._key is not None:
            signed |= {"USERNAME": self.config.username, "REALM": self._realm, "NONCE": self._nonce}
        data = encode(METHODS[job], CLASS_REQUEST, signed, tid, self._key)
        txn = Transaction(tid, data, now, self.config.retransmit)
        self._requests[tid] = Request(job, attributes, txn, self._key is not None, stale, peer_ip, peer)
        return Transmit(data, self.config.server)

    def resend(self, request: Request, now: float, stale: int = 0) -> Transmit:
        """``request`` again as a new transaction (signed with what we have learnt since), ``stale`` counted."""
        return self.send(request.job, request.attributes, now, stale, peer_ip=request.peer_ip, peer=request.peer)

    def clear(self) -> None:
        self._requests.clear()

    def pending(self) -> Iterator[Request]:
        """A snapshot of the requests in flight (the caller may forget them while walking it)."""
        return iter(list(self._requests.values()))

    def holds(self, request: Request) -> bool:
        return request.txn.tid in self._requests

    def pop(self, request: Request) -> None:
        del self._requests[request.txn.tid]

    def in_flight(self, job: Job) -> bool:
        return any(r.job is job for r in self._requests.values())

    def wakeups(self) -> list[float]:
        return [request.txn.wakeup() for request in self._requests.values()]

    def answered(self, message: StunMessage) -> Request | str:
        """The request ``message`` answers, taken off the books; or why the answer is dropped."""
        request = self._requests.get(message.tid)
        if request is None or METHODS[request.job] != message.method:
            return f"{message.name} response to no request of ours"
        why = self._untrusted(request, message)
        if why is not None:
            return why
        del self._requests[message.tid]
        return request

    def _untrusted(self, request: Request, message: StunMessage) -> str | None:
        """Why an answer to a signed request cannot be trusted, or ``None``."""
        if not request.signed or self._key is None:
            return None
        if "MESSAGE-INTEGRITY" in message.attributes:
            return None if message.has_valid_integrity(self._key) else f"{message.name} answer with bad integrity"
        if message.cls != CLASS_ERROR:
            return f"{message.name} success response without MESSAGE-INTEGRITY"
        # coturn 4.6 sends some error responses (437, 438) to signed requests unsigned: accept them.
        return None
