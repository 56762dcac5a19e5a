"""The per-peer path state machine: pure, time passed in, no I/O (h11-style: triggers in, actions out).

States::

    none ──punch──▶ punching ──hello / hello-ack──▶ direct
      ▲                │  ▲                            │
      │             timeout└─────punch (new addr)──────┘ lost (silent too long)
      │                ▼                                 │
      └──reset──── failed ◀──────────────────────────────┘
                     │ ──punch──▶ punching

The same machine serves a peer's relay path (probes sent through our TURN allocation to the peer's relayed
address): there "direct" reads as "confirmed". A failed path may go on probing slowly in the background
(:meth:`Path.keep_probing`, while another path carries the traffic), and a probe answered then confirms it.

A probe from the peer confirms the path from *any* state (the peer may have been told to punch before us),
and so does an answer, except to a path reset since (we may have given up, but not forgotten). The
transitions are the :data:`TRANSITIONS` table; the methods compute what to send and when. Every method
returns a list of actions for the caller to perform.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from protocol import Endpoint


class PathState(enum.StrEnum):
    """Where the direct path to one peer stands; the value is what status JSON shows."""

    NONE = "none"
    PUNCHING = "punching"
    DIRECT = "direct"
    FAILED = "failed"


class Trigger(enum.Enum):
    PUNCH = "punch"
    CONFIRM = "confirm"
    TIMEOUT = "timeout"
    LOST = "lost"
    RESET = "reset"


_ANY = tuple(PathState)

TRANSITIONS: dict[tuple[PathState, Trigger], PathState] = {
    **{(state, Trigger.PUNCH): PathState.PUNCHING for state in _ANY},
    **{(state, Trigger.CONFIRM): PathState.DIRECT for state in _ANY},
    **{(state, Trigger.RESET): PathState.NONE for state in _ANY},
    (PathState.PUNCHING, Trigger.TIMEOUT): PathState.FAILED,
    (PathState.DIRECT, Trigger.LOST): PathState.FAILED,
}
"""(state, trigger) -> next state. A pair missing from the table is a bug in the caller."""


class PathError(RuntimeError):
    """A trigger the table does not allow in the current state: a bug in the code driving the path."""


@dataclass(frozen=True)
class Probe:
    """Send ``hello <self>`` to ``to``."""

    to: Endpoint


@dataclass(frozen=True)
class Answer:
    """Send ``hello-ack <self>`` to ``to`` (the address the probe actually came from)."""

    to: Endpoint


@dataclass(frozen=True)
class Changed:
    """The path moved from ``old`` to ``new``; read the path's fields for addr, reason and timing."""

    old: PathState
    new: PathState


@dataclass(frozen=True)
class Moved:
    """The direct path now runs to ``new`` instead of ``old`` (the peer's NAT picked another port)."""

    old: Endpoint | None
    new: Endpoint


@dataclass(frozen=True)
class Ignored:
    """A trigger that changed nothing, with why (worth a log line)."""

    why: str


@dataclass(frozen=True)
class Spent:
    """This attempt's probes are used up (``probes`` sent, none answered): no more until the deadline,
    though a probe from the peer still confirms the path."""

    probes: int


Action = Probe | Answer | Changed | Moved | Ignored | Spent


@dataclass(frozen=True)
class PathTiming:
    """How long to punch and how often to probe, in seconds."""

    timeout: float = 5.0
    interval: float = 0.020
    probes: int | None = None
    """At most this many probes per attempt (a punch) until the first answer, ``None``: no limit. An address
    that never answers (a stranger's, named in a punch) gets no more than this; the agent core sets it from
    its byte budget. Background probing while another path carries the traffic is not counted."""


