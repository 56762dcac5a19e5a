"""Delivery: on a direct path messages cross both ways exactly once with the sender's id; without one,
sending fails with a clear reason and nothing arrives."""

from __future__ import annotations

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import PEER_OF, connect, events, reset_paths

COUNT = 5


def received_texts(lab: Lab, host: str, marker: str) -> list[str]:
    return [e["text"] for e in events(lab, host, "message_received") if marker in e["text"]]


def wait_received(lab: Lab, host: str, marker: str) -> None:
    def all_there() -> bool | None:
        return True if len(received_texts(lab, host, marker)) >= COUNT else None

    lab.wait_for(all_there, 5, f"{COUNT} messages {marker}")


def test_messages_cross_both_ways_exactly_once(lab: Lab, pair: Pair) -> None:
    reset_paths(lab)
    if pair.expected_path != "direct":
        code, output = lab.exec("alice", "client", "send", "bob", "anyone there?")
        assert code == 1
        assert "no path to bob" in output, output
        assert "punch failed" in output, output
        assert not received_texts(lab, "bob", "anyone there?")
        return

    code, view = connect(lab, "alice")
    assert code == 0, view
    for sender, receiver in PEER_OF.items():
        marker = f"{sender}->{receiver}"
        sent = [f"{marker} #{i}: hello with  spaces and ünïcode" for i in range(COUNT)]
        for text in sent:
            lab.exec_ok(sender, "client", "send", receiver, text)
        wait_received(lab, receiver, marker)
        got = [e for e in events(lab, receiver, "message_received") if marker in e["text"]]
        assert sorted(e["text"] for e in got) == sorted(sent), "each message exactly once, text intact"
        assert {e["peer"] for e in got} == {sender}
