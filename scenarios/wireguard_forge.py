"""A real WireGuard handshake initiation, built outside WireGuard: what a stranger sends to try its way into a
tunnel (pure; the scenario sends it from mallory, scenarios/test_tunnel.py).

The message is WireGuard's first (wireguard.com/protocol, "First Message: Initiator to Responder"): Noise
IKpsk2 with the responder's static public key, the initiator's static key sealed under the ephemeral-static
secret, a TAI64N timestamp sealed under the static-static secret, and ``mac1`` keyed by the responder's
public key, so the responder's WireGuard would check it, open it and answer it if it were given it (a
``mac2`` of zeros is what an initiator sends without a cookie). 148 bytes; :func:`open_initiation` is the
responder's side, for the unit tests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

import nacl.bindings
import nacl.public

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
INITIATION = 1
SIZE = 148
TAI64_BASE = 0x400000000000000A
"""TAI64's label for the Unix epoch (2^62 + 10 leap seconds), as wireguard-go's tai64n package writes it."""


def _hash(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    """WireGuard's KDF with two outputs (HKDF over HMAC-BLAKE2s)."""
    prk = _hmac(key, data)
    first = _hmac(prk, b"\x01")
    return first, _hmac(prk, first + b"\x02")


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plain, aad, bytes(12), key)  # counter 0


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(sealed, aad, bytes(12), key)


def _dh(secret: bytes, public: bytes) -> bytes:
    return nacl.bindings.crypto_scalarmult(secret, public)


def tai64n(now: float) -> bytes:
    """``now`` (Unix seconds) as TAI64N: 8 bytes of seconds from TAI64's base, 4 of nanoseconds, big-endian."""
    seconds = int(now)
    return struct.pack(">QI", TAI64_BASE + seconds, int((now - seconds) * 1e9))


def mac1(responder: bytes, message: bytes) -> bytes:
    """``mac1`` of the message's first 116 bytes, keyed by the responder's public key."""
    return hashlib.blake2s(message, digest_size=16, key=_hash(LABEL_MAC1, responder)).digest()


def initiation(initiator_secret: bytes, responder: bytes, now: float | None = None, sender: int | None = None) -> bytes:
    """A handshake initiation from the X25519 key ``initiator_secret`` to the peer whose public key is
    ``responder``: a fresh ephemeral key, the timestamp ``now`` (default the clock's)."""
    initiator = nacl.bindings.crypto_scalarmult_base(initiator_secret)
    ephemeral = nacl.public.PrivateKey.generate()
    chain = _hash(CONSTRUCTION)
    digest = _hash(_hash(chain, IDENTIFIER), responder)
    ephemeral_public = bytes(ephemeral.public_key)
    chain = _hmac(_hmac(chain, ephemeral_public), b"\x01")  # KDF1
    digest = _hash(digest, ephemeral_public)
    chain, key = _kdf2(chain, _dh(bytes(ephemeral), responder))
    static = _seal(key, initiator, digest)
    digest = _hash(digest, static)
    chain, key = _kdf2(chain, _dh(initiator_secret, responder))
    stamp = _seal(key, tai64n(time.time() if now is None else now), digest)
    index = secrets.randbits(32) if sender is None else sender
    body = struct.pack("<BxxxI", INITIATION, index) + ephemeral_public + static + stamp
    return body + mac1(responder, body) + bytes(16)


@dataclass(frozen=True)
class Opened:
    """What a responder reads from an initiation: the initiator's static public key and its timestamp."""

    initiator: bytes
    timestamp: bytes


def open_initiation(responder_secret: bytes, message: bytes) -> Opened:
    """The responder's side: check ``mac1`` and open the sealed fields (``ValueError`` when ``mac1`` is wrong,
    nacl's ``CryptoError`` when a seal does not open)."""
    responder = nacl.bindings.crypto_scalarmult_base(responder_secret)
    if len(message) != SIZE or message[0] != INITIATION:
        raise ValueError(f"not a handshake initiation ({len(message)} bytes, type {message[:1].hex()})")
    if not hmac.compare_digest(mac1(responder, message[:116]), message[116:132]):
        raise ValueError("mac1 does not match the responder's key")
    ephemeral, static, stamp = message[8:40], message[40:88], message[88:116]
    chain = _hash(CONSTRUCTION)
    digest = _hash(_hash(chain, IDENTIFIER), responder)
    chain = _hmac(_hmac(chain, ephemeral), b"\x01")
    digest = _hash(digest, ephemeral)
    chain, key = _kdf2(chain, _dh(responder_secret, ephemeral))
    initiator = _open(key, static, digest)
    digest = _hash(digest, static)
    chain, key = _kdf2(chain, _dh(responder_secret, initiator))
    return Opened(initiator, _open(key, stamp, digest))
