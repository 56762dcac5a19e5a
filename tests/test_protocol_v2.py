"""Protocol v2's wire format: bytes written out by hand, every malformed case, encode's refusals, proofs."""

import re

import pytest

from protocol import (
    HEADER_SIZE,
    MAX_DATAGRAM,
    SIGNING_CONTEXT,
    Ack,
    Candidates,
    Connect,
    Data,
    Endpoint,
    Err,
    ErrorCode,
    ErrorKind,
    Frame,
    Hello,
    Keepalive,
    Keys,
    Msg,
    Ok,
    PresenceReport,
    Proof,
    ProtocolError,
    Punch,
    Register,
    Retry,
    Sealed,
    StatsReport,
    box_associated_data,
    encode,
    parse,
    signing_bytes,
)
from protocol.binary import parse as parse_v2

HEAD = "f5 02 {type:02x} 0000000000000007"
"""Marker, version 2, a type byte, transaction id 7."""


def v2(type_code, fields=""):
    return bytes.fromhex(HEAD.format(type=type_code) + fields)


KEYS = "05 0020" + "11" * 32 + " 06 0020" + "22" * 32
PROOF = "ff 0058 0000018bcfe56800" + "33" * 16 + "44" * 64
"""A proof made at 1,700,000,000,000 ms (0x18bcfe56800), nonce 0x33..., signature 0x44..."""

# Written out field by field from PROTOCOL.md, not produced by the encoder.
BY_HAND = [
    (
        v2(0x01, "01 0001 61  04 0000 " + KEYS + " 07 0001 09 " + PROOF),
        Frame(
            7,
            Register("a", Candidates(None)),
            Keys(b"\x11" * 32, b"\x22" * 32),
            b"\x09",
            Proof(1_700_000_000_000, b"\x33" * 16, b"\x44" * 64),
        ),
    ),
    (v2(0x03), Frame(7, Keepalive())),
    (v2(0x11), Frame(7, Ok())),
    (
        v2(0x01, "01 0005 616c696365  04 0007 04 c6120014 c008"),  # id alice, relay 198.18.0.20:49160
        Frame(7, Register("alice", Candidates(Endpoint("198.18.0.20", 49160)))),
    ),
    (v2(0x01, "01 0005 616c696365  04 0000"), Frame(7, Register("alice", Candidates(None)))),
    (v2(0x02, "01 0001 61  02 0001 62  07 0002 0102"), Frame(7, Connect("a", "b"), cookie=b"\x01\x02")),
    (
        v2(0x14, "02 0003 626f62  03 0013 06 20010db8000000000000000000000001 2328"),
        Frame(7, Punch("bob", Endpoint("2001:db8::1", 9000))),
    ),
    (v2(0x12, "08 0002 0194  09 0005 6e6f206964"), Frame(7, Err("no id", ErrorCode.INVALID_PEERS))),
    (v2(0x13, "07 0001 ff"), Frame(7, Retry(b"\xff"))),
    (v2(0x15, "02 0001 62  10 0001 00"), Frame(7, PresenceReport("b", False))),
    (v2(0x16, "12 0000"), Frame(7, StatsReport(()))),
    (v2(0x21, "01 0001 61"), Frame(7, Hello("a"))),
    (
        v2(0x23, "01 0001 61  0a 0004 00000001  0b 0004 00000002  0c 0004 00000000  0f 0001 78"),
        Frame(7, Data("a", 1, 2, 0, "x")),
    ),
    (v2(0x24, "01 0001 61  0a 0004 00000001  0d 0004 00000005"), Frame(7, Ack("a", 1, 5))),
    (
        v2(0x25, "01 0001 61  14 0008 0000000000000001  15 0008 0000000000000002  16 0010" + "ab" * 16),
        Frame(7, Sealed("a", 1, 2, b"\xab" * 16)),
    ),
]


@pytest.mark.parametrize(("datagram", "frame"), BY_HAND, ids=[f.message.__class__.__name__ for _, f in BY_HAND])
def test_bytes_written_by_hand_parse_and_encode(datagram, frame):
    assert parse(datagram) == frame
    assert encode(frame) == datagram


def test_the_first_byte_tells_the_versions_apart():
    assert parse(b"keepalive") == Keepalive()
    assert parse(v2(0x03)) == Frame(7, Keepalive())
    assert encode(Keepalive()) == b"keepalive"
    assert encode(Frame(7, Keepalive())) == v2(0x03)


