"""Protocol v2's fields: the tag of each and how its value is written, one row per tag (pack and unpack side
by side, as aioice's STUN attribute table has them).

A field on the wire is ``tag (u8) | length (u16) | value``; all integers are big-endian. ``unpack`` takes
exactly the value's bytes and raises :class:`FieldError` for anything but the one canonical form, so that a
value read and written again is the same bytes. ``pack`` raises ``ValueError`` for a value that has no
wire form (a caller's mistake, not a peer's), so nothing is encoded that the parser would refuse.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.ids import ID_RE, ID_SYNTAX
from protocol.messages import MAX_HELD_RANGES, Endpoint, ErrorCode, ErrorKind, shorten

KEY_SIZE = 32
"""Bytes of an Ed25519 or X25519 public key."""
NONCE_SIZE = 16
SIGNATURE_SIZE = 64
MAX_COOKIE = 32
MAX_REASON = 200
"""Most bytes of an ``Err``'s reason: a reply stays far below the request sizes it answers."""
MIN_BOX = 16
"""An AEAD box is at least its tag (Poly1305's 16 bytes)."""
MAX_COUNTER_NAME = 64


class FieldTag(enum.IntEnum):
    ID = 1
    PEER_ID = 2
    ADDR = 3
    RELAY = 4
    SIGN_KEY = 5
    BOX_KEY = 6
    COOKIE = 7
    CODE = 8
    REASON = 9
    EPOCH = 10
    SEQ = 11
    FLOOR = 12
    EXPECTED = 13
    HELD = 14
    TEXT = 15
    ONLINE = 16
    AGE_MS = 17
    COUNTERS = 18
    BOOT = 20
    COUNTER = 21
    BOX = 22
    PROOF = 255
    """Always last (the highest tag): the signature covers every byte before it."""


@dataclass(frozen=True)
class Proof:
    """A signature over the frame's bytes before the PROOF field (see ``protocol.binary.signing_bytes``)."""

    timestamp_ms: int
    """Milliseconds since the Unix epoch when it was made."""
    nonce: bytes
    signature: bytes


class FieldError(Exception):
    """A field's value is not in its canonical form (the parser turns it into a ProtocolError)."""

    def __init__(self, reason: str, kind: ErrorKind = ErrorKind.BAD_FIELD) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RANGE = struct.Struct(">II")
_PROOF = struct.Struct(f">Q{NONCE_SIZE}s{SIGNATURE_SIZE}s")
PROOF_SIZE = _PROOF.size


def _unpack_id(raw: bytes) -> str:
    text = raw.decode("ascii", "replace")
    if not ID_RE.match(text):
        raise FieldError(f"invalid id {shorten(text)}: ids match {ID_SYNTAX}", ErrorKind.BAD_ID)
    return text


def _pack_id(value: str) -> bytes:
    if not ID_RE.match(value):
        raise ValueError(f"invalid id {shorten(value)}: ids match {ID_SYNTAX}")
    return value.encode("ascii")


_FAMILY_SIZES = {4: 4, 6: 16}


def _unpack_addr(raw: bytes) -> Endpoint:
    family = raw[0] if raw else 0
    size = _FAMILY_SIZES.get(family)
    if size is None or len(raw) != 1 + size + 2:
        raise FieldError("invalid address: family 4 or 6, then 4 or 16 address bytes and a port", ErrorKind.BAD_ADDRESS)
    (port,) = _U16.unpack_from(raw, 1 + size)
    if port == 0:
        raise FieldError("invalid address: port 0", ErrorKind.BAD_ADDRESS)
    return Endpoint(str(ipaddress.ip_address(raw[1 : 1 + size])), port)


def _pack_addr(value: Endpoint) -> bytes:
    address = ipaddress.ip_address(value.host)  # ValueError for a name
    if str(address) != value.host or not 0 < value.port < 65536:
        raise ValueError(f"{value!r} is not a canonical IP address and port")
    return bytes([address.version]) + address.packed + _U16.pack(value.port)


