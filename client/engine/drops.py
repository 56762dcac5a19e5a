"""What the agent refused, counted by reason: the ``dropped`` object of ``client status --json``. Pure.

Every datagram the core does not act on, every introduction it refuses and every peer it forgets is
counted here under one :class:`Drop` (cheaply: a drop is what a flood is made of), so that an attack shows
as numbers rather than as log lines.
"""

from __future__ import annotations

import enum


class Drop(enum.StrEnum):
    """Why something was dropped; the value is its key in ``dropped``."""

    MALFORMED = "malformed"
    """Not a datagram of the protocol (the parser refused it)."""
    NOT_FOR_AGENT = "not_for_agent"
    """A request only a server takes (register, connect)."""
    NOT_FROM_SERVER = "not_from_server"
    """A server's message (punch, ok, err) from another address than our server's."""
    OWN_ID = "own_id"
    """A peer's message carrying our own id (a reflection)."""
    UNKNOWN_PEER = "unknown_peer"
    """A peer's message naming an id that neither our server introduced nor a local connect asked for."""
    UNKNOWN_SOURCE = "unknown_source"
    """A keepalive from an address no path of ours uses."""
    WRONG_SOURCE = "wrong_source"
    """A known peer's msg, data or ack from an address that is not one of its paths'."""
    INTRO_RATE = "intro_rate"
    """A punch we did not ask for, over the introduction rate."""
    PEER_TABLE_FULL = "peer_table_full"
    """An introduction refused: the peer table is full and no peer in it is idle."""
    PEER_EVICTED = "peer_evicted"
    """An idle peer forgotten to make room for a new one."""
    PEER_EXPIRED = "peer_expired"
    """An idle peer forgotten after the idle time."""
    HELD_FULL = "held_full"
    """An out-of-order frame not held (the agent holds its maximum): its sender retransmits it."""
    PROBE_BUDGET = "probe_budget"
    """A connect attempt whose probes stopped at the budget, unanswered."""
    RELAY = "relay"
    """A datagram from the TURN server that the relay dropped or was refused."""
    UNSEALED = "unsealed"
    """A text peer datagram (hello, hello-ack, msg, data, ack, keepalive) for a keyed peer, whose datagrams are
    all sealed: whoever sent it, it proves nothing."""
    BAD_MAC = "bad_mac"
    """A sealed datagram that did not open under the sender's session (forged, altered, or another key's)."""
    REPLAYED = "replayed"
    """A sealed datagram whose counter the sender's session has seen (a replay), or older than its window."""
    OLD_BOOT = "old_boot"
    """A sealed datagram from an older boot of the sender than one already authenticated (a replay)."""
    NO_KEY = "no_key"
    """A sealed datagram from a peer we know without keys (a seed-era peer, or one whose punch has not come)."""
    WRONG_ID = "wrong_id"
    """A sealed datagram that opened, but whose inner frame names another id than its sender."""
    UNMATCHED = "unmatched"
    """A reply from our server whose transaction id answers no request of ours (late, or a text reply)."""


class Drops:
    """A counter per :class:`Drop`, every one present from the start (at 0)."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(Drop, 0)

    def count(self, reason: Drop, n: int = 1) -> None:
        self._counts[reason] += n

    def set(self, reason: Drop, n: int) -> None:
        """A count kept elsewhere (where it happens), brought in."""
        self._counts[reason] = n

    def __getitem__(self, reason: Drop) -> int:
        return self._counts[reason]

    def as_json(self) -> dict[str, int]:
        return {str(reason): n for reason, n in self._counts.items()}
