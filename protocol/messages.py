"""The signal protocol's messages: one dataclass per verb, parsed and encoded through one verb table.

The wire format is the seed's: one UTF-8 text datagram, ``<verb> <arg> ...`` separated by single spaces.
``msg`` keeps its text verbatim (everything after ``msg <id> ``). A single trailing ``\\n`` or ``\\r\\n`` is
treated as a line terminator and dropped, so ``nc -u`` works as a client.

Pure: no sockets, no clocks. Malformed input raises :class:`ProtocolError`; its ``verb`` says whether the
datagram named a known verb (and so deserves an ``err`` reply) or was garbage (dropped silently).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_DATAGRAM = 1400
"""Largest datagram, in bytes, that either side accepts. The seed read 1024; natlab takes 1400 so a
1000-byte message fits with its ``data`` header, and, with TURN's 36-byte framing and IP/UDP headers, a
relayed datagram still fits a 1500-byte MTU."""

ID_SYNTAX = "[A-Za-z0-9][A-Za-z0-9._-]{0,31}"
"""Peer ids: 1-32 characters, letters, digits, '.', '_' and '-', starting with a letter or digit."""

_ID_RE = re.compile(ID_SYNTAX + r"\Z")


class ProtocolError(ValueError):
    """A datagram that is not a valid message.

    ``verb`` is the known verb whose arguments were wrong, or ``None`` when the datagram is garbage
    (empty, oversize, not UTF-8, unknown verb). ``reason`` is the text an ``err`` reply carries.
    """

    def __init__(self, reason: str, verb: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.verb = verb


@dataclass(frozen=True, order=True)
class Endpoint:
    """A UDP address as the protocol writes it: ``198.18.0.11:40000`` or ``[::1]:9000``.

    IPv6 addresses must be bracketed: a bare ``2001:db8::1:9000`` is ambiguous.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``ip:port``; raises ``ValueError`` naming the problem."""
        host, sep, port_text = text.rpartition(":")
        # isascii: str.isdigit() alone accepts e.g. Arabic-Indic digits, which int() then reads as a port.
        if not sep or not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"invalid address {text!r}: expected ip:port")
        bracketed = host.startswith("[") and host.endswith("]")
        if bracketed:
            host = host[1:-1]
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} is not an IP address") from None
        if bracketed != (address.version == 6):
            raise ValueError(f"invalid address {text!r}: write IPv6 as [ip]:port and IPv4 as ip:port")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"invalid address {text!r}: port out of range")
        return cls(str(address), port)

    @classmethod
    def of(cls, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> Endpoint:
        """The endpoint of a socket address as asyncio reports it."""
        return cls(sockaddr[0], sockaddr[1])

    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True)
class Candidates:
    """What a natlab-extended client adds to ``register`` and gets in ``punch``: ``relay=<ip:port>|-``.

    Its presence marks the sender as extended (it understands ``punch ... relay=``, ``data`` and ``ack``);
    ``relay`` is its TURN relayed address, or ``None`` (written ``-``) while it has none. Seed-era clients
    send and get no options, so the seed protocol is unchanged for them.
    """

    relay: Endpoint | None = None

    def options(self) -> str:
        return f"relay={self.relay if self.relay is not None else '-'}"


@dataclass(frozen=True)
class Register:
    """C -> S: register under ``id`` at the address the server sees (``candidates`` if extended)."""

    id: str
    candidates: Candidates | None = None


@dataclass(frozen=True)
class Connect:
    """C -> S: ask the server to introduce ``from_id`` and ``to_id``."""

    from_id: str
    to_id: str


@dataclass(frozen=True)
class Punch:
    """S -> C: punch a hole to peer ``id``, last seen by the server at ``addr``.

    ``candidates`` (sent only to extended clients, and only for extended peers) carries the peer's relay.
    """

    id: str
    addr: Endpoint
    candidates: Candidates | None = None


@dataclass(frozen=True)
class Hello:
    """C -> C: a hole-punching probe from peer ``id``; the receiver answers with :class:`HelloAck`."""

    id: str


@dataclass(frozen=True)
class HelloAck:
    """C -> C: the answer to a probe; receiving either confirms the direct path. (natlab extension)"""

    id: str


@dataclass(frozen=True)
class Msg:
    """C -> C: a chat message from peer ``id``."""

    id: str
    text: str


@dataclass(frozen=True)
class Data:
    """C -> C (extended peers): message ``seq`` of sender ``id``'s ``epoch``; all below ``floor`` settled."""

    id: str
    epoch: int
    seq: int
    floor: int
    text: str


