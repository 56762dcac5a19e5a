"""Hypothesis strategies for the protocol's messages and frames: every valid value, of both versions."""

from __future__ import annotations

from hypothesis import strategies as st

from protocol import (
    ID_SYNTAX,
    KEY_SIZE,
    MAX_COOKIE,
    MAX_COUNTER,
    MAX_HELD_RANGES,
    MIN_BOX,
    NONCE_SIZE,
    SIGNATURE_SIZE,
    VERBS,
    Ack,
    BareHello,
    Candidates,
    Connect,
    Data,
    Endpoint,
    Err,
    ErrorCode,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Msg,
    Ok,
    PresenceQuery,
    PresenceReport,
    Proof,
    Punch,
    Register,
    Retry,
    Sealed,
    StatsQuery,
    StatsReport,
    encode,
)

ids = st.from_regex(ID_SYNTAX, fullmatch=True)
u32 = st.integers(0, MAX_COUNTER)
u64 = st.integers(0, 2**64 - 1)
endpoints = st.builds(
    lambda ip, port: Endpoint(str(ip), port), st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(1, 65535)
)
candidates = st.builds(Candidates, st.none() | endpoints)
texts = st.text(min_size=1, max_size=200)
held = st.lists(st.tuples(u32, u32).map(sorted).map(tuple), max_size=MAX_HELD_RANGES).map(tuple)


shared = {
    "hello": st.builds(Hello, ids),
    "hello-ack": st.builds(HelloAck, ids),
    "data": st.builds(Data, ids, u32, u32, u32, texts),
    "ack": st.builds(Ack, ids, u32, u32, held),
    "keepalive": st.just(Keepalive()),
    "ok": st.just(Ok()),
    "connect": st.builds(Connect, ids, ids),
}
"""Messages whose strategy is the same in both versions, by name."""

text_messages = st.one_of(
    *shared.values(),
    st.builds(Register, ids, st.none() | candidates),
    st.builds(Punch, ids, endpoints, st.none() | candidates),
    st.builds(Msg, ids, texts),
    st.just(BareHello()),
    st.builds(Err, st.text(max_size=200)),
)
"""Every text message (an Err's code aside: text cannot carry it)."""

keys = st.builds(Keys, st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE), st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE))
cookies = st.binary(min_size=1, max_size=MAX_COOKIE)
proofs = st.builds(
    Proof, u64, st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), st.binary(min_size=64, max_size=SIGNATURE_SIZE)
)
counter_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
reasons = st.text(max_size=50).filter(lambda reason: len(reason.encode()) <= 200)


def _request(message: st.SearchStrategy[object], with_keys: bool = False) -> st.SearchStrategy[Frame]:
    """A request frame: maybe keys (register), maybe a cookie and a proof."""
    return st.builds(
        Frame,
        u64,
        message,
        keys=st.none() | keys if with_keys else st.none(),
        cookie=st.none() | cookies,
        proof=st.none() | proofs,
    )


def _plain(message: st.SearchStrategy[object]) -> st.SearchStrategy[Frame]:
    return st.builds(Frame, u64, message)


frames = st.one_of(
    _request(st.builds(Register, ids, candidates), with_keys=True),
    _request(shared["connect"]),
    _request(shared["keepalive"]),
    _request(st.builds(PresenceQuery, ids, ids)),
    _request(st.just(StatsQuery())),
    _plain(shared["ok"]),
    _plain(st.builds(Err, reasons, st.sampled_from(ErrorCode))),
    _plain(st.builds(Retry, cookies)),
    st.builds(Frame, u64, st.builds(Punch, ids, endpoints, st.none() | candidates), keys=st.none() | keys),
    _plain(st.builds(PresenceReport, ids, st.booleans(), st.none() | u32)),
    _plain(st.builds(StatsReport, st.lists(st.tuples(counter_names, u64), max_size=8).map(tuple))),
    *(_plain(shared[name]) for name in ("hello", "hello-ack", "data", "ack")),
    _plain(st.builds(Sealed, ids, u64, u64, st.binary(min_size=MIN_BOX, max_size=300))),
)
"""Every v2 frame, each type with the frame-level fields it may carry."""


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid datagram with a few bytes changed, cut, or inserted: close to valid, so deep in the parser."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(("set", "cut", "insert")))
        if edit == "set" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif edit == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


frame_bytes = frames.map(encode)
text_bytes = text_messages.map(encode)
verbs = st.sampled_from(sorted(VERBS))
texty = st.one_of(
    verbs.map(str.encode),
    st.builds(lambda verb, rest: f"{verb} {rest}".encode(), verbs, st.text(max_size=60)),
    st.builds(lambda verb, peer, rest: f"{verb} {peer} {rest}".encode(), verbs, ids, st.text(max_size=60)),
)
any_datagram = st.one_of(
    st.binary(max_size=80),
    st.binary(max_size=60).map(lambda tail: b"\xf5\x02" + tail),
    texty,
    mutated(frame_bytes),
    mutated(text_bytes),
    frame_bytes,
    text_bytes,
)
"""Byte strings of every kind: random, v2-headed, text-like, valid ones and valid ones slightly broken."""