class Path:
    """The direct path to one peer.

    ``addr`` is where we send: the address a probe or answer last came from once direct, else the address
    the server told us. ``started`` is when this connection attempt began (a local ``connect`` or the
    ``punch`` arrival), which is what ``time_to_direct_ms`` is measured from.
    """

    def __init__(self, peer: str, timing: PathTiming) -> None:
        self.peer = peer
        self.timing = timing
        self.state = PathState.NONE
        self.addr: Endpoint | None = None
        self.reason: str | None = None
        self.started: float | None = None
        self.time_to_direct_ms: float | None = None
        self._punched: Endpoint | None = None
        self._targets: tuple[Endpoint, ...] = ()
        self._deadline = 0.0
        self._next_probe = 0.0
        self._probes_left: int | None = 0  # of this attempt's budget (timing.probes; None: no limit)
        self._budget: int | None = None  # this attempt's budget, as it started
        self.heard: float | None = None  # when the peer was last heard on this path
        self._retry: float | None = None  # background probing interval while failed, if any
        self.since: float | None = None
        """When the path last became direct (confirmed)."""
        self.answered: float | None = None
        """When the peer last answered on this path what we sent on it (a hello-ack to our probe, an ack to
        our data): a round trip, which only proves the path works both ways. A probe or keepalive from the
        peer proves its half only: with ours cut, it would keep a dead path "alive" forever."""
        self.sending: float | None = None
        """When traffic (messages, tunnel datagrams) last went out on this path: see :meth:`check`."""
        self._check_until: float | None = None  # an active check's deadline (see :meth:`check`), if one runs
        self._check_next = 0.0  # its next probe
        self._check_sending = False  # whether it checks a path in use (else one not proven yet)
        self._check_probes = 0  # its probes sent so far ...
        self._check_needed = 0  # ... and how many must be, unanswered, for the path to be lost

    def _fire(self, trigger: Trigger) -> list[Action]:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise PathError(f"path to {self.peer}: {trigger.value} not allowed in state {self.state}")
        old, self.state = self.state, new
        # A punch is a new attempt (maybe at a new address) even when already punching: report it.
        return [Changed(old, new)] if old is not new or trigger is Trigger.PUNCH else []

    def punch(
        self, addr: Endpoint, now: float, started: float | None = None, defer: float = 0.0, probes: int | None = None
    ) -> list[Action]:
        """The server says the peer is at ``addr``: probe it now and every interval until answered.

        ``defer`` > 0 holds the first probe back that many seconds (the path is punching meanwhile, and a
        probe from the peer still confirms it): a lower-priority path gives a better one a head start.
        ``probes``: this attempt's budget when smaller than the timing's.
        """
        if self.state is PathState.DIRECT and addr == self.addr:
            return [Ignored(f"punch: already direct to {self.peer} at {addr}")]
        if self.state is PathState.PUNCHING and addr == self._punched:
            return [Ignored(f"punch: already punching {self.peer} at {addr}")]
        # A confirmed address may differ from the server's view (symmetric NAT) and still work: keep
        # probing it too, so a late or repeated punch cannot break a working path.
        keep = self.addr if self.state is PathState.DIRECT and self.addr != addr else None
        self._targets = (addr,) if keep is None else (addr, keep)
        self._punched = self.addr = addr
        self.reason = None
        self.started = now if started is None else started
        self.time_to_direct_ms = None
        self._deadline = now + defer + self.timing.timeout
        self._next_probe = now + (defer or self.timing.interval)
        budget = self.timing.probes
        self._probes_left = self._budget = budget if probes is None or budget is None else min(budget, probes)
        actions = self._fire(Trigger.PUNCH)
        return actions if defer > 0 else [*actions, *self._probes()]

    def on_hello(self, source: Endpoint, now: float, started: float | None = None) -> list[Action]:
        """A probe from the peer: answer where it came from, and the path is direct.

        ``started`` is when a local connect began, if one is waiting for its punch.
        """
        return [Answer(source), *self._confirm(source, now, started)]

    def on_hello_ack(self, source: Endpoint, now: float, started: float | None = None) -> list[Action]:
        """An answer to our probe: the path is direct (and proven, see :attr:`proven`); stop probing.

        Not after a reset: a late answer to a path we forgot (a local disconnect) would bring it back
        unasked, and a later connect would find a path already "up" and punch nothing.
        """
        if self.state is PathState.NONE:
            return [Ignored(f"an answer from {self.peer} at {source} to a probe of a forgotten path")]
        actions = self._confirm(source, now, started)
        self.prove(now)
        return actions

    def _confirm(self, source: Endpoint, now: float, started: float | None) -> list[Action]:
        actions: list[Action] = []
        if self.addr != source and self.state is PathState.DIRECT:
            actions.append(Moved(self.addr, source))  # the peer's NAT moved it; its sealed probe says so
        self.addr = source
        if self.state is PathState.DIRECT:
            self.heard = now
            return actions
        self.since = now
        self._check_until = None
        if started is not None:
            self.started = started
        elif self.started is None:
            # No attempt under way here: the probe itself starts it (the peer got its punch first).
            self.started = now
        self.time_to_direct_ms = round((now - self.started) * 1000, 1)
        self.reason = None
        self.heard = now
        self._targets = ()
        return [*actions, *self._fire(Trigger.CONFIRM)]

    def knows(self, source: Endpoint) -> bool:
        """Whether ``source`` is an address of this path: where it sends, or one it is probing."""
        return source == self.addr or source in self._targets

    def hear(self, now: float) -> None:
        """Something came from the peer on this path: it is alive."""
        self.heard = now

    def prove(self, now: float) -> None:
        """The peer answered what we sent on this path (a hello-ack, an ack): it works both ways."""
        self.heard = self.answered = now
        self._check_until = None

    @property
    def proven(self) -> bool:
        """Whether the peer answered on this path since it was (last) confirmed. A path confirmed by the
        peer's probe alone has shown only its half: traffic moves to it from the relay once ours is answered
        too (ICE's rule: a pair is valid when *our* check succeeds), so that no datagram goes into a half-open
        path while the relay still works."""
        return (
            self.state is PathState.DIRECT
            and self.answered is not None
            and self.since is not None
            and self.answered >= self.since
        )

    def note_sending(self, now: float) -> bool:
        """Traffic went out on this path; whether an active check is now due that was not before (the caller
        schedules :meth:`check_wakeup`)."""
        before = self.sending
        self.sending = now
        answered = self.answered if self.answered is not None else -math.inf
        return self.state is PathState.DIRECT and (before is None or before <= answered)

    def check(self, now: float, quiet: float, deadline: float, interval: float, label: str) -> list[Action]:
        """The active check of a confirmed path in use: lost fast when traffic goes out on it unanswered.

        A check starts when the path is not proven (confirmed by the peer's probe alone) or when traffic went
        out on it since its last answer and that answer is ``quiet`` s old: a probe at once, and another
        every ``interval`` s, until an answer (:meth:`prove`) or ``deadline`` s have passed: then the path is
        lost (failed, with the reason), as :meth:`check_alive` loses a silent one. An idle path is left to
        :meth:`check_alive`'s keepalive-paced liveness."""
        if self.state is not PathState.DIRECT or self.addr is None:
            self._check_until = None
            return []
        if self._check_until is not None:
            # Lost only once every probe due is out, too: an agent starved of CPU (its ticks late) may not
            # have sent them, nor read the answers waiting in its socket; it then waits longer.
            if now >= self._check_until and self._check_probes >= self._check_needed:
                self._check_until = None
                why = "while sending" if self._check_sending else "to our probes"
                return self.lose(f"{label} lost: no response from {self.addr} within {deadline:g} s {why}", now)
            if now < self._check_next:
                return []
            self._check_next += interval
            if self._check_next <= now:  # after a stall, one probe rather than a burst of catch-up ones
                self._check_next = now + interval
            self._check_probes += 1
            return [Probe(self.addr)]
        due = self._check_due(quiet)
        if due is None or now < due:
            return []
        self._check_until = now + deadline
        self._check_next = now + interval
        self._check_probes = 1
        self._check_needed = math.floor(deadline / interval + 1e-9)
        self._check_sending = self.proven  # else it checks a path confirmed by the peer's probe alone
        return [Probe(self.addr)]

    def check_wakeup(self, quiet: float) -> float | None:
        """When :meth:`check` has something to do, or ``None``."""
        if self.state is not PathState.DIRECT or self.addr is None:
            return None
        if self._check_until is not None:
            if self._check_probes < self._check_needed:
                return self._check_next  # not lost before its probes are out (see check)
            return min(self._check_until, self._check_next)
        return self._check_due(quiet)

    def _check_due(self, quiet: float) -> float | None:
        """When a check is to start (with none running): at once while unproven, ``quiet`` s after the last
        answer when traffic went out since, else never."""
        if not self.proven:
            return self.since or 0.0
        if self._sending_unanswered():
            return self.answered + quiet  # type: ignore[operator]
        return None

    def _sending_unanswered(self) -> bool:
        return self.sending is not None and (self.answered is None or self.sending > self.answered)

    def silent_until(self, limit: float) -> float | None:
        """When a confirmed path counts as lost if nothing is heard (``limit`` s of silence), else ``None``."""
        if self.state is not PathState.DIRECT or self.heard is None:
            return None
        return self.heard + limit

    def check_alive(self, now: float, limit: float, label: str) -> list[Action]:
        """A confirmed path silent for ``limit`` s is lost: failed, with the reason (``label`` lost: ...)."""
        until = self.silent_until(limit)
        if until is None or now < until:
            return []
        return self.lose(f"{label} lost: no response from {self.addr} within {limit:g} s", now)

    def lose(self, reason: str, now: float) -> list[Action]:
        """The path stopped working (silence, or the relay under it is gone): failed, with ``reason``.

        A path still punching stops too (nothing to probe through); one not up is only given the reason.
        """
        self.reason = reason
        self._check_until = None
        if self.state is PathState.PUNCHING:
            self._targets = ()
            return self._fire(Trigger.TIMEOUT)
        if self.state is not PathState.DIRECT:
            return []
        self._punched = self.addr
        self._targets = () if self.addr is None else (self.addr,)
        self._next_probe = now + (self._retry or 0.0)
        return self._fire(Trigger.LOST)

    def keep_probing(self, retry: float | None, now: float) -> None:
        """While failed, probe the last address every ``retry`` s (``None``: stop), as another path is used.

        A path still punching keeps its fast cadence: the relay confirming first must not slow the punch
        down (the peer's first probes may have arrived before our filter was open; later ones get in).
        """
        if retry is not None and self._retry is None and self.state is not PathState.PUNCHING:
            self._next_probe = now + retry
        self._retry = retry

    def tick(self, now: float) -> list[Action]:
        """Time passes: give up at the deadline, else probe when the interval is due."""
        if self.state is PathState.FAILED:
            return self._tick_background(now)
        if self.state is not PathState.PUNCHING:
            return []
        if now >= self._deadline:
            self.reason = f"punch failed: no response from {self._punched} within {self.timing.timeout:g} s"
            self._targets = () if self._punched is None else (self._punched,)
            self._next_probe = now + (self._retry or 0.0)
            return self._fire(Trigger.TIMEOUT)
        if now < self._next_probe:
            return []
        # Keep the cadence, but after a stall send one probe rather than a burst of catch-up probes.
        self._next_probe += self.timing.interval
        if self._next_probe <= now:
            self._next_probe = now + self.timing.interval
        return self._probes()

    def _probes(self) -> list[Action]:
        """One probe to each target, within what is left of the attempt's budget."""
        left = self._probes_left
        if left is None:
            return [Probe(t) for t in self._targets]
        actions: list[Action] = [Probe(t) for t in self._targets[:left]]
        self._probes_left = left - len(actions)
        if left and not self._probes_left:
            actions.append(Spent(self._budget or 0))
        return actions

    def _tick_background(self, now: float) -> list[Action]:
        if self._retry is None or not self._targets or now < self._next_probe:
            return []
        self._next_probe = now + self._retry
        return [Probe(t) for t in self._targets]

    def wakeup(self) -> float | None:
        """When :meth:`tick` next has something to do, or ``None``."""
        if self.state is PathState.FAILED and self._retry is not None and self._targets:
            return self._next_probe
        if self.state is not PathState.PUNCHING:
            return None
        return self._deadline if self._probes_left == 0 else min(self._deadline, self._next_probe)

    def reset(self, reason: str | None = None) -> list[Action]:
        """Forget the path (a local disconnect, a new local connect, or a refused connect)."""
        self.reason = reason
        self.started = None
        self.heard = None
        self._check_until = None
        self._targets = ()
        self._punched = None
        return self._fire(Trigger.RESET)
