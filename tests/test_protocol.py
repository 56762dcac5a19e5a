"""The signal protocol's wire format: golden datagrams, every malformed case, endpoints."""

import socket

import pytest

from protocol import (
    ID_SYNTAX,
    MAX_DATAGRAM,
    VERBS,
    Ack,
    BareHello,
    Candidates,
    Connect,
    Data,
    Endpoint,
    Err,
    ErrorKind,
    Hello,
    HelloAck,
    Keepalive,
    Msg,
    Ok,
    ProtocolError,
    Punch,
    Register,
    encode,
    parse,
)

ID_RULE = f"ids match {ID_SYNTAX}"

# Each datagram must parse to its message and the message must encode to the very same bytes.
GOLDEN = [
    (b"register alice", Register("alice")),
    (b"register A.b_c-9", Register("A.b_c-9")),
    (b"register 0", Register("0")),
    (b"register " + b"x" * 32, Register("x" * 32)),
    (b"connect alice bob", Connect("alice", "bob")),
    (b"punch bob 198.18.0.12:40001", Punch("bob", Endpoint("198.18.0.12", 40001))),
    (b"punch bob 10.0.0.1:1", Punch("bob", Endpoint("10.0.0.1", 1))),
    (b"punch bob 10.0.0.1:65535", Punch("bob", Endpoint("10.0.0.1", 65535))),
    (b"punch bob [2001:db8::1]:9000", Punch("bob", Endpoint("2001:db8::1", 9000))),
    (b"punch bob [::1]:9000", Punch("bob", Endpoint("::1", 9000))),
    (b"hello alice", Hello("alice")),
    (b"hello", BareHello()),  # the seed's probe names no one
    (b"hello-ack bob", HelloAck("bob")),
    (b"msg alice hi", Msg("alice", "hi")),
    (b"msg alice  two  spaces and a tab\there ", Msg("alice", " two  spaces and a tab\there ")),
    ("msg bob café ☕ ok".encode(), Msg("bob", "café ☕ ok")),
    (b"msg bob register carol", Msg("bob", "register carol")),
    (b"msg bob trailing cr\r", Msg("bob", "trailing cr\r")),
    (b"register alice relay=198.18.0.20:49160", Register("alice", Candidates(Endpoint("198.18.0.20", 49160)))),
    (b"register alice relay=-", Register("alice", Candidates(None))),
    (
        b"punch bob 198.18.0.12:40001 relay=198.18.0.20:49161",
        Punch("bob", Endpoint("198.18.0.12", 40001), Candidates(Endpoint("198.18.0.20", 49161))),
    ),
    (b"punch bob 198.18.0.12:40001 relay=-", Punch("bob", Endpoint("198.18.0.12", 40001), Candidates(None))),
    (b"data alice 3735928559 42 40 hi  there", Data("alice", 3735928559, 42, 40, "hi  there")),
    (b"data alice 0 0 0 x", Data("alice", 0, 0, 0, "x")),
    (b"ack bob 3735928559 41", Ack("bob", 3735928559, 41)),
    (b"ack bob 7 41 43-45,48", Ack("bob", 7, 41, ((43, 45), (48, 48)))),
    (b"keepalive", Keepalive()),
    (b"ok", Ok()),
    (b"err invalid peers", Err("invalid peers")),
    (b"err invalid id 'b@d': " + ID_RULE.encode(), Err(f"invalid id 'b@d': {ID_RULE}")),
    (b"err", Err("")),
]


@pytest.mark.parametrize(("datagram", "message"), GOLDEN, ids=[g[0][:40].decode() for g in GOLDEN])
def test_golden_datagram_round_trips(datagram, message):
    assert parse(datagram) == message
    assert encode(message) == datagram


def test_golden_table_covers_every_verb():
    assert {datagram.split(b" ")[0].decode() for datagram, _ in GOLDEN} == VERBS


def test_largest_datagram_is_accepted():
    datagram = b"msg bob " + b"x" * (MAX_DATAGRAM - 8)
    assert len(datagram) == MAX_DATAGRAM
    assert encode(parse(datagram)) == datagram


def bad_id(shown):
    return f"invalid id {shown}: {ID_RULE}"


