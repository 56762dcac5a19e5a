"""Proofs of key possession: a request signed with a fresh timestamp and nonce, and the guard against replays.

A v2 request from a keyed id carries ``PROOF`` (timestamp in ms since the Unix epoch, a 16-byte random
nonce, a 64-byte Ed25519 signature). The signature covers the *signing bytes*, which the protocol's codec
computes: :data:`PROOF_CONTEXT` + every byte of the datagram before the PROOF field + timestamp (u64,
big-endian) + nonce. This module never parses a datagram (``trust`` does not import ``protocol``): it signs
and checks those bytes, and reads a parsed frame only through the two attributes of :class:`SignedFrame`.

A valid signature is not enough: :class:`ReplayGuard` admits a proof only if its timestamp is within the
window of now and greater than every timestamp its key had admitted before (WireGuard's rule), so a sender
makes its proofs with a :class:`Prover`, whose timestamps strictly increase. The nonce is signed too, but no
longer what tells one proof from another. Pure: time is passed in.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

import nacl.exceptions
import nacl.signing

from common.lru import BoundedLRU
from trust.keys import KEY_SIZE, Identity

PROOF_CONTEXT = b"natlab-v2 proof\0"
"""The signed bytes start with this, so a proof can never be taken for a signature made for anything else."""
NONCE_SIZE = 16
SIGNATURE_SIZE = 64
TIMESTAMP_SIZE = 8
DEFAULT_WINDOW_S = 30.0
DEFAULT_MAX_KEYS = 65_536
"""Signing keys the replay guard remembers (``--max-proof-keys``): 64 times the default peer table, about
16 MB when full (see :class:`ReplayGuard`)."""


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


class Prover:
    """Makes one identity's proofs, each with a timestamp greater than the one before: what every sender of
    keyed requests must use, since the server admits a key's proof only if its timestamp is greater than
    that key's last admitted one (:class:`ReplayGuard`).

    ``Prover(identity).proof(signing_bytes_fn, now_ms) -> ProofParts``: ``signing_bytes_fn(timestamp_ms,
    nonce)`` is the codec's ``functools.partial(protocol.signing_bytes, frame)`` for the frame to send
    (without its proof), ``now_ms`` the sender's wall clock (ms since the Unix epoch); the proof's timestamp
    is ``max(now_ms, last + 1)``, so two proofs in one millisecond, or after the clock stepped back, still
    increase. Use one prover per identity for every request to the server (register, connect, presence
    query), and a new proof for every datagram sent, retransmissions included (a retransmission whose first
    copy arrived would otherwise be a replay). A sender making more than 1,000 proofs a second runs ahead of
    its clock and past the server's +30 s window after 30 s of it; natlab's clients make a few a minute.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.last_ms = -1
        """The latest timestamp signed (-1: none yet); the next proof's is greater."""

    def proof(self, signing_bytes: Callable[[int, bytes], bytes], now_ms: int) -> ProofParts:
        """A new proof (see :func:`make_proof`) at ``max(now_ms, last + 1)``."""
        made = make_proof(self.identity, signing_bytes, max(now_ms, self.last_ms + 1))
        self.last_ms = made.timestamp_ms
        return made


class Verdict(enum.Enum):
    """What :meth:`ReplayGuard.admit` made of a (validly signed) proof; the value names its counter."""

    FRESH = "fresh"
    """Admitted: its timestamp is now its key's latest."""
    STALE = "stale"
    """Timestamp more than the window before now."""
    FUTURE = "future"
    """Timestamp more than the window after now."""
    REPLAYED = "replayed"
    """Timestamp not greater than the latest this key had admitted: a replay, or a proof made before one
    already admitted (two requests reordered on the way, or a sender that does not use a :class:`Prover`)."""

    @property
    def admitted(self) -> bool:
        return self is Verdict.FRESH


class ReplayGuard:
    """WireGuard's rule for its handshake's TAI64N timestamp: per signing key, the greatest proof timestamp
    admitted; a proof is admitted only if its timestamp is within ``±window_s`` of the server's wall clock
    and strictly greater than its key's.

    Memory is O(keys), not O(requests x window): one record per key (the key and an int), at most
    ``max_keys`` of them in a least-recently-admitted map (:class:`common.lru.BoundedLRU`): a key admitted again
    becomes the newest, a new key beyond the bound forgets the key admitted longest ago. Measured with
    tracemalloc (tests/test_trust_proofs.py holds it): 245 bytes a record once the map has evicted, up to
    325 while the map resizes, so the default 65,536 keys (64 times the peer table) cost at most about 16 MB,
    21 MB for a moment; requests a second cost nothing more. Each call is O(1). Nothing is forgotten by time,
    so a server clock stepped back readmits nothing.

    Why forgetting a key (eviction) is safe: a replay of that key's proofs is then judged by the window alone,
    but every v2 request's signed bytes include its cookie, which is bound to the source ip:port (and good
    for at most 120 s), so a replayed datagram from any other address fails the cookie check before its proof
    is looked at. A replay an evicted key lets through can only come from the same address, within the
    cookie's life and the proof's ±30 s, and only repeat what that key already did from there (the same
    register, connect or presence query, from the same address). Only proofs with a valid signature and a
    valid cookie reach the guard (under ``--require-keys``, only the registry's keys), so pushing a real
    key's record out takes ``max_keys`` other keys proving themselves from addresses that answer Retry.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if window_s <= 0 or max_keys < 1:
            raise ValueError("a replay guard needs a positive window and room for at least one key")
        self.window_ms = int(window_s * 1000)
        self.max_keys = max_keys
        self._latest: BoundedLRU[bytes, int] = BoundedLRU(max_keys)  # sign key -> greatest timestamp admitted

    def __len__(self) -> int:
        """Keys remembered."""
        return len(self._latest)

    @property
    def evicted(self) -> int:
        """Keys forgotten to make room for others."""
        return self._latest.evicted

    def admit(self, sign_key: bytes, timestamp_ms: int, now_ms: int) -> Verdict:
        """Judge a proof whose signature is already verified (check the signature first: only a key holder
        can then move its key's record). ``now_ms``: the server's wall-clock ms since the Unix epoch."""
        if timestamp_ms < now_ms - self.window_ms:
            return Verdict.STALE
        if timestamp_ms > now_ms + self.window_ms:
            return Verdict.FUTURE
        latest = self._latest.peek(sign_key)
        if latest is not None and timestamp_ms <= latest:
            return Verdict.REPLAYED
        self._latest.put(sign_key, timestamp_ms)
        return Verdict.FRESH
