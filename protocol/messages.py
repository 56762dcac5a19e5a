"""The signal protocol's messages: one dataclass per verb, parsed and encoded through one verb table.

The wire format is the seed's: one UTF-8 text datagram, ``<verb> <arg> ...`` separated by single spaces.
``msg`` keeps its text verbatim (everything after ``msg <id> ``). A single trailing ``\\n`` or ``\\r\\n`` is
treated as a line terminator and dropped, so ``nc -u`` works as a client. (Protocol v2, binary, is
:mod:`protocol.binary`; :mod:`protocol.datagram` tells the two apart by the first byte. The message classes
here are shared by both, and so are the errors: see PROTOCOL.md.)

Each verb is one row of :data:`_VERBS`: its name, its message class, its parser and its encoder, so a verb
is read and written in one place (as aioice's STUN attribute table holds pack and unpack together).

Pure: no sockets, no clocks. Malformed input raises :class:`ProtocolError`; its ``kind`` says why (the
server counts its drops by it) and its ``verb`` whether the datagram named a known verb (and so deserves
an ``err`` reply) or was garbage (dropped silently).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common.ids import ID_RE, ID_SYNTAX
from protocol.v2messages import PresenceQuery, PresenceReport, Retry, Sealed, StatsQuery, StatsReport

MAX_DATAGRAM = 1400
"""Largest datagram, in bytes, that either side accepts. The seed read 1024; natlab takes 1400 so a
1000-byte message fits with its ``data`` header, and, with TURN's 36-byte framing and IP/UDP headers, a
relayed datagram still fits a 1500-byte MTU."""


class ErrorKind(enum.Enum):
    """Why a datagram is not a valid message: the parser's verdict, which the server counts drops by."""

    EMPTY = "empty"
    """Nothing but an optional line terminator."""
    OVERSIZE = "oversize"
    """More than :data:`MAX_DATAGRAM` bytes."""
    NOT_UTF8 = "not_utf8"
    UNKNOWN_VERB = "unknown_verb"
    BAD_ARGUMENTS = "bad_arguments"
    """A known verb with the wrong number or form of arguments (counters, ranges, options)."""
    BAD_ID = "bad_id"
    """A known verb naming a peer id that does not match :data:`ID_SYNTAX`."""
    BAD_ADDRESS = "bad_address"
    """A known verb carrying an address that is not ``ip:port`` (a punch's or a relay option's), or a v2
    address field that is no IP address and port."""
    TRUNCATED = "truncated"
    """v2: shorter than the 11-byte header, so there is no transaction id to answer."""
    VERSION = "version"
    """v2: the marker byte and a whole header, but another version: answerable (Err 505, same txid)."""
    UNKNOWN_TYPE = "unknown_type"
    """v2: a type byte that names no message (the binary twin of an unknown verb)."""
    BAD_FIELD = "bad_field"
    """v2: a known type whose fields are wrong: truncated, out of order, repeated, unknown, not allowed
    for the type, missing, or a value of the wrong size or form."""

    @property
    def garbage(self) -> bool:
        """No known verb or type: the datagram cannot be answered, only dropped."""
        return self in _GARBAGE


_GARBAGE = frozenset(
    {
        ErrorKind.EMPTY,
        ErrorKind.OVERSIZE,
        ErrorKind.NOT_UTF8,
        ErrorKind.UNKNOWN_VERB,
        ErrorKind.TRUNCATED,
        ErrorKind.UNKNOWN_TYPE,
    }
)


