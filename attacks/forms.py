"""The datagrams attacks send, written by natlab's own encoder so they are exactly what a peer would send.

Today these are the seed's text protocol; an attacker without keys can write nothing better, and that
is the point: every defence must hold against a well-formed datagram from someone who is not the peer.
"""

from __future__ import annotations

from attacks.exchange import Answer, Outgoing
from protocol import (
    Candidates,
    Connect,
    Data,
    Endpoint,
    Hello,
    HelloAck,
    Msg,
    ProtocolError,
    Punch,
    Register,
    encode,
    parse,
)


def register(peer_id: str, relay: Endpoint | None = None, extended: bool = False) -> bytes:
    """``register <id>``, with ``relay=`` (a natlab-extended client's) when ``extended`` or a relay is given."""
    candidates = Candidates(relay) if extended or relay is not None else None
    return encode(Register(peer_id, candidates))


def connect(from_id: str, to_id: str) -> bytes:
    return encode(Connect(from_id, to_id))


def hello(peer_id: str) -> bytes:
    return encode(Hello(peer_id))


def msg(peer_id: str, text: str) -> bytes:
    return encode(Msg(peer_id, text))


def data(peer_id: str, text: str, epoch: int = 777, seq: int = 0, floor: int = 0) -> bytes:
    """A guaranteed-delivery frame; epoch 777 is the issue's: one of them blackholed the peer's next message."""
    return encode(Data(peer_id, epoch, seq, floor, text))


def impersonate(peer_id: str) -> Answer:
    """Answers as ``peer_id``'s agent would: a probe gets ``hello-ack``, a punch gets probes at the address
    it names. With the id registered from the attacker's socket, a peer told to punch it confirms a path
    to the attacker."""

    def answer(payload: bytes, source: Endpoint) -> list[Outgoing]:
        try:
            message = parse(payload)
        except ProtocolError:
            return []
        if isinstance(message, Hello):
            return [(encode(HelloAck(peer_id)), source)]
        if isinstance(message, Punch):
            return [(hello(peer_id), message.addr)]
        return []

    return answer