@dataclass(frozen=True)
class Ack:
    """C -> C (extended peers): for ``epoch``, all below ``expected`` released or skipped; ``held`` are
    inclusive ``(first, last)`` ranges the receiver holds behind a gap."""

    id: str
    epoch: int
    expected: int
    held: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Keepalive:
    """C -> S or C -> C: keeps NAT mappings and presence fresh; never answered."""


@dataclass(frozen=True)
class Ok:
    """S -> C: the request succeeded."""


@dataclass(frozen=True)
class Err:
    """S -> C: the request failed, with a reason."""

    reason: str


Message = Register | Connect | Punch | Hello | HelloAck | Msg | Data | Ack | Keepalive | Ok | Err

MAX_COUNTER = 2**32 - 1
"""Epochs, sequence numbers and floors are unsigned 32-bit integers on the wire."""
MAX_HELD_RANGES = 16


def _check_id(verb: str, value: str) -> str:
    if not _ID_RE.match(value):
        # Show at most 32 characters: the reason is echoed in an ``err`` reply, which must stay far below
        # MAX_DATAGRAM (repr() of a 1000-byte id can be 4000 characters: a reply bigger than the request).
        shown = f"{value[:32]!r}..." if len(value) > 32 else repr(value)
        raise ProtocolError(f"invalid id {shown}: ids match {ID_SYNTAX}", verb)
    return value


def _fields(verb: str, rest: str, count: int, reason: str) -> list[str]:
    fields = rest.split(" ") if rest else []
    if len(fields) != count or any(not f for f in fields):
        raise ProtocolError(reason, verb)
    return fields


def _split_options(verb: str, fields: list[str], reason: str) -> dict[str, str]:
    """``key=value`` tokens after a message's positional fields; unknown keys are kept (and ignored)."""
    options = {}
    for token in fields:
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise ProtocolError(reason, verb)
        options[key] = value
    return options


def _candidates(verb: str, options: dict[str, str], reason: str) -> Candidates | None:
    if not options:
        return None
    relay = options.get("relay", "-")
    if relay == "-":
        return Candidates(None)
    try:
        return Candidates(Endpoint.parse(relay))
    except ValueError:
        raise ProtocolError(reason, verb) from None


def _parse_register(rest: str) -> Message:
    fields = rest.split(" ") if rest else []
    if not fields or not fields[0]:
        raise ProtocolError("invalid register cmd", "register")
    options = _split_options("register", fields[1:], "invalid register cmd")
    return Register(_check_id("register", fields[0]), _candidates("register", options, "invalid register cmd"))


def _parse_connect(rest: str) -> Message:
    from_id, to_id = _fields("connect", rest, 2, "invalid connection cmd")
    return Connect(_check_id("connect", from_id), _check_id("connect", to_id))


def _parse_punch(rest: str) -> Message:
    fields = rest.split(" ") if rest else []
    if len(fields) < 2:
        raise ProtocolError("invalid punch cmd", "punch")
    peer_id, addr = fields[:2]
    candidates = _candidates("punch", _split_options("punch", fields[2:], "invalid punch cmd"), "invalid punch cmd")
    try:
        endpoint = Endpoint.parse(addr)
    except ValueError as exc:
        raise ProtocolError(str(exc), "punch") from None
    return Punch(_check_id("punch", peer_id), endpoint, candidates)


def _parse_hello(rest: str) -> Message:
    (peer_id,) = _fields("hello", rest, 1, "invalid hello cmd")
    return Hello(_check_id("hello", peer_id))


def _parse_hello_ack(rest: str) -> Message:
    (peer_id,) = _fields("hello-ack", rest, 1, "invalid hello-ack cmd")
    return HelloAck(_check_id("hello-ack", peer_id))


