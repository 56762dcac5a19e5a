"""What one agent may hold and send on someone else's word: the peers it knows, the frames it holds for
reassembly, the probes one connect attempt may send, and the introductions it did not ask for. Pure.

Everything an agent keeps grows only with what its own server introduced or its user asked for, and even
that is capped here, so neither a stranger on the network nor a peer that can make the server punch us can
grow its memory or turn it into a sprayer of probes. See the README's "Bounded agents".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """The agent's limits (times in seconds)."""

    max_peers: int = 256
    """Peers known at once. When full, a new introduction forgets the oldest idle peer, or is refused."""
    peer_idle: float = 120.0
    """An idle peer (no path in use, nothing pending) not heard from or sent to for this long is forgotten."""
    max_held: int = 4096
    """Out-of-order frames held for reassembly, across all peers (each at most 1,400 bytes): beyond, a frame
    is not held and its sender retransmits it."""
    probe_budget: int = 512
    """Bytes of probes (``hello <id>`` datagrams) each path sends per connect attempt until the first answer."""
    intro_rate: float = 2.0
    """Introductions (punches) we did not ask for, per second, sustained..."""
    intro_burst: int = 20
    """...and at once: a token bucket. Our own connects are never limited."""

    def __post_init__(self) -> None:
        if min(self.max_peers, self.max_held, self.probe_budget, self.intro_burst) < 1:
            raise ValueError(
                "need max_peers, max_held, probe_budget and intro_burst >= 1, got "
                f"{self.max_peers}, {self.max_held}, {self.probe_budget} and {self.intro_burst}"
            )
        if not (self.peer_idle > 0 and self.intro_rate > 0):
            raise ValueError(f"need peer_idle > 0 and intro_rate > 0, got {self.peer_idle} and {self.intro_rate}")

    def probes(self, probe_bytes: int) -> int:
        """How many probes of ``probe_bytes`` bytes the budget allows per attempt (at least one)."""
        return max(1, self.probe_budget // probe_bytes)


UNASKED_KEYLESS_PROBES = 3
"""Probes an introduction we did not ask for gets when the peer has no keys (a seed-era id). Anyone may register
such an id from a forged source and have it introduced to us, so our probes to it are what an attacker can
aim at a victim: 3 of ``hello <id>`` (33 bytes as alice) keep the victim within 3x of the attacker's
register and connect (25 bytes), the server's answers included. Our probes only open our NAT for the peer's
own, which confirm the path (the seed's client probes for 3 s after its punch)."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
