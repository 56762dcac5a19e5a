"""Proofs of key possession: a request signed with a fresh timestamp and nonce, and the guard against replays.

A v2 request from a keyed id carries ``PROOF`` (timestamp in ms since the Unix epoch, a 16-byte random
nonce, a 64-byte Ed25519 signature). The signature covers the *signing bytes*, which the protocol's codec
computes: :data:`PROOF_CONTEXT` + every byte of the datagram before the PROOF field + timestamp (u64,
big-endian) + nonce. This module never parses a datagram (``trust`` does not import ``protocol``): it signs
and checks those bytes, and reads a parsed frame only through the two attributes of :class:`SignedFrame`.

A valid signature is not enough: :class:`ReplayGuard` admits a proof only if its timestamp is within the
window of now and its (key, nonce) was not admitted before. Pure: time is passed in.
"""

from __future__ import annotations

import enum
import heapq
import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

import nacl.exceptions
import nacl.signing

from trust.keys import KEY_SIZE, Identity

PROOF_CONTEXT = b"natlab-v2 proof\0"
"""The signed bytes start with this, so a proof can never be taken for a signature made for anything else."""
NONCE_SIZE = 16
SIGNATURE_SIZE = 64
TIMESTAMP_SIZE = 8
DEFAULT_WINDOW_S = 30.0
DEFAULT_MAX_ENTRIES = 16_384
"""Proofs remembered at once. A keyed peer proves itself about once per keepalive (10 s), so 1,024 peers fill
a 30 s window (60 s of timestamps) with about 6,000; at about 215 bytes each (measured with tracemalloc,
tests/test_trust_proofs.py holds it under 256), a full guard costs 3.5 MB."""


class ProofFields(Protocol):
    """What a proof holds (``protocol.Proof`` has these attributes)."""

    @property
    def timestamp_ms(self) -> int: ...
    @property
    def nonce(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...


class SignedFrame(Protocol):
    """A parsed frame as far as a proof needs it (``protocol.Frame``: ``signed`` is set by the parser)."""

    @property
    def proof(self) -> ProofFields | None: ...
    @property
    def signed(self) -> bytes: ...


class ProofParts(NamedTuple):
    """A made proof; ``protocol.Proof(*parts)`` is the field to put in the frame."""

    timestamp_ms: int
    nonce: bytes
    signature: bytes


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def make_proof(
    identity: Identity,
    signing_bytes: Callable[[int, bytes], bytes],
    timestamp_ms: int,
    nonce: bytes | None = None,
) -> ProofParts:
    """Sign ``signing_bytes(timestamp_ms, nonce)`` (the codec's function, with the frame bound) with a fresh
    nonce (or ``nonce``, for golden vectors). ``ValueError`` if those bytes are not laid out as a proof's."""
    nonce = new_nonce() if nonce is None else nonce
    if len(nonce) != NONCE_SIZE or not 0 <= timestamp_ms < 2**64:
        raise ValueError(f"a proof needs a {NONCE_SIZE}-byte nonce and a u64 timestamp")
    signed = signing_bytes(timestamp_ms, nonce)
    if not _laid_out(signed, timestamp_ms, nonce):
        raise ValueError("signing bytes must be PROOF_CONTEXT + datagram + timestamp (u64 BE) + nonce")
    return ProofParts(timestamp_ms, nonce, identity.sign(signed))


def verify_proof(sign_key: bytes, frame: SignedFrame) -> bool:
    """Whether ``frame`` carries a proof signed by ``sign_key`` over exactly its signing bytes.

    Also false when the frame's ``signed`` bytes do not end with the proof's own timestamp and nonce (or do
    not start with the context): a codec bug must not make a signature over other bytes count."""
    proof = frame.proof
    if proof is None or len(sign_key) != KEY_SIZE or len(proof.signature) != SIGNATURE_SIZE:
        return False
    if not _laid_out(frame.signed, proof.timestamp_ms, proof.nonce):
        return False
    try:
        nacl.signing.VerifyKey(sign_key).verify(frame.signed, proof.signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _laid_out(signed: bytes, timestamp_ms: int, nonce: bytes) -> bool:
    if not 0 <= timestamp_ms < 2**64:
        return False
    tail = timestamp_ms.to_bytes(TIMESTAMP_SIZE, "big") + nonce
    return signed.startswith(PROOF_CONTEXT) and signed.endswith(tail) and len(signed) >= len(PROOF_CONTEXT) + len(tail)


class Verdict(enum.Enum):
    """What :meth:`ReplayGuard.admit` made of a (validly signed) proof; the value names its counter."""

    FRESH = "fresh"
    """Admitted, and remembered until its timestamp leaves the window."""
    STALE = "stale"
    """Timestamp more than the window before now."""
    FUTURE = "future"
    """Timestamp more than the window after now."""
    REPLAYED = "replayed"
    """This key already used this nonce within the window."""
    FULL = "full"
    """The guard holds its maximum of proofs still inside the window: refused rather than grow."""

    @property
    def admitted(self) -> bool:
        return self is Verdict.FRESH


class ReplayGuard:
    """Remembers admitted (key, nonce) pairs while their timestamps are inside ``±window_s`` of now.

    Memory is bounded: at most ``max_entries`` pairs (each entry: the 48-byte key+nonce, its expiry and a
    heap slot). An entry is dropped once its timestamp is out of the window (a replay of it is then STALE
    anyway); when the guard is full of live entries a new proof is refused (FULL), never remembered beyond
    the bound. Each call costs O(log n) plus the expired entries it removes.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if window_s <= 0 or max_entries < 1:
            raise ValueError("a replay guard needs a positive window and room for at least one proof")
        self.window_ms = int(window_s * 1000)
        self.max_entries = max_entries
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []  # min-heap of (timestamp + window, key + nonce)
        self._now_ms = 0  # the latest now seen: the guard's clock never goes back

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, sign_key: bytes, timestamp_ms: int, nonce: bytes, now_ms: int) -> Verdict:
        """Judge a proof whose signature is already verified (check the signature first: only a key holder
        can then fill the guard). ``now_ms``: wall-clock ms since the Unix epoch. A clock stepped back is
        taken as the latest it showed: an entry forgotten at a later time must not become admissible again."""
        now_ms = self._now_ms = max(now_ms, self._now_ms)
        if timestamp_ms < now_ms - self.window_ms:
            return Verdict.STALE
        if timestamp_ms > now_ms + self.window_ms:
            return Verdict.FUTURE
        self._forget_expired(now_ms)
        entry = sign_key + nonce
        if entry in self._seen:
            return Verdict.REPLAYED
        if len(self._seen) >= self.max_entries:
            return Verdict.FULL
        self._seen.add(entry)
        heapq.heappush(self._expiry, (timestamp_ms + self.window_ms, entry))
        return Verdict.FRESH

    def _forget_expired(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            _, entry = heapq.heappop(self._expiry)
            self._seen.discard(entry)
