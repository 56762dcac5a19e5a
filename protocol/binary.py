"""Protocol v2: one binary frame per datagram, parsed and encoded through one type table (PROTOCOL.md).

    byte 0      0xF5 (MARKER): never a byte of UTF-8, so never the start of a text datagram
    byte 1      version (2)
    byte 2      type (the table below)
    bytes 3-10  transaction id (u64), chosen by the requester and echoed in every reply
    then        fields (tag u8, length u16, value), tags strictly ascending: see protocol/fields.py

Each type is one row of :data:`_TYPES`: its code, name and message class, which fields it must and may
carry, and how the message is built from the fields and taken apart again. The frame-level fields (the
sender's or a peer's keys, a cookie, a proof) belong to :class:`Frame`, not to the message.

Canonical: ``encode(parse(b)) == b`` for every ``b`` that parses, since every value has one form and the
fields one order. Malformed input raises ProtocolError (see ErrorKind for which kinds are garbage).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from protocol.fields import FIELDS, FieldError, FieldTag, Proof
from protocol.messages import (
    MAX_DATAGRAM,
    Ack,
    Candidates,
    Connect,
    Data,
    Err,
    ErrorKind,
    Hello,
    HelloAck,
    Keepalive,
    Message,
    Ok,
    ProtocolError,
    Punch,
    Register,
)
from protocol.v2messages import PresenceQuery, PresenceReport, Retry, Sealed, StatsQuery, StatsReport

MARKER = 0xF5
_MARKER_BYTE = bytes([MARKER])
VERSION = 2
_HEADER = struct.Struct(">BBBQ")
HEADER_SIZE = _HEADER.size
"""11 bytes; every version keeps bytes 0-10 as they are in v2, so any receiver can answer a version it does
not speak with an Err 505 carrying the request's transaction id."""
_FIELD = struct.Struct(">BH")
SIGNING_CONTEXT = b"natlab-v2 proof\0"
"""What a proof's signed bytes start with: a signature made for anything else never verifies here."""

T = FieldTag


@dataclass(frozen=True)
class Keys:
    """Public keys: ``sign`` (Ed25519, identity) and ``box`` (X25519, key agreement), 32 bytes each."""

    sign: bytes
    box: bytes


@dataclass(frozen=True)
class Frame:
    """One v2 datagram: a message with its transaction id and the frame-level fields its type allows."""

    txid: int
    message: Message
    keys: Keys | None = None
    """The sender's keys (register) or the named peer's (punch)."""
    cookie: bytes | None = None
    """The server's cookie, echoed in a request after a Retry."""
    proof: Proof | None = None
    signed: bytes = field(default=b"", compare=False)
    """Set by parse when there is a proof: the exact bytes its signature covers."""


M = TypeVar("M", bound=Message)
_Fields = Iterable[tuple[FieldTag, Any]]


@dataclass(frozen=True)
class _Type(Generic[M]):
    """One message type of v2: the type byte, and its fields read into a message and back."""

    code: int
    name: str
    type: type[M]
    required: frozenset[FieldTag]
    build: Callable[[dict[int, Any]], M]
    """The message from its fields' values, by tag (every required tag present, optional ones maybe)."""
    fields: Callable[[M], _Fields]
    """The message's fields, ``(tag, value)``; an optional field that is absent is left out."""
    optional: frozenset[FieldTag] = frozenset()
    frame: frozenset[FieldTag] = frozenset()
    """Frame-level tags this type may carry (SIGN_KEY and BOX_KEY, COOKIE, PROOF)."""

    @functools.cached_property
    def allowed(self) -> frozenset[FieldTag]:
        return self.required | self.optional | self.frame


_KEYS = frozenset({T.SIGN_KEY, T.BOX_KEY})
_REQUEST = frozenset({T.COOKIE, T.PROOF})
"""What every request to the server may carry: the cookie it echoes and a proof of its key."""