# (datagram, kind, reason, garbage)
MALFORMED = [
    (b"\xf5", ErrorKind.TRUNCATED, "v2 datagram of 1 bytes: the header alone is 11", True),
    (v2(0x03)[:-1], ErrorKind.TRUNCATED, "v2 datagram of 10 bytes: the header alone is 11", True),
    (b"\xf5" + b"\x00" * (MAX_DATAGRAM), ErrorKind.OVERSIZE, "datagram of 1401 bytes exceeds 1400", True),
    (v2(0x7F), ErrorKind.UNKNOWN_TYPE, "unknown v2 type 0x7f", True),
    (v2(0x00), ErrorKind.UNKNOWN_TYPE, "unknown v2 type 0x00", True),
    (bytes.fromhex("f5 03 01 0000000000000007"), ErrorKind.VERSION, "version 3 not supported (this is 2)", False),
    (bytes.fromhex("f5 01 03 0000000000000007"), ErrorKind.VERSION, "version 1 not supported (this is 2)", False),
    (v2(0x03, "07"), ErrorKind.BAD_FIELD, "keepalive: a field header needs 3 bytes, 1 left", False),
    (v2(0x03, "07 0002 01"), ErrorKind.BAD_FIELD, "keepalive: field cookie of 2 bytes runs past the end", False),
    (v2(0x03, "13 0000"), ErrorKind.BAD_FIELD, "keepalive: unknown field tag 19", False),
    (v2(0x03, "fe 0000"), ErrorKind.BAD_FIELD, "keepalive: unknown field tag 254", False),
    (v2(0x03, "01 0001 61"), ErrorKind.BAD_FIELD, "keepalive: field id not allowed", False),
    (v2(0x11, "07 0001 01"), ErrorKind.BAD_FIELD, "ok: field cookie not allowed", False),
    (v2(0x13, "07 0001 01 ff 0058" + "00" * 88), ErrorKind.BAD_FIELD, "retry: field proof not allowed", False),
    (
        v2(0x01, "04 0000 01 0001 61"),
        ErrorKind.BAD_FIELD,
        "register: field id out of order or repeated (tags ascend)",
        False,
    ),
    (
        v2(0x01, "01 0001 61 01 0001 61"),
        ErrorKind.BAD_FIELD,
        "register: field id out of order or repeated (tags ascend)",
        False,
    ),
    (v2(0x01, "01 0001 61"), ErrorKind.BAD_FIELD, "register: missing relay", False),
    (v2(0x24), ErrorKind.BAD_FIELD, "ack: missing id, epoch, expected", False),
    (v2(0x01, "01 0003 624064 04 0000"), ErrorKind.BAD_ID, "register: invalid id 'b@d': ids match", False),
    (v2(0x01, "01 0000 04 0000"), ErrorKind.BAD_ID, "register: invalid id '': ids match", False),
    (v2(0x01, "01 0002 c3a9 04 0000"), ErrorKind.BAD_ID, "register: invalid id '\ufffd\ufffd'", False),
    (v2(0x01, "01 0001 61 04 0001 04"), ErrorKind.BAD_ADDRESS, "register: invalid address: family 4 or 6", False),
    (v2(0x01, "01 0001 61 04 0007 06 c6120014 c008"), ErrorKind.BAD_ADDRESS, "register: invalid address", False),
    (
        v2(0x01, "01 0001 61 04 0007 04 c6120014 0000"),
        ErrorKind.BAD_ADDRESS,
        "register: invalid address: port 0",
        False,
    ),
    (
        v2(0x01, "01 0001 61 04 0000 05 0020" + "11" * 16),
        ErrorKind.BAD_FIELD,
        "register: field sign_key of 32 bytes runs",
        False,
    ),
    (
        v2(0x01, "01 0001 61 04 0000 05 0020" + "11" * 32),
        ErrorKind.BAD_FIELD,
        "register: sign_key and box_key come",
        False,
    ),
    (
        v2(0x01, "01 0001 61 04 0000 05 001f" + "11" * 31 + " 06 0020" + "22" * 32),
        ErrorKind.BAD_FIELD,
        "sign key of 31",
        False,
    ),
    (v2(0x01, "01 0001 61 04 0000 07 0000"), ErrorKind.BAD_FIELD, "register: cookie of 0 bytes: 1..32 bytes", False),
    (v2(0x01, "01 0001 61 04 0000 07 0021" + "00" * 33), ErrorKind.BAD_FIELD, "register: cookie of 33 bytes", False),
    (
        v2(0x01, "01 0001 61 04 0000 " + PROOF[:-2]),
        ErrorKind.BAD_FIELD,
        "register: field proof of 88 bytes runs",
        False,
    ),
    (v2(0x01, "01 0001 61 04 0000 ff 0057" + "00" * 87), ErrorKind.BAD_FIELD, "register: proof of 87 bytes: 88", False),
    (v2(0x01, "01 0001 61 04 0000 " + PROOF + " 00"), ErrorKind.BAD_FIELD, "register: a field header needs 3", False),
    (v2(0x12, "08 0002 00c8 09 0000"), ErrorKind.BAD_FIELD, "err: unknown error code 200", False),
    (v2(0x12, "08 0001 01 09 0000"), ErrorKind.BAD_FIELD, "err: code of 1 bytes: 2 bytes", False),
    (v2(0x12, "08 0002 0190 09 00c9" + "61" * 201), ErrorKind.BAD_FIELD, "err: reason of 201 bytes: 0..200", False),
    (v2(0x12, "08 0002 0190 09 0001 ff"), ErrorKind.BAD_FIELD, "err: reason is not UTF-8", False),
    (v2(0x12, "08 0002 0190 09 0003 eda080"), ErrorKind.BAD_FIELD, "err: reason is not UTF-8", False),  # surrogate
    (v2(0x15, "02 0001 62 10 0001 02"), ErrorKind.BAD_FIELD, "presence-report: online is one byte, 0 or 1", False),
    (v2(0x16, "12 0001 00"), ErrorKind.BAD_FIELD, "stats-report: counters: a name of 1..64", False),
    (v2(0x16, "12 0003 02 2061"), ErrorKind.BAD_FIELD, "stats-report: counters: a name", False),  # a space
    (v2(0x16, "12 0009 01 61 00000000000000"), ErrorKind.BAD_FIELD, "stats-report: counters: a name", False),
    (
        v2(0x23, "01 0001 61 0a 0004 00000001 0b 0004 00000002 0c 0004 00000000 0f 0000"),
        ErrorKind.BAD_FIELD,
        "text of 0",
        False,
    ),
    (
        v2(0x23, "01 0001 61 0a 0003 000001 0b 0004 00000002 0c 0004 00000000 0f 0001 78"),
        ErrorKind.BAD_FIELD,
        "epoch of 3",
        False,
    ),
    (
        v2(0x24, "01 0001 61 0a 0004 00000001 0d 0004 00000005 0e 0000"),
        ErrorKind.BAD_FIELD,
        "ack: held is 1..16",
        False,
    ),
    (
        v2(0x24, "01 0001 61 0a 0004 00000001 0d 0004 00000005 0e 0008 00000003 00000002"),
        ErrorKind.BAD_FIELD,
        "ends before",
        False,
    ),
    (
        v2(0x24, "01 0001 61 0a 0004 00000001 0d 0004 00000005 0e 0088" + "00" * 136),
        ErrorKind.BAD_FIELD,
        "held is 1..16",
        False,
    ),
    (
        v2(0x25, "01 0001 61 14 0008 0000000000000001 15 0008 0000000000000002 16 000f" + "ab" * 15),
        ErrorKind.BAD_FIELD,
        "box of 15",
        False,
    ),
]