# (datagram, ProtocolError.verb, ProtocolError.reason, ProtocolError.kind)
MALFORMED = [
    # garbage: no known verb
    (b"", None, "unknown verb ''", ErrorKind.EMPTY),
    (b"\n", None, "unknown verb ''", ErrorKind.EMPTY),
    (b"regist alice", None, "unknown verb 'regist'", ErrorKind.UNKNOWN_VERB),
    (b"REGISTER alice", None, "unknown verb 'REGISTER'", ErrorKind.UNKNOWN_VERB),
    (b" register alice", None, "unknown verb ''", ErrorKind.UNKNOWN_VERB),
    (b"register\talice", None, "unknown verb 'register\\talice'", ErrorKind.UNKNOWN_VERB),
    (b"y" * 40, None, f"unknown verb '{'y' * 32}'", ErrorKind.UNKNOWN_VERB),
    (b"\xff\xfe register", None, "datagram is not UTF-8", ErrorKind.NOT_UTF8),
    (b"register al\xc3", None, "datagram is not UTF-8", ErrorKind.NOT_UTF8),
    (
        b"msg bob " + b"x" * (MAX_DATAGRAM + 1 - 8),
        None,
        f"datagram of {MAX_DATAGRAM + 1} bytes exceeds {MAX_DATAGRAM}",
        ErrorKind.OVERSIZE,
    ),
    (b"\xff" * 2000, None, f"datagram of 2000 bytes exceeds {MAX_DATAGRAM}", ErrorKind.OVERSIZE),
    # register
    (b"register", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register alice relay", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register alice relay=", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register alice relay=nowhere", "register", "invalid register cmd", ErrorKind.BAD_ADDRESS),
    (b"punch bob 198.18.0.12:1 relay=bad", "punch", "invalid punch cmd", ErrorKind.BAD_ADDRESS),
    (b"punch bob 198.18.0.12:1 junk", "punch", "invalid punch cmd", ErrorKind.BAD_ARGUMENTS),
    (b"data alice 1 2 3", "data", "invalid data cmd", ErrorKind.BAD_ARGUMENTS),
    (b"data alice 1 2 3 ", "data", "invalid data cmd", ErrorKind.BAD_ARGUMENTS),
    (b"data alice -1 2 3 x", "data", "invalid data cmd", ErrorKind.BAD_ARGUMENTS),
    (b"data alice 1 4294967296 3 x", "data", "invalid data cmd", ErrorKind.BAD_ARGUMENTS),
    (b"data b@d 1 2 3 x", "data", "invalid id 'b@d': ids match [A-Za-z0-9][A-Za-z0-9._-]{0,31}", ErrorKind.BAD_ID),
    (b"ack bob 1", "ack", "invalid ack cmd", ErrorKind.BAD_ARGUMENTS),
    (b"ack bob 1 2 3 4", "ack", "invalid ack cmd", ErrorKind.BAD_ARGUMENTS),
    (b"ack bob 1 2 5-3", "ack", "invalid ack cmd", ErrorKind.BAD_ARGUMENTS),
    (b"ack bob 1 2 x", "ack", "invalid ack cmd", ErrorKind.BAD_ARGUMENTS),
    (
        b"ack bob 1 2 " + b",".join(str(i * 2).encode() for i in range(17)),
        "ack",
        "invalid ack cmd",
        ErrorKind.BAD_ARGUMENTS,
    ),
    (b"register ", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register alice bob", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register  alice", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register alice ", "register", "invalid register cmd", ErrorKind.BAD_ARGUMENTS),
    (b"register b@d", "register", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"register -alice", "register", bad_id("'-alice'"), ErrorKind.BAD_ID),
    (b"register .alice", "register", bad_id("'.alice'"), ErrorKind.BAD_ID),
    ("register élise".encode(), "register", bad_id("'élise'"), ErrorKind.BAD_ID),
    (b"register " + b"x" * 33, "register", bad_id(f"'{'x' * 32}'..."), ErrorKind.BAD_ID),
    (b"register alice\r", "register", bad_id("'alice\\r'"), ErrorKind.BAD_ID),
    (b"register alice\n\n", "register", bad_id("'alice\\n'"), ErrorKind.BAD_ID),
    # connect
    (b"connect", "connect", "invalid connection cmd", ErrorKind.BAD_ARGUMENTS),
    (b"connect alice", "connect", "invalid connection cmd", ErrorKind.BAD_ARGUMENTS),
    (b"connect alice bob carol", "connect", "invalid connection cmd", ErrorKind.BAD_ARGUMENTS),
    (b"connect alice  bob", "connect", "invalid connection cmd", ErrorKind.BAD_ARGUMENTS),
    (b"connect b@d bob", "connect", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"connect alice b@d", "connect", bad_id("'b@d'"), ErrorKind.BAD_ID),
    # punch
    (b"punch", "punch", "invalid punch cmd", ErrorKind.BAD_ARGUMENTS),
    (b"punch bob", "punch", "invalid punch cmd", ErrorKind.BAD_ARGUMENTS),
    (b"punch bob 1.2.3.4:5 extra", "punch", "invalid punch cmd", ErrorKind.BAD_ARGUMENTS),
    (b"punch b@d 1.2.3.4:5", "punch", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"punch bob 1.2.3.4", "punch", "invalid address '1.2.3.4': expected ip:port", ErrorKind.BAD_ADDRESS),
    (
        b"punch bob host:9000",
        "punch",
        "invalid address 'host:9000': 'host' is not an IP address",
        ErrorKind.BAD_ADDRESS,
    ),
    (b"punch bob 1.2.3.4:0", "punch", "invalid address '1.2.3.4:0': port out of range", ErrorKind.BAD_ADDRESS),
    (b"punch bob 1.2.3.4:65536", "punch", "invalid address '1.2.3.4:65536': port out of range", ErrorKind.BAD_ADDRESS),
    (b"punch bob 1.2.3.4:-1", "punch", "invalid address '1.2.3.4:-1': expected ip:port", ErrorKind.BAD_ADDRESS),
    # hello, hello-ack, msg, ok
    (b"hello alice bob", "hello", "invalid hello cmd", ErrorKind.BAD_ARGUMENTS),
    (b"hello b@d", "hello", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"hello-ack", "hello-ack", "invalid hello-ack cmd", ErrorKind.BAD_ARGUMENTS),
    (b"hello-ack alice bob", "hello-ack", "invalid hello-ack cmd", ErrorKind.BAD_ARGUMENTS),
    (b"hello-ack b@d", "hello-ack", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"msg", "msg", "invalid msg cmd", ErrorKind.BAD_ARGUMENTS),
    (b"msg bob", "msg", "invalid msg cmd", ErrorKind.BAD_ARGUMENTS),
    (b"msg bob ", "msg", "invalid msg cmd", ErrorKind.BAD_ARGUMENTS),
    (b"msg b@d hi", "msg", bad_id("'b@d'"), ErrorKind.BAD_ID),
    (b"ok now", "ok", "invalid ok cmd", ErrorKind.BAD_ARGUMENTS),
]


@pytest.mark.parametrize(("datagram", "verb", "reason", "kind"), MALFORMED, ids=[repr(m[0][:30]) for m in MALFORMED])
def test_malformed_datagram_raises_protocol_error(datagram, verb, reason, kind):
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert (caught.value.verb, caught.value.reason, caught.value.kind) == (verb, reason, kind)
    assert caught.value.kind.garbage == (verb is None)
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "zone",
    ["eth0", "x\nFORGED-LOG-LINE", "\x1b[31mred\x1b[0m", "z" * 1300],
    ids=["plain", "newline", "ansi", "huge"],
)
def test_a_relay_with_an_ipv6_zone_is_refused_and_never_echoed_raw(zone):
    """A zone was stored, forwarded in punches and written to the server's log as is (issue 10)."""
    datagram = f"register alice relay=[fe80::1%{zone}]:9000".encode()
    assert len(datagram) <= MAX_DATAGRAM
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert caught.value.kind is ErrorKind.BAD_ADDRESS
    reply = encode(Err(caught.value.reason))
    assert b"\n" not in reply[:-1]
    assert b"\x1b" not in reply
    assert len(reply) < 128, reply


def test_an_address_reason_stays_short_for_huge_values():
    """Like ids: a bad address's reason is echoed in an err reply and must not outgrow the request."""
    datagram = b"register alice relay=" + b"9" * (MAX_DATAGRAM - 40) + b":1"
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert len(encode(Err(caught.value.reason))) < 128


def test_invalid_id_reason_stays_short_for_huge_ids():
    """The reason is echoed in an err reply, which must not outgrow the request (reflection)."""
    datagram = b"register " + b"\x00" * (MAX_DATAGRAM - 9)
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert len(encode(Err(caught.value.reason))) < 256


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (b"register alice\n", Register("alice")),
        (b"register alice\r\n", Register("alice")),
        (b"connect alice bob\n", Connect("alice", "bob")),
        (b"keepalive\n", Keepalive()),
        (b"msg bob hi there\n", Msg("bob", "hi there")),
        (b"msg bob hi there\r\n", Msg("bob", "hi there")),
        (b"msg bob two lines\n\n", Msg("bob", "two lines\n")),
        (b"msg bob line\none\n", Msg("bob", "line\none")),
    ],
)
def test_one_trailing_line_terminator_is_dropped(datagram, message):
    assert parse(datagram) == message


