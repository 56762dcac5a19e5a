"""The fuzz targets: each takes one input and raises only when it finds a bug (never for bad input).

Each input is one datagram, so the seed corpus is the protocol's golden vectors as they are, and for the agent
sealed datagrams that open (:func:`agent_seeds`). The server and agent targets build fresh state for every
input (two registered peers; an agent registered with its server that knows a keyed peer, bob, and a seed-era
one, carol), then feed it the datagram from the sources that reach different code: a peer, the server, a
stranger. The agent's and bob's keys are fixed, so a sealed seed stays one that opens.
"""

from __future__ import annotations

from collections.abc import Callable

import nacl.public
import nacl.signing

from client.engine.core import AgentCore, CoreConfig
from client.engine.outputs import Emit, Output, Send, SendRaw
from client.engine.path import PathTiming
from client.engine.peer import Peer
from client.engine.sealing import Sealer
from protocol import (
    MAX_DATAGRAM,
    Ack,
    Candidates,
    Data,
    Endpoint,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Message,
    Ok,
    ProtocolError,
    Punch,
    Sealed,
    box_associated_data,
    encode,
    parse,
    signing_bytes,
)
from server.handler import Handler
from server.table import PeerTable
from trust import Identity

ALICE = Endpoint("198.18.0.11", 40000)
BOB = Endpoint("198.18.0.12", 50000)
CAROL = Endpoint("198.18.0.13", 50000)
STRANGER = Endpoint("198.18.0.66", 6666)
SERVER = Endpoint("198.18.0.10", 9000)


def _identity(seed: int) -> Identity:
    """A fixed identity (fuzzing needs the same keys every run)."""
    return Identity(nacl.signing.SigningKey(bytes([seed]) * 32), nacl.public.PrivateKey(bytes([seed + 1]) * 32))


ALICE_KEYS, BOB_KEYS = _identity(1), _identity(3)


class FuzzFinding(AssertionError):
    """An invariant broke: a bug (the fuzzer saves the input that did it)."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise FuzzFinding(what)


def protocol_target(data: bytes) -> None:
    """protocol.parse raises only ProtocolError; what parses encodes back (v2: byte for byte)."""
    try:
        parsed = parse(data)
    except ProtocolError:
        return
    if isinstance(parsed, Frame):
        check(encode(parsed) == data, "a v2 frame did not encode back to its bytes")
        if parsed.proof is not None:
            signed = signing_bytes(parsed, parsed.proof.timestamp_ms, parsed.proof.nonce)
            check(parsed.signed == signed, "Frame.signed differs from signing_bytes")
        if isinstance(parsed.message, Sealed):
            check(data.startswith(box_associated_data(parsed)), "the box's associated data is not the prefix")
        return
    canonical = encode(parsed)
    check(parse(canonical) == parsed, "a text message did not survive parse(encode(m))")


def server_target(data: bytes) -> None:
    """Handler.handle never raises; every reply is within the limit and parses."""
    handler = Handler(PeerTable(ttl=120, max_peers=4))
    handler.handle(b"register alice relay=198.18.0.20:49160", ALICE, 0.0)
    handler.handle(b"register bob", BOB, 0.0)
    for now, source in enumerate((ALICE, STRANGER), start=1):
        for reply, _ in handler.handle(data, source, float(now)):
            check(len(reply) <= MAX_DATAGRAM, f"a reply of {len(reply)} bytes")
            parse(reply)  # the server never sends what its own parser refuses


def agent_target(data: bytes) -> None:
    """AgentCore.receive never raises; what it sends encodes within the limit; its events serialise."""
    core = AgentCore(CoreConfig(id="alice", server=SERVER, identity=ALICE_KEYS))
    started = core.start(0.0)
    _check_outputs(started)
    register = next(o.message for o in started if isinstance(o, Send) and isinstance(o.message, Frame))
    _check_outputs(core.receive(encode(Frame(register.txid, Ok())), SERVER, 0.01))
    keys = Keys(BOB_KEYS.public.sign, BOB_KEYS.public.box)
    _check_outputs(core.receive(encode(Frame(5, Punch("bob", BOB, Candidates(None)), keys=keys)), SERVER, 0.02))
    _check_outputs(core.receive(f"punch carol {CAROL}".encode(), SERVER, 0.02))  # a seed-era peer
    for source in (BOB, CAROL, SERVER, STRANGER):  # bob first: a sealed datagram opens once
        _check_outputs(core.receive(data, source, 0.1))
    _check_outputs(core.tick(0.2))


def agent_seeds() -> dict[str, bytes]:
    """Sealed datagrams from bob that the agent target's alice opens (seeds for fuzz/corpus/agent/)."""
    bob = Sealer(BOB_KEYS, "bob", wall_offset=0.0, remember=1)
    alice = Peer.new("alice", PathTiming())
    bob.introduce(alice, Keys(ALICE_KEYS.public.sign, ALICE_KEYS.public.box), 1.0)
    messages: dict[str, Message] = {
        "hello": Hello("bob"),
        "hello-ack": HelloAck("bob"),
        "data": Data("bob", 7, 0, 0, "hi alice"),
        "ack": Ack("bob", 7, 1, ((3, 4),)),
        "keepalive": Keepalive(),
        "wrong-id": Hello("mallory"),
    }
    return {f"sealed-{name}.bin": encode(bob.seal(alice, message)) for name, message in messages.items()}


def _check_outputs(outputs: list[Output]) -> None:
    for output in outputs:
        if isinstance(output, Send):
            check(len(encode(output.message)) <= MAX_DATAGRAM, "the agent sent an oversize datagram")
        elif isinstance(output, SendRaw):
            check(len(output.data) <= MAX_DATAGRAM, "the agent sent an oversize raw datagram")
        elif isinstance(output, Emit):
            output.event.to_json(1.0)  # the hand-written JSON of events must be JSON, whatever the peer sent


TARGETS: dict[str, Callable[[bytes], None]] = {
    "protocol": protocol_target,
    "server": server_target,
    "agent": agent_target,
}
"""Target name -> its function; fuzz/corpus/<name>/ is its seed corpus."""