def _relay(message: Register | Punch) -> _Fields:
    if message.candidates is None:
        if isinstance(message, Register):
            raise ValueError("a v2 register carries candidates: Candidates(None) when there is no relay")
        return ()
    return ((T.RELAY, message.candidates.relay),)


def _code(message: Err) -> _Fields:
    if message.code is None:
        raise ValueError("a v2 err carries a code")
    return ((T.CODE, message.code), (T.REASON, message.reason))


def _t(code: int, name: str, cls: type[M], required: Iterable[FieldTag], **rest: Any) -> _Type[M]:
    return _Type(code, name, cls, frozenset(required), **rest)


_TYPES: tuple[_Type[Any], ...] = (
    # requests, client -> server
    _t(
        0x01,
        "register",
        Register,
        (T.ID, T.RELAY),
        build=lambda v: Register(v[T.ID], Candidates(v[T.RELAY])),
        fields=lambda m: ((T.ID, m.id), *_relay(m)),
        frame=_KEYS | _REQUEST,
    ),
    _t(
        0x02,
        "connect",
        Connect,
        (T.ID, T.PEER_ID),
        build=lambda v: Connect(v[T.ID], v[T.PEER_ID]),
        fields=lambda m: ((T.ID, m.from_id), (T.PEER_ID, m.to_id)),
        frame=_REQUEST,
    ),
    _t(0x03, "keepalive", Keepalive, (), build=lambda v: Keepalive(), fields=lambda m: (), frame=_REQUEST),
    _t(
        0x04,
        "presence-query",
        PresenceQuery,
        (T.ID, T.PEER_ID),
        build=lambda v: PresenceQuery(v[T.ID], v[T.PEER_ID]),
        fields=lambda m: ((T.ID, m.from_id), (T.PEER_ID, m.peer_id)),
        frame=_REQUEST,
    ),
    _t(0x05, "stats-query", StatsQuery, (), build=lambda v: StatsQuery(), fields=lambda m: (), frame=_REQUEST),
    # replies, server -> client
    _t(0x11, "ok", Ok, (), build=lambda v: Ok(), fields=lambda m: ()),
    _t(0x12, "err", Err, (T.CODE, T.REASON), build=lambda v: Err(v[T.REASON], v[T.CODE]), fields=_code),
    _t(0x13, "retry", Retry, (T.COOKIE,), build=lambda v: Retry(v[T.COOKIE]), fields=lambda m: ((T.COOKIE, m.cookie),)),
    _t(
        0x14,
        "punch",
        Punch,
        (T.PEER_ID, T.ADDR),
        optional=frozenset({T.RELAY}),
        build=lambda v: Punch(v[T.PEER_ID], v[T.ADDR], Candidates(v[T.RELAY]) if T.RELAY in v else None),
        fields=lambda m: ((T.PEER_ID, m.id), (T.ADDR, m.addr), *_relay(m)),
        frame=_KEYS,
    ),
    _t(
        0x15,
        "presence-report",
        PresenceReport,
        (T.PEER_ID, T.ONLINE),
        optional=frozenset({T.AGE_MS}),
        build=lambda v: PresenceReport(v[T.PEER_ID], v[T.ONLINE], v.get(T.AGE_MS)),
        fields=lambda m: (
            (T.PEER_ID, m.peer_id),
            (T.ONLINE, m.online),
            *(() if m.age_ms is None else ((T.AGE_MS, m.age_ms),)),
        ),
    ),
    _t(
        0x16,
        "stats-report",
        StatsReport,
        (T.COUNTERS,),
        build=lambda v: StatsReport(v[T.COUNTERS]),
        fields=lambda m: ((T.COUNTERS, m.counters),),
    ),
    # peer to peer, client -> client (inside Sealed between v2 clients)
    _t(0x21, "hello", Hello, (T.ID,), build=lambda v: Hello(v[T.ID]), fields=lambda m: ((T.ID, m.id),)),
    _t(0x22, "hello-ack", HelloAck, (T.ID,), build=lambda v: HelloAck(v[T.ID]), fields=lambda m: ((T.ID, m.id),)),
    _t(
        0x23,
        "data",
        Data,
        (T.ID, T.EPOCH, T.SEQ, T.FLOOR, T.TEXT),
        build=lambda v: Data(v[T.ID], v[T.EPOCH], v[T.SEQ], v[T.FLOOR], v[T.TEXT]),
        fields=lambda m: ((T.ID, m.id), (T.EPOCH, m.epoch), (T.SEQ, m.seq), (T.FLOOR, m.floor), (T.TEXT, m.text)),
    ),
    _t(
        0x24,
        "ack",
        Ack,
        (T.ID, T.EPOCH, T.EXPECTED),
        optional=frozenset({T.HELD}),
        build=lambda v: Ack(v[T.ID], v[T.EPOCH], v[T.EXPECTED], v.get(T.HELD, ())),
        fields=lambda m: (
            (T.ID, m.id),
            (T.EPOCH, m.epoch),
            (T.EXPECTED, m.expected),
            *(((T.HELD, m.held),) if m.held else ()),
        ),
    ),
    _t(
        0x25,
        "sealed",
        Sealed,
        (T.ID, T.BOOT, T.COUNTER, T.BOX),
        build=lambda v: Sealed(v[T.ID], v[T.BOOT], v[T.COUNTER], v[T.BOX]),
        fields=lambda m: ((T.ID, m.id), (T.BOOT, m.boot), (T.COUNTER, m.counter), (T.BOX, m.box)),
    ),
)
_BY_CODE: dict[int, _Type[Any]] = {row.code: row for row in _TYPES}
_BY_CLASS: dict[type, _Type[Any]] = {row.type: row for row in _TYPES}

