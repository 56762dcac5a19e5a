"""A v2 client's requests built from the real codec and real keys (protocol + trust), for the server's tests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from protocol import (
    Candidates,
    Connect,
    Endpoint,
    Frame,
    Keepalive,
    Keys,
    Message,
    PresenceQuery,
    Proof,
    Register,
    StatsQuery,
    encode,
    signing_bytes,
)
from trust import Identity, Prover, make_proof

WALL_MS = 1_750_000_000_000
"""The tests' wall clock (ms since the Unix epoch): proofs are made at it, and the handler judges them by it."""

_UNSET = b""


@dataclass
class V2Peer:
    """One keyed client: its id, its identity, and the latest cookie the server gave it (echoed by default).
    Its proofs come from one :class:`~trust.Prover`, as a real client's: each timestamp greater than the last."""

    id: str
    identity: Identity
    cookie: bytes | None = None
    prover: Prover = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.prover = Prover(self.identity)

    @classmethod
    def new(cls, peer_id: str) -> V2Peer:
        return cls(peer_id, Identity.generate())

    @property
    def keys(self) -> Keys:
        return Keys(self.identity.public.sign, self.identity.public.box)

    def request(
        self,
        message: Message,
        txid: int = 1,
        *,
        wall_ms: int = WALL_MS,
        proof: bool = True,
        keys: Keys | None = None,
        cookie: bytes | None = _UNSET,
        signer: Identity | None = None,
        exact_ms: int | None = None,
    ) -> bytes:
        """``message`` in a frame with the cookie (``cookie=None``: none) and a proof by this peer's prover with
        ``wall_ms`` as its clock (``proof=False``: none); by ``signer`` instead, or at exactly ``exact_ms``
        (an old, equal or out-of-window timestamp, say), a proof made outside the prover."""
        frame = Frame(txid, message, keys=keys, cookie=self.cookie if cookie is _UNSET else cookie)
        if proof:
            bytes_to_sign = partial(signing_bytes, frame)
            if signer is None and exact_ms is None:
                made = self.prover.proof(bytes_to_sign, wall_ms)
            else:
                made = make_proof(signer or self.identity, bytes_to_sign, wall_ms if exact_ms is None else exact_ms)
            frame = replace(frame, proof=Proof(*made))
        return encode(frame)

    def register(self, relay: Endpoint | None = None, txid: int = 1, **options: Any) -> bytes:
        options.setdefault("keys", self.keys)
        return self.request(Register(self.id, Candidates(relay)), txid, **options)

    def connect(self, to_id: str, txid: int = 2, **options: Any) -> bytes:
        return self.request(Connect(self.id, to_id), txid, **options)

    def presence(self, peer_id: str, txid: int = 3, **options: Any) -> bytes:
        return self.request(PresenceQuery(self.id, peer_id), txid, **options)

    def keepalive(self, txid: int = 4, **options: Any) -> bytes:
        return self.request(Keepalive(), txid, proof=False, **options)

    def stats(self, txid: int = 5, **options: Any) -> bytes:
        return self.request(StatsQuery(), txid, proof=False, **options)
