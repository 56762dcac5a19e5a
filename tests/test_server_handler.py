"""The server's datagram handler, pure: bytes and a source address in, replies out, time passed in."""

import logging
import sys

import pytest

from protocol import ID_SYNTAX, MAX_DATAGRAM, Endpoint, ErrorKind
from server.handler import COUNTERS, DROP_KINDS, Handler, drop_kind
from server.ratelimit import RequestLimiter
from server.table import PeerTable

ALICE = Endpoint("198.18.0.11", 40000)
BOB = Endpoint("198.18.0.12", 50000)
CAROL = Endpoint("198.18.0.13", 60000)
ALICE_RELAY = b"198.18.0.20:49160"
BOB_RELAY = b"198.18.0.20:49161"


@pytest.fixture
def handler():
    """A handler over an empty table (ttl 120 s, room for 3 peers, all of which may be unkeyed), no rate limit."""
    return Handler(PeerTable(ttl=120, max_peers=3, unkeyed_share=1))


@pytest.fixture
def registered(handler):
    """The handler with alice and bob registered at t=0."""
    assert handler.handle(b"register alice", ALICE, 0) == [(b"ok", ALICE)]
    assert handler.handle(b"register bob", BOB, 0) == [(b"ok", BOB)]
    return handler


def test_register_replies_ok_and_stores_source(handler, caplog):
    caplog.set_level(logging.INFO)
    assert handler.handle(b"register alice\n", ALICE, 5) == [(b"ok", ALICE)]
    assert handler.table.lookup("alice", 5).addr == ALICE
    assert "registered alice at 198.18.0.11:40000" in caplog.messages


def test_register_from_new_address_moves_and_logs(registered, caplog):
    caplog.set_level(logging.INFO)
    moved = Endpoint("198.18.0.11", 40999)
    assert registered.handle(b"register alice", moved, 1) == [(b"ok", moved)]
    assert registered.table.lookup("alice", 1).addr == moved
    assert "moved alice from 198.18.0.11:40000 to 198.18.0.11:40999" in caplog.messages


def test_connect_sends_each_side_the_others_address(registered, caplog):
    caplog.set_level(logging.INFO)
    assert registered.handle(b"connect alice bob", ALICE, 1) == [
        (b"punch bob 198.18.0.12:50000", ALICE),
        (b"punch alice 198.18.0.11:40000", BOB),
    ]
    assert any(m.startswith("connect alice -> bob") for m in caplog.messages)


def test_connect_the_other_way(registered):
    assert registered.handle(b"connect bob alice", BOB, 1) == [
        (b"punch alice 198.18.0.11:40000", BOB),
        (b"punch bob 198.18.0.12:50000", ALICE),
    ]


def test_connect_uses_the_latest_address(registered):
    moved = Endpoint("198.18.0.12", 50001)
    registered.handle(b"register bob", moved, 1)
    assert registered.handle(b"connect alice bob", ALICE, 2) == [
        (b"punch bob 198.18.0.12:50001", ALICE),
        (b"punch alice 198.18.0.11:40000", moved),
    ]


def test_connect_ipv6_peer_is_bracketed(handler):
    six = Endpoint("2001:db8::7", 4000)
    handler.handle(b"register alice", ALICE, 0)
    handler.handle(b"register six", six, 0)
    assert handler.handle(b"connect alice six", ALICE, 1)[0] == (b"punch six [2001:db8::7]:4000", ALICE)


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"register", b"invalid register cmd"),
        (b"register alice bob", b"invalid register cmd"),
        (b"connect alice", b"invalid connection cmd"),
        (b"connect alice bob carol", b"invalid connection cmd"),
        (b"connect alice carol", b"invalid peers"),
        (b"connect carol alice", b"invalid peers"),
        (b"connect carol dave", b"invalid peers"),
        (b"connect alice alice", b"invalid peers"),
        (b"register b@d", f"invalid id 'b@d': ids match {ID_SYNTAX}".encode()),
        (b"register alice relay=nowhere", b"invalid register cmd"),
        (b"register alice relay=", b"invalid register cmd"),
        (b"register b@d relay=-", f"invalid id 'b@d': ids match {ID_SYNTAX}".encode()),
        (b"connect alice b@d", f"invalid id 'b@d': ids match {ID_SYNTAX}".encode()),
    ],
)
def test_errors_are_answered_to_the_sender(registered, datagram, reason):
    registered.handle(b"keepalive " + b"x" * 30, CAROL, 0)  # credit: 3x 40 bytes (a seed client's keepalive is 9)
    assert registered.handle(datagram, CAROL, 1) == [(b"err " + reason, CAROL)]
    assert set(registered.counters.values()) == {0}, "an answered error is not a drop"