class ProtocolError(ValueError):
    """A datagram that is not a valid message.

    ``kind`` says why. ``verb`` is the known verb (or v2 type name) whose arguments were wrong, or ``None``
    when the datagram named none. ``reason`` is the text an ``err`` reply carries. ``txid`` is set only for a
    v2 datagram whose header was read: a v2 error that is not garbage is answered by a v2 ``Err`` frame
    carrying it (Err 505 for ``VERSION``, 400 for the rest), never by a text ``err``.
    """

    def __init__(self, reason: str, kind: ErrorKind, verb: str | None = None, txid: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.verb = verb
        self.txid = txid


@dataclass(frozen=True, order=True)
class Endpoint:
    """A UDP address as the protocol writes it: ``198.18.0.11:40000`` or ``[::1]:9000``.

    IPv6 addresses must be bracketed: a bare ``2001:db8::1:9000`` is ambiguous.
    """

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        # A colon is enough: only IPv6 literals hold one (parse() and asyncio both give bare addresses).
        return ":" in self.host

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family that reaches this endpoint (AF_INET6 or AF_INET)."""
        return socket.AF_INET6 if self.is_ipv6 else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``ip:port``: an IP literal (IPv6 bracketed, no zone) and a port; raises ``ValueError`` naming
        the problem, with the text shortened and escaped (it may be echoed in an ``err`` reply or logged)."""
        shown = shorten(text)
        host, sep, port_text = text.rpartition(":")
        # isascii: str.isdigit() alone accepts e.g. Arabic-Indic digits, which int() then reads as a port.
        if not sep or not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"invalid address {shown}: expected ip:port")
        bracketed = host.startswith("[") and host.endswith("]")
        if bracketed:
            host = host[1:-1]
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"invalid address {shown}: {shorten(host)} is not an IP address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            # A zone (fe80::1%eth0) names an interface of the sender's own host: meaningless to anyone else,
            # and free text (newlines, escapes) that would travel in punches and into logs.
            raise ValueError(f"invalid address {shown}: no zone (%...) in an address")
        if bracketed != (address.version == 6):
            raise ValueError(f"invalid address {shown}: write IPv6 as [ip]:port and IPv4 as ip:port")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"invalid address {shown}: port out of range")
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
class BareHello:
    """C -> C: the seed's own probe, the bare word ``hello`` naming no one. A natlab client takes it only from
    the address it punched for a seed-era peer (the id is then the one the punch named)."""


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


class ErrorCode(enum.IntEnum):
    """Why a v2 request failed: the u16 an ``Err`` frame carries (HTTP's numbers where one fits)."""

    BAD_REQUEST = 400
    BAD_PROOF = 401
    FORBIDDEN = 403
    """The id is held by another key, or the request did not come from the id's registered address."""
    INVALID_PEERS = 404
    STALE_PROOF = 409
    """The proof's timestamp is outside the window, or its nonce was seen (a replay)."""
    RATE_LIMITED = 429
    TABLE_FULL = 503
    VERSION_NOT_SUPPORTED = 505

    @property
    def phrase(self) -> str:
        """The code's meaning in words (what an ``Err`` reason says when there is nothing more precise)."""
        return _PHRASES[self]


_PHRASES = {
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.BAD_PROOF: "bad proof",
    ErrorCode.FORBIDDEN: "forbidden",
    ErrorCode.INVALID_PEERS: "invalid peers",
    ErrorCode.STALE_PROOF: "stale or replayed proof",
    ErrorCode.RATE_LIMITED: "rate limited",
    ErrorCode.TABLE_FULL: "peer table full",
    ErrorCode.VERSION_NOT_SUPPORTED: "version not supported",
}


@dataclass(frozen=True)
class Err:
    """S -> C: the request failed, with a reason; v2 adds a ``code`` (the text form has none and drops it)."""

    reason: str
    code: ErrorCode | None = None


TextMessage = Register | Connect | Punch | Hello | BareHello | HelloAck | Msg | Data | Ack | Keepalive | Ok | Err
"""The messages the seed's text grammar carries."""

Message = TextMessage | Retry | PresenceQuery | PresenceReport | StatsQuery | StatsReport | Sealed
"""Every message of either version (v2 carries all but ``Msg``; the last six only v2)."""

MAX_COUNTER = 2**32 - 1
"""Epochs, sequence numbers and floors are unsigned 32-bit integers on the wire."""
MAX_HELD_RANGES = 16
"""Most held-sequence ranges an ack lists, keeping it well inside one datagram; a receiver holding more
lists the first ones (the sender retransmits the rest), a parser refuses more."""


SHOWN_CHARS = 32
"""The most characters of a bad value an error shows."""


def shorten(value: str) -> str:
    """A wire value for an error message: escaped (``repr``: no newline or terminal escape gets through to a
    log) and at most :data:`SHOWN_CHARS` characters of it, since the reason is echoed in an ``err`` reply,
    which must stay far below MAX_DATAGRAM (repr() of a 1000-byte value can be 4000 characters)."""
    return f"{value[:SHOWN_CHARS]!r}..." if len(value) > SHOWN_CHARS else repr(value)


