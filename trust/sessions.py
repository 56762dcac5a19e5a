"""Peer-to-peer sessions: the AEAD that authenticates and encrypts every datagram between two natlab clients.

Keys: X25519 between our box secret and the peer's box public key, hashed with BLAKE2b (keyed by that
shared secret, personalised ``natlab-v2 peer``) over a transcript of the sender's id and public keys, then
the receiver's. So each direction has its own key (a datagram reflected back to its sender does not open),
and each key is bound to both ids and all four public keys (a peer cannot pass one id's datagrams off as
another's). The peer's public keys come from the server's punch (or the registry).

AEAD: XChaCha20-Poly1305-IETF (libsodium through PyNaCl's bindings); nonce = boot (u64 BE) || counter (u64
BE) || 8 zero bytes. ``boot`` is the sender's wall-clock ns when it made the session, so it grows across
restarts (the keys are the same after a restart: a nonce must never repeat under them) and the counter
numbers the datagrams of one boot from 0. The receiver keeps a 64-counter sliding window for the newest
boot it has authenticated: a counter seen before, or older than the window, is ``replayed``; a newer boot
(once it authenticates) restarts the window; an older boot is ``old_boot``.

Pure: no I/O, no clock (``boot`` is passed in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash

from common.ids import ID_RE, ID_SYNTAX
from trust.keys import Identity, PublicKeys

AUTH_REASONS = ("bad_mac", "replayed", "old_boot", "unknown_peer", "no_key", "wrong_id")
"""Why a peer datagram was dropped; the agent counts drops by these names. A session raises the first three
(and ``no_key`` for a peer key no session can be made with); the agent raises ``unknown_peer`` (no session for
the sender), ``no_key`` (a peer known without keys) and ``wrong_id`` (the inner frame names another id)."""
WINDOW = 64
"""Counters the anti-replay window remembers (as IPsec's and WireGuard's: reordering within it is fine)."""
MAX_U64 = 2**64 - 1
TAG_SIZE = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
PERSONAL = b"natlab-v2 peer"


class AuthError(Exception):
    """A datagram that must be dropped; ``reason`` is one of :data:`AUTH_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in AUTH_REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Sealing(NamedTuple):
    """One sealed datagram's parts: ``Sealed(own_id, *sealing)`` is the message to send."""

    boot: int
    counter: int
    box: bytes


class ReplayWindow:
    """The newest authenticated boot and which of its last :data:`WINDOW` counters were seen.

    :meth:`check` before decrypting (a replay costs no decryption); :meth:`accept` only after the datagram
    authenticated, so a forged one cannot move the window."""

    def __init__(self) -> None:
        self.boot: int | None = None
        self.top = -1  # the highest counter accepted in this boot
        self.seen = 0  # bit i: counter top - i was accepted

    def check(self, boot: int, counter: int) -> None:
        if self.boot is not None and boot < self.boot:
            raise AuthError("old_boot", f"boot {boot} after boot {self.boot}")
        if boot != self.boot or counter > self.top:
            return
        if counter <= self.top - WINDOW:
            raise AuthError("replayed", f"counter {counter} is older than the window (newest {self.top})")
        if self.seen >> (self.top - counter) & 1:
            raise AuthError("replayed", f"counter {counter} seen before")

    def accept(self, boot: int, counter: int) -> None:
        if boot != self.boot:
            self.boot, self.top, self.seen = boot, counter, 1
        elif counter > self.top:
            self.seen = (self.seen << (counter - self.top) | 1) & ((1 << WINDOW) - 1)
            self.top = counter
        else:
            self.seen |= 1 << (self.top - counter)


class PeerSession:
    """Our side of the AEAD with one peer: :meth:`seal` what we send, :meth:`open` what it sends.

    ``boot``: wall-clock ns now (``time.time_ns()``); it must be larger than any boot this identity used
    with this peer before (a restart, or an earlier session in this process), or nonces would repeat.
    ``AuthError("no_key")`` when no key can be agreed with ``peer_public`` (a low-order X25519 point)."""

    def __init__(self, identity: Identity, own_id: str, peer_id: str, peer_public: PublicKeys, boot: int) -> None:
        for named in (own_id, peer_id):
            if not ID_RE.match(named):
                raise ValueError(f"invalid id {named!r}: ids match {ID_SYNTAX}")
        if not 0 <= boot <= MAX_U64:
            raise ValueError(f"boot {boot} is not a u64")
        try:
            shared = identity.agree(peer_public.box)
        except ValueError as exc:
            raise AuthError("no_key", f"{peer_id}: {exc}") from None
        own = (own_id, identity.public)
        peer = (peer_id, peer_public)
        self.own_id, self.peer_id, self.peer_public, self.boot = own_id, peer_id, peer_public, boot
        self._send_key = direction_key(shared, own, peer)
        self._receive_key = direction_key(shared, peer, own)
        self._next_counter = 0
        self._window = ReplayWindow()

    def __repr__(self) -> str:
        return f"PeerSession({self.own_id} -> {self.peer_id}, boot {self.boot}, sent {self._next_counter})"

    def seal(self, plaintext: bytes, associated: Callable[[int, int], bytes]) -> Sealing:
        """Encrypt ``plaintext`` under the next counter; ``associated(boot, counter)`` is the datagram's
        header (its bytes before the BOX field), authenticated with it."""
        counter = self._next_counter
        if counter > MAX_U64:
            raise OverflowError("counter space used up: make a new session (a new boot)")
        self._next_counter += 1
        box = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, associated(self.boot, counter), nonce(self.boot, counter), self._send_key
        )
        return Sealing(self.boot, counter, box)

    def open(self, boot: int, counter: int, associated: bytes, box: bytes) -> bytes:
        """The plaintext of a datagram the peer sealed, or :class:`AuthError` (``old_boot``, ``replayed``,
        ``bad_mac``). ``associated``: the received datagram's bytes before its BOX field."""
        if not (0 <= boot <= MAX_U64 and 0 <= counter <= MAX_U64):
            raise AuthError("bad_mac", "boot or counter is not a u64")
        self._window.check(boot, counter)
        if len(box) < TAG_SIZE:
            raise AuthError("bad_mac", f"box of {len(box)} bytes is shorter than the tag")
        try:
            plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                box, associated, nonce(boot, counter), self._receive_key
            )
        except nacl.exceptions.CryptoError:
            raise AuthError("bad_mac") from None
        self._window.accept(boot, counter)
        return plaintext


def nonce(boot: int, counter: int) -> bytes:
    """The 24-byte XChaCha20 nonce: boot || counter || 8 zero bytes."""
    return boot.to_bytes(8, "big") + counter.to_bytes(8, "big") + bytes(8)


def direction_key(shared: bytes, sender: tuple[str, PublicKeys], receiver: tuple[str, PublicKeys]) -> bytes:
    """The key for datagrams from ``sender`` to ``receiver``: BLAKE2b keyed by the X25519 secret over both ids
    and all four public keys, each length-prefixed (no two transcripts read the same)."""
    parts = []
    for peer_id, keys in (sender, receiver):
        parts += [peer_id.encode("ascii"), keys.sign, keys.box]
    transcript = b"".join(len(part).to_bytes(1, "big") + part for part in parts)
    return nacl.hash.blake2b(transcript, digest_size=32, key=shared, person=PERSONAL, encoder=nacl.encoding.RawEncoder)