@pytest.mark.parametrize(("datagram", "kind", "reason", "garbage"), MALFORMED, ids=[m[2][:50] for m in MALFORMED])
def test_malformed_v2_datagram_raises_protocol_error(datagram, kind, reason, garbage):
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert caught.value.kind is kind
    assert reason in caught.value.reason
    assert caught.value.kind.garbage is garbage
    # Whatever can be answered carries the transaction id to answer with (and never a text err's verb alone).
    assert (caught.value.txid == 7) if not garbage else True
    assert len(caught.value.reason) < 160, "a reason goes into an Err reply: it stays short"


def test_a_bad_field_names_the_type_so_the_server_can_answer_it():
    with pytest.raises(ProtocolError) as caught:
        parse(v2(0x02, "01 0001 61"))
    assert (caught.value.verb, caught.value.txid, caught.value.kind) == ("connect", 7, ErrorKind.BAD_FIELD)


def test_every_datagram_size_up_to_the_limit_is_accepted():
    text = "x" * (MAX_DATAGRAM - HEADER_SIZE - (3 + 1) - 3 * (3 + 4) - 3)  # header, id "a", 3 counters, text
    frame = Frame(0, Data("a", 1, 2, 3, text))
    assert len(encode(frame)) == MAX_DATAGRAM
    assert parse(encode(frame)) == frame
    with pytest.raises(ValueError, match="exceeds 1400"):
        encode(Frame(0, Data("a", 1, 2, 3, text + "x")))


