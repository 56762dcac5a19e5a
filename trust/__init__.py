"""Every key natlab holds: hosts' identities and key files, the registry, proofs to the server, peer sessions.

Imports only ``common``; ``protocol`` does not import it, so proofs and sessions work on the bytes the codec
hands them (see :mod:`trust.proofs` and :mod:`trust.sessions`).
"""

from trust.keymaker import KEYS_DIR, REGISTRY_FILE, MadeKeys, key_file, make_keys, parse_ids
from trust.keys import KEY_SIZE, Identity, KeyFileError, KeyFileMissing, PublicKeys, Registry
from trust.proofs import (
    DEFAULT_MAX_KEYS,
    NONCE_SIZE,
    PROOF_CONTEXT,
    SIGNATURE_SIZE,
    ProofParts,
    Prover,
    ReplayGuard,
    Verdict,
    make_proof,
    new_nonce,
    verify_proof,
)
from trust.sessions import AUTH_REASONS, WINDOW, AuthError, PeerSession, ReplayWindow, Sealing

__all__ = [
    "AUTH_REASONS",
    "DEFAULT_MAX_KEYS",
    "KEYS_DIR",
    "KEY_SIZE",
    "NONCE_SIZE",
    "PROOF_CONTEXT",
    "REGISTRY_FILE",
    "SIGNATURE_SIZE",
    "WINDOW",
    "AuthError",
    "Identity",
    "KeyFileError",
    "KeyFileMissing",
    "MadeKeys",
    "PeerSession",
    "ProofParts",
    "Prover",
    "PublicKeys",
    "Registry",
    "ReplayGuard",
    "ReplayWindow",
    "Sealing",
    "Verdict",
    "key_file",
    "make_keys",
    "make_proof",
    "new_nonce",
    "parse_ids",
    "verify_proof",
]