def _unpack_relay(raw: bytes) -> Endpoint | None:
    return _unpack_addr(raw) if raw else None


def _pack_relay(value: Endpoint | None) -> bytes:
    return b"" if value is None else _pack_addr(value)


def _sized(name: str, low: int, high: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """Unpack and pack for opaque bytes of ``low``..``high`` bytes."""
    rule = f"{low} bytes" if low == high else f"{low}..{high} bytes"

    def check(raw: bytes, error: Callable[[str], Exception]) -> bytes:
        if not low <= len(raw) <= high:
            raise error(f"{name} of {len(raw)} bytes: {rule}")
        return bytes(raw)

    return (lambda raw: check(raw, FieldError)), (lambda value: check(value, ValueError))


def _uint(name: str, layout: struct.Struct) -> tuple[Callable[[bytes], int], Callable[[int], bytes]]:
    limit = 1 << (8 * layout.size)

    def unpack(raw: bytes) -> int:
        if len(raw) != layout.size:
            raise FieldError(f"{name} of {len(raw)} bytes: {layout.size} bytes")
        value: int = layout.unpack(raw)[0]
        return value

    def pack(value: int) -> bytes:
        if not 0 <= value < limit:
            raise ValueError(f"{name} {value} out of range")
        return layout.pack(value)

    return unpack, pack


def _unpack_text(name: str, raw: bytes, low: int, high: int) -> str:
    if not low <= len(raw) <= high:
        raise FieldError(f"{name} of {len(raw)} bytes: {low}..{high} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError(f"{name} is not UTF-8") from None


def _pack_text(name: str, value: str, low: int, high: int) -> bytes:
    raw = value.encode("utf-8")
    if not low <= len(raw) <= high:
        raise ValueError(f"{name} of {len(raw)} bytes: {low}..{high} bytes")
    return raw


def _unpack_code(raw: bytes) -> ErrorCode:
    value = _unpack_u16(raw)
    try:
        return ErrorCode(value)
    except ValueError:
        raise FieldError(f"unknown error code {value}") from None


def _unpack_online(raw: bytes) -> bool:
    if raw not in (b"\x00", b"\x01"):
        raise FieldError("online is one byte, 0 or 1")
    return raw == b"\x01"


def _pack_online(value: bool) -> bytes:
    if not isinstance(value, bool):
        raise ValueError(f"online {value!r} is not a bool")
    return b"\x01" if value else b"\x00"


def _unpack_held(raw: bytes) -> tuple[tuple[int, int], ...]:
    count, extra = divmod(len(raw), _RANGE.size)
    if extra or not 0 < count <= MAX_HELD_RANGES:
        raise FieldError(f"held is 1..{MAX_HELD_RANGES} ranges of 8 bytes")
    held = tuple(_RANGE.iter_unpack(raw))
    if any(first > last for first, last in held):
        raise FieldError("a held range ends before it starts")
    return held


def _pack_held(value: tuple[tuple[int, int], ...]) -> bytes:
    if not 0 < len(value) <= MAX_HELD_RANGES or any(not 0 <= a <= b < 1 << 32 for a, b in value):
        raise ValueError(f"held {value!r}: 1..{MAX_HELD_RANGES} ranges (first <= last, u32)")
    return b"".join(_RANGE.pack(first, last) for first, last in value)


def _counter_name_ok(name: bytes) -> bool:
    """Printable ASCII without spaces: a counter's name is shown and logged as it is."""
    return 0 < len(name) <= MAX_COUNTER_NAME and all(0x21 <= c <= 0x7E for c in name)


def _unpack_counters(raw: bytes) -> tuple[tuple[str, int], ...]:
    counters, position = [], 0
    while position < len(raw):
        end = position + 1 + raw[position]
        name = raw[position + 1 : end]
        if not _counter_name_ok(name) or end + _U64.size > len(raw):
            raise FieldError(f"counters: a name of 1..{MAX_COUNTER_NAME} printable characters and a u64 each")
        counters.append((name.decode("ascii"), _U64.unpack_from(raw, end)[0]))
        position = end + _U64.size
    return tuple(counters)


def _pack_counters(value: tuple[tuple[str, int], ...]) -> bytes:
    out = bytearray()
    for name, count in value:
        raw = name.encode("ascii")  # UnicodeEncodeError is a ValueError
        if not _counter_name_ok(raw) or not 0 <= count < 1 << 64:
            raise ValueError(f"counter {shorten(name)}={count}: a printable name and a u64")
        out += bytes([len(raw)]) + raw + _U64.pack(count)
    return bytes(out)


def _unpack_proof(raw: bytes) -> Proof:
    if len(raw) != PROOF_SIZE:
        raise FieldError(f"proof of {len(raw)} bytes: {PROOF_SIZE} bytes")
    return Proof(*_PROOF.unpack(raw))


def _pack_proof(value: Proof) -> bytes:
    if len(value.nonce) != NONCE_SIZE or len(value.signature) != SIGNATURE_SIZE:
        raise ValueError(f"a proof's nonce is {NONCE_SIZE} bytes and its signature {SIGNATURE_SIZE}")
    if not 0 <= value.timestamp_ms < 1 << 64:
        raise ValueError(f"proof timestamp {value.timestamp_ms} out of range")
    return _PROOF.pack(value.timestamp_ms, value.nonce, value.signature)


_unpack_u16, _pack_u16 = _uint("code", _U16)


@dataclass(frozen=True)
class Field:
    """One tag: its name (in errors and PROTOCOL.md) and how its value is read and written."""

    tag: FieldTag
    unpack: Callable[[bytes], Any]
    pack: Callable[[Any], bytes]

    @property
    def name(self) -> str:
        return self.tag.name.lower()


def _row(tag: FieldTag, codec: tuple[Callable[[bytes], Any], Callable[[Any], bytes]]) -> Field:
    return Field(tag, *codec)


def _text_codec(name: str, low: int, high: int) -> tuple[Callable[[bytes], str], Callable[[str], bytes]]:
    return (lambda raw: _unpack_text(name, raw, low, high)), (lambda value: _pack_text(name, value, low, high))


FIELDS: dict[int, Field] = {
    field.tag: field
    for field in (
        Field(FieldTag.ID, _unpack_id, _pack_id),
        Field(FieldTag.PEER_ID, _unpack_id, _pack_id),
        Field(FieldTag.ADDR, _unpack_addr, _pack_addr),
        Field(FieldTag.RELAY, _unpack_relay, _pack_relay),
        _row(FieldTag.SIGN_KEY, _sized("sign key", KEY_SIZE, KEY_SIZE)),
        _row(FieldTag.BOX_KEY, _sized("box key", KEY_SIZE, KEY_SIZE)),
        _row(FieldTag.COOKIE, _sized("cookie", 1, MAX_COOKIE)),
        Field(FieldTag.CODE, _unpack_code, lambda code: _pack_u16(ErrorCode(code))),
        _row(FieldTag.REASON, _text_codec("reason", 0, MAX_REASON)),
        _row(FieldTag.EPOCH, _uint("epoch", _U32)),
        _row(FieldTag.SEQ, _uint("seq", _U32)),
        _row(FieldTag.FLOOR, _uint("floor", _U32)),
        _row(FieldTag.EXPECTED, _uint("expected", _U32)),
        Field(FieldTag.HELD, _unpack_held, _pack_held),
        _row(FieldTag.TEXT, _text_codec("text", 1, 0xFFFF)),
        Field(FieldTag.ONLINE, _unpack_online, _pack_online),
        _row(FieldTag.AGE_MS, _uint("age_ms", _U32)),
        Field(FieldTag.COUNTERS, _unpack_counters, _pack_counters),
        _row(FieldTag.BOOT, _uint("boot", _U64)),
        _row(FieldTag.COUNTER, _uint("counter", _U64)),
        _row(FieldTag.BOX, _sized("box", MIN_BOX, 0xFFFF)),
        Field(FieldTag.PROOF, _unpack_proof, _pack_proof),
    )
}
"""Every field tag, by its number; a tag not here is refused."""
