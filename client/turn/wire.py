"""STUN/TURN wire helpers on top of aioice's STUN codec (:mod:`aioice.stun`): pure, no sockets, no clocks.

aioice packs and parses STUN through its attribute table; this module adds a typed view of a parsed
message (:class:`StunMessage`) and the TURN pieces aioice 0.8 lacks:

* the DATA attribute (0x0013): aioice's table has no entry for it (its TURN client only uses channels), so
  Send indications append it by hand and Data indications read it from the raw attributes;
* ChannelData framing (RFC 8656 section 12.4);
* telling TURN datagrams from natlab's text protocol on one socket (:func:`is_turn_datagram`);
* the long-term credential key and a STUN Binding request/response helper.

Malformed input raises ``ValueError`` with a message that names the problem.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aioice import stun

from protocol import Endpoint

COOKIE = 0x2112A442
_COOKIE_BYTES = COOKIE.to_bytes(4, "big")
HEADER_LENGTH = 20
DATA = 0x0013
"""The DATA attribute's type: not in aioice 0.8's attribute table."""

UDP = 17 << 24
"""REQUESTED-TRANSPORT for UDP: the protocol number in the first byte, three bytes RFFU."""

CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x4FFF
"""RFC 8656 channel numbers (RFC 5766 allowed up to 0x7FFF; 0x5000-0x7FFF are now reserved)."""

METHOD_NAMES = {int(m): "".join(w.capitalize() for w in m.name.split("_")) for m in stun.Method}
"""Method number -> the RFC's name for it (Allocate, CreatePermission, ...), for reasons and logs."""

CLASS_REQUEST: int = stun.Class.REQUEST
CLASS_INDICATION: int = stun.Class.INDICATION
CLASS_RESPONSE: int = stun.Class.RESPONSE
CLASS_ERROR: int = stun.Class.ERROR


def is_stun(data: bytes) -> bool:
    """A STUN message: the first two bits zero and the magic cookie at bytes 4-8 (RFC 8489 section 5)."""
    return len(data) >= HEADER_LENGTH and data[0] & 0xC0 == 0 and data[4:8] == _COOKIE_BYTES


def is_channel_data(data: bytes) -> bool:
    """A ChannelData message: a channel number 0x4000-0x4FFF and a length that fits the datagram."""
    return len(data) >= 4 and 0x40 <= data[0] <= 0x4F and int.from_bytes(data[2:4], "big") <= len(data) - 4


def is_turn_datagram(data: bytes) -> bool:
    """Whether a datagram on the agent's one socket is STUN/TURN rather than the natlab text protocol.

    The first byte decides (RFC 7983's demultiplexing): STUN starts with 0x00-0x03, ChannelData with
    0x40-0x4F ('@' and 'A'-'O' in ASCII). natlab messages start with a lowercase verb (0x61-0x7A), so the
    ranges never clash; STUN must also carry the magic cookie, ChannelData a length that fits.
    """
    return is_stun(data) or is_channel_data(data)


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The long-term credential key, MD5(username:realm:password) (RFC 8489 section 9.2.2; no SASLprep)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def new_transaction_id() -> bytes:
    return os.urandom(12)


@dataclass(frozen=True)
class StunMessage:
    """A parsed STUN message: a typed view of aioice's ``Message`` plus the raw bytes it came from."""

    method: int
    cls: int
    tid: bytes
    attributes: Mapping[str, Any]
    raw: bytes

    @property
    def name(self) -> str:
        return METHOD_NAMES.get(self.method, f"method {self.method:#x}")

    def endpoint(self, attribute: str) -> Endpoint | None:
        """An address attribute (XOR-RELAYED-ADDRESS, XOR-MAPPED-ADDRESS, ...) as an endpoint, if present."""
        value = self.attributes.get(attribute)
        return None if value is None else Endpoint(str(value[0]), int(value[1]))

    def integer(self, attribute: str) -> int | None:
        value = self.attributes.get(attribute)
        return None if value is None else int(value)

    def text(self, attribute: str) -> str | None:
        value = self.attributes.get(attribute)
        return None if value is None else str(value)

    def octets(self, attribute: str) -> bytes | None:
        value = self.attributes.get(attribute)
        return None if value is None else bytes(value)

    def error(self) -> tuple[int, str] | None:
        """ERROR-CODE as (code, reason phrase), if present.

        coturn 4.6 ends some phrases with a NUL byte ("Stale nonce\\x00"): it is stripped here.
        """
        value = self.attributes.get("ERROR-CODE")
        return None if value is None else (int(value[0]), str(value[1]).rstrip("\x00 ").strip())

    def data(self) -> bytes | None:
        """The DATA attribute (Send and Data indications), read from the raw attributes."""
        return raw_attribute(self.raw, DATA)

    def has_valid_integrity(self, key: bytes) -> bool:
        """Whether MESSAGE-INTEGRITY is present and matches ``key``."""
        if "MESSAGE-INTEGRITY" not in self.attributes:
            return False
        try:
            stun.parse_message(self.raw, integrity_key=key)
        except ValueError:
            return False
        return True


