"""The fuzz targets: each takes one input and raises only when it finds a bug (never for bad input).

Each input is one datagram, so the seed corpus is the protocol's golden vectors as they are. The server and
agent targets build fresh state for every input (two registered peers; an agent registered with its server
that knows a keyed peer, bob, and a seed-era one, carol), then feed it the datagram from the sources that
reach different code: a peer, the server, a stranger.

The server's state is deterministic (fixed keys, a fixed cookie secret, a fixed wall clock), so seeds can
carry a valid cookie and proof and reach the code behind them: :func:`server_seeds` makes those (alice's
authenticated connect, presence and stats queries, keepalive and re-register), kept in
fuzz/corpus/server/auth-*.bin. The agent's and bob's keys are fixed too, so :func:`agent_seeds` makes sealed
datagrams that open, kept in fuzz/corpus/agent/sealed-*.bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

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
    Connect,
    Data,
    Endpoint,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Message,
    Ok,
    PresenceQuery,
    Proof,
    ProtocolError,
    Punch,
    Register,
    Sealed,
    StatsQuery,
    box_associated_data,
    encode,
    parse,
    signing_bytes,
)
from server.auth import Gate
from server.budget import AMPLIFICATION_FACTOR
from server.cookies import Cookies
from server.handler import Handler
from server.table import PeerTable
from trust import Identity, Registry, make_proof

ALICE = Endpoint("198.18.0.11", 40000)
BOB = Endpoint("198.18.0.12", 50000)
CAROL = Endpoint("198.18.0.13", 50000)
STRANGER = Endpoint("198.18.0.66", 6666)
SERVER = Endpoint("198.18.0.10", 9000)


def _identity(seed: int) -> Identity:
    """A fixed identity (fuzzing needs the same keys every run)."""
    return Identity(nacl.signing.SigningKey(bytes([seed]) * 32), nacl.public.PrivateKey(bytes([seed + 1]) * 32))


ALICE_KEYS, BOB_KEYS = _identity(1), _identity(3)
"""alice's and bob's fixed identities (the fuzz server's registry holds alice's): seeds made with them keep
working."""


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


SERVER_WALL_MS = 1_750_000_000_000
"""The server target's wall clock: its seeds' proofs are made at it."""
SETUP_MS = SERVER_WALL_MS - 1_000
"""alice's own register in :func:`fuzz_server` is made earlier than every seed: the server admits a key's
proof only if its timestamp is greater than the last it admitted. Each seed meets a fresh server, so seeds
need no :class:`~trust.Prover` among themselves; their timestamps are fixed so that the corpus is too."""


def fuzz_server() -> Handler:
    """A server with alice registered (v2, keyed, from the registry) and bob (text, seed-era), deterministic."""
    gate = Gate(Registry({"alice": ALICE_KEYS.public}))
    handler = Handler(PeerTable(ttl=120, max_peers=4), gate=gate, cookies=Cookies(secret_source=bytes))
    setup = _signed(Register("alice", Candidates(None)), 1, keys=True, timestamp_ms=SETUP_MS)
    handler.handle(setup, ALICE, 0.0, SERVER_WALL_MS)
    handler.handle(b"register bob", BOB, 0.0)
    return handler


def _signed(message: Message, txid: int, keys: bool = False, timestamp_ms: int = SERVER_WALL_MS) -> bytes:
    """A request from alice at ALICE with her cookie (the fixed secret's) and a proof (a fixed nonce)."""
    cookie = Cookies(secret_source=bytes).issue(ALICE, 0.0)
    public = Keys(ALICE_KEYS.public.sign, ALICE_KEYS.public.box) if keys else None
    frame = Frame(txid, message, keys=public, cookie=cookie)
    proof = make_proof(ALICE_KEYS, partial(signing_bytes, frame), timestamp_ms, bytes([txid]) * 16)
    return encode(replace(frame, proof=Proof(*proof)))


def server_seeds() -> dict[str, bytes]:
    """Requests alice's address may send the fuzz server with everything valid: the seeds that reach past the
    cookie and proof checks (fuzz/corpus/server/auth-<name>.bin)."""
    return {
        "connect": _signed(Connect("alice", "bob"), 2),
        "presence": _signed(PresenceQuery("alice", "bob"), 3),
        "stats": _signed(StatsQuery(), 4),
        "keepalive": _signed(Keepalive(), 5),
        "register": _signed(Register("alice", Candidates(ALICE)), 6, keys=True),
    }


def server_target(data: bytes) -> None:
    """Handler.handle never raises; every reply is within the limit and parses; an address that has not
    echoed a cookie is sent at most 3x what it sent."""
    handler = fuzz_server()
    received = {BOB: len(b"register bob"), ALICE: 0, STRANGER: 0}
    sent = {BOB: len(b"ok")}
    for now, source in enumerate((ALICE, STRANGER), start=1):
        received[source] += len(data)
        for reply, to in handler.handle(data, source, float(now), SERVER_WALL_MS + now):
            check(len(reply) <= MAX_DATAGRAM, f"a reply of {len(reply)} bytes")
            parse(reply)  # the server never sends what its own parser refuses
            sent[to] = sent.get(to, 0) + len(reply)
    for address, total in sent.items():
        allowed = AMPLIFICATION_FACTOR * received.get(address, 0)
        check(total <= allowed or handler.budget.is_validated(address), f"{total} bytes to {address}: over 3x")


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