TYPE_CODES = {row.name: row.code for row in _TYPES}
"""v2's message types, name -> type byte (``msg`` is text only: v2 peers send ``data``)."""
TYPES = frozenset(TYPE_CODES)


def parse(data: bytes) -> Frame:
    """Parse one v2 datagram (its first byte is :data:`MARKER`); raises :class:`ProtocolError`."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}", ErrorKind.OVERSIZE)
    if data[:1] != _MARKER_BYTE:
        raise ProtocolError("not a v2 datagram (no marker byte)", ErrorKind.UNKNOWN_TYPE)
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"v2 datagram of {len(data)} bytes: the header alone is {HEADER_SIZE}", ErrorKind.TRUNCATED)
    _, version, code, txid = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ProtocolError(f"version {version} not supported (this is {VERSION})", ErrorKind.VERSION, txid=txid)
    row = _BY_CODE.get(code)
    if row is None:
        raise ProtocolError(f"unknown v2 type 0x{code:02x}", ErrorKind.UNKNOWN_TYPE, txid=txid)
    try:
        values, proof_at = _read_fields(data, row)
        if (T.SIGN_KEY in values) != (T.BOX_KEY in values):
            raise FieldError("sign_key and box_key come together")
        message = row.build(values)
    except FieldError as exc:
        raise ProtocolError(f"{row.name}: {exc.reason}", exc.kind, row.name, txid) from None
    keys = Keys(values[T.SIGN_KEY], values[T.BOX_KEY]) if T.SIGN_KEY in values else None
    cookie = values.get(T.COOKIE) if T.COOKIE in row.frame else None
    proof = values.get(T.PROOF)
    signed = b"" if proof is None else _signing_bytes(data[:proof_at], proof)
    return Frame(txid, message, keys, cookie, proof, signed)


def _read_fields(data: bytes, row: _Type[Any]) -> tuple[dict[int, Any], int]:
    """Every field's value by tag, and where the PROOF field starts (the length when there is none)."""
    values: dict[int, Any] = {}
    position, end, last, proof_at = HEADER_SIZE, len(data), 0, len(data)
    allowed = row.allowed
    while position < end:
        if position + _FIELD.size > end:
            raise FieldError(f"a field header needs {_FIELD.size} bytes, {end - position} left")
        tag, length = _FIELD.unpack_from(data, position)
        spec = FIELDS.get(tag)
        if spec is None:
            raise FieldError(f"unknown field tag {tag}")
        if tag <= last:
            raise FieldError(f"field {spec.name} out of order or repeated (tags ascend)")
        if tag not in allowed:
            raise FieldError(f"field {spec.name} not allowed")
        start = position + _FIELD.size
        if start + length > end:
            raise FieldError(f"field {spec.name} of {length} bytes runs past the end")
        values[tag] = spec.unpack(data[start : start + length])
        if tag == T.PROOF:
            proof_at = position
        last, position = tag, start + length
    missing = row.required - values.keys()
    if missing:
        raise FieldError("missing " + ", ".join(FIELDS[tag].name for tag in sorted(missing)))
    return values, proof_at


