"""What the request-rate generator sends, one kind per server: a request factory per kind.

A factory takes the index of a source socket (each socket is one client: its own source port) and returns
that socket's :class:`Exchange`, which makes each request and says whether a datagram answers the request
outstanding. The generator keeps one request outstanding per socket and only ever calls these two methods,
so a new kind is one more factory in :data:`KINDS`.

The checks run once per reply in the generator's hot loop, so they compare bytes before they parse: the
text reply is exactly ``ok``; a STUN reply must be a Binding success response (type 0x0101) carrying the
request's transaction id (RFC 8489 section 6.3.3's match); a v2 reply must be the ``Ok`` frame under the
request's transaction id, and a ``Retry`` under it is parsed for its cookie.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Protocol

from client.turn.wire import HEADER_LENGTH, binding_request
from protocol import Candidates, Frame, Keys, Ok, Proof, ProtocolError, Register, Retry, encode, parse, signing_bytes
from trust import Identity, Prover


class Answer(enum.Enum):
    """What one datagram means for the request outstanding on its socket."""

    REPLY = "reply"
    """It answers the request: counted, and the socket sends its next request."""
    RESEND = "resend"
    """The server wants the request again (e.g. with a cookie it just sent): not counted, sent again."""
    OTHER = "other"
    """Not an answer to it (a late reply to a request given up on, or garbage): ignored, still waiting."""


class Exchange(Protocol):
    """One source socket's requests and the check of their replies."""

    def request(self) -> bytes:
        """The next request to send (a new transaction when the kind has transaction ids)."""
        ...

    def answer(self, data: bytes) -> Answer:
        """What ``data``, received on this socket, means for the last request :meth:`request` returned."""
        ...


RequestFactory = Callable[[int], Exchange]
"""Source socket index -> its exchange."""


class FixedExchange:
    """The same request every time and one exact reply to it (a kind without transaction ids)."""

    def __init__(self, request: bytes, reply: bytes) -> None:
        self._request = request
        self._reply = reply

    def request(self) -> bytes:
        return self._request

    def answer(self, data: bytes) -> Answer:
        return Answer.REPLY if data == self._reply else Answer.OTHER


def text_register(index: int) -> Exchange:
    """natlab today: the seed's ``register rate-<index>``, answered ``ok``. Each socket registers its own id,
    so after the first round every request is a refresh of a peer at its own address."""
    return FixedExchange(encode(Register(f"rate-{index}")), encode(Ok()))


_BINDING_SUCCESS = b"\x01\x01"
"""The message type of a Binding success response (method 0x001, class 0b10)."""


class StunBinding:
    """STUN Binding requests, each with a new transaction id: a random 8-byte prefix per socket and a
    4-byte counter, so building one costs a slice and a counter, not an encoder call."""

    def __init__(self) -> None:
        self._header = binding_request(bytes(12)).data[:8]  # type, length (no attributes) and magic cookie
        self._prefix = os.urandom(8)
        self._counter = 0
        self._tid = b""

    def request(self) -> bytes:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        self._tid = self._prefix + self._counter.to_bytes(4, "big")
        return self._header + self._tid

    def answer(self, data: bytes) -> Answer:
        matches = data[:2] == _BINDING_SUCCESS and data[8:HEADER_LENGTH] == self._tid
        return Answer.REPLY if matches else Answer.OTHER


def stun_binding(index: int) -> Exchange:
    """coturn (any STUN server): a Binding request, answered by a success response with its transaction id."""
    return StunBinding()


class SignedRegister:
    """Protocol v2's ``register`` of one keyed id: its own identity (a fresh key pair, so a free id that the
    server binds to it on first use), the cookie the server gave this socket, a new transaction id and a new
    proof (timestamp, nonce, Ed25519 signature) for every request, as a natlab client sends them: its
    :class:`~trust.Prover` makes each timestamp greater than the last, as the server's replay guard needs,
    also for two requests in one millisecond."""

    def __init__(self, peer_id: str) -> None:
        identity = Identity.generate()
        self._prover = Prover(identity)
        public = identity.public
        self._register = Register(peer_id, Candidates(None))
        self._keys = Keys(public.sign, public.box)
        self._cookie: bytes | None = None
        self._txid = 0
        self._ok = b""

    def request(self) -> bytes:
        self._txid += 1
        self._ok = encode(Frame(self._txid, Ok()))
        frame = Frame(self._txid, self._register, keys=self._keys, cookie=self._cookie)
        proof = self._prover.proof(partial(signing_bytes, frame), time.time_ns() // 1_000_000)
        return encode(replace(frame, proof=Proof(*proof)))

    def answer(self, data: bytes) -> Answer:
        if data == self._ok:
            return Answer.REPLY
        try:
            frame = parse(data)
        except ProtocolError:
            return Answer.OTHER
        if isinstance(frame, Frame) and frame.txid == self._txid and isinstance(frame.message, Retry):
            self._cookie = frame.message.cookie  # bound to this socket's address: echoed from now on
            return Answer.RESEND
        return Answer.OTHER


def signed_register(index: int) -> Exchange:
    """natlab's protocol v2: a signed ``register rate-<index>`` with the socket's cookie, answered ``Ok``
    (a ``Retry`` first, which brings the cookie). Each request costs the server an Ed25519 verification."""
    return SignedRegister(f"rate-{index}")


KINDS: dict[str, RequestFactory] = {
    "register": text_register,
    "signed-register": signed_register,
    "stun-binding": stun_binding,
}
"""The kinds ``--kind`` names."""