def _parse_msg(rest: str) -> Message:
    peer_id, sep, text = rest.partition(" ")
    if not sep or not text:
        raise ProtocolError("invalid msg cmd", "msg")
    return Msg(_check_id("msg", peer_id), text)


def _counter(verb: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_COUNTER:
        raise ProtocolError(f"invalid {verb} cmd", verb)
    return int(text)


def _parse_data(rest: str) -> Message:
    parts = rest.split(" ", 4)
    if len(parts) != 5 or not parts[4]:
        raise ProtocolError("invalid data cmd", "data")
    peer_id, epoch, seq, floor, text = parts
    return Data(
        _check_id("data", peer_id), _counter("data", epoch), _counter("data", seq), _counter("data", floor), text
    )


def _parse_held(text: str) -> tuple[tuple[int, int], ...]:
    held = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        low, high = _counter("ack", first), _counter("ack", last or first)
        if low > high:
            raise ProtocolError("invalid ack cmd", "ack")
        held.append((low, high))
    if len(held) > MAX_HELD_RANGES:
        raise ProtocolError("invalid ack cmd", "ack")
    return tuple(held)


def _parse_ack(rest: str) -> Message:
    parts = rest.split(" ") if rest else []
    if len(parts) not in (3, 4):
        raise ProtocolError("invalid ack cmd", "ack")
    held = _parse_held(parts[3]) if len(parts) == 4 else ()
    return Ack(_check_id("ack", parts[0]), _counter("ack", parts[1]), _counter("ack", parts[2]), held)


def _parse_keepalive(rest: str) -> Message:
    # The seed ignores keepalive's arguments; so do we (and never reply).
    return Keepalive()


def _parse_ok(rest: str) -> Message:
    if rest:
        raise ProtocolError("invalid ok cmd", "ok")
    return Ok()


def _parse_err(rest: str) -> Message:
    return Err(rest)


_PARSERS: dict[str, Callable[[str], Message]] = {
    "register": _parse_register,
    "connect": _parse_connect,
    "punch": _parse_punch,
    "hello": _parse_hello,
    "hello-ack": _parse_hello_ack,
    "msg": _parse_msg,
    "data": _parse_data,
    "ack": _parse_ack,
    "keepalive": _parse_keepalive,
    "ok": _parse_ok,
    "err": _parse_err,
}

VERBS = frozenset(_PARSERS)


def parse(data: bytes) -> Message:
    """Parse one datagram into a message; raises :class:`ProtocolError`."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("datagram is not UTF-8") from None
    if text.endswith("\n"):
        # Only "\n" or "\r\n" ends a line; a lone trailing "\r" is data (e.g. the end of a msg's text).
        text = text.removesuffix("\n").removesuffix("\r")
    verb, _, rest = text.partition(" ")
    parser = _PARSERS.get(verb)
    if parser is None:
        raise ProtocolError(f"unknown verb {verb[:32]!r}")
    return parser(rest)


def _options(candidates: Candidates | None) -> str:
    return "" if candidates is None else f" {candidates.options()}"


def encode(message: Message) -> bytes:
    """The datagram for a message; ``parse(encode(m)) == m`` for every valid message."""
    match message:
        case Register(peer_id, candidates):
            text = f"register {peer_id}{_options(candidates)}"
        case Connect(from_id, to_id):
            text = f"connect {from_id} {to_id}"
        case Punch(peer_id, addr, candidates):
            text = f"punch {peer_id} {addr}{_options(candidates)}"
        case Hello(peer_id):
            text = f"hello {peer_id}"
        case HelloAck(peer_id):
            text = f"hello-ack {peer_id}"
        case Msg(peer_id, body):
            text = f"msg {peer_id} {body}"
        case Data(peer_id, epoch, seq, floor, body):
            text = f"data {peer_id} {epoch} {seq} {floor} {body}"
        case Ack(peer_id, epoch, expected, held):
            ranges = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in held)
            text = f"ack {peer_id} {epoch} {expected}" + (f" {ranges}" if ranges else "")
        case Keepalive():
            text = "keepalive"
        case Ok():
            text = "ok"
        case Err(reason):
            text = f"err {reason}" if reason else "err"
    return text.encode("utf-8")
