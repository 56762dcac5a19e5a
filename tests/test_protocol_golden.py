"""Golden vectors: one file per message of both versions under tests/fixtures/protocol/, each of which must
parse to the object below and encode back to the very same bytes (as aioice's tests/data/*.bin do).

Text vectors are ``text-<name>.bin``, v2 vectors ``v2-<name>.bin``; fuzz/corpus/ seeds the fuzzers with them.
"""

from pathlib import Path

import pytest

from protocol import (
    TYPE_CODES,
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
    Message,
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
    parse,
    signing_bytes,
)
from protocol.binary import parse as parse_v2

FIXTURES = Path(__file__).parent / "fixtures" / "protocol"

ALICE_KEYS = Keys(bytes(range(32)), bytes(range(32, 64)))
BOB_KEYS = Keys(bytes(range(64, 96)), bytes(range(96, 128)))
COOKIE = bytes.fromhex("01") + bytes(range(0xA0, 0xB0))  # key epoch 1, then 16 bytes of HMAC
PROOF = Proof(1_767_225_600_000, bytes(range(16)), bytes(range(0x80, 0xC0)))
WAN_A = Endpoint("198.18.0.11", 40000)
WAN_B = Endpoint("198.18.0.12", 50000)
RELAY_A = Endpoint("198.18.0.20", 49160)
TXID = 0x0123456789ABCDEF

GOLDEN: dict[str, Message | Frame] = {
    # the seed's text grammar, with natlab's extensions
    "text-register": Register("alice"),
    "text-register-relay": Register("alice", Candidates(RELAY_A)),
    "text-register-no-relay": Register("alice", Candidates(None)),
    "text-connect": Connect("alice", "bob"),
    "text-punch": Punch("bob", WAN_B),
    "text-punch-ipv6": Punch("bob", Endpoint("2001:db8::1", 9000)),
    "text-punch-relay": Punch("bob", WAN_B, Candidates(Endpoint("198.18.0.20", 49161))),
    "text-hello": Hello("alice"),
    "text-hello-bare": BareHello(),  # the seed's own probe
    "text-hello-ack": HelloAck("bob"),
    "text-msg": Msg("alice", " hi  there, café ☕ "),
    "text-msg-newline": Msg("alice", "ends in a newline\n"),
    "text-data": Data("alice", 3735928559, 42, 40, "hi  there"),
    "text-ack": Ack("bob", 7, 41),
    "text-ack-held": Ack("bob", 7, 41, ((43, 45), (48, 48))),
    "text-keepalive": Keepalive(),
    "text-ok": Ok(),
    "text-err": Err("invalid peers"),
    # v2: requests
    "v2-register": Frame(TXID, Register("alice", Candidates(None))),
    "v2-register-keyed": Frame(TXID, Register("alice", Candidates(RELAY_A)), ALICE_KEYS, COOKIE, PROOF),
    "v2-connect": Frame(TXID, Connect("alice", "bob"), cookie=COOKIE, proof=PROOF),
    "v2-keepalive": Frame(1, Keepalive()),
    "v2-presence-query": Frame(TXID, PresenceQuery("alice", "bob"), cookie=COOKIE, proof=PROOF),
    "v2-stats-query": Frame(2, StatsQuery()),
    # v2: replies
    "v2-ok": Frame(TXID, Ok()),
    "v2-err": Frame(TXID, Err("alice is held by another key", ErrorCode.FORBIDDEN)),
    "v2-err-version": Frame(TXID, Err("", ErrorCode.VERSION_NOT_SUPPORTED)),
    "v2-retry": Frame(TXID, Retry(COOKIE)),
    "v2-punch": Frame(TXID, Punch("bob", WAN_B, Candidates(Endpoint("198.18.0.20", 49161))), BOB_KEYS),
    "v2-punch-no-relay": Frame(TXID, Punch("bob", WAN_B, Candidates(None)), BOB_KEYS),
    "v2-punch-seed-peer": Frame(TXID, Punch("carol", Endpoint("2001:db8::7", 9000))),
    "v2-presence-report": Frame(TXID, PresenceReport("bob", True, 1234)),
    "v2-presence-report-unknown": Frame(TXID, PresenceReport("bob", False)),
    "v2-stats-report": Frame(2, StatsReport((("empty", 3), ("amplification", 0), ("rate_limited", 2**40)))),
    # v2: peer to peer (inside sealed between v2 clients)
    "v2-hello": Frame(0, Hello("alice")),
    "v2-hello-ack": Frame(0, HelloAck("bob")),
    "v2-data": Frame(0, Data("alice", 3735928559, 42, 40, "hi  there, café ☕")),
    "v2-ack": Frame(0, Ack("bob", 7, 41)),
    "v2-ack-held": Frame(0, Ack("bob", 7, 41, ((43, 45), (48, 48)))),
    "v2-sealed": Frame(0, Sealed("alice", 1_767_225_600, 7, bytes(range(40)))),
}


def _read(name):
    return (FIXTURES / f"{name}.bin").read_bytes()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_vector_parses_and_encodes_back_byte_for_byte(name):
    datagram = _read(name)
    assert parse(datagram) == GOLDEN[name]
    assert encode(GOLDEN[name]) == datagram
    assert encode(parse(datagram)) == datagram


def test_every_fixture_file_has_its_expected_object():
    assert {path.stem for path in FIXTURES.glob("*.bin")} == set(GOLDEN)


def test_every_message_type_of_both_versions_has_a_golden_vector():
    text = {encode(item).split(b" ")[0].decode() for item in GOLDEN.values() if not isinstance(item, Frame)}
    v2 = {encode(item)[2] for item in GOLDEN.values() if isinstance(item, Frame)}
    assert text == VERBS
    assert v2 == set(TYPE_CODES.values())


def test_a_golden_proof_signs_what_signing_bytes_says():
    frame = parse_v2(_read("v2-register-keyed"))
    assert frame.signed == signing_bytes(frame, PROOF.timestamp_ms, PROOF.nonce)
    assert frame.signed.startswith(b"natlab-v2 proof\0\xf5\x02\x01")
