"""A signal server for in-memory labs, as a pure function: protocol v2 for natlab agents (cookies and Retry,
keys and proofs, transaction ids, punches carrying the peer's keys, presence) and the seed's text for
seed-era clients, introduced to each other in their own versions (PROTOCOL.md). Small on purpose: the real
server (``server/``) is tested on its own; this one lets agent tests see every request and shape the
answers (drop connects, lie about addresses, rotate cookies, report a peer offline).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

from client.engine.core import AgentCore, Output, Send
from protocol import (
    Candidates,
    Connect,
    Endpoint,
    Err,
    ErrorCode,
    Frame,
    Keys,
    Message,
    Ok,
    PresenceQuery,
    PresenceReport,
    ProtocolError,
    Punch,
    Register,
    Retry,
    Sealed,
    box_associated_data,
    encode,
    parse,
)
from trust import AuthError, Identity, PeerSession, verify_proof

Reply = tuple[bytes, Endpoint]


@dataclass
class Registration:
    addr: Endpoint
    candidates: Candidates | None
    keys: Keys | None
    """None: a text client (seed-era, or natlab in text)."""
    seen: float = 0.0


@dataclass
class SignalServer:
    """Peers by id; ``now`` is what presence ages count from (the lab sets it)."""

    peers: dict[str, Registration] = field(default_factory=dict)
    drop_connects: bool = False
    lies: dict[str, Endpoint] = field(default_factory=dict)
    """Peer id -> the address punches name for it instead of its own (one nobody answers on)."""
    offline: set[str] = field(default_factory=set)
    """Ids presence reports offline whatever the table says."""
    lost_punches: dict[str, int] = field(default_factory=dict)
    """Peer id -> how many of the next punches to it are lost on the way (a lossy path to that peer)."""
    secret: bytes = b"epoch 0"
    requests: list[tuple[Endpoint, Frame]] = field(default_factory=list)
    """Every v2 request, as received (before the cookie check)."""
    retries: int = 0
    now: float = 0.0
    _epochs: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def candidates(self) -> dict[str, Candidates | None]:
        return {peer_id: reg.candidates for peer_id, reg in self.peers.items()}

    def cookie(self, source: Endpoint) -> bytes:
        return hashlib.blake2b(str(source).encode(), key=self.secret, digest_size=17).digest()

    def rotate(self) -> None:
        """A new cookie secret: every cookie given so far is refused (with a Retry) from now on."""
        self.secret = f"epoch {next(self._epochs) + 1}".encode()

    def receive(self, data: bytes, source: Endpoint) -> list[Reply]:
        try:
            item = parse(data)
        except ProtocolError:
            return []
        if isinstance(item, Frame):
            return [(encode(reply), to) for reply, to in self._frame(item, source)]
        return [(encode(reply), to) for reply, to in self._text(item, source)]

    # -- v2 ------------------------------------------------------------------------------------------

    def _frame(self, frame: Frame, source: Endpoint) -> list[tuple[Frame | Message, Endpoint]]:
        self.requests.append((source, frame))
        if frame.cookie != self.cookie(source):
            self.retries += 1
            return [(Frame(frame.txid, Retry(self.cookie(source))), source)]
        self._touch(source)
        match frame.message:
            case Register() as register:
                return [(Frame(frame.txid, self._register(frame, register, source)), source)]
            case Connect(a, b) if not self.drop_connects:
                return self._connect(frame, a, b, source)
            case PresenceQuery(_, peer_id):
                return [(Frame(frame.txid, self._presence(peer_id)), source)]
        return []  # a keepalive (the touch was all it asked for), or a connect dropped

    def _register(self, frame: Frame, register: Register, source: Endpoint) -> Message:
        held = self.peers.get(register.id)
        if frame.keys is None or (held is not None and held.keys not in (None, frame.keys)):
            return Err("id is held by another key", ErrorCode.FORBIDDEN)
        if not verify_proof(frame.keys.sign, frame):
            return Err("bad proof", ErrorCode.BAD_PROOF)
        self.peers[register.id] = Registration(source, register.candidates, frame.keys, self.now)
        return Ok()

    def _connect(self, frame: Frame, a: str, b: str, source: Endpoint) -> list[tuple[Frame | Message, Endpoint]]:
        first, second = self.peers.get(a), self.peers.get(b)
        if first is None or second is None or a == b:
            return [(Frame(frame.txid, Err("invalid peers", ErrorCode.INVALID_PEERS)), source)]
        if first.addr != source or first.keys is None or not verify_proof(first.keys.sign, frame):
            return [(Frame(frame.txid, Err("forbidden", ErrorCode.FORBIDDEN)), source)]
        return self._introduce(a, b, frame.txid)

    def _presence(self, peer_id: str) -> PresenceReport:
        seen = self.peers.get(peer_id)
        online = seen is not None and peer_id not in self.offline
        return PresenceReport(peer_id, online, None if seen is None else round((self.now - seen.seen) * 1000))

    def _touch(self, source: Endpoint) -> None:
        for reg in self.peers.values():
            if reg.addr == source:
                reg.seen = self.now

    # -- text ----------------------------------------------------------------------------------------

    def _text(self, message: Message, source: Endpoint) -> list[tuple[Frame | Message, Endpoint]]:
        self._touch(source)
        match message:
            case Register(peer_id, candidates):
                held = self.peers.get(peer_id)
                if held is not None and held.keys is not None:
                    return [(Err("id is held by a key"), source)]
                self.peers[peer_id] = Registration(source, candidates, None, self.now)
                return [(Ok(), source)]
            case Connect(a, b) if not self.drop_connects:
                if a not in self.peers or b not in self.peers:
                    return [(Err("invalid peers"), source)]
                return self._introduce(a, b, 0)
        return []

    def _introduce(self, a: str, b: str, txid: int) -> list[tuple[Frame | Message, Endpoint]]:
        punches = []
        for to, about in ((a, b), (b, a)):
            if self.lost_punches.get(to, 0) > 0:
                self.lost_punches[to] -= 1
                continue
            punches.append(self._punch(to, about, txid))
        return punches

    def _punch(self, to: str, about: str, txid: int) -> tuple[Frame | Message, Endpoint]:
        """The punch telling ``to`` about ``about``, in ``to``'s version (keys only of a keyed peer)."""
        recipient, named = self.peers[to], self.peers[about]
        addr = self.lies.get(about, named.addr)
        if recipient.keys is not None:
            return Frame(txid, Punch(about, addr, named.candidates), keys=named.keys), recipient.addr
        both = recipient.candidates is not None and named.candidates is not None
        return Punch(about, addr, named.candidates if both else None), recipient.addr


