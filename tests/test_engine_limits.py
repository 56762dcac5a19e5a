"""The protocol's limits as the core meets them, at the boundary and one past it: counters are unsigned
32-bit (the largest is 2^32-1, :data:`protocol.MAX_COUNTER`) and a datagram is at most 1,400 bytes
(:data:`protocol.MAX_DATAGRAM`). Pure cores, time passed in.

Events are read through tests.support.engine_outputs, so the tests do not depend on how an event is
represented.
"""

from __future__ import annotations

import logging

import pytest

from client.engine.core import AgentCore, CoreConfig, Log, RequestError
from client.engine.delivery import WindowFull
from client.engine.reliable import Conversation, DeliveryConfig
from protocol import MAX_COUNTER, MAX_DATAGRAM, Ack, Data, Endpoint, Msg, encode, parse
from tests.support.engine_outputs import datagrams, events, field
from tests.test_client_core import SERVER, TIMING

BOB = Endpoint("198.18.0.12", 41000)
WORST_DATA_HEADER = len(encode(Data("alice", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, "")))
"""Bytes of a ``data`` datagram from alice before its text, with the widest counters."""


def direct_to_bob(extended: bool = True) -> AgentCore:
    """Alice with a confirmed direct path to bob at :data:`BOB`; ``extended``: bob speaks data/ack."""
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING))
    alice.start(0.0)
    alice.receive(b"ok", SERVER, 0.0)
    relay = " relay=-" if extended else ""
    alice.receive(f"punch bob {BOB}{relay}".encode(), SERVER, 1.0)
    alice.receive(b"hello-ack bob", BOB, 1.0)
    return alice


# -- datagram size ----------------------------------------------------------------------------------


def test_a_message_whose_worst_case_data_datagram_is_1400_bytes_is_sent_one_more_byte_is_refused() -> None:
    alice = direct_to_bob()
    text = "x" * (MAX_DATAGRAM - WORST_DATA_HEADER)
    assert len(encode(Data("alice", MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, text))) == MAX_DATAGRAM
    [datagram] = datagrams(alice.send("bob", text, 2.0).outputs)
    assert parse(datagram) == Data("alice", parse(datagram).epoch, 0, 0, text)  # type: ignore[union-attr]
    with pytest.raises(
        RequestError, match=f"^message too long: {MAX_DATAGRAM + 1} bytes on the wire, at most {MAX_DATAGRAM}$"
    ):
        alice.send("bob", text + "x", 2.0)


def test_a_msg_of_exactly_1400_bytes_goes_to_a_seed_era_peer_one_more_byte_is_refused() -> None:
    alice = direct_to_bob(extended=False)
    text = "x" * (MAX_DATAGRAM - len(b"msg alice "))
    assert datagrams(alice.send("bob", text, 2.0).outputs) == [encode(Msg("alice", text))]
    assert len(encode(Msg("alice", text))) == MAX_DATAGRAM
    with pytest.raises(RequestError, match=f"^message too long: {MAX_DATAGRAM + 1} bytes on the wire, at most"):
        alice.send("bob", text + "x", 2.0)


def test_a_received_data_datagram_of_1400_bytes_is_taken_one_byte_more_is_dropped() -> None:
    alice = direct_to_bob()
    head = b"data bob 7 0 0 "
    fits = head + b"y" * (MAX_DATAGRAM - len(head))
    out = alice.receive(fits, BOB, 2.0)
    assert [len(field(e, "text")) for e in events(out, "message_received")] == [MAX_DATAGRAM - len(head)]
    assert datagrams(out) == [b"ack alice 7 1"]
    out = alice.receive(head.replace(b" 0 0 ", b" 1 0 ") + b"y" * (MAX_DATAGRAM + 1 - len(head)), BOB, 2.0)
    assert events(out, "message_received") == []
    assert datagrams(out) == []
    assert [o.level for o in out if isinstance(o, Log)] == [logging.DEBUG]


# -- counters ---------------------------------------------------------------------------------------


def test_the_largest_epoch_is_sent_and_acked_through_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("secrets.randbits", lambda bits: 2**bits - 1)
    alice = direct_to_bob()
    assert datagrams(alice.send("bob", "at the top", 2.0).outputs) == [
        f"data alice {MAX_COUNTER} 0 0 at the top".encode()
    ]
    out = alice.receive(f"ack bob {MAX_COUNTER} 1".encode(), BOB, 2.1)
    assert [(field(e, "epoch"), field(e, "seq")) for e in events(out, "message_delivered")] == [(MAX_COUNTER, 0)]
    out = alice.receive(f"data bob {MAX_COUNTER} 0 0 back".encode(), BOB, 2.2)
    assert datagrams(out) == [f"ack alice {MAX_COUNTER} 1".encode()]
    one_past = alice.receive(f"data bob {MAX_COUNTER + 1} 1 0 never".encode(), BOB, 2.3)
    assert datagrams(one_past) == []
    assert events(one_past, "message_received") == []


def test_the_highest_sequence_number_whose_ack_fits_is_taken_the_one_above_is_not() -> None:
    alice = direct_to_bob()
    top = MAX_COUNTER - 1  # its ack says "expected 2^32-1", the largest counter
    out = alice.receive(f"data bob 7 {top} {top} last".encode(), BOB, 2.0)
    assert [field(e, "text") for e in events(out, "message_received")] == ["last"]
    [ack] = datagrams(out)
    assert ack == f"ack alice 7 {MAX_COUNTER}".encode()
    assert parse(ack) == Ack("alice", 7, MAX_COUNTER)  # the peer can read it
    # Its ack would need 2^32, which no peer can parse: no sender of ours sends it, and it is not taken.
    out = alice.receive(f"data bob 8 {MAX_COUNTER} {MAX_COUNTER} beyond".encode(), BOB, 2.1)
    assert datagrams(out) == []
    assert events(out, "message_received") == []


def test_a_sender_that_used_up_its_sequence_numbers_goes_on_in_a_new_epoch() -> None:
    conversation = Conversation("alice", DeliveryConfig(), epoch=5)
    # 2^32 - 1 messages cannot be sent in a test: start the sender just below the top instead.
    conversation.sender._next_seq = MAX_COUNTER - 1
    last = conversation.send("the last of epoch 5", 0.0)
    assert (last.epoch, last.seq) == (5, MAX_COUNTER - 1)
    with pytest.raises(WindowFull):  # seq 2^32-1 cannot be acked: wait until the last one settles
        conversation.send("too early", 0.0)
    settled = conversation.on_ack(Ack("bob", 5, MAX_COUNTER), 0.1)
    assert [(s.epoch, s.seq) for s in settled] == [(5, MAX_COUNTER - 1)]
    first = conversation.send("the first of a new epoch", 0.2)
    assert first.epoch != 5
    assert (first.seq, first.floor) == (0, 0)
    assert conversation.counters()["delivered"] == 1  # the counters carry over