def encode(frame: Frame) -> bytes:
    """The datagram for a frame; ``parse(encode(f)) == f`` for every frame this does not refuse. Raises
    ``ValueError`` for a frame with no wire form (a field its type does not carry, a value out of range,
    over MAX_DATAGRAM bytes)."""
    datagram = _unsigned(frame)
    if frame.proof is not None:
        datagram += _field(T.PROOF, frame.proof)
    if len(datagram) > MAX_DATAGRAM:
        raise ValueError(f"frame of {len(datagram)} bytes exceeds {MAX_DATAGRAM}")
    return datagram


def signing_bytes(frame: Frame, timestamp_ms: int, nonce: bytes) -> bytes:
    """What a proof made at ``timestamp_ms`` with ``nonce`` signs for ``frame`` (whose own proof, if any, is
    ignored): the same bytes parse() sets as ``Frame.signed`` once the proof is added."""
    proof = Proof(timestamp_ms, nonce, bytes(64))
    return _signing_bytes(_unsigned(replace(frame, proof=proof)), proof)


def box_associated_data(frame: Frame) -> bytes:
    """The bytes of a ``Sealed`` frame's datagram before its BOX field: the AEAD's associated data. The box's
    content does not matter (seal with a placeholder box, then put the real one in)."""
    if not isinstance(frame.message, Sealed):
        raise ValueError("only a sealed frame has a box")
    datagram = _unsigned(frame)
    return datagram[: len(datagram) - _FIELD.size - len(frame.message.box)]


def _signing_bytes(before_proof: bytes, proof: Proof) -> bytes:
    return SIGNING_CONTEXT + before_proof + proof.timestamp_ms.to_bytes(8, "big") + proof.nonce


def _unsigned(frame: Frame) -> bytes:
    """The header and every field but the proof (the proof's type-check included)."""
    row = _BY_CLASS.get(type(frame.message))
    if row is None:
        raise ValueError(f"{type(frame.message).__name__} has no v2 form (v2 peers send data, not msg)")
    if not 0 <= frame.txid < 1 << 64:
        raise ValueError(f"txid {frame.txid} out of range")
    refused = [
        name
        for name, value, tags in (
            ("keys", frame.keys, _KEYS),
            ("cookie", frame.cookie, {T.COOKIE}),
            ("proof", frame.proof, {T.PROOF}),
        )
        if value is not None and not tags <= row.frame
    ]
    if refused:
        raise ValueError(f"a v2 {row.name} carries no {', '.join(refused)}")
    pairs = list(row.fields(frame.message))
    if frame.keys is not None:
        pairs += ((T.SIGN_KEY, frame.keys.sign), (T.BOX_KEY, frame.keys.box))
    if frame.cookie is not None:
        pairs.append((T.COOKIE, frame.cookie))
    pairs.sort(key=lambda pair: pair[0])
    header = _HEADER.pack(MARKER, VERSION, row.code, frame.txid)
    return header + b"".join(_field(tag, value) for tag, value in pairs)


def _field(tag: FieldTag, value: Any) -> bytes:
    raw = FIELDS[tag].pack(value)
    if len(raw) > 0xFFFF:
        raise ValueError(f"field {FIELDS[tag].name} of {len(raw)} bytes")
    return _FIELD.pack(tag, len(raw)) + raw