@pytest.mark.parametrize("datagram", [b"register b@d", b"register b@d relay=-", b"connect alice b@d"])
def test_a_bad_id_from_a_fresh_source_is_told_tersely_within_its_budget(registered, datagram):
    """The full reason (65 bytes) is more than 3x a 12-byte register from an address never heard before."""
    assert registered.handle(datagram, CAROL, 1) == [(b"err invalid id", CAROL)]
    assert registered.counters["amplification"] == 0


def test_connect_to_expired_peer_is_invalid(registered):
    registered.handle(b"keepalive", ALICE, 100)
    assert registered.handle(b"connect alice bob", ALICE, 125) == [(b"err invalid peers", ALICE)]


def test_table_full(registered, caplog):
    assert registered.handle(b"register carol", CAROL, 1) == [(b"ok", CAROL)]
    dave = Endpoint("198.18.0.14", 1)
    assert registered.handle(b"register dave", dave, 1) == [(b"err peer table full", dave)]
    assert "peer table full (3): refused dave at 198.18.0.14:1" in caplog.messages


def test_register_expires_stale_peers_to_make_room(registered, caplog):
    caplog.set_level(logging.INFO)
    registered.handle(b"register carol", CAROL, 100)
    dave = Endpoint("198.18.0.14", 1)
    assert registered.handle(b"register dave", dave, 121) == [(b"ok", dave)]
    assert [p.id for p in registered.table.snapshot(121)] == ["carol", "dave"]
    assert "expired alice at 198.18.0.11:40000 (not seen for 121 s)" in caplog.messages


def test_keepalive_is_silent_and_refreshes_presence(registered):
    assert registered.handle(b"keepalive", ALICE, 100) == []
    assert registered.handle(b"keepalive", CAROL, 100) == [], "unknown sender: still silent"
    assert registered.table.lookup("alice", 200).last_seen == 100
    assert registered.table.lookup("bob", 200) is None


def test_any_valid_datagram_proves_presence(registered):
    registered.handle(b"connect alice bob", ALICE, 100)
    registered.handle(b"hello bob", BOB, 110)
    assert registered.table.lookup("alice", 200).last_seen == 100
    assert registered.table.lookup("bob", 200).last_seen == 110


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"\r\n", "empty"),
        (b"x" * (MAX_DATAGRAM + 1), "oversize"),
        (b"register " + b"a" * 2000, "oversize"),
        (bytes(range(256)) * 4, "not_utf8"),
        (b"\xc3\x28", "not_utf8"),
        (b"REGISTER alice", "unknown_verb"),
        (b" ", "unknown_verb"),
        (b"ok", "not_for_server"),
        (b"err invalid peers", "not_for_server"),
        (b"punch bob 1.2.3.4:5", "not_for_server"),
        (b"hello alice", "not_for_server"),
        (b"hello-ack alice", "not_for_server"),
        (b"msg alice hi", "not_for_server"),
        (b"data alice 7 3 2 hi there", "not_for_server"),
        (b"ack alice 7 3", "not_for_server"),
        (b"ack alice 7 3 5-6,9", "not_for_server"),
        (b"punch bob 1.2.3.4:5 relay=-", "not_for_server"),
        (b"data alice 7 3 2", "malformed"),
        (b"ack alice 7", "malformed"),
        (b"ack alice x 3", "malformed"),
        (b"punch bob nowhere", "malformed"),
        (b"hello", "not_for_server"),  # the seed's bare probe
        (b"msg bob", "malformed"),
        (b"ok then", "malformed"),
        (b"hello b@d", "malformed"),
        (b"punch bob 1.2.3.4:5 relay=nowhere", "malformed"),
        # v2 (0xF5 first) garbage: no transaction id to answer, or no type
        (b"\xf5\x02\x01", "truncated"),
        (b"\xf5\x02\x7f" + bytes(8), "unknown_type"),
        # v2 frames for clients
        (b"\xf5\x02\x11" + bytes(8), "not_for_server"),  # ok
        (b"\xf5\x02\x13" + bytes(8) + b"\x07\x00\x01c", "not_for_server"),  # retry
    ],
)
def test_garbage_is_dropped_silently_and_counted(registered, caplog, datagram, kind):
    caplog.set_level(logging.DEBUG)
    assert registered.handle(datagram, CAROL, 1) == []
    assert registered.counters == {k: int(k == kind) for k in COUNTERS}
    assert caplog.records[-1].levelno == logging.DEBUG
    assert caplog.messages[-1].startswith(f"dropped {kind} datagram from 198.18.0.13:60000")