def test_keepalive_ignores_arguments_like_the_seed():
    assert parse(b"keepalive alice") == Keepalive()


@pytest.mark.parametrize(
    ("text", "endpoint", "canonical"),
    [
        ("198.18.0.11:40000", Endpoint("198.18.0.11", 40000), "198.18.0.11:40000"),
        ("[::1]:9000", Endpoint("::1", 9000), "[::1]:9000"),
        ("[2001:DB8:0::1]:1", Endpoint("2001:db8::1", 1), "[2001:db8::1]:1"),
        ("1.2.3.4:080", Endpoint("1.2.3.4", 80), "1.2.3.4:80"),
    ],
)
def test_endpoint_parse_and_str(text, endpoint, canonical):
    assert Endpoint.parse(text) == endpoint
    assert str(endpoint) == canonical
    assert Endpoint.parse(canonical) == endpoint


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1.2.3.4", "expected ip:port"),
        ("1.2.3.4:", "expected ip:port"),
        ("1.2.3.4:port", "expected ip:port"),
        ("1.2.3.4:+80", "expected ip:port"),
        ("1.2.3.4:\u0669\u0660", "expected ip:port"),  # Arabic-Indic digits: str.isdigit() but not a port
        ("1.2.3.4:\u00b2", "expected ip:port"),
        ("1.2.3.4:0", "port out of range"),
        ("1.2.3.4:65536", "port out of range"),
        (":9000", "'' is not an IP address"),
        ("localhost:9000", "'localhost' is not an IP address"),
        ("1.2.3.256:9000", "'1.2.3.256' is not an IP address"),
        ("[::1:9000", "'[::1' is not an IP address"),
        ("::1:9000", "write IPv6 as [ip]:port"),
        ("[1.2.3.4]:9000", "write IPv6 as [ip]:port"),
        ("[fe80::1%eth0]:9000", "no zone"),
        ("[fe80::1%1]:9000", "no zone"),
    ],
)
def test_endpoint_parse_rejects(text, problem):
    with pytest.raises(ValueError, match="invalid address") as caught:
        Endpoint.parse(text)
    assert problem in str(caught.value)


