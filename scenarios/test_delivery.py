"""Delivery: every pair talks (direct or relayed), each message arrives exactly once, in order, with the
sender's id, and `client send` returns only once the peer has acknowledged it."""

from __future__ import annotations

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import PEER_OF, connect_expecting, events, flood, flood_texts, received_since, reset_paths

COUNT = 5
STREAM = 200


def received_texts(lab: Lab, host: str, marker: str) -> list[str]:
    return [e["text"] for e in events(lab, host, "message_received") if marker in e["text"]]


def test_messages_cross_both_ways_exactly_once(lab: Lab, pair: Pair) -> None:
    reset_paths(lab)
    connect_expecting(lab, "alice", pair.expected_path)
    for sender, receiver in PEER_OF.items():
        marker = f"{sender}->{receiver}"
        sent = [f"{marker} #{i}: hello with  spaces and ünïcode" for i in range(COUNT)]
        for text in sent:
            lab.exec_ok(sender, "client", "send", receiver, text)  # returns once acknowledged
        got = [e for e in events(lab, receiver, "message_received") if marker in e["text"]]
        assert [e["text"] for e in got] == sent, "each message exactly once, in order, text intact"
        assert {e["peer"] for e in got} == {sender}


def test_a_stream_of_200_each_way_arrives_exactly_once_in_order(lab: Lab, pair: Pair) -> None:
    connect_expecting(lab, "alice", pair.expected_path)
    for sender, receiver in PEER_OF.items():
        before = len(events(lab, receiver, "message_received"))
        result = flood(lab, sender, STREAM, 100)
        assert (result["delivered"], result["undelivered"]) == (STREAM, 0), result
        assert received_since(lab, receiver, before) == flood_texts(STREAM, 100), f"{sender}->{receiver}"
