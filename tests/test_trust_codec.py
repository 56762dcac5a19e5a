"""trust and protocol agree on a proof's bytes: a register signed through the real codec verifies after a
real encode and parse, and any change to the datagram breaks it (trust is blind to the wire format, so
only this test joins the two)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from protocol import Candidates, Frame, Keys, Proof, Register, encode, parse, signing_bytes
from trust import PROOF_CONTEXT, Identity, make_proof, verify_proof

NOW_MS = 1_750_000_000_000


def _signed_register(identity: Identity) -> bytes:
    keys = Keys(identity.public.sign, identity.public.box)
    frame = Frame(7, Register("alice", Candidates(None)), keys=keys, cookie=b"c" * 17)
    proof = Proof(*make_proof(identity, partial(signing_bytes, frame), NOW_MS))
    return encode(replace(frame, proof=proof))


def test_a_signed_frame_verifies_after_encode_and_parse() -> None:
    alice = Identity.generate()
    frame = parse(_signed_register(alice))
    assert isinstance(frame, Frame)
    assert frame.signed.startswith(PROOF_CONTEXT)
    assert verify_proof(alice.public.sign, frame)
    assert not verify_proof(Identity.generate().public.sign, frame)


def test_any_flipped_byte_before_the_proof_breaks_it() -> None:
    alice = Identity.generate()
    datagram = _signed_register(alice)
    proof_start = len(datagram) - (3 + 8 + 16 + 64)  # the PROOF field: tag, length, timestamp, nonce, sig
    for index in range(proof_start):
        tampered = bytearray(datagram)
        tampered[index] ^= 0x01
        try:
            frame = parse(bytes(tampered))
        except ValueError:
            continue  # no longer a valid frame at all
        assert isinstance(frame, Frame)
        assert not verify_proof(alice.public.sign, frame), f"byte {index} is not covered by the proof"
