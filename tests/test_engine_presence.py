"""Presence (README, "Presence"): every keepalive period the agent asks its server, with a proof, about the
peers it has a path or a chat with; a peer reported offline is an event (``peer_offline``, a chat's
``[bob is offline]``), its return another (``peer_back``, ``[bob is back]``), and status shows the last
answer and how long ago the server last heard the peer. Two cores and the in-memory lab's server, which
can be told to report a peer offline.
"""

from __future__ import annotations

import logging

from client.cli.logs import PrefixFormatter
from client.engine.core import AgentCore, CoreConfig
from client.engine.events import describe
from client.engine.path import PathTiming
from client.engine.peer import Peer
from client.engine.presence import PER_PERIOD, Watch
from protocol import Frame, PresenceQuery, PresenceReport, encode
from tests.support.engine_outputs import frames
from tests.support.signal_server import register
from tests.test_client_core import CONE, SERVER, TIMING, Lab, connect, two_hosts
from trust import verify_proof


def queries(lab: Lab) -> list[Frame]:
    """The presence queries on the wire to the server."""
    said = (lab.tap.plain(data) for _, dst, data in lab.wire if dst == SERVER)
    return [f for f in said if isinstance(f, Frame) and isinstance(f.message, PresenceQuery)]


def test_the_agent_asks_about_its_peers_each_period_with_a_proof() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    lab.wire.clear()
    lab.run_for(10.0)
    asked = queries(lab)
    assert sorted((f.message.from_id, f.message.peer_id) for f in asked) == [("alice", "bob"), ("bob", "alice")]  # type: ignore[union-attr]
    for frame in asked:
        assert verify_proof(lab.tap.identities[frame.message.from_id].public.sign, frame)  # type: ignore[union-attr]
    status = lab.cores["alice"].peer_status("bob", lab.now)
    assert status is not None
    assert status["online"] is True
    assert 0 <= status["last_seen_s"] <= 10
    assert lab.named("alice", "peer_offline") == lab.named("alice", "peer_back") == []


def test_a_peer_going_offline_and_coming_back_are_events() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    lab.request("alice", lambda core: core.send("bob", "still there?", lab.now).outputs)
    lab.run_for(10.0)
    lab.server.offline.add("bob")  # the server expired bob (three keepalives missed)
    lab.run_for(10.0)
    [offline] = lab.named("alice", "peer_offline")
    assert offline["peer"] == "bob"
    assert isinstance(offline["last_seen_s"], float)
    assert lab.cores["alice"].peer_status("bob")["online"] is False  # type: ignore[index]
    lab.run_for(20.0)
    assert len(lab.named("alice", "peer_offline")) == 1  # said once, not every period
    lab.server.offline.discard("bob")
    lab.run_for(10.0)
    assert [e["peer"] for e in lab.named("alice", "peer_back")] == ["bob"]
    assert lab.cores["alice"].peer_status("bob")["online"] is True  # type: ignore[index]


def test_a_report_nobody_asked_for_changes_nothing() -> None:
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING))
    register(alice)
    out = alice.receive(encode(Frame(99, PresenceReport("bob", False))), SERVER, 1.0)
    assert [type(o).__name__ for o in out] == ["Log"]
    assert alice.dropped()["unmatched"] == 1


def test_only_peers_with_a_path_or_a_chat_are_watched_a_few_a_period() -> None:
    timing = PathTiming()
    peers = [Peer.new(f"p{n:02d}", timing) for n in range(20)]
    for peer in peers[:12]:
        peer.sent = 1
    peers[15].online = False  # reported offline: watched for its return
    watch = Watch()
    turns = [watch.next(peers) for _ in range(-(-13 // PER_PERIOD))]  # 13 watched: they take turns
    assert all(len(turn) <= PER_PERIOD for turn in turns)
    assert set().union(*turns) == {f"p{n:02d}" for n in [*range(12), 15]}


def test_presence_lines_print_as_a_chat_shows_them() -> None:
    formatter = PrefixFormatter("%(message)s")
    for event, line in (
        (("peer_offline", {"last_seen_s": 31.0}), "[bob is offline]"),
        (("peer_back", {}), "[bob is back]"),
    ):
        name, fields = event
        said = describe({"event": name, "peer": "bob", **fields})
        record = logging.LogRecord("chat", logging.INFO, __file__, 1, said.text, None, None)
        record.speaker = said.speaker
        assert formatter.format(record) == line


def test_a_registered_agent_with_no_peers_asks_nothing() -> None:
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING))
    register(alice)
    assert [f for f in frames(alice.tick(10.0), SERVER) if isinstance(f.message, PresenceQuery)] == []
