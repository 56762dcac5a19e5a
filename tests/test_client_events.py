"""The agent's events: golden JSON for every kind, exactly as README.md documents the event log and
``client events`` prints it (field names, their order, values), and the human lines."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from client.cli.chat import say
from client.cli.logs import PrefixFormatter
from client.engine.events import (
    KINDS,
    DirectConfirmed,
    Disconnected,
    Event,
    Line,
    MessageDelivered,
    MessageReceived,
    MessageSent,
    MessageUndelivered,
    PathChanged,
    PeerBack,
    PeerForgotten,
    PeerOffline,
    PunchFailed,
    PunchStarted,
    Registered,
    RelayConfirmed,
    ServerError,
    Ticket,
    TurnAllocated,
    TurnFailed,
    describe,
    event,
    ticket_of,
)
from client.engine.routes import Route

TS = 1700000000.1234567

GOLDEN: list[tuple[Event, str]] = [
    (Registered("198.18.0.10:9000"), '{"ts": 1700000000.123457, "event": "registered", "server": "198.18.0.10:9000"}'),
    (
        PunchStarted("bob", "198.18.0.12:59800"),
        '{"ts": 1700000000.123457, "event": "punch_started", "peer": "bob", "addr": "198.18.0.12:59800"}',
    ),
    (
        DirectConfirmed("bob", "198.18.0.12:59800", 2.1),
        '{"ts": 1700000000.123457, "event": "direct_confirmed", "peer": "bob", "addr": "198.18.0.12:59800", '
        '"time_to_direct_ms": 2.1}',
    ),
    (
        PunchFailed("bob", "198.18.0.12:37371", "punch failed: no response from 198.18.0.12:37371 within 5 s"),
        '{"ts": 1700000000.123457, "event": "punch_failed", "peer": "bob", "addr": "198.18.0.12:37371", '
        '"reason": "punch failed: no response from 198.18.0.12:37371 within 5 s"}',
    ),
    (
        PunchFailed("bob", "198.18.0.12:37371", "punch failed: x; relayed, still probing direct", relayed=True),
        '{"ts": 1700000000.123457, "event": "punch_failed", "peer": "bob", "addr": "198.18.0.12:37371", '
        '"reason": "punch failed: x; relayed, still probing direct", "relayed": true}',
    ),
    (
        MessageSent("bob", "hi"),
        '{"ts": 1700000000.123457, "event": "message_sent", "peer": "bob", "text": "hi"}',
    ),
    (
        MessageSent("bob", "hi", epoch=0, seq=0),  # zero is a value, not an absent field
        '{"ts": 1700000000.123457, "event": "message_sent", "peer": "bob", "text": "hi", "epoch": 0, "seq": 0}',
    ),
    (
        MessageReceived("bob", "gday ünïcode", "198.18.0.12:59800"),
        '{"ts": 1700000000.123457, "event": "message_received", "peer": "bob", "text": "gday ünïcode", '
        '"addr": "198.18.0.12:59800"}',
    ),
    (
        ServerError("invalid register cmd"),
        '{"ts": 1700000000.123457, "event": "server_error", "reason": "invalid register cmd"}',
    ),
    (
        ServerError("invalid peers", peer="carol"),
        '{"ts": 1700000000.123457, "event": "server_error", "reason": "invalid peers", "peer": "carol"}',
    ),
    (Disconnected("bob"), '{"ts": 1700000000.123457, "event": "disconnected", "peer": "bob"}'),
    (
        PeerForgotten("bob", "idle for 120 s"),
        '{"ts": 1700000000.123457, "event": "peer_forgotten", "peer": "bob", "reason": "idle for 120 s"}',
    ),
    (
        RelayConfirmed("bob", "198.18.0.20:49161", 4.2),
        '{"ts": 1700000000.123457, "event": "relay_confirmed", "peer": "bob", "relay": "198.18.0.20:49161", '
        '"time_to_relay_ms": 4.2}',
    ),
    (
        PathChanged("bob", Route.RELAY, Route.DIRECT, "direct path confirmed (upgraded from relay)", "1.2.3.4:5"),
        '{"ts": 1700000000.123457, "event": "path_changed", "peer": "bob", "old": "relay", "new": "direct", '
        '"reason": "direct path confirmed (upgraded from relay)", "addr": "1.2.3.4:5"}',
    ),
    (
        PathChanged("bob", Route.RELAY, Route.NONE, "relay lost: turn: gone", None),
        '{"ts": 1700000000.123457, "event": "path_changed", "peer": "bob", "old": "relay", "new": "none", '
        '"reason": "relay lost: turn: gone", "addr": null}',
    ),
    (
        MessageDelivered("bob", "hi", 7, 0),
        '{"ts": 1700000000.123457, "event": "message_delivered", "peer": "bob", "text": "hi", "epoch": 7, "seq": 0}',
    ),
    (
        MessageUndelivered("bob", "hi", "not acknowledged within 30 s", 7, 1),
        '{"ts": 1700000000.123457, "event": "message_undelivered", "peer": "bob", "text": "hi", '
        '"reason": "not acknowledged within 30 s", "epoch": 7, "seq": 1}',
    ),
    (
        TurnAllocated("198.18.0.20:49161"),
        '{"ts": 1700000000.123457, "event": "turn_allocated", "relay": "198.18.0.20:49161"}',
    ),
    (
        TurnFailed("turn: no response"),
        '{"ts": 1700000000.123457, "event": "turn_failed", "reason": "turn: no response"}',
    ),
    (
        MessageReceived("carol", "hi", "198.18.0.12:59800", seed=True),
        '{"ts": 1700000000.123457, "event": "message_received", "peer": "carol", "text": "hi", '
        '"addr": "198.18.0.12:59800", "seed": true}',
    ),
    (
        PeerOffline("bob", 42.5),
        '{"ts": 1700000000.123457, "event": "peer_offline", "peer": "bob", "last_seen_s": 42.5}',
    ),
    (
        PeerOffline("bob"),
        '{"ts": 1700000000.123457, "event": "peer_offline", "peer": "bob", "last_seen_s": null}',
    ),
    (PeerBack("bob"), '{"ts": 1700000000.123457, "event": "peer_back", "peer": "bob"}'),
]


@pytest.mark.parametrize(("ev", "line"), GOLDEN, ids=[f"{ev.name}-{i}" for i, (ev, _) in enumerate(GOLDEN)])
def test_event_json_is_the_documented_log_line(ev: Event, line: str) -> None:
    # The event log and the control socket both write json_line: byte for byte the documented line, which is
    # what json.dumps(..., ensure_ascii=False) makes of the object (so any JSON reader reads it back).
    assert ev.json_line(TS) == line
    assert json.dumps(json.loads(line), ensure_ascii=False) == line
    unstamped = json.loads(line)
    del unstamped["ts"]
    assert ev.to_json() == unstamped
    assert type(ev.to_json()["event"]) is str


def test_every_kind_has_a_golden_line() -> None:
    assert {ev.name for ev, _ in GOLDEN} == set(KINDS)


def test_route_values_are_plain_strings_in_json() -> None:
    changed = PathChanged("bob", Route.DIRECT, Route.RELAY, "x", None).to_json()
    assert (type(changed["old"]), type(changed["new"])) == (str, str)
    assert json.dumps(list(Route)) == '["direct", "relay", "punching", "none"]'


def test_events_are_frozen_values() -> None:
    ev = Registered("198.18.0.10:9000")
    with pytest.raises(AttributeError):
        ev.server = "elsewhere"  # type: ignore[misc]
    assert ev == Registered("198.18.0.10:9000")
    assert event("registered", server="198.18.0.10:9000") == ev


def test_settling_events_name_the_sent_messages_ticket() -> None:
    assert ticket_of(MessageDelivered("bob", "hi", 7, 3)) == Ticket("bob", 7, 3)
    assert ticket_of(MessageUndelivered("bob", "hi", "gave up", 7, 4)) == Ticket("bob", 7, 4)


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ({"ts": 1.0, "event": "registered", "server": "s:1"}, Line("client", "registered with server s:1")),
        ({"event": "message_received", "peer": "bob", "text": "hi", "addr": "a:1"}, Line("peer bob", "hi")),
        ({"event": "future_kind", "x": 1}, Line("client", "future_kind")),
        ({"event": "direct_confirmed", "peer": "bob"}, Line("client", "{'event': 'direct_confirmed', 'peer': 'bob'}")),
    ],
)
def test_describe_takes_json_from_a_stream_too(raw: dict[str, Any], line: Line) -> None:
    assert describe(raw) == line


def test_the_prefix_comes_from_the_formatter() -> None:
    formatter = PrefixFormatter("%(message)s")
    own = logging.LogRecord("client", logging.INFO, __file__, 1, "registered with %s", ("s:1",), None)
    assert formatter.format(own) == "[client] registered with s:1"
    line = describe(MessageReceived("bob", "gday", "1.2.3.4:5"))
    theirs = logging.makeLogRecord({"msg": line.text, "levelno": logging.INFO, "speaker": line.speaker})
    assert formatter.format(theirs) == "[peer bob] gday"


def test_the_chat_prints_through_the_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    say("agent stopped")
    say("gday", "peer bob")
    assert capsys.readouterr().out == "[client] agent stopped\n[peer bob] gday\n"