DROP_COUNTER = {
    ErrorKind.EMPTY: "empty",
    ErrorKind.OVERSIZE: "oversize",
    ErrorKind.NOT_UTF8: "not_utf8",
    ErrorKind.UNKNOWN_VERB: "unknown_verb",
    ErrorKind.BAD_ARGUMENTS: "malformed",
    ErrorKind.BAD_ID: "malformed",
    ErrorKind.BAD_ADDRESS: "malformed",
    ErrorKind.TRUNCATED: "truncated",
    ErrorKind.UNKNOWN_TYPE: "unknown_type",
    ErrorKind.VERSION: "malformed",
    ErrorKind.BAD_FIELD: "malformed",
}
"""The documented counters (README, the signal protocol), written out: a new kind must be added here."""


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_parser_verdict_has_a_drop_counter(kind):
    assert drop_kind(kind) == DROP_COUNTER[kind]
    assert DROP_COUNTER[kind] in DROP_KINDS


def test_garbage_does_not_touch_presence(registered):
    registered.handle(b"\xff", ALICE, 100)
    assert registered.table.lookup("alice", 120) is None


def test_expire_logs_each_expired_peer(registered, caplog):
    caplog.set_level(logging.INFO)
    registered.handle(b"keepalive", BOB, 60)
    registered.expire(150)
    assert caplog.messages == ["expired alice at 198.18.0.11:40000 (not seen for 150 s)"]
    assert [p.id for p in registered.table.snapshot(150)] == ["bob"]


# --- the relay extension: `register <id> relay=<ip:port>|-`, `punch <id> <ip:port> relay=<ip:port>|-` ---


def connect_both_ways(handler, first, second):
    """The punches for `connect first second`, sent from first's address, as {destination: datagram}."""
    replies = handler.handle(f"connect {first} {second}".encode(), {"alice": ALICE, "bob": BOB}[first], 1)
    assert len(replies) == 2
    return {destination: datagram for datagram, destination in replies}


def test_seed_peers_get_seed_punches_even_after_an_extended_peer_joined(registered):
    assert registered.handle(b"register carol relay=" + ALICE_RELAY, CAROL, 0) == [(b"ok", CAROL)]
    assert connect_both_ways(registered, "alice", "bob") == {
        ALICE: b"punch bob 198.18.0.12:50000",
        BOB: b"punch alice 198.18.0.11:40000",
    }


@pytest.mark.parametrize(("first", "second"), [("alice", "bob"), ("bob", "alice")])
def test_extended_peers_get_each_others_relay(handler, first, second):
    handler.handle(b"register alice relay=" + ALICE_RELAY, ALICE, 0)
    handler.handle(b"register bob relay=" + BOB_RELAY, BOB, 0)
    assert connect_both_ways(handler, first, second) == {
        ALICE: b"punch bob 198.18.0.12:50000 relay=" + BOB_RELAY,
        BOB: b"punch alice 198.18.0.11:40000 relay=" + ALICE_RELAY,
    }


@pytest.mark.parametrize(("first", "second"), [("alice", "bob"), ("bob", "alice")])
def test_extended_peer_without_relay_is_sent_as_relay_dash(handler, first, second):
    handler.handle(b"register alice relay=" + ALICE_RELAY, ALICE, 0)
    handler.handle(b"register bob relay=-", BOB, 0)
    assert connect_both_ways(handler, first, second) == {
        ALICE: b"punch bob 198.18.0.12:50000 relay=-",
        BOB: b"punch alice 198.18.0.11:40000 relay=" + ALICE_RELAY,
    }


@pytest.mark.parametrize("alice_register", [b"register alice relay=" + ALICE_RELAY, b"register alice relay=-"])
@pytest.mark.parametrize(("first", "second"), [("alice", "bob"), ("bob", "alice")])
def test_extended_and_seed_peers_both_get_seed_punches(handler, alice_register, first, second):
    handler.handle(alice_register, ALICE, 0)
    handler.handle(b"register bob", BOB, 0)
    assert connect_both_ways(handler, first, second) == {
        ALICE: b"punch bob 198.18.0.12:50000",  # plain: tells alice that bob is seed-era
        BOB: b"punch alice 198.18.0.11:40000",  # plain: a seed client drops punches with extra arguments
    }


