"""Why the server refuses a request: one :class:`Refusal` per reason, its counter, its v2 code and its words.

A refused request is answered in its own version: a text client gets ``err <reason>`` (the seed's reasons
where the seed had one), a v2 client ``Err(reason, code)`` under its transaction id. Either way the refusal
is counted in ``Handler.counters`` under :attr:`Refusal.counter` (``None``: an everyday answer the seed
gave too, such as ``invalid peers``, which is not counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protocol import ErrorCode
from server.table import Outcome, PeerTable

log = logging.getLogger(__name__)

ERR_PEERS = "invalid peers"
ERR_FULL = "peer table full"
ERR_QUOTA = "too many ids from this ip"
ERR_KEYED = "id is keyed"
ERR_KEYED_ADDRESS = "address held by a keyed id"
ERR_WRONG_ADDRESS = "not from from_id's address"

TRUST_KINDS = (
    "retry",
    "bad_proof",
    "stale",
    "future",
    "replayed",
    "key_mismatch",
    "not_in_registry",
    "wrong_address",
    "keyed_id",
    "unauthenticated",
)
"""What the server's trust rules refused: v2 requests without a valid cookie (answered with a Retry), proofs
(missing or bad signature; the replay guard's verdicts: stale, from the future, replayed), ids
held by another key or not in the registry under ``--require-keys``, requests not from the id's registered
address, text requests on a keyed id (or from a keyed peer's address), presence queries from an id that is
not a registered keyed peer."""


@dataclass(frozen=True)
class Refusal:
    """A request the server will not carry out: what to count, the v2 code, the reason both versions send."""

    counter: str | None
    code: ErrorCode
    reason: str


INVALID_PEERS = Refusal(None, ErrorCode.INVALID_PEERS, ERR_PEERS)
KEYED_ID = Refusal("keyed_id", ErrorCode.FORBIDDEN, ERR_KEYED)
KEYED_ADDRESS = Refusal("keyed_id", ErrorCode.FORBIDDEN, ERR_KEYED_ADDRESS)
WRONG_ADDRESS = Refusal("wrong_address", ErrorCode.FORBIDDEN, ERR_WRONG_ADDRESS)
UNAUTHENTICATED = Refusal("unauthenticated", ErrorCode.FORBIDDEN, "only a registered keyed id may ask")


def table_refusal(outcome: Outcome, table: PeerTable, peer_id: str, source: object) -> Refusal:
    """The refusal for a register the table refused (``outcome.refused``), logged."""
    if outcome is Outcome.QUOTA:
        log.warning("ids per ip quota (%d) reached: refused %s at %s", table.ids_per_ip, peer_id, source)
        return Refusal("quota", ErrorCode.RATE_LIMITED, ERR_QUOTA)
    if outcome is Outcome.UNKEYED_FULL:
        limit = f"for unkeyed ids ({table.max_unkeyed} of {table.max_peers})"
        log.warning("peer table full %s: refused %s at %s", limit, peer_id, source)
    else:
        log.warning("peer table full (%d): refused %s at %s", table.max_peers, peer_id, source)
    return Refusal("table_full", ErrorCode.TABLE_FULL, ERR_FULL)