SIGN = b"\x11" * 32
BOX = b"\x22" * 32
A_PROOF = Proof(1_700_000_000_000, b"\x33" * 16, b"\x44" * 64)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (Frame(0, Msg("a", "hi")), "Msg has no v2 form"),
        (Frame(0, Register("alice")), "a v2 register carries candidates"),
        (Frame(0, Err("no")), "a v2 err carries a code"),
        (Frame(0, Ok(), keys=Keys(SIGN, BOX)), "a v2 ok carries no keys"),
        (Frame(0, Retry(b"c"), cookie=b"c"), "a v2 retry carries no cookie"),
        (Frame(0, Hello("a"), proof=A_PROOF), "a v2 hello carries no proof"),
        (Frame(-1, Ok()), "txid -1 out of range"),
        (Frame(2**64, Ok()), "out of range"),
        (Frame(0, Hello("b@d")), "invalid id"),
        (Frame(0, Punch("b", Endpoint("2001:DB8::1", 9))), "not a canonical IP address"),
        (Frame(0, Punch("b", Endpoint("localhost", 9))), "does not appear to be an IPv4 or IPv6 address"),
        (Frame(0, Punch("b", Endpoint("1.2.3.4", 0))), "not a canonical IP address"),
        (Frame(0, Register("a", Candidates(None)), keys=Keys(SIGN, BOX[:31])), "box key of 31 bytes"),
        (Frame(0, Register("a", Candidates(None)), cookie=b""), "cookie of 0 bytes"),
        (Frame(0, Register("a", Candidates(None)), proof=Proof(0, b"", b"")), "a proof's nonce is 16 bytes"),
        (Frame(0, Register("a", Candidates(None)), proof=Proof(-1, b"n" * 16, b"s" * 64)), "timestamp -1"),
        (Frame(0, Data("a", 2**32, 0, 0, "x")), "epoch 4294967296 out of range"),
        (Frame(0, Data("a", 0, 0, 0, "")), "text of 0 bytes"),
        (Frame(0, Ack("a", 0, 0, ((2, 1),))), "held"),
        (Frame(0, Ack("a", 0, 0, tuple((i, i) for i in range(17)))), "held"),
        (Frame(0, Err("x" * 201, ErrorCode.BAD_REQUEST)), "reason of 201 bytes"),
        (Frame(0, PresenceReport("a", 1)), "online 1 is not a bool"),  # type: ignore[arg-type]
        (Frame(0, StatsReport((("a b", 1),))), "counter 'a b'=1"),
        (Frame(0, StatsReport((("é", 1),))), "ascii"),
        (Frame(0, StatsReport((("a", -1),))), "counter 'a'=-1"),
        (Frame(0, Sealed("a", 0, 0, b"short")), "box of 5 bytes"),
    ],
)
def test_encode_refuses_a_frame_with_no_wire_form(frame, problem):
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        encode(frame)
    assert not isinstance(caught.value, ProtocolError), "a caller's mistake, not a peer's"


def test_the_proof_signs_the_bytes_before_it_with_its_timestamp_and_nonce():
    frame = Frame(9, Connect("alice", "bob"), cookie=b"\x01" * 17, proof=A_PROOF)
    datagram = encode(frame)
    before = datagram[: -(3 + 88)]
    expected = SIGNING_CONTEXT + before + A_PROOF.timestamp_ms.to_bytes(8, "big") + A_PROOF.nonce
    parsed = parse_v2(datagram)
    assert parsed.signed == expected
    assert signing_bytes(frame, A_PROOF.timestamp_ms, A_PROOF.nonce) == expected
    unsigned = Frame(9, Connect("alice", "bob"), cookie=b"\x01" * 17)
    assert signing_bytes(unsigned, A_PROOF.timestamp_ms, A_PROOF.nonce) == expected
    assert parse_v2(encode(unsigned)).signed == b""
    assert parsed == frame, "signed is not part of a frame's equality"


def test_signing_bytes_refuses_what_cannot_carry_a_proof():
    with pytest.raises(ValueError, match="a v2 ok carries no proof"):
        signing_bytes(Frame(0, Ok()), 0, b"\x00" * 16)


def test_the_box_associated_data_is_the_sealed_datagram_before_its_box():
    frame = Frame(0, Sealed("alice", 3, 99, b"\xee" * 40))
    datagram = encode(frame)
    assert box_associated_data(frame) == datagram[: -(3 + 40)]
    placeholder = Frame(0, Sealed("alice", 3, 99, bytes(16)))
    assert box_associated_data(placeholder) == box_associated_data(frame)
    assert box_associated_data(parse_v2(datagram)) == datagram[: -(3 + 40)]
    with pytest.raises(ValueError, match="only a sealed frame"):
        box_associated_data(Frame(0, Ok()))


def test_text_has_no_form_for_v2_only_messages_and_drops_an_err_code():
    with pytest.raises(ValueError, match="Retry has no text form"):
        encode(Retry(b"c"))
    assert encode(Err("no", ErrorCode.BAD_REQUEST)) == b"err no"


def test_error_codes_have_their_phrases():
    assert {code.value: code.phrase for code in ErrorCode} == {
        400: "bad request",
        401: "bad proof",
        403: "forbidden",
        404: "invalid peers",
        409: "stale or replayed proof",
        429: "rate limited",
        503: "peer table full",
        505: "version not supported",
    }
