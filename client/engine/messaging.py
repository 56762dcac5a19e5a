"""Chat messages to and from each peer: the text checked once, ``msg`` to a seed-era peer, guaranteed
delivery (``data``/``ack``, :mod:`client.engine.reliable`) to an extended one, and their events.

Pure, time passed in. Where a datagram goes (the path in use, or back the way one came) is the
:class:`Carrier`'s business: the agent core, which knows the routes and the relay.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from client.engine.delivery import DeliveryConfig, HeldFrames, WindowFull
from client.engine.errors import NoPathError, RequestError, WindowFullError
from client.engine.events import MessageDelivered, MessageReceived, MessageSent, MessageUndelivered, Ticket
from client.engine.outputs import Emit, Output
from client.engine.path_events import no_path_reason
from client.engine.peer import Peer
from client.engine.reliable import Conversation
from client.engine.sealing import sealed_size
from protocol import MAX_COUNTER, MAX_DATAGRAM, Ack, Data, Endpoint, Message, Msg, encode


class Carrier(Protocol):
    """Where a peer's datagrams go."""

    def to_peer(self, peer: Peer, message: Message, now: float) -> list[Output]:
        """``message`` on the path in use (nothing if there is none: retransmissions will come)."""
        ...

    def reply(self, peer: Peer, message: Message, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        """Answer on the path in use, or else back the way the datagram came."""
        ...

    def can_send(self, peer: Peer) -> bool:
        """Whether a path is in use to ``peer``."""
        ...


@dataclass(frozen=True)
class Sent:
    """What :meth:`Messenger.send` did: the message's ticket (``None`` to a seed-era peer, whose messages are
    never acknowledged) and the outputs to perform."""

    ticket: Ticket | None
    outputs: list[Output]


def check_text(me: str, text: str, extended: bool, sealed: bool = False) -> None:
    """:class:`RequestError` unless ``text`` can go as one message (``data`` when ``extended``, else ``msg``;
    ``sealed``: a data frame sealed for a keyed peer)."""
    if not text.strip():
        raise RequestError("empty message")
    if "\n" in text or "\r" in text:
        raise RequestError("a message is one line (no line breaks)")
    size = _head(me, extended, sealed) + (len(text) if text.isascii() else len(text.encode("utf-8")))
    if size > MAX_DATAGRAM:
        raise RequestError(f"message too long: {size} bytes on the wire, at most {MAX_DATAGRAM}")


@functools.lru_cache(maxsize=64)
def _head(me: str, extended: bool, sealed: bool) -> int:
    """Bytes a message's datagram has besides its text: the largest, as a data frame's counters may grow to
    their maximum. Worked out once from a real frame (not re-encoded per message)."""
    if sealed:
        return sealed_size(me, Data(me, MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, "x")) - 1
    frame = Data(me, MAX_COUNTER, MAX_COUNTER, MAX_COUNTER, "x") if extended else Msg(me, "x")
    return len(encode(frame)) - 1


class Messenger:
    """Sends and receives chat messages for every peer, on the carrier's paths."""

    def __init__(self, me: str, delivery: DeliveryConfig, carrier: Carrier, held: HeldFrames) -> None:
        self.me = me
        self.delivery = delivery
        self.carrier = carrier
        self.held = held
        """The out-of-order frames every peer's conversation holds, against one limit."""

    def send(self, peer_id: str, peer: Peer | None, text: str, now: float, relay_up: bool) -> Sent:
        """One chat message on the path in use; :class:`NoPathError` if there is none."""
        if peer is None or not self.carrier.can_send(peer):
            extended = peer is not None and peer.extended
            check_text(self.me, text, extended, peer is not None and peer.session is not None)  # the first error
            raise NoPathError(peer_id, no_path_reason(peer, relay_up))
        conversation = peer.conversation
        if conversation is not None and conversation.sender.outstanding >= self.delivery.window:
            # Before the text is looked at: a flood retries a full window often, and the check is cheap.
            raise WindowFullError(f"cannot send to {peer_id}: {WindowFull(self.delivery.window)}")
        check_text(self.me, text, peer.extended, peer.session is not None)
        if not peer.extended:
            peer.sent += 1
            message = Msg(self.me, text)
            return Sent(None, [*self.carrier.to_peer(peer, message, now), Emit(MessageSent(peer_id, text))])
        try:
            data = self.conversation(peer).send(text, now)
        except WindowFull as exc:
            raise WindowFullError(f"cannot send to {peer_id}: {exc}") from None
        peer.sent += 1
        sent = MessageSent(peer_id, text, epoch=data.epoch, seq=data.seq)
        return Sent(Ticket(peer_id, data.epoch, data.seq), [*self.carrier.to_peer(peer, data, now), Emit(sent)])

    def on_msg(self, peer: Peer, msg: Msg, source: Endpoint) -> list[Output]:
        peer.received += 1
        return [Emit(MessageReceived(msg.id, msg.text, str(source), seed=peer.seed))]

    def on_data(self, peer: Peer, data: Data, source: Endpoint, now: float, via_relay: bool) -> list[Output]:
        ack, texts = self.conversation(peer).on_data(data, now)
        out = [] if ack is None else self.carrier.reply(peer, ack, source, now, via_relay)
        peer.received += len(texts)
        addr = str(source)
        return out + [Emit(MessageReceived(data.id, t, addr, seed=peer.seed)) for t in texts]

    def on_ack(self, peer: Peer, ack: Ack, now: float) -> list[Output]:
        if peer.conversation is None:
            return []
        out: list[Output] = []
        for settled in peer.conversation.on_ack(ack, now):
            if peer.first_message_ms is None:  # not worked out per message: once an ack gave it
                started = peer.started()
                if started is not None:
                    peer.first_message_ms = round((now - started) * 1000, 1)
            out.append(Emit(MessageDelivered(peer.id, settled.text, settled.epoch, settled.seq)))
        return out

    def tick(self, peer: Peer, now: float) -> list[Output]:
        """Retransmissions due to ``peer``, and the messages given up on."""
        if peer.conversation is None:
            return []
        frames, given_up = peer.conversation.tick(now)
        out = [o for frame in frames for o in self.carrier.to_peer(peer, frame, now)]
        for settled in given_up:
            undelivered = MessageUndelivered(peer.id, settled.text, settled.reason, settled.epoch, settled.seq)
            out.append(Emit(undelivered))
        return out

    def on_path_change(self, peer: Peer, now: float) -> list[Output]:
        """A new path is in use: resend at once whatever is unacknowledged."""
        if peer.conversation is None:
            return []
        return [o for frame in peer.conversation.on_path_change(now) for o in self.carrier.to_peer(peer, frame, now)]

    def conversation(self, peer: Peer) -> Conversation:
        if peer.conversation is None:
            peer.conversation = Conversation(self.me, self.delivery, held=self.held)
        return peer.conversation