class Wiretap:
    """Reads sealed datagrams between the agents whose identities it holds (a test's eyes on the wire)."""

    def __init__(self) -> None:
        self.identities: dict[str, Identity] = {}

    def plain(self, data: bytes) -> Message | Frame | bytes:
        """What a datagram says: a sealed one's inner message, a text message, a frame; bytes if unreadable."""
        try:
            item = parse(data)
        except ProtocolError:
            return data
        if not isinstance(item, Frame) or not isinstance(item.message, Sealed):
            return item
        sealed = item.message
        sender = self.identities.get(sealed.id)
        if sender is None:
            return data
        for receiver_id, receiver in self.identities.items():
            if receiver_id == sealed.id:
                continue
            # A fresh session per look: its replay window must not be the receiver's.
            session = PeerSession(receiver, receiver_id, sealed.id, sender.public, boot=1)
            try:
                plain = session.open(sealed.boot, sealed.counter, box_associated_data(item), sealed.box)
            except AuthError:
                continue  # sealed for someone else
            inner = parse(plain)
            return inner.message if isinstance(inner, Frame) else inner
        return data


def register(core: AgentCore, now: float = 0.0) -> list[Output]:
    """Start ``core`` and answer its register with an ok under the register's transaction id (as a server that
    needs no cookie would): the outputs of both. ``core.registered`` afterwards."""
    out = core.start(now)
    [request] = [o.message for o in out if isinstance(o, Send) and isinstance(o.message, Frame)]
    out += core.receive(encode(Frame(request.txid, Ok())), core.config.server, now)
    assert core.registered
    return out


def answer(core: AgentCore, request: Frame, reply: Message, now: float) -> list[Output]:
    """``reply`` from ``core``'s server to ``request`` (under its transaction id)."""
    return core.receive(encode(Frame(request.txid, reply)), core.config.server, now)


def v2_punch(
    core: AgentCore,
    peer: str,
    addr: Endpoint,
    now: float,
    *,
    keys: Identity | None = None,
    relay: Endpoint | None = None,
) -> list[Output]:
    """``core``'s server introduces ``peer`` at ``addr`` in v2: with the public keys of ``keys`` (a keyed natlab
    peer, with its relay candidate), or without keys (a seed-era peer, no candidates)."""
    if keys is None:
        frame = Frame(7, Punch(peer, addr))
    else:
        public = Keys(keys.public.sign, keys.public.box)
        frame = Frame(7, Punch(peer, addr, Candidates(relay)), keys=public)
    return core.receive(encode(frame), core.config.server, now)