def test_register_relay_updates_and_logs(handler, caplog):
    caplog.set_level(logging.INFO)
    steps = [
        (b"register alice relay=-", ["registered alice at 198.18.0.11:40000"]),
        (b"register alice relay=" + ALICE_RELAY, ["alice relay 198.18.0.20:49160"]),
        (b"register alice relay=" + ALICE_RELAY, []),  # a refresh that changes nothing logs nothing at INFO
        (b"register alice relay=" + BOB_RELAY, ["alice relay 198.18.0.20:49161"]),
        (b"register alice relay=-", ["alice relay none"]),
        (b"register alice relay=-", []),
    ]
    for datagram, logged in steps:
        caplog.clear()
        assert handler.handle(datagram, ALICE, 1) == [(b"ok", ALICE)], datagram
        assert caplog.messages == logged, datagram


def test_new_peer_with_relay_logs_registration_and_relay(handler, caplog):
    caplog.set_level(logging.INFO)
    handler.handle(b"register alice relay=" + ALICE_RELAY, ALICE, 0)
    assert caplog.messages == ["registered alice at 198.18.0.11:40000", "alice relay 198.18.0.20:49160"]


def test_connect_uses_the_latest_relay(handler):
    handler.handle(b"register alice relay=-", ALICE, 0)
    handler.handle(b"register bob relay=-", BOB, 0)
    assert handler.handle(b"register bob relay=" + BOB_RELAY, BOB, 1) == [(b"ok", BOB)]
    assert connect_both_ways(handler, "alice", "bob")[ALICE] == b"punch bob 198.18.0.12:50000 relay=" + BOB_RELAY
    assert handler.handle(b"register bob relay=-", BOB, 2) == [(b"ok", BOB)]
    assert connect_both_ways(handler, "alice", "bob")[ALICE] == b"punch bob 198.18.0.12:50000 relay=-"


def test_peer_re_registering_as_seed_gets_seed_punches(handler):
    handler.handle(b"register alice relay=" + ALICE_RELAY, ALICE, 0)
    handler.handle(b"register bob relay=" + BOB_RELAY, BOB, 0)
    handler.handle(b"register bob", BOB, 1)  # e.g. a seed client restarted on the same port
    assert connect_both_ways(handler, "alice", "bob") == {
        ALICE: b"punch bob 198.18.0.12:50000",
        BOB: b"punch alice 198.18.0.11:40000",
    }


def test_connect_log_shows_relays_of_extended_peers(handler, caplog):
    caplog.set_level(logging.INFO)
    handler.handle(b"register alice relay=" + ALICE_RELAY, ALICE, 0)
    handler.handle(b"register bob", BOB, 0)
    handler.handle(b"connect alice bob", ALICE, 1)
    assert caplog.messages[-1] == (
        "connect alice -> bob (198.18.0.11:40000 relay=198.18.0.20:49160 <-> 198.18.0.12:50000)"
    )


def test_data_and_ack_prove_presence_but_get_no_reply(handler):
    handler.handle(b"register alice relay=-", ALICE, 0)
    assert handler.handle(b"data bob 1 0 0 hi", ALICE, 50) == []
    assert handler.handle(b"ack bob 1 1", ALICE, 60) == []
    assert handler.table.lookup("alice", 100).last_seen == 60
    assert handler.counters["not_for_server"] == 2


# --- limits: the request token bucket, ids per ip, the table's room; their counters ---


def limited(rate=1.0, burst=2, **table):
    """A handler whose sources may send ``burst`` requests at once, then ``rate`` a second."""
    return Handler(PeerTable(**table), RequestLimiter(rate=rate, burst=burst))


def test_a_request_over_the_rate_is_dropped_unparsed_and_counted(caplog):
    caplog.set_level(logging.DEBUG)
    handler = limited()
    assert handler.handle(b"register alice", ALICE, 0) == [(b"ok", ALICE)]
    assert handler.handle(b"\xff", ALICE, 0) == []
    assert handler.handle(b"register alice", ALICE, 0) == [], "no reply at all, not even an err"
    assert handler.handle(b"connect alice bob", Endpoint("198.18.0.11", 1), 0) == [], "the same ip, another port"
    assert handler.counters["rate_limited"] == 2
    assert handler.counters["not_utf8"] == 1, "only the datagram under the limit was parsed"
    assert caplog.messages[-1] == "rate limited 17 bytes from 198.18.0.11:1"
    assert handler.handle(b"register bob", BOB, 0) == [(b"ok", BOB)], "another source has its own bucket"
    assert handler.handle(b"keepalive", ALICE, 1) == [], "a token back after a second"
    assert handler.counters["rate_limited"] == 2


