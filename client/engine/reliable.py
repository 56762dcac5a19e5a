"""Guaranteed delivery to one extended peer: :mod:`client.engine.delivery` on the wire's ``data`` and ``ack``.

Pure, time passed in. One :class:`Conversation` per peer holds our :class:`~client.engine.delivery.Sender` (a fresh
random epoch) and a :class:`~client.engine.delivery.Receiver` for the peer's messages, and maps their frames and
acks to :class:`protocol.Data` and :class:`protocol.Ack` (which carry our id). Where the datagrams go (the
direct path or the relay) is the caller's business; :meth:`Conversation.on_path_change` on every switch.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from client.engine import delivery
from client.engine.delivery import DeliveryConfig, Frame, HeldFrames, Receiver, Sender, WindowFull
from protocol import MAX_COUNTER, Ack, Data


@dataclass(frozen=True)
class Settled:
    """Message ``seq`` of ``epoch`` is settled: delivered (``reason`` None) or given up on."""

    epoch: int
    seq: int
    text: str
    reason: str | None = None


class Conversation:
    """Our messages to one peer and theirs to us, exactly once and in order."""

    def __init__(
        self, me: str, config: DeliveryConfig, epoch: int | None = None, held: HeldFrames | None = None
    ) -> None:
        self.me = me
        self.config = config
        self.sender = Sender(secrets.randbits(32) if epoch is None else epoch, config)
        self.receiver = Receiver(config.window, held)
        self._unacked = 0  # frames released in order since our last ack (see DeliveryConfig.ack_every)
        self._ack_due: float | None = None  # when the ack held back for them must go
        self._last_ack = -math.inf  # when we last sent one: a frame after a quiet spell is acked at once

    def send(self, text: str, now: float) -> Data:
        """Take a message; :class:`~client.engine.delivery.WindowFull` when too many are unacknowledged."""
        if self.next_seq >= MAX_COUNTER:
            self._new_epoch()
        (frame,) = self.sender.send(text, now)
        return self._data(frame)

    def _new_epoch(self) -> None:
        """This epoch's sequence numbers are used up: the ack for 2^32-1 would say "expected 2^32", which the
        wire cannot carry. Once every message is settled, go on in a fresh epoch (the peer's receiver takes
        it as a restart); until then, :class:`~client.engine.delivery.WindowFull`."""
        old = self.sender
        if old.outstanding:
            raise WindowFull(old.outstanding)
        epoch = old.epoch
        while epoch == old.epoch:
            epoch = secrets.randbits(32)
        self.sender = Sender(epoch, old.config)
        self.sender.counters = old.counters

    @property
    def next_seq(self) -> int:
        return self.sender.floor + self.sender.outstanding

    def on_data(self, data: Data, now: float) -> tuple[Ack | None, list[str]]:
        """A frame from the peer: the ack to send back (if any) and the texts released, in order."""
        if data.seq >= MAX_COUNTER:
            return None, []  # its ack could not be written (see _new_epoch): no sender of ours sends it
        ack, texts = self.receiver.on_frame(Frame(data.epoch, data.seq, data.floor, data.text), now)
        if ack is None:
            return None, texts
        in_a_burst = now - self._last_ack < self.config.ack_delay
        if texts and not ack.held and in_a_burst and self._unacked + 1 < self.config.ack_every:
            # In order, nothing missing, within a burst: the sender learns it with the next ack (one per
            # ack_every frames in a stream: an ack costs the sender as much as a message), or at ack_delay.
            # A lone message (a chat line, the first of a burst) is acked at once, so its latency is not
            # paid for the stream's throughput.
            self._unacked += 1
            self._ack_due = now + self.config.ack_delay if self._ack_due is None else self._ack_due
            return None, texts
        return self._wire_ack(ack, now), texts

    def on_ack(self, ack: Ack, now: float) -> list[Settled]:
        acked = self.sender.on_ack(delivery.Ack(ack.epoch, ack.expected, ack.held), now)
        return [Settled(self.sender.epoch, d.seq, d.text) for d in acked]

    def tick(self, now: float) -> tuple[list[Data | Ack], list[Settled]]:
        """Retransmissions and a held-back ack due, and the messages given up on."""
        frames: list[Data | Ack] = []
        given_up: list[Settled] = []
        ack = self.receiver.ack() if self._ack_due is not None and now >= self._ack_due else None
        if ack is not None:
            frames.append(self._wire_ack(ack, now))
        for item in self.sender.tick(now):
            if isinstance(item, Frame):
                frames.append(self._data(item))
            else:
                given_up.append(Settled(self.sender.epoch, item.seq, item.text, item.reason))
        return frames, given_up

    def on_path_change(self, now: float) -> list[Data]:
        return [self._data(f) for f in self.sender.on_path_change(now)]

    def wakeup(self) -> float | None:
        at, due = self.sender.wakeup(), self._ack_due
        return due if due is not None and (at is None or due < at) else at

    @property
    def settled(self) -> bool:
        """Nothing in flight either way: none of our messages unacknowledged, none of theirs held."""
        return not self.sender.outstanding and not self.receiver.waiting

    def counters(self) -> dict[str, Any]:
        sent, received = self.sender.counters, self.receiver.counters
        return {
            "delivered": sent.delivered,
            "undelivered": sent.undelivered,
            "retransmitted": sent.retransmitted,
            "duplicates": received.duplicates,
        }

    def _wire_ack(self, ack: delivery.Ack, now: float) -> Ack:
        self._unacked, self._ack_due, self._last_ack = 0, None, now
        return Ack(self.me, ack.epoch, ack.expected, ack.held)

    def _data(self, frame: Frame) -> Data:
        return Data(self.me, frame.epoch, frame.seq, frame.floor, frame.text)


__all__ = ["Conversation", "DeliveryConfig", "Settled", "WindowFull"]
