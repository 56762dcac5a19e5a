"""trust.proofs: signatures over the codec's signing bytes, the prover's increasing timestamps, and the replay
guard's rule (WireGuard's: per key, a timestamp greater than the last), window, bound and memory."""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import dataclass, replace

import pytest

from trust import (
    DEFAULT_MAX_KEYS,
    NONCE_SIZE,
    PROOF_CONTEXT,
    Identity,
    ProofParts,
    Prover,
    ReplayGuard,
    Verdict,
    make_proof,
    verify_proof,
)

NOW_MS = 1_750_000_000_000
WINDOW_MS = 30_000
DATAGRAM = b"\xf5\x02\x01" + bytes(8) + b"\x01\x00\x05alice"  # what a frame's bytes before PROOF look like


def signing_bytes(datagram: bytes):
    """The layout the codec computes (V2SPEC: context + datagram before PROOF + timestamp + nonce)."""
    return lambda timestamp_ms, nonce: PROOF_CONTEXT + datagram + timestamp_ms.to_bytes(8, "big") + nonce


@dataclass(frozen=True)
class Frame:
    """What verify_proof reads of a parsed frame (protocol.Frame has the same two attributes)."""

    proof: ProofParts | None
    signed: bytes


def _signed_frame(identity: Identity, timestamp_ms: int = NOW_MS) -> tuple[Frame, ProofParts]:
    proof = make_proof(identity, signing_bytes(DATAGRAM), timestamp_ms)
    return Frame(proof, signing_bytes(DATAGRAM)(proof.timestamp_ms, proof.nonce)), proof


def test_a_proof_verifies_with_its_key_only() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    frame, proof = _signed_frame(alice)
    assert proof.timestamp_ms == NOW_MS
    assert len(proof.nonce) == NONCE_SIZE
    assert len(proof.signature) == 64
    assert verify_proof(alice.public.sign, frame)
    assert not verify_proof(mallory.public.sign, frame)


def test_fresh_nonce_every_time() -> None:
    alice = Identity.generate()
    assert _signed_frame(alice)[1].nonce != _signed_frame(alice)[1].nonce


def test_any_changed_byte_fails() -> None:
    alice = Identity.generate()
    frame, proof = _signed_frame(alice)
    for i in range(len(frame.signed)):  # context, datagram, timestamp and nonce alike
        tampered = bytearray(frame.signed)
        tampered[i] ^= 0x01
        assert not verify_proof(alice.public.sign, replace(frame, signed=bytes(tampered))), i
    bad_signature = bytearray(proof.signature)
    bad_signature[0] ^= 1
    assert not verify_proof(alice.public.sign, replace(frame, proof=proof._replace(signature=bytes(bad_signature))))


def test_proof_fields_must_be_the_signed_ones() -> None:
    """A frame whose proof names another timestamp or nonce than the bytes signed is refused, as is one
    whose signed bytes lack the context, or a proof with a signature of the wrong size, or none at all."""
    alice = Identity.generate()
    frame, proof = _signed_frame(alice)
    key = alice.public.sign
    assert not verify_proof(key, replace(frame, proof=proof._replace(timestamp_ms=NOW_MS + 1)))
    assert not verify_proof(key, replace(frame, proof=proof._replace(nonce=os.urandom(NONCE_SIZE))))
    assert not verify_proof(key, replace(frame, signed=frame.signed[len(PROOF_CONTEXT) :]))
    assert not verify_proof(key, replace(frame, proof=proof._replace(signature=proof.signature[:63])))
    assert not verify_proof(key, replace(frame, proof=None))
    assert not verify_proof(key[:31], frame)
    unsigned_context = Identity.generate()
    forged = unsigned_context.sign(frame.signed[len(PROOF_CONTEXT) :])  # the same bytes, signed without context
    assert not verify_proof(unsigned_context.public.sign, replace(frame, proof=proof._replace(signature=forged)))


def test_make_proof_refuses_bytes_not_laid_out_as_a_proof() -> None:
    alice = Identity.generate()
    with pytest.raises(ValueError, match="signing bytes must be"):
        make_proof(alice, lambda ts, nonce: DATAGRAM + ts.to_bytes(8, "big") + nonce, NOW_MS)
    with pytest.raises(ValueError, match="16-byte nonce"):
        make_proof(alice, signing_bytes(DATAGRAM), NOW_MS, nonce=b"short")
    with pytest.raises(ValueError, match="u64 timestamp"):
        make_proof(alice, signing_bytes(DATAGRAM), -1)


def test_a_prover_makes_strictly_increasing_timestamps_that_verify() -> None:
    alice = Identity.generate()
    prover = Prover(alice)
    made = [prover.proof(signing_bytes(DATAGRAM), NOW_MS) for _ in range(3)]  # three in one millisecond
    made.append(prover.proof(signing_bytes(DATAGRAM), NOW_MS - 5_000))  # the clock stepped back 5 s
    made.append(prover.proof(signing_bytes(DATAGRAM), NOW_MS + 10))  # and on again
    assert [proof.timestamp_ms for proof in made] == [NOW_MS, NOW_MS + 1, NOW_MS + 2, NOW_MS + 3, NOW_MS + 10]
    assert prover.last_ms == NOW_MS + 10
    for proof in made:
        assert verify_proof(alice.public.sign, Frame(proof, signing_bytes(DATAGRAM)(proof.timestamp_ms, proof.nonce)))
    guard = ReplayGuard()
    assert [guard.admit(alice.public.sign, proof.timestamp_ms, NOW_MS) for proof in made] == [Verdict.FRESH] * 5