def test_a_rate_limited_keepalive_does_not_prove_presence():
    handler = limited(ttl=120)
    handler.handle(b"register alice", ALICE, 0)
    handler.handle(b"keepalive", ALICE, 0)
    handler.handle(b"keepalive", ALICE, 0.5)  # over the limit
    assert handler.table.lookup("alice", 1).last_seen == 0


def test_ids_over_the_ip_quota_get_an_err_and_are_counted(caplog):
    handler = Handler(PeerTable(ids_per_ip=2))
    assert handler.handle(b"register a", Endpoint("198.18.0.11", 1), 0) == [(b"ok", Endpoint("198.18.0.11", 1))]
    assert handler.handle(b"register b", Endpoint("198.18.0.11", 2), 0) == [(b"ok", Endpoint("198.18.0.11", 2))]
    third = Endpoint("198.18.0.11", 3)
    assert handler.handle(b"register c", third, 0) == [(b"err too many ids from this ip", third)]
    assert handler.counters["quota"] == 1
    assert caplog.messages[-1] == "ids per ip quota (2) reached: refused c at 198.18.0.11:3"


def test_unkeyed_ids_beyond_their_share_are_told_the_table_is_full(caplog):
    handler = Handler(PeerTable(max_peers=4, unkeyed_share=0.5))
    handler.handle(b"register a", ALICE, 0)
    handler.handle(b"register b", BOB, 0)
    assert handler.handle(b"register c", CAROL, 0) == [(b"err peer table full", CAROL)]
    assert handler.counters["table_full"] == 1
    assert caplog.messages[-1] == "peer table full for unkeyed ids (2 of 4): refused c at 198.18.0.13:60000"


def test_table_full_is_counted(registered):
    registered.handle(b"register carol", CAROL, 1)
    registered.handle(b"register dave", Endpoint("198.18.0.14", 1), 1)
    assert registered.counters["table_full"] == 1


def test_every_counter_starts_at_zero():
    assert Handler(PeerTable()).counters == dict.fromkeys(COUNTERS, 0)
    assert set(COUNTERS) >= {*DROP_KINDS, "rate_limited", "quota", "table_full", "amplification"}


# --- what reaches the log from the wire ---

HOSTILE = [
    b"register \x1b[31mroot\nFAKE line",
    b"register alice relay=198.18.0.1:1\n\x1b]0;x\x07",
    b"register alice relay=[fe80::1%eth0\nforged]:1",
    b"connect alice \xe2\x80\xaebob",
    b"\x1b[2J\ninjected: registered mallory",
    b"punch bob 1.2.3.4:5\r\nforged",
    b"hello \x00\x7f",
    b"msg bob \x1b[31mred\nline",
    "register \u2028alice".encode(),
]


@pytest.mark.parametrize("datagram", HOSTILE)
def test_no_wire_value_reaches_the_log_unescaped(registered, caplog, datagram):
    caplog.set_level(logging.DEBUG)
    registered.handle(datagram, CAROL, 1)
    assert caplog.messages, "each of these is logged, at least at DEBUG"
    for message in caplog.messages:
        assert message.isprintable(), message


# --- presence: what a register costs does not grow with the table ---


def register_cost(peers: int) -> int:
    """Lines of Python one register runs (handler, limiter, table, expiry) with ``peers`` live peers and one
    expired peer in the table: a count of operations, not a time, so it cannot flake."""
    handler = Handler(PeerTable(ttl=30, max_peers=2048, unkeyed_share=1), RequestLimiter())
    handler.handle(b"register old", Endpoint("198.18.9.1", 1), now=-20)  # expired from 10 on
    for i in range(peers):
        handler.handle(f"register p{i}".encode(), Endpoint(f"198.18.{i // 200}.{i % 200 + 1}", 1000), now=i / 200)
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return trace

    sys.settrace(trace)
    try:
        replies = handler.handle(b"register newcomer", Endpoint("198.18.10.1", 1), now=10.5)
    finally:
        sys.settrace(None)
    assert replies == [(b"ok", Endpoint("198.18.10.1", 1))]
    assert handler.table.lookup("old", now=10.5) is None
    assert len(handler.table) == peers + 1, "old expired on the way"
    return lines


def test_a_register_costs_the_same_with_1024_peers_as_with_2():
    small, large = register_cost(2), register_cost(1024)
    assert large <= 1.5 * small, (small, large)
    assert small > 20, "the tracer saw the register"
