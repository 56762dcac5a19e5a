"""Guaranteed delivery to one extended peer: :mod:`client.engine.delivery` on the wire's ``data`` and ``ack``.

Pure, time passed in. One :class:`Conversation` per peer holds our :class:`~client.engine.delivery.Sender` (a fresh
random epoch) and a :class:`~client.engine.delivery.Receiver` for the peer's messages, and maps their frames and
acks to :class:`protocol.Data` and :class:`protocol.Ack` (which carry our id). Where the datagrams go (the
direct path or the relay) is the caller's business; :meth:`Conversation.on_path_change` on every switch.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from client.engine import delivery
from client.engine.delivery import DeliveryConfig, Frame, Receiver, Sender, WindowFull
from protocol import Ack, Data


@dataclass(frozen=True)
class Settled:
    """Message ``seq`` of ``epoch`` is settled: delivered (``reason`` None) or given up on."""

    epoch: int
    seq: int
    text: str
    reason: str | None = None


class Conversation:
    """Our messages to one peer and theirs to us, exactly once and in order."""

    def __init__(self, me: str, config: DeliveryConfig, epoch: int | None = None) -> None:
        self.me = me
        self.sender = Sender(secrets.randbits(32) if epoch is None else epoch, config)
        self.receiver = Receiver(config.window)

    def send(self, text: str, now: float) -> Data:
        """Take a message; :class:`~client.engine.delivery.WindowFull` when too many are unacknowledged."""
        (frame,) = self.sender.send(text, now)
        return self._data(frame)

    @property
    def next_seq(self) -> int:
        return self.sender.floor + self.sender.outstanding

    def on_data(self, data: Data, now: float) -> tuple[Ack | None, list[str]]:
        """A frame from the peer: the ack to send back (if any) and the texts released, in order."""
        ack, texts = self.receiver.on_frame(Frame(data.epoch, data.seq, data.floor, data.text), now)
        return (None if ack is None else Ack(self.me, ack.epoch, ack.expected, ack.held)), texts

    def on_ack(self, ack: Ack, now: float) -> list[Settled]:
        acked = self.sender.on_ack(delivery.Ack(ack.epoch, ack.expected, ack.held), now)
        return [Settled(self.sender.epoch, d.seq, d.text) for d in acked]

    def tick(self, now: float) -> tuple[list[Data], list[Settled]]:
        """Retransmissions due, and the messages given up on."""
        frames: list[Data] = []
        given_up: list[Settled] = []
        for item in self.sender.tick(now):
            if isinstance(item, Frame):
                frames.append(self._data(item))
            else:
                given_up.append(Settled(self.sender.epoch, item.seq, item.text, item.reason))
        return frames, given_up

    def on_path_change(self, now: float) -> list[Data]:
        return [self._data(f) for f in self.sender.on_path_change(now)]

    def wakeup(self) -> float | None:
        return self.sender.wakeup()

    def counters(self) -> dict[str, Any]:
        sent, received = self.sender.counters, self.receiver.counters
        return {
            "delivered": sent.delivered,
            "undelivered": sent.undelivered,
            "retransmitted": sent.retransmitted,
            "duplicates": received.duplicates,
        }

    def _data(self, frame: Frame) -> Data:
        return Data(self.me, frame.epoch, frame.seq, frame.floor, frame.text)


__all__ = ["Conversation", "DeliveryConfig", "Settled", "WindowFull"]
