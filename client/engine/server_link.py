"""The agent's dialogue with its signal server, in protocol v2 (PROTOCOL.md). Pure, time passed in.

Every request is a v2 frame under a transaction id of its own, which its retransmissions keep and every
answer carries: an ``ok`` or ``err`` names the register or connect it answers, and an ``err`` refuses that
one connect (the text protocol could only guess: the oldest waiting one). Every request carries the latest
cookie the server gave us, and every keyed one a fresh proof (:class:`~client.engine.signer.Signer`): a
retransmission gets a new nonce, as the server takes each proof once.

- register: our id, our relay candidate, our public keys; repeated every ``retry`` until its ``ok``; again
  (a new request) when our relay changes.
- keepalive: every keepalive period, once registered, the register again (a new request, sent once: the next
  period sends another). It keeps our NAT mapping and our presence fresh like a keepalive, and, being a
  register with a proof, also puts us back in the server's table whatever happened meanwhile: our address
  changed (a NAT rebinding: the cookie, bound to the old address, gets a retry first), the server restarted,
  or it expired us while we were cut off for three keepalive periods. (A v2 keepalive would do the first two
  only after a retry, and the third never.) The server verifies one signature per agent per period.
- retry: the server did not process the request; take its cookie and send the request again at once (a
  retry carrying the cookie we already had answers an older copy: the next retransmission has it).
- connect: with a proof; repeated until the punch comes or the connect times out. Then, until the peer is
  heard on the direct path (a probe or an answer), repeated every ``retry`` at most ``REASKS`` times more: the
  server sent the peer its punch together with ours, and that one may have been lost on the way, leaving the
  peer unaware and its NAT shut to our probes. Each repeat makes the server punch both again (a punch
  repeated is ignored by a side already punching).
- presence-query: with a proof, for the peers we have paths or chats with, once a keepalive period; answered
  by a presence-report (or an err, logged).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from client.engine.events import Registered, ServerError
from client.engine.outputs import Emit, Log, Output, Send
from client.engine.peer import Peer, PendingConnect
from client.engine.signer import Signer
from protocol import Candidates, Connect, Endpoint, Err, Frame, Message, PresenceQuery, Register

RECENT_REGISTERS = 8
"""Registers remembered by transaction id: an ok for any of them (a late one too) says we are registered."""

REASKS = 4
"""Connects repeated after our punch came while the peer stays unheard: with 5% of them lost, the peer misses
all five of its punches about 3 times in 10 million; a pair that never hears each other costs the server four
more connects."""


@dataclass
class Request:
    """A request waiting for its answer: resent under the same ``txid`` until it comes."""

    txid: int
    message: Message
    next_send: float


class ServerLink:
    """Registration, keepalives, pending connects and presence queries; ``relayed()`` is our relayed address to
    announce (or ``None``)."""

    def __init__(
        self,
        me: str,
        server: Endpoint,
        retry: float,
        timeout: float,
        relayed: Callable[[], Endpoint | None],
        *,
        signer: Signer,
    ) -> None:
        self.me = me
        self.server = server
        self.retry = retry
        """Seconds between registers (and connects) the server has not answered yet."""
        self.timeout = timeout
        """Seconds a connect may wait for its punch."""
        self.signer = signer
        self.registered = False
        self.cookie: bytes | None = None
        """The server's latest cookie, echoed in every request."""
        self._relayed = relayed
        self._register: Request | None = None  # the register waiting for its ok
        self._registers: deque[int] = deque(maxlen=RECENT_REGISTERS)
        self._refresh: int | None = None  # the last keepalive period's register
        self._queries: dict[int, str] = {}  # this keepalive period's presence queries: txid -> peer id

    @property
    def reannouncing(self) -> bool:
        """Registered, and a newer register (our relay changed, or a refresh) waits for its ok."""
        return self.registered and self._register is not None

    def start(self, now: float) -> list[Output]:
        self._new_register(now)
        return self.tick(now)

    def tick(self, now: float) -> list[Output]:
        request = self._register
        if request is None or now < request.next_send:
            return []
        request.next_send = now + self.retry
        return [self._send(request.txid, request.message, now)]

    def wakeup(self) -> float | None:
        return None if self._register is None else self._register.next_send

    def reannounce(self, now: float) -> None:
        """Our relay changed: register again (a new request, with the new candidates) until the server says ok."""
        self._new_register(now)

    def keepalive(self, now: float) -> list[Output]:
        """The keepalive period's request: the register, sent once (nothing while a register waits for its ok:
        it is repeated anyway)."""
        if not self.registered or self._register is not None:
            return []
        self._refresh = txid = self.signer.txid()
        self._registers.append(txid)
        return [self._send(txid, self._message(), now)]

    def ask_presence(self, peer_ids: list[str], now: float) -> list[Output]:
        """A presence query for each of ``peer_ids`` (the last period's unanswered ones are given up)."""
        self._queries.clear()
        out: list[Output] = []
        for peer_id in peer_ids if self.registered else []:
            txid = self.signer.txid()
            self._queries[txid] = peer_id
            out.append(self._send(txid, PresenceQuery(self.me, peer_id), now))
        return out

    # -- answers (each ``None`` when it answers no request of ours) --------------------------------------

    def on_ok(self, txid: int) -> list[Output] | None:
        if txid not in self._registers:
            return None
        if self._register is not None and self._register.txid == txid:
            self._register = None
        # An ok for an older register also says we are registered; a newer one (newer candidates) still waits.
        if self.registered:
            return []
        self.registered = True
        return [Emit(Registered(server=str(self.server)))]

    def on_err(self, txid: int, err: Err, peers: Mapping[str, Peer]) -> list[Output] | None:
        reason = err.reason or (err.code.phrase if err.code is not None else "refused")
        if txid in self._registers:
            return [Emit(ServerError(reason=reason))]  # the register is repeated until ok
        peer = _connecting(txid, peers)
        if peer is not None and peer.pending is not None:
            return self.refuse(peer, reason)
        if peer is not None:  # a repeat after our punch came: the path stands as it is, the repeats stop
            peer.reasking = None
            return [Log(logging.INFO, f"connect to {peer.id} repeated: server: {reason}")]
        peer_id = self._queries.pop(txid, None)
        if peer_id is not None:
            return [Log(logging.INFO, f"presence of {peer_id}: server: {reason}")]
        return None

    def on_retry(self, txid: int, cookie: bytes, peers: Mapping[str, Peer], now: float) -> list[Output] | None:
        fresh = cookie != self.cookie
        self.cookie = cookie
        request = self._register
        if request is not None and txid == request.txid:
            return self._resend(request, now) if fresh else []
        if txid == self._refresh:
            # The cookie expired, or our address changed (a NAT rebinding): the register again, with it.
            return [self._send(txid, self._message(), now)] if fresh else []
        if txid in self._registers:
            return []  # an older register's: the one waiting goes with the new cookie
        peer = _connecting(txid, peers)
        connect = None if peer is None else peer.pending or peer.reasking
        if peer is not None and connect is not None:
            return self._resend_connect(peer, connect, now) if fresh else []
        peer_id = self._queries.get(txid)
        if peer_id is not None:
            return [self._send(txid, PresenceQuery(self.me, peer_id), now)] if fresh else []
        return None

    def on_presence(self, txid: int, peer_id: str) -> bool:
        """Whether a presence report about ``peer_id`` answers our query ``txid``."""
        if self._queries.get(txid) != peer_id:
            return False
        del self._queries[txid]
        return True

    # -- connects ------------------------------------------------------------------------------------

    def start_connect(self, peer: Peer, now: float) -> list[Output]:
        """Ask the server to introduce us to ``peer`` (both paths start over)."""
        peer.path.reset()
        peer.relay.reset()
        peer.reasking = None
        pending = peer.pending = PendingConnect(now, now + self.timeout, now + self.retry, self.signer.txid())
        return [self._send(pending.txid, Connect(self.me, peer.id), now)]

    def answered(self, peer: Peer, now: float) -> None:
        """Our punch came: the connect is answered. Until the peer is heard (:meth:`heard`), it is repeated every
        ``retry``, at most :data:`REASKS` times and within the connect's deadline (see the module docstring)."""
        pending, peer.pending = peer.pending, None
        if pending is not None:
            last = now + (REASKS + 0.5) * self.retry
            peer.reasking = PendingConnect(pending.started, min(pending.deadline, last), now + self.retry, pending.txid)

    @staticmethod
    def connect_started(peer: Peer) -> float | None:
        """When our connect to ``peer`` began, while it waits for its punch or is repeated (``None``: no connect
        of ours): what time to direct counts from, even when the peer's relay probe came before our punch."""
        connect = peer.pending or peer.reasking
        return None if connect is None else connect.started

    @staticmethod
    def heard(peer: Peer) -> None:
        """The peer probed or answered us on the direct path: it has its punch, nothing to ask any more."""
        peer.pending = peer.reasking = None

    def tick_pending(self, peer: Peer, now: float) -> list[Output]:
        asking = peer.reasking
        if asking is not None and now >= asking.deadline:
            peer.reasking = None
        elif asking is not None and now >= asking.next_send:
            return self._resend_connect(peer, asking, now)
        pending = peer.pending
        if pending is None:
            return []
        if now >= pending.deadline:
            return self.refuse(peer, f"no answer to connect within {self.timeout:g} s")
        if now < pending.next_send:
            return []
        # Datagrams get lost: repeat the request until the punch comes (duplicate punches are ignored).
        return self._resend_connect(peer, pending, now)

    def refuse(self, peer: Peer, reason: str) -> list[Output]:
        peer.pending = peer.reasking = None
        peer.path.reset(f"server: {reason}")
        return [Emit(ServerError(reason=reason, peer=peer.id))]

    # -- helpers -------------------------------------------------------------------------------------

    def _new_register(self, now: float) -> None:
        """A new register (our candidates now), sent at the next tick, which is ``now``."""
        self._register = Request(self.signer.txid(), self._message(), now)
        self._registers.append(self._register.txid)

    def _message(self) -> Register:
        """Our register as of now: our id and relay candidate."""
        return Register(self.me, Candidates(self._relayed()))

    def _resend(self, request: Request, now: float) -> list[Output]:
        request.next_send = now
        return self.tick(now)

    def _resend_connect(self, peer: Peer, pending: PendingConnect, now: float) -> list[Output]:
        pending.next_send = now + self.retry
        return [self._send(pending.txid, Connect(self.me, peer.id), now)]

    def _send(self, txid: int, message: Message, now: float) -> Send:
        """``message`` as a request: our cookie, a fresh proof, and our keys in a register."""
        keys = self.signer.keys if isinstance(message, Register) else None
        return Send(self.signer.prove(Frame(txid, message, keys=keys, cookie=self.cookie), now), self.server)


def _connecting(txid: int, peers: Mapping[str, Peer]) -> Peer | None:
    """The peer whose waiting (or repeated) connect is ``txid``. A walk of the peers (at most the table's
    bound), for an answer from our server's address only."""
    return next((p for p in peers.values() for c in (p.pending, p.reasking) if c is not None and c.txid == txid), None)