def test_guard_admits_only_a_timestamp_greater_than_its_keys_last() -> None:
    guard = ReplayGuard()
    key, other = b"k" * 32, b"o" * 32
    assert guard.admit(key, NOW_MS, NOW_MS) is Verdict.FRESH
    assert guard.admit(key, NOW_MS, NOW_MS + 1_000) is Verdict.REPLAYED  # the same timestamp: a replay
    assert guard.admit(key, NOW_MS - 1, NOW_MS) is Verdict.REPLAYED  # older, though inside the window
    assert guard.admit(other, NOW_MS - 1, NOW_MS) is Verdict.FRESH  # each key has its own record
    assert guard.admit(key, NOW_MS + 1, NOW_MS) is Verdict.FRESH
    assert guard.admit(key, NOW_MS + 1, NOW_MS) is Verdict.REPLAYED
    assert guard.admit(key, NOW_MS + 2, NOW_MS) is Verdict.FRESH
    assert len(guard) == 2  # one record per key, however many proofs
    assert Verdict.FRESH.admitted
    assert not Verdict.REPLAYED.admitted


def test_guard_window_edges() -> None:
    guard = ReplayGuard(window_s=30)
    assert guard.admit(b"a" * 32, NOW_MS - WINDOW_MS, NOW_MS) is Verdict.FRESH
    assert guard.admit(b"b" * 32, NOW_MS - WINDOW_MS - 1, NOW_MS) is Verdict.STALE
    assert guard.admit(b"c" * 32, NOW_MS + WINDOW_MS, NOW_MS) is Verdict.FRESH
    assert guard.admit(b"d" * 32, NOW_MS + WINDOW_MS + 1, NOW_MS) is Verdict.FUTURE
    assert len(guard) == 2, "a refused proof leaves no record"
    assert guard.admit(b"c" * 32, NOW_MS + WINDOW_MS + 1, NOW_MS) is Verdict.FUTURE, "the window before the key's"


def test_a_replay_after_the_window_is_stale() -> None:
    guard = ReplayGuard()
    key = b"k" * 32
    assert guard.admit(key, NOW_MS, NOW_MS).admitted
    assert guard.admit(key, NOW_MS, NOW_MS + WINDOW_MS) is Verdict.REPLAYED
    assert guard.admit(key, NOW_MS, NOW_MS + WINDOW_MS + 1) is Verdict.STALE


def test_a_clock_stepped_back_readmits_nothing() -> None:
    """Records are not forgotten by time, so a proof stays refused whatever the server's clock does."""
    guard = ReplayGuard()
    key = b"k" * 32
    assert guard.admit(key, NOW_MS, NOW_MS).admitted
    assert guard.admit(key, NOW_MS + 40_000, NOW_MS + 40_000).admitted
    assert guard.admit(key, NOW_MS + 1, NOW_MS + 1_000) is Verdict.REPLAYED  # the clock went back 39 s


def test_the_guard_holds_at_most_max_keys_and_forgets_the_key_admitted_longest_ago() -> None:
    guard = ReplayGuard(max_keys=3)
    first, second, third, fourth = (bytes([n]) * 32 for n in range(4))
    for n, key in enumerate((first, second, third)):
        assert guard.admit(key, NOW_MS + n, NOW_MS).admitted
    assert guard.admit(first, NOW_MS + 10, NOW_MS).admitted  # first is now the most recently admitted
    assert guard.admit(second, NOW_MS, NOW_MS) is Verdict.REPLAYED  # a refusal does not make it recent
    assert guard.admit(fourth, NOW_MS, NOW_MS).admitted  # one key too many: second, admitted longest ago, goes
    assert (len(guard), guard.evicted) == (3, 1)
    assert guard.admit(first, NOW_MS + 10, NOW_MS) is Verdict.REPLAYED, "first's record was kept"
    assert guard.admit(third, NOW_MS + 2, NOW_MS) is Verdict.REPLAYED, "so was third's"
    # second's record is gone: its old proof is judged by the window alone (safe: see ReplayGuard's docstring,
    # the server checks the cookie, bound to the source address, before the proof)
    assert guard.admit(second, NOW_MS + 1, NOW_MS) is Verdict.FRESH


def test_guard_memory_per_key_is_bounded() -> None:
    """The bound the docstring states: a full default guard, after a second round of keys has evicted the
    first, holds under 256 bytes a key (under 17 MB) and never more than 352 (23 MB) while its map resizes."""
    guard = ReplayGuard()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2):
            for i in range(guard.max_keys):
                assert guard.admit(os.urandom(32), NOW_MS + i % 1000, NOW_MS).admitted
        used, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (len(guard), guard.evicted) == (guard.max_keys, guard.max_keys)
    assert guard.max_keys == DEFAULT_MAX_KEYS == 65_536
    assert (used - before) / guard.max_keys < 256, used - before
    assert (peak - before) / guard.max_keys < 352, peak - before


def test_guard_needs_a_window_and_room() -> None:
    with pytest.raises(ValueError, match="positive window"):
        ReplayGuard(window_s=0)
    with pytest.raises(ValueError, match="at least one key"):
        ReplayGuard(max_keys=0)