def _check_id(verb: str, value: str) -> str:
    if not ID_RE.match(value):
        raise ProtocolError(f"invalid id {shorten(value)}: ids match {ID_SYNTAX}", ErrorKind.BAD_ID, verb)
    return value


def _bad(verb: str, reason: str | None = None) -> ProtocolError:
    """A known verb's arguments are wrong; the seed's fixed reason unless a more precise one is given."""
    return ProtocolError(reason or f"invalid {verb} cmd", ErrorKind.BAD_ARGUMENTS, verb)


def _fields(verb: str, rest: str, count: int, reason: str | None = None) -> list[str]:
    fields = rest.split(" ") if rest else []
    if len(fields) != count or any(not f for f in fields):
        raise _bad(verb, reason)
    return fields


def _split_options(verb: str, fields: list[str]) -> dict[str, str]:
    """``key=value`` tokens after a message's positional fields; unknown keys are kept (and ignored)."""
    options = {}
    for token in fields:
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise _bad(verb)
        options[key] = value
    return options


def _candidates(verb: str, options: dict[str, str]) -> Candidates | None:
    if not options:
        return None
    relay = options.get("relay", "-")
    if relay == "-":
        return Candidates(None)
    try:
        return Candidates(Endpoint.parse(relay))
    except ValueError:
        raise ProtocolError(f"invalid {verb} cmd", ErrorKind.BAD_ADDRESS, verb) from None


def _options(candidates: Candidates | None) -> str:
    return "" if candidates is None else f" {candidates.options()}"


def _counter(verb: str, text: str) -> int:
    # Digits only: int() also takes "+1", " 1", "1_0" and other scripts' digits, which are no counters.
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= MAX_COUNTER:
            return value
    raise _bad(verb)


def _parse_register(rest: str) -> Register:
    fields = rest.split(" ") if rest else []
    if not fields or not fields[0]:
        raise _bad("register")
    options = _split_options("register", fields[1:])
    return Register(_check_id("register", fields[0]), _candidates("register", options))


def _parse_connect(rest: str) -> Connect:
    from_id, to_id = _fields("connect", rest, 2, "invalid connection cmd")  # the seed's wording
    return Connect(_check_id("connect", from_id), _check_id("connect", to_id))


def _parse_punch(rest: str) -> Punch:
    fields = rest.split(" ") if rest else []
    if len(fields) < 2:
        raise _bad("punch")
    peer_id, addr = fields[:2]
    candidates = _candidates("punch", _split_options("punch", fields[2:]))
    try:
        endpoint = Endpoint.parse(addr)
    except ValueError as exc:
        raise ProtocolError(str(exc), ErrorKind.BAD_ADDRESS, "punch") from None
    return Punch(_check_id("punch", peer_id), endpoint, candidates)


def _parse_hello(rest: str) -> Hello | BareHello:
    """``hello <id>`` (natlab's probe), or the bare ``hello`` the seed's client sends."""
    return BareHello() if rest == "" else Hello(_only_id("hello", rest))


def _only_id(verb: str, rest: str) -> str:
    """The one argument of a verb that carries only a peer id (hello, hello-ack)."""
    (peer_id,) = _fields(verb, rest, 1)
    return _check_id(verb, peer_id)


def _parse_msg(rest: str) -> Msg:
    peer_id, sep, text = rest.partition(" ")
    if not sep or not text:
        raise _bad("msg")
    return Msg(_check_id("msg", peer_id), text)


def _parse_data(rest: str) -> Data:
    parts = rest.split(" ", 4)
    if len(parts) != 5 or not parts[4]:
        raise _bad("data")
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
            raise _bad("ack")
        held.append((low, high))
    if len(held) > MAX_HELD_RANGES:
        raise _bad("ack")
    return tuple(held)


def _encode_held(held: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in held)


def _parse_ack(rest: str) -> Ack:
    parts = rest.split(" ") if rest else []
    if len(parts) not in (3, 4):
        raise _bad("ack")
    held = _parse_held(parts[3]) if len(parts) == 4 else ()
    return Ack(_check_id("ack", parts[0]), _counter("ack", parts[1]), _counter("ack", parts[2]), held)


