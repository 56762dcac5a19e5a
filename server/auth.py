"""Who may hold which id, and whether a request's proof is good: the server's keyed-identity rules, pure.

- An id in the registry (``--registry``) is held by the registry's keys: a v2 register must carry exactly
  those keys (else 403 ``key_mismatch``).
- An id not in the registry is first-come: the keys of the v2 register that took it are bound to it for as
  long as the peer table holds it (until it expires); a register of it with other keys meanwhile gets 403
  (``key_mismatch``). With ``--require-keys`` such ids are refused outright (403 ``not_in_registry``).
- A keyed request carries a proof (:mod:`trust.proofs`) made with its id's key: the signature must verify
  (else 401 ``bad_proof``), then the replay guard must find it fresh: within ±30 s of the server's wall
  clock and its timestamp greater than any its key had admitted (else 409 ``stale``, ``future`` or
  ``replayed``).

The signature is checked before the replay guard (only a key holder can then move its key's record), and after the
cheap checks (keys, addresses) in the callers, so a request refused anyway costs no signature check. Time is
passed in (``wall_ms``: wall-clock ms since the Unix epoch, as proofs carry it).
"""

from __future__ import annotations

from protocol import ErrorCode, Frame, Keys
from server.refusals import KEYED_ID, Refusal
from server.table import Peer
from trust import Registry, ReplayGuard, Verdict, verify_proof

NO_KEYS = Refusal("bad_proof", ErrorCode.BAD_PROOF, "register needs keys and a proof")
BAD_PROOF = Refusal("bad_proof", ErrorCode.BAD_PROOF, "no valid proof by the id's key")
KEY_MISMATCH = Refusal("key_mismatch", ErrorCode.FORBIDDEN, "id is held by another key")
NOT_IN_REGISTRY = Refusal("not_in_registry", ErrorCode.FORBIDDEN, "id not in the registry")
_VERDICTS = {
    Verdict.STALE: Refusal("stale", ErrorCode.STALE_PROOF, "stale proof (clock more than 30 s off?)"),
    Verdict.FUTURE: Refusal("future", ErrorCode.STALE_PROOF, "proof from the future (clock more than 30 s off?)"),
    Verdict.REPLAYED: Refusal("replayed", ErrorCode.STALE_PROOF, "replayed proof"),
}


class Gate:
    """The registry, whether ids outside it are refused, and the replay guard every proof passes."""

    def __init__(
        self, registry: Registry | None = None, require_keys: bool = False, proofs: ReplayGuard | None = None
    ) -> None:
        self.registry = registry if registry is not None else Registry()
        self.require_keys = require_keys
        self.proofs = proofs if proofs is not None else ReplayGuard()

    def in_registry(self, peer_id: str) -> bool:
        return peer_id in self.registry

    def is_keyed(self, peer_id: str, holder: Peer | None) -> bool:
        """Whether a key holds ``peer_id``: the registry's, or the one ``holder`` (its live entry) proved."""
        return peer_id in self.registry or (holder is not None and holder.keyed)

    def text_refusal(self, peer_id: str, holder: Peer | None) -> Refusal | None:
        """Why a text request may not act as ``peer_id`` (a key holds it), if it may not."""
        return KEYED_ID if self.is_keyed(peer_id, holder) else None

    def key_refusal(self, peer_id: str, keys: Keys, holder: Peer | None) -> Refusal | None:
        """Why ``keys`` may not register ``peer_id`` (``holder``: its live entry), if they may not."""
        listed = self.registry.get(peer_id)
        if listed is not None:
            return None if (listed.sign, listed.box) == (keys.sign, keys.box) else KEY_MISMATCH
        if self.require_keys:
            return NOT_IN_REGISTRY
        if holder is not None and holder.keys is not None and holder.keys != keys:
            return KEY_MISMATCH
        return None

    def proof_refusal(self, sign_key: bytes, frame: Frame, wall_ms: int) -> Refusal | None:
        """Why ``frame`` is not a fresh request signed with ``sign_key``, if it is not (a fresh one is now
        remembered: the same proof again is a replay)."""
        proof = frame.proof
        if proof is None or not verify_proof(sign_key, frame):
            return BAD_PROOF
        verdict = self.proofs.admit(sign_key, proof.timestamp_ms, wall_ms)
        return None if verdict.admitted else _VERDICTS[verdict]