def parse_stun(data: bytes) -> StunMessage:
    """Parse a STUN message (FINGERPRINT, when present, is checked); ``ValueError`` if it is not one."""
    if not is_stun(data):
        raise ValueError("not a STUN message (no magic cookie)")
    try:
        message: Any = stun.parse_message(data)
    except (struct.error, IndexError) as exc:
        # aioice reads fixed-size attributes (LIFETIME, FINGERPRINT, XOR addresses...) without checking sizes.
        raise ValueError(f"STUN attribute of the wrong size: {exc}") from None
    return StunMessage(
        int(message.message_method), int(message.message_class), bytes(message.transaction_id),
        dict(message.attributes), data,
    )  # fmt: skip


def raw_attribute(data: bytes, attribute_type: int) -> bytes | None:
    """The value of the first attribute of ``attribute_type`` in a (well-formed) STUN message, if any."""
    pos = HEADER_LENGTH
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        if kind == attribute_type:
            return data[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length % 4)
    return None


def encode(method: int, cls: int, attributes: Mapping[str, object], tid: bytes, key: bytes | None = None) -> bytes:
    """A STUN message through aioice's table; with ``key``, MESSAGE-INTEGRITY and FINGERPRINT are appended."""
    message: Any = stun.Message(stun.Method(method), stun.Class(cls), tid, OrderedDict(attributes))
    if key is not None:
        message.add_message_integrity(key)
    return bytes(message)


def _with_data(message: bytes, payload: bytes) -> bytes:
    """``message`` with a DATA attribute appended (it must be last: no integrity or fingerprint after it)."""
    attribute = struct.pack("!HH", DATA, len(payload)) + payload + bytes(-len(payload) % 4)
    body_length = len(message) - HEADER_LENGTH + len(attribute)
    return message[:2] + struct.pack("!H", body_length) + message[4:] + attribute


def send_indication(peer: Endpoint, payload: bytes, tid: bytes | None = None) -> bytes:
    """A Send indication: relay ``payload`` to ``peer`` (XOR-PEER-ADDRESS + DATA, RFC 8656 section 10)."""
    return _indication(stun.Method.SEND, peer, payload, tid)


def data_indication(peer: Endpoint, payload: bytes, tid: bytes | None = None) -> bytes:
    """A Data indication, as a TURN server sends it (for fakes and golden tests)."""
    return _indication(stun.Method.DATA, peer, payload, tid)


def _indication(method: int, peer: Endpoint, payload: bytes, tid: bytes | None) -> bytes:
    attributes = {"XOR-PEER-ADDRESS": peer.sockaddr()}
    message = encode(method, CLASS_INDICATION, attributes, tid or new_transaction_id())
    return _with_data(message, payload)


def channel_data(channel: int, payload: bytes) -> bytes:
    """A ChannelData message; over UDP the padding to 4 bytes is optional and left out."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"channel number {channel:#x} out of range 0x4000-0x4FFF")
    return struct.pack("!HH", channel, len(payload)) + payload


def parse_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel number, payload) of a ChannelData message; ``ValueError`` if it is not one."""
    if not is_channel_data(data):
        raise ValueError("not a ChannelData message")
    channel, length = struct.unpack_from("!HH", data)
    return channel, data[4 : 4 + length]


@dataclass(frozen=True)
class BindingRequest:
    """A STUN Binding request to send (and resend unchanged); match the response by ``tid``."""

    tid: bytes
    data: bytes


def binding_request(tid: bytes | None = None) -> BindingRequest:
    """A minimal Binding request: no attributes (RFC 8489 needs none for a plain Binding)."""
    tid = tid or new_transaction_id()
    return BindingRequest(tid, encode(stun.Method.BINDING, CLASS_REQUEST, {}, tid))


def parse_binding_response(data: bytes, tid: bytes) -> Endpoint:
    """Our server-reflexive address from a Binding success response to the request ``tid``.

    ``ValueError`` for anything else: another transaction, an error response, or no mapped address.
    XOR-MAPPED-ADDRESS is preferred; MAPPED-ADDRESS is the fallback for RFC 3489 servers.
    """
    message = parse_stun(data)
    if message.tid != tid:
        raise ValueError("STUN response for another transaction")
    if message.method != stun.Method.BINDING or message.cls not in (CLASS_RESPONSE, CLASS_ERROR):
        raise ValueError(f"not a Binding response: {message.name} class {message.cls:#x}")
    error = message.error()
    if message.cls == CLASS_ERROR:
        code, phrase = error or (0, "no ERROR-CODE")
        raise ValueError(f"STUN Binding failed: {code} {phrase}")
    mapped = message.endpoint("XOR-MAPPED-ADDRESS") or message.endpoint("MAPPED-ADDRESS")
    if mapped is None:
        raise ValueError("STUN Binding response without XOR-MAPPED-ADDRESS")
    return mapped
