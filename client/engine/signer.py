"""What the agent puts in its v2 requests besides the request itself: transaction ids, our public keys, the
cookie (kept by :class:`~client.engine.server_link.ServerLink`) and a proof of our key. Pure: the time is
passed in (``now``, monotonic seconds) and turned into wall-clock time by the offset the shell measured; a
proof's nonce comes from the operating system (trust.proofs), a transaction id's start from the function the
configuration names (``os.urandom``; a test may pass its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from protocol import Frame, Keys, Proof, signing_bytes
from trust import Identity, Prover

Random = Callable[[int], bytes]
"""``n`` random bytes (``os.urandom``)."""

TXID_SPACE = 2**64


class Signer:
    """Our identity as the server sees it: ``keys`` for a register, :meth:`prove` for every keyed request,
    and :meth:`txid` for each new request (retransmissions of a request keep its transaction id)."""

    def __init__(self, identity: Identity, wall_offset: float, random: Random) -> None:
        self.identity = identity
        self.wall_offset = wall_offset
        """Wall-clock (Unix) seconds minus monotonic ``now``: what turns ``now`` into a proof's timestamp."""
        self.keys = Keys(identity.public.sign, identity.public.box)
        self._prover = Prover(identity)  # timestamps strictly increasing: the server admits a key's proof once
        self._random = random
        # A counter from a random start: distinct for every request of this run, and unlikely to match a
        # previous run's late replies.
        self._next_txid = int.from_bytes(random(8), "big")

    def txid(self) -> int:
        """A new transaction id, never 0 (peer-to-peer frames use 0)."""
        txid = self._next_txid = (self._next_txid + 1) % TXID_SPACE
        return txid or self.txid()

    def wall_ms(self, now: float) -> int:
        """``now`` as milliseconds since the Unix epoch."""
        return round((now + self.wall_offset) * 1000)

    def prove(self, frame: Frame, now: float) -> Frame:
        """``frame`` with a fresh proof: a timestamp from ``now``, greater than the last one we made (two
        proofs in one millisecond still increase), and a new nonce. A retransmission needs a new proof too: the
        server admits a key's proof only if its timestamp is later than the last it admitted."""
        parts = self._prover.proof(partial(signing_bytes, frame), self.wall_ms(now))
        return replace(frame, proof=Proof(*parts))