def _parse_ok(rest: str) -> Ok:
    if rest:
        raise _bad("ok")
    return Ok()


M = TypeVar("M", bound=TextMessage)


@dataclass(frozen=True)
class _Verb(Generic[M]):
    """One verb of the wire format: everything after ``<verb> `` parsed into a message, and back."""

    name: str
    type: type[M]
    parse: Callable[[str], M]
    """The message from the arguments text; raises :class:`ProtocolError`."""
    encode: Callable[[M], str]
    """The arguments text (empty for none: the datagram is then the bare verb)."""


_VERBS: tuple[_Verb[Any], ...] = (
    _Verb("register", Register, _parse_register, lambda m: f"{m.id}{_options(m.candidates)}"),
    _Verb("connect", Connect, _parse_connect, lambda m: f"{m.from_id} {m.to_id}"),
    _Verb("punch", Punch, _parse_punch, lambda m: f"{m.id} {m.addr}{_options(m.candidates)}"),
    _Verb("hello", Hello, _parse_hello, lambda m: m.id),
    _Verb("hello-ack", HelloAck, lambda rest: HelloAck(_only_id("hello-ack", rest)), lambda m: m.id),
    _Verb("msg", Msg, _parse_msg, lambda m: f"{m.id} {m.text}"),
    _Verb("data", Data, _parse_data, lambda m: f"{m.id} {m.epoch} {m.seq} {m.floor} {m.text}"),
    _Verb(
        "ack",
        Ack,
        _parse_ack,
        lambda m: f"{m.id} {m.epoch} {m.expected}" + (f" {_encode_held(m.held)}" if m.held else ""),
    ),
    # The seed ignores keepalive's arguments; so do we (and never reply).
    _Verb("keepalive", Keepalive, lambda rest: Keepalive(), lambda m: ""),
    _Verb("ok", Ok, _parse_ok, lambda m: ""),
    _Verb("err", Err, Err, lambda m: m.reason),
    # The seed's bare probe: read by the hello row above (no arguments), written here as the bare verb.
    _Verb("hello", BareHello, _parse_hello, lambda m: ""),
)
_BY_NAME: dict[str, _Verb[Any]] = {}
for _row in _VERBS:
    _BY_NAME.setdefault(_row.name, _row)  # a name's first row parses it (hello: both forms)
_BY_TYPE: dict[type[TextMessage], _Verb[Any]] = {verb.type: verb for verb in _VERBS}

VERBS = frozenset(_BY_NAME)


def parse(data: bytes) -> TextMessage:
    """Parse one text datagram into a message; raises :class:`ProtocolError`."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}", ErrorKind.OVERSIZE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("datagram is not UTF-8", ErrorKind.NOT_UTF8) from None
    if text.endswith("\n"):
        # Only "\n" or "\r\n" ends a line; a lone trailing "\r" is data (e.g. the end of a msg's text).
        text = text.removesuffix("\n").removesuffix("\r")
    verb, _, rest = text.partition(" ")
    row = _BY_NAME.get(verb)
    if row is None:
        # The seed's reason for both; the kind tells an empty datagram from an unknown word.
        kind = ErrorKind.EMPTY if not text else ErrorKind.UNKNOWN_VERB
        raise ProtocolError(f"unknown verb {verb[:SHOWN_CHARS]!r}", kind)
    message: TextMessage = row.parse(rest)
    return message


def encode(message: Message) -> bytes:
    """The text datagram for a message; ``parse(encode(m)) == m`` for every valid message (an ``Err``'s
    code, which text cannot carry, aside). Raises ``ValueError`` for a v2-only message (it has no text form)."""
    row = _BY_TYPE.get(type(message))  # type: ignore[arg-type]
    if row is None:
        raise ValueError(f"{type(message).__name__} has no text form: send it in a v2 Frame")
    arguments: str = row.encode(message)
    datagram = (f"{row.name} {arguments}" if arguments else row.name).encode("utf-8")
    # A text ending in a newline would lose it to parse()'s line terminator rule: add the terminator it strips.
    return datagram + b"\n" if datagram.endswith(b"\n") else datagram
