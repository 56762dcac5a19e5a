"""Reliable chat delivery to one peer: sequence numbers, acks, retransmission, order, exactly once.

Pure (h11-style): no sockets, no clocks; every entry point takes ``now`` (monotonic seconds, never going
backwards) and returns what to do. Wire-agnostic: the caller maps :class:`Frame` and :class:`Ack` to
datagrams and sends them on whatever path (direct or relay) is current, so a path switch loses nothing.

One :class:`Sender` per peer for our messages, one :class:`Receiver` per peer for theirs::

    sender = Sender(epoch=secrets.randbits(32))      # a NEW epoch for every new Sender (see below)
    frames = sender.send("hi", now)                  # transmit each; WindowFull when 256 are unsettled
    sender.on_ack(ack, now) -> [Delivered]           # an ack from the peer
    sender.tick(now) -> [Frame | Undelivered]        # at sender.wakeup(): retransmissions, give-ups
    sender.on_path_change(now) -> [Frame]            # resend now, don't wait out the RTO
    ack, texts = receiver.on_frame(frame, now)       # send the ack back; show the texts, in order

Semantics:

* **Delivered** means acknowledged: the peer's application has been given the message (acks are
  cumulative over *released* messages, not merely received ones). **Undelivered** means not acknowledged
  by the deadline (counted from :meth:`Sender.send`); the peer may still have shown it if only the acks
  were lost, which no protocol can rule out.
* **Order and gaps.** The receiver holds out-of-order frames and releases them in sequence. Every frame
  carries the sender's ``floor``: every sequence number below it is settled (acknowledged, or given up).
  The receiver skips what it lacks below the floor and *discards* held frames below it (the sender has
  reported them undelivered, so showing them would make that report false). The sender gives up front
  first (deadlines grow with sequence numbers; one past its deadline waits for those before it), so the
  unsettled messages are always the contiguous run ``floor .. floor + outstanding - 1``. After giving up,
  it retransmits the new front message to carry the new floor, even if the receiver holds it, until an
  ack shows the skip. A message the receiver holds waits only for that, so it is given ``rto_max`` beyond
  its deadline: otherwise whatever was held behind a lost message would be reported undelivered just as
  the skip releases it to the peer's user.
* **Selective acks** only spare retransmissions: an :class:`Ack` is the receiver's whole state (next
  expected sequence number and up to :data:`MAX_HELD_RANGES` ranges it holds), so any ack repairs a lost
  one, a duplicate changes nothing, and a receiver that restarted and lost what it held corrects the
  sender with its next ack.
* **Epochs.** A sender's frames carry its ``epoch``. A receiver seeing a new epoch starts over at that
  frame's floor (so a restarted peer's sequence numbers, starting at 0 again, are not taken for
  duplicates); frames of an epoch it has left are stale and dropped. A fresh receiver adopts the epoch and
  floor of the first frame. Reusing an epoch with a new Sender would make its messages look like
  duplicates: pick a random one (e.g. ``secrets.randbits(32)``) per Sender.
* **Backpressure.** At most ``window`` messages are unsettled; :meth:`Sender.send` beyond that raises
  :class:`WindowFull` rather than queueing, which keeps memory bounded on both sides (the receiver holds
  at most ``window`` frames, and an agent's receivers together no more than their :class:`HeldFrames`
  allows) and tells the user at once that the peer is not keeping up.
* **Backoff.** First send at once, then retransmit after ``rto_initial``, doubling each time, capped at
  ``rto_max``; defaults give attempts at +0, 0.2, 0.6, 1.4, 3.0, 6.2, 10.2, 14.2, 18.2, 22.2, 26.2 s and
  a give-up at +30 s ("not acknowledged within 30 s (11 attempts)"). A path change resends at once and
  restarts the backoff at ``rto_initial`` (the new path's losses are not the old one's).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from protocol import MAX_HELD_RANGES

REMEMBERED_EPOCHS = 16
"""How many epochs a receiver has left it remembers, to drop their late frames rather than go back."""


@dataclass(frozen=True)
class DeliveryConfig:
    """Timing (seconds) and the window (messages) for one direction to one peer."""

    rto_initial: float = 0.2
    rto_max: float = 4.0
    deadline: float = 30.0
    window: int = 256
    ack_every: int = 1
    """Within a burst (less than ``ack_delay`` since the last ack), acknowledge every ``ack_every``-th frame
    released in order at once, the others at most ``ack_delay`` later (1: every frame at once). A frame after
    a quiet spell, out of order or already seen is always acknowledged at once."""
    ack_delay: float = 0.005

    def __post_init__(self) -> None:
        if not 0 < self.rto_initial <= self.rto_max:
            raise ValueError(f"need 0 < rto_initial <= rto_max, got {self.rto_initial} and {self.rto_max}")
        if self.deadline <= 0 or self.window < 1:
            raise ValueError(f"need deadline > 0 and window >= 1, got {self.deadline} and {self.window}")
        if self.ack_every < 1 or not 0 < self.ack_delay < self.rto_initial:
            raise ValueError(
                f"need ack_every >= 1 and 0 < ack_delay < rto_initial, got {self.ack_every}, {self.ack_delay}"
            )


@dataclass(frozen=True)
class Frame:
    """Sender -> receiver: message ``seq`` of ``epoch``; every seq below ``floor`` is settled."""

    epoch: int
    seq: int
    floor: int
    text: str


@dataclass(frozen=True)
class Ack:
    """Receiver -> sender, for ``epoch``: everything below ``expected`` is released or skipped, and the
    inclusive ``(first, last)`` ranges in ``held`` wait for a gap to fill."""

    epoch: int
    expected: int
    held: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Delivered:
    """Message ``seq`` was acknowledged."""

    seq: int
    text: str


@dataclass(frozen=True)
class Undelivered:
    """Message ``seq`` was given up on; ``reason`` is for the user."""

    seq: int
    text: str
    reason: str


class WindowFull(RuntimeError):
    """:meth:`Sender.send` while ``window`` messages are unsettled; the message was not taken."""

    def __init__(self, window: int) -> None:
        super().__init__(f"{window} messages are still awaiting acknowledgement; try again later")
        self.window = window


@dataclass
class SenderCounters:
    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    retransmitted: int = 0
    first_delivered_at: float | None = None


@dataclass
class ReceiverCounters:
    received: int = 0
    """Frames of a current epoch (stale-epoch frames count only as duplicates)."""
    released: int = 0
    duplicates: int = 0
    """Frames already released, held or skipped, or from an epoch we have left: suppressed."""
    skipped: int = 0
    """Sequence numbers the sender gave up on, never released (held ones among them are discarded)."""
    resets: int = 0
    """Times a new epoch replaced the one we were in (the peer's sender restarted)."""


@dataclass
class _Unsettled:
    seq: int
    text: str
    deadline: float
    next_at: float
    rto: float
    attempts: int = 1
    held: bool = False  # the receiver's last ack says it holds this one: no need to retransmit


class Sender:
    """Our messages to one peer: see the module docstring."""

    def __init__(self, epoch: int, config: DeliveryConfig | None = None) -> None:
        self.epoch = epoch
        self.config = config or DeliveryConfig()
        self.counters = SenderCounters()
        self._unsettled: deque[_Unsettled] = deque()  # seqs floor, floor + 1, ... in order
        self._next_seq = 0
        self._acked = 0  # the highest ``expected`` the receiver has told us
        self._held = 0  # how many unsettled messages the receiver's last ack says it holds
        # (next_at, seq) of the messages to retransmit, so that wakeup costs O(log n), not a walk of the
        # window per datagram. Lazy: an entry whose message is settled, held, or rescheduled is stale and
        # dropped when it reaches the top; every wanted message has an entry with its current next_at.
        self._timers: list[tuple[float, int]] = []

    @property
    def floor(self) -> int:
        """The lowest sequence number not yet settled (acknowledged or given up)."""
        return self._next_seq - len(self._unsettled)

    @property
    def outstanding(self) -> int:
        return len(self._unsettled)

    def send(self, text: str, now: float) -> list[Frame]:
        """Take a message and return its first transmission; :class:`WindowFull` if the window is."""
        if len(self._unsettled) >= self.config.window:
            raise WindowFull(self.config.window)
        rto = self.config.rto_initial
        message = _Unsettled(self._next_seq, text, now + self.config.deadline, now + rto, rto)
        self._unsettled.append(message)
        heapq.heappush(self._timers, (message.next_at, message.seq))
        self._next_seq += 1
        self.counters.sent += 1
        return [self._frame(message)]

    def on_ack(self, ack: Ack, now: float) -> list[Delivered]:
        """The receiver's state; returns the messages it newly acknowledges. Stale and bogus acks are no-ops."""
        if ack.epoch != self.epoch or ack.expected > self._next_seq:
            return []
        delivered: list[Delivered] = []
        while self._unsettled and self._unsettled[0].seq < ack.expected:
            message = self._unsettled.popleft()
            self._held -= message.held
            delivered.append(Delivered(message.seq, message.text))
        if delivered:
            self.counters.delivered += len(delivered)
            if self.counters.first_delivered_at is None:
                self.counters.first_delivered_at = now
        # An ack overtaken by a newer one may list frames the receiver has since lost (it restarted).
        if ack.expected >= self._acked:
            self._acked = ack.expected
            if ack.held or self._held:  # nothing held before or now (the usual ack): nothing to walk
                self._mark_held(ack.held)
        if not self._unsettled:
            self._timers.clear()
        return delivered

    def _mark_held(self, ranges: tuple[tuple[int, int], ...]) -> None:
        low, high = self.floor, self._next_seq - 1  # a bogus range must not cost more than the window
        held = {seq for first, last in ranges for seq in range(max(first, low), min(last, high) + 1)}
        self._held = 0
        for message in self._unsettled:
            was, message.held = message.held, message.seq in held
            self._held += message.held
            if was and not message.held:  # the receiver lost it (it restarted): wanted again
                heapq.heappush(self._timers, (message.next_at, message.seq))

    def tick(self, now: float) -> list[Frame | Undelivered]:
        """Give up on messages past their deadline, then retransmit those whose RTO expired."""
        out: list[Frame | Undelivered] = []
        # Front first (a later message past its deadline waits its turn): the unsettled run stays contiguous.
        while self._unsettled and self._expiry(self._unsettled[0]) <= now:
            message = self._unsettled.popleft()
            self._held -= message.held
            self.counters.undelivered += 1
            out.append(Undelivered(message.seq, message.text, self._reason(message)))
        due: dict[int, _Unsettled] = {}
        while (top := self._next_timer()) is not None and top.next_at <= now:
            heapq.heappop(self._timers)
            due[top.seq] = top  # a message may have two entries with the same time: once is enough
        front = self._floor_carrier()
        if front is not None and front.next_at <= now:
            due[front.seq] = front
        for _, message in sorted(due.items()):
            out.append(self._retransmit(message, now, min(message.rto * 2, self.config.rto_max)))
        return out

    def wakeup(self) -> float | None:
        """When :meth:`tick` next has something to do, or ``None`` when nothing is unsettled."""
        if not self._unsettled:
            return None
        at = self._expiry(self._unsettled[0])
        for message in (self._next_timer(), self._floor_carrier()):
            if message is not None and message.next_at < at:
                at = message.next_at
        return at

    def on_path_change(self, now: float) -> list[Frame]:
        """The path to the peer changed: retransmit everything the receiver lacks now, backoff restarted."""
        return [self._retransmit(m, now, self.config.rto_initial) for m in self._wanted()]

    def _next_timer(self) -> _Unsettled | None:
        """The wanted message retransmitted next (stale entries on top of the heap are dropped)."""
        floor = self.floor
        while self._timers:
            next_at, seq = self._timers[0]
            if seq >= floor:
                message = self._unsettled[seq - floor]
                if not message.held and message.next_at == next_at:
                    return message
            heapq.heappop(self._timers)
        return None

    def _floor_carrier(self) -> _Unsettled | None:
        """The front message when held but wanted all the same, as it carries the floor (see _wanted)."""
        front = self._unsettled[0] if self._unsettled else None
        return front if front is not None and front.held and self._acked < front.seq else None

    def _wanted(self) -> list[_Unsettled]:
        """The unsettled messages to retransmit when their RTO expires: those the receiver does not hold."""
        wanted = [m for m in self._unsettled if not m.held]
        front = self._unsettled[0] if self._unsettled else None
        # The front message carries the floor: resend it while the receiver may still wait for a skipped seq.
        if front is not None and front.held and self._acked < front.seq:
            wanted.insert(0, front)
        return wanted

    def _expiry(self, message: _Unsettled) -> float:
        # A message the receiver holds waits only for our floor, which we resend at once when an earlier
        # one is given up on: allow that time rather than report it undelivered while it is being shown.
        return message.deadline + (self.config.rto_max if message.held else 0.0)

    def _retransmit(self, message: _Unsettled, now: float, rto: float) -> Frame:
        message.attempts += 1
        message.rto = rto
        message.next_at = now + rto
        heapq.heappush(self._timers, (message.next_at, message.seq))
        self.counters.retransmitted += 1
        return self._frame(message)

    def _frame(self, message: _Unsettled) -> Frame:
        return Frame(self.epoch, message.seq, self.floor, message.text)

    def _reason(self, message: _Unsettled) -> str:
        attempts = "1 attempt" if message.attempts == 1 else f"{message.attempts} attempts"
        if message.held:
            waited = self.config.deadline + self.config.rto_max
            return f"held by the peer behind a lost message, not acknowledged within {waited:g} s ({attempts})"
        return f"not acknowledged within {self.config.deadline:g} s ({attempts})"


class HeldFrames:
    """Out-of-order frames held, counted across receivers against one ``limit`` (an agent's, over all its
    peers). At the limit a receiver holds no more: it keeps the frame nearer its gap (a new one, in place of
    its own highest; or the one it has) and the other is not acknowledged as held, so its sender retransmits
    it (a sender also resends a frame an ack no longer lists). The frame that fills the gap is always taken
    (it is released at once, with those held behind it), so delivery still makes progress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.refused = 0
        """Frames not held because the limit was reached."""


class Receiver:
    """The peer's messages to us: see the module docstring. Holds at most ``window`` frames, and no more
    than ``held`` (shared with other receivers) allows."""

    def __init__(self, window: int = DeliveryConfig.window, held: HeldFrames | None = None) -> None:
        self.window = window
        self.held = HeldFrames(window) if held is None else held
        self.counters = ReceiverCounters()
        self.epoch: int | None = None
        self._expected = 0
        self._held: dict[int, str] = {}
        self._left: deque[int] = deque(maxlen=REMEMBERED_EPOCHS)  # their frames are stale

    @property
    def waiting(self) -> int:
        """Frames held until a gap before them fills (or is skipped)."""
        return len(self._held)

    def on_frame(self, frame: Frame, now: float) -> tuple[Ack | None, list[str]]:
        """One frame: the ack to send back (``None``: send nothing) and the texts released, in order."""
        if not 0 <= frame.floor <= frame.seq:
            return None, []  # no correct sender sends this
        if frame.epoch != self.epoch:
            if frame.epoch in self._left:
                self.counters.duplicates += 1
                return None, []  # a late frame from before the peer restarted: nobody waits for its ack
            before = len(self._held)
            self._start(frame.epoch, frame.floor)
            self.held.count -= before
        self.counters.received += 1
        self._skip_to(frame.floor)
        if frame.seq < self._expected or frame.seq in self._held:
            self.counters.duplicates += 1
        elif frame.seq == self._expected:
            self._held[frame.seq] = frame.text  # released just below: never refused
            self.held.count += 1
        elif frame.seq < self._expected + self.window:
            if self.held.count < self.held.limit:
                self._held[frame.seq] = frame.text
                self.held.count += 1
            else:
                # Full: keep whichever is nearer the gap (it is released sooner), and let the other come again.
                self.held.refused += 1
                highest = max(self._held, default=-1)  # at most a window of them, and only when full
                if highest > frame.seq:
                    del self._held[highest]
                    self._held[frame.seq] = frame.text
        # Beyond the window (a sender with a larger one) or the limit: not kept, not acked as held, so it
        # comes again.
        texts = self._release()
        return self._ack(frame.epoch), texts

    def close(self) -> None:
        """Forget what is held (the peer is forgotten), giving it back to :attr:`held`."""
        self.held.count -= len(self._held)
        self._held.clear()

    def ack(self) -> Ack | None:
        """Our whole state as an ack (for one held back), or ``None`` before the first frame."""
        return None if self.epoch is None else self._ack(self.epoch)

    def _start(self, epoch: int, floor: int) -> None:
        if self.epoch is not None:
            self._left.append(self.epoch)
            self.counters.resets += 1
        self.epoch, self._expected = epoch, floor
        self._held.clear()

    def _skip_to(self, floor: int) -> None:
        if floor <= self._expected:
            return
        self.counters.skipped += floor - self._expected
        before = len(self._held)
        self._held = {seq: text for seq, text in self._held.items() if seq >= floor}
        self.held.count -= before - len(self._held)
        self._expected = floor

    def _release(self) -> list[str]:
        texts: list[str] = []
        while self._expected in self._held:
            texts.append(self._held.pop(self._expected))
            self._expected += 1
        self.counters.released += len(texts)
        self.held.count -= len(texts)
        return texts

    def _ack(self, epoch: int) -> Ack:
        held = self._held
        if not held:
            return Ack(epoch, self._expected)  # the usual case, once per frame: nothing to sort
        # The n-th run of consecutive held seqs starts at the n-th start and ends at the n-th end.
        starts = sorted(seq for seq in held if seq - 1 not in held)
        ends = sorted(seq for seq in held if seq + 1 not in held)
        return Ack(epoch, self._expected, tuple(zip(starts, ends, strict=True))[:MAX_HELD_RANGES])
