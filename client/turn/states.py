"""The TURN allocation's lifecycle: its states, the triggers that move it, and the table of moves.

States (the :data:`TRANSITIONS` table)::

    idle ──start──▶ allocating ──granted──▶ allocated ──close──▶ closing ──answer or time-out──▶ closed
                     │    │                     │
                     │    └───────▶ failed ◀────┘   (an error or time-out that ends the allocation)
                     └──close──▶ closed
    failed or closed ──start──▶ allocating
"""

from __future__ import annotations

import enum


class TurnState(enum.StrEnum):
    """Where the allocation stands; the value is what status JSON shows."""

    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class Trigger(enum.Enum):
    START = "start"
    GRANTED = "granted"
    FAIL = "fail"
    CLOSE = "close"
    DONE = "done"


_S = TurnState

TRANSITIONS: dict[tuple[TurnState, Trigger], TurnState] = {
    **{(state, Trigger.START): _S.ALLOCATING for state in (_S.IDLE, _S.FAILED, _S.CLOSED)},
    (_S.ALLOCATING, Trigger.GRANTED): _S.ALLOCATED,
    (_S.ALLOCATING, Trigger.FAIL): _S.FAILED,
    (_S.ALLOCATED, Trigger.FAIL): _S.FAILED,
    # Nothing granted yet, so nothing to delete (a grant in flight expires, or is cleared after a 437).
    (_S.ALLOCATING, Trigger.CLOSE): _S.CLOSED,
    (_S.ALLOCATED, Trigger.CLOSE): _S.CLOSING,
    (_S.CLOSING, Trigger.DONE): _S.CLOSED,
}
"""(state, trigger) -> next state. A pair missing from the table is a bug in the caller."""