def test_endpoint_of_socket_addresses():
    assert Endpoint.of(("127.0.0.1", 9000)) == Endpoint("127.0.0.1", 9000)
    assert Endpoint.of(("::1", 9000, 0, 0)) == Endpoint("::1", 9000)
    assert Endpoint("::1", 9000).sockaddr() == ("::1", 9000)


@pytest.mark.parametrize(
    ("endpoint", "family", "is_ipv6"),
    [
        (Endpoint("198.18.0.11", 40000), socket.AF_INET, False),
        (Endpoint("::1", 9000), socket.AF_INET6, True),
        (Endpoint.parse("[2001:db8::1]:1"), socket.AF_INET6, True),
        (Endpoint.parse("[fe80::1]:80"), socket.AF_INET6, True),
        (Endpoint.of(("::ffff:198.18.0.1", 9000, 0, 0)), socket.AF_INET6, True),
    ],
)
def test_endpoint_knows_its_address_family(endpoint, family, is_ipv6):
    assert (endpoint.family, endpoint.is_ipv6) == (family, is_ipv6)


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"", ErrorKind.EMPTY),
        (b"\r\n", ErrorKind.EMPTY),
        (b"\r", ErrorKind.UNKNOWN_VERB),  # a lone "\r" is not a line terminator
        (b" ", ErrorKind.UNKNOWN_VERB),
    ],
)
def test_empty_is_only_a_bare_line_terminator(datagram, kind):
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert caught.value.kind is kind
    assert caught.value.reason.startswith("unknown verb")  # the seed's reason, whatever the kind


def test_every_verb_has_one_row_that_parses_and_encodes_it():
    """A message class encodes under the verb that parses back to it (the table is the only map)."""
    samples = {verb: parse(datagram) for datagram, _ in GOLDEN for verb in [datagram.split(b" ")[0].decode()]}
    assert set(samples) == VERBS
    for verb, message in samples.items():
        assert encode(message).split(b" ")[0].decode() == verb
