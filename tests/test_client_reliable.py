"""Guaranteed delivery on the wire (client.engine.reliable): acks coalesced per ack_every frames, the
held-back ack's timer, and the sender's retransmission timers across held marks."""

from __future__ import annotations

import pytest

from client.engine import delivery
from client.engine.delivery import DeliveryConfig, Sender
from client.engine.reliable import Conversation
from protocol import Ack, Data

T0 = 1000.0
EPOCH = 7


def frames(count: int, start: int = 0) -> list[Data]:
    return [Data("alice", EPOCH, seq, 0, f"m{seq}") for seq in range(start, start + count)]


def test_every_frame_is_acknowledged_at_once_by_default() -> None:
    bob = Conversation("bob", DeliveryConfig(), epoch=1)
    acks = [bob.on_data(frame, T0)[0] for frame in frames(3)]
    assert acks == [Ack("bob", EPOCH, seq + 1, ()) for seq in range(3)]
    assert bob.wakeup() is None


def test_frames_in_order_are_acknowledged_once_per_ack_every() -> None:
    bob = Conversation("bob", DeliveryConfig(ack_every=4, ack_delay=0.005), epoch=1)
    results = [bob.on_data(frame, T0) for frame in frames(8)]
    assert [texts for _, texts in results] == [[f"m{seq}"] for seq in range(8)]  # released at once all the same
    first, fifth = Ack("bob", EPOCH, 1, ()), Ack("bob", EPOCH, 5, ())
    # The first frame comes after a quiet spell: acked at once; then one ack per 4 frames of the burst.
    assert [ack for ack, _ in results] == [first, None, None, None, fifth, None, None, None]
    assert bob.wakeup() == pytest.approx(T0 + 0.005)  # the last three are held back until ack_delay


def test_a_lone_frame_is_acknowledged_at_once() -> None:
    """A chat line must not wait ack_delay for an ack: coalescing is for bursts only."""
    bob = Conversation("bob", DeliveryConfig(ack_every=16, ack_delay=0.005), epoch=1)
    zero, one = frames(2)
    assert bob.on_data(zero, T0)[0] == Ack("bob", EPOCH, 1, ())
    assert bob.on_data(one, T0 + 0.006)[0] == Ack("bob", EPOCH, 2, ())  # quiet for longer than ack_delay
    assert bob.wakeup() is None


def test_a_held_back_ack_goes_at_ack_delay() -> None:
    config = DeliveryConfig(ack_every=16, ack_delay=0.005)
    bob = Conversation("bob", config, epoch=1)
    assert bob.on_data(frames(1)[0], T0) == (Ack("bob", EPOCH, 1, ()), ["m0"])
    assert bob.on_data(frames(1, start=1)[0], T0 + 0.001) == (None, ["m1"])  # in the burst: held back
    bob.on_data(frames(1, start=2)[0], T0 + 0.004)
    assert bob.wakeup() == pytest.approx(T0 + 0.006)  # the first held-back frame sets the time
    assert bob.tick(T0 + 0.005) == ([], [])
    assert bob.tick(T0 + 0.006) == ([Ack("bob", EPOCH, 3, ())], [])
    assert bob.wakeup() is None
    assert bob.tick(T0 + 1) == ([], [])  # sent once


def test_gaps_and_duplicates_are_acknowledged_at_once() -> None:
    bob = Conversation("bob", DeliveryConfig(ack_every=16), epoch=1)
    zero, one, two = frames(3)
    assert bob.on_data(zero, T0)[0] == Ack("bob", EPOCH, 1, ())  # the first after a quiet spell
    assert bob.on_data(two, T0)[0] == Ack("bob", EPOCH, 1, ((2, 2),))  # a gap: the sender must hear of it
    assert bob.on_data(zero, T0)[0] == Ack("bob", EPOCH, 1, ((2, 2),))  # a retransmission: its ack was lost
    assert bob.on_data(one, T0) == (None, ["m1", "m2"])  # the gap filled, in order again, in the burst
    assert bob.tick(T0 + 1)[0] == [Ack("bob", EPOCH, 3, ())]


def test_the_sender_delivers_what_a_coalesced_ack_covers() -> None:
    config = DeliveryConfig(ack_every=3)
    alice, bob = Conversation("alice", config), Conversation("bob", config)
    sent = [alice.send(f"m{i}", T0) for i in range(4)]
    acks = [ack for data in sent if (ack := bob.on_data(data, T0)[0]) is not None]
    assert len(acks) == 2  # the first frame's, then one for the next three
    assert [[s.seq for s in alice.on_ack(ack, T0)] for ack in acks] == [[0], [1, 2, 3]]
    assert alice.wakeup() is None


@pytest.mark.parametrize(("every", "delay"), [(0, 0.005), (4, 0.0), (4, 0.2)])
def test_bad_ack_settings_are_refused(every: int, delay: float) -> None:
    with pytest.raises(ValueError, match="ack_every"):
        DeliveryConfig(ack_every=every, ack_delay=delay)


def test_messages_no_longer_held_are_retransmitted_at_their_rto() -> None:
    """The receiver held 1 and 2, then restarted and lost them: both are wanted again, on their timers."""
    sender = Sender(EPOCH, DeliveryConfig())
    for i in range(3):
        sender.send(f"m{i}", T0)
    sender.on_ack(delivery.Ack(EPOCH, 0, ((1, 2),)), T0 + 0.1)
    assert sender.wakeup() == pytest.approx(T0 + 0.2)  # only 0 is wanted
    assert [f.seq for f in sender.tick(T0 + 0.2)] == [0]
    sender.on_ack(delivery.Ack(EPOCH, 0, ()), T0 + 0.3)
    assert sender.wakeup() == pytest.approx(T0 + 0.2)  # 1 and 2 are due since T0 + 0.2
    assert [f.seq for f in sender.tick(T0 + 0.3)] == [1, 2]
    assert sender.wakeup() == pytest.approx(T0 + 0.6)  # 0 after its doubled RTO (0.4 s from T0 + 0.2)
