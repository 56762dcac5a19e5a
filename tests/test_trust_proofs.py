"""trust.proofs: signatures over the codec's signing bytes, and the replay guard's window and bound."""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import dataclass, replace

import pytest

from trust import NONCE_SIZE, PROOF_CONTEXT, Identity, ProofParts, ReplayGuard, Verdict, make_proof, verify_proof

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


def test_guard_admits_once_within_the_window() -> None:
    guard = ReplayGuard()
    key, nonce = Identity.generate().public.sign, os.urandom(16)
    assert guard.admit(key, NOW_MS, nonce, NOW_MS) is Verdict.FRESH
    assert guard.admit(key, NOW_MS, nonce, NOW_MS + 1_000) is Verdict.REPLAYED
    assert guard.admit(key, NOW_MS + 5, nonce, NOW_MS + 1_000) is Verdict.REPLAYED  # same nonce, new time
    assert guard.admit(Identity.generate().public.sign, NOW_MS, nonce, NOW_MS) is Verdict.FRESH  # another key
    assert guard.admit(key, NOW_MS, os.urandom(16), NOW_MS) is Verdict.FRESH  # another nonce
    assert Verdict.FRESH.admitted
    assert not Verdict.REPLAYED.admitted


def test_guard_window_edges() -> None:
    guard = ReplayGuard(window_s=30)
    key = b"k" * 32
    assert guard.admit(key, NOW_MS - WINDOW_MS, b"a" * 16, NOW_MS) is Verdict.FRESH
    assert guard.admit(key, NOW_MS - WINDOW_MS - 1, b"b" * 16, NOW_MS) is Verdict.STALE
    assert guard.admit(key, NOW_MS + WINDOW_MS, b"c" * 16, NOW_MS) is Verdict.FRESH
    assert guard.admit(key, NOW_MS + WINDOW_MS + 1, b"d" * 16, NOW_MS) is Verdict.FUTURE


def test_replay_after_the_window_is_stale_and_forgotten() -> None:
    guard = ReplayGuard()
    key, nonce = b"k" * 32, b"n" * 16
    assert guard.admit(key, NOW_MS, nonce, NOW_MS).admitted
    assert guard.admit(key, NOW_MS, nonce, NOW_MS + WINDOW_MS) is Verdict.REPLAYED  # still inside
    assert guard.admit(key, NOW_MS, nonce, NOW_MS + WINDOW_MS + 1) is Verdict.STALE
    assert guard.admit(key, NOW_MS + WINDOW_MS + 1, b"m" * 16, NOW_MS + WINDOW_MS + 1).admitted
    assert len(guard) == 1  # the first entry was dropped as its timestamp left the window


def test_a_clock_stepped_back_does_not_readmit_a_forgotten_proof() -> None:
    guard = ReplayGuard()
    key, nonce = b"k" * 32, b"n" * 16
    assert guard.admit(key, NOW_MS, nonce, NOW_MS).admitted
    assert guard.admit(key, NOW_MS + 40_000, b"x" * 16, NOW_MS + 40_000).admitted  # forgets the first
    assert guard.admit(key, NOW_MS, nonce, NOW_MS + 1_000) is Verdict.STALE  # the clock went back 39 s


def test_a_full_guard_refuses_rather_than_grows() -> None:
    guard = ReplayGuard(max_entries=3)
    key = b"k" * 32
    for i in range(3):
        assert guard.admit(key, NOW_MS, bytes([i]) * 16, NOW_MS).admitted
    assert guard.admit(key, NOW_MS, b"z" * 16, NOW_MS) is Verdict.FULL
    assert len(guard) == 3
    assert guard.admit(key, NOW_MS, bytes([0]) * 16, NOW_MS) is Verdict.REPLAYED  # still remembered
    later = NOW_MS + WINDOW_MS + 1
    assert guard.admit(key, later, b"z" * 16, later).admitted  # room again once the others left the window
    assert len(guard) == 1


def test_guard_memory_per_entry_is_bounded() -> None:
    """The bound the docstring states: a full default guard stays under 256 bytes an entry (about 4 MB)."""
    guard = ReplayGuard()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(guard.max_entries):
            assert guard.admit(os.urandom(32), NOW_MS + i % 1000, os.urandom(16), NOW_MS).admitted
        assert guard.admit(os.urandom(32), NOW_MS, os.urandom(16), NOW_MS) is Verdict.FULL
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / guard.max_entries < 256, used


def test_guard_needs_a_window_and_room() -> None:
    with pytest.raises(ValueError, match="positive window"):
        ReplayGuard(window_s=0)
    with pytest.raises(ValueError, match="at least one"):
        ReplayGuard(max_entries=0)
