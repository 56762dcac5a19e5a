"""``--max-proof-keys``: the replay guard's bound, in signing keys, not in proofs: the server remembers each
key's latest proof timestamp, so the keyed requests it admits a second are bounded by its CPU alone."""

from __future__ import annotations

from dataclasses import replace

from protocol import Endpoint, Frame, Ok, Retry, parse
from server.__main__ import config_of, parse_args
from server.app import Config
from server.handler import Handler
from tests.support.v2peer import WALL_MS, V2Peer
from trust import DEFAULT_MAX_KEYS

OLD_BOUND = 16_384
"""The replay guard's bound before WireGuard's rule: proofs remembered for their 30 s window (546 a second)."""


def test_the_option_bounds_the_keys_the_replay_guard_remembers():
    assert Config().handler().gate.proofs.max_keys == DEFAULT_MAX_KEYS
    config = config_of(parse_args(["--max-proof-keys", "2"]))
    assert config.max_proof_keys == 2
    assert config.handler().gate.proofs.max_keys == 2


def reply(handler: Handler, datagram: bytes, source: Endpoint, now: float, wall_ms: int) -> object:
    [(data, to)] = handler.handle(datagram, source, now, wall_ms)
    assert to == source
    frame = parse(data)
    assert isinstance(frame, Frame)
    return frame.message


def test_a_sustained_stream_of_keyed_requests_beyond_the_old_bound_is_admitted():
    """40 keyed peers (first-come ids, each at its own address) register again and again, 1,000 requests a
    second for 20 s of the server's clock: 20,000 fresh proofs inside one 30 s window, where the old guard
    held 16,384 and refused the rest with 503. Every one gets Ok, and the guard holds 40 records."""
    handler = replace(Config(), rate=0).handler()
    peers = [(V2Peer.new(f"p{n}"), Endpoint(f"198.18.1.{n + 1}", 40000)) for n in range(40)]
    for peer, at in peers:
        retry = reply(handler, peer.register(), at, 1.0, WALL_MS)
        assert isinstance(retry, Retry)
        peer.cookie = retry.cookie
    requests = 20_000
    for n in range(requests):  # one a millisecond, the peers in turn
        peer, at = peers[n % len(peers)]
        wall_ms = WALL_MS + n
        answer = reply(handler, peer.register(txid=n + 2, wall_ms=wall_ms), at, 1.0 + n / 1000, wall_ms)
        assert answer == Ok(), (n, answer)
    assert requests > OLD_BOUND, "more proofs than the old guard could hold"
    assert requests / 1000 < 30, "all of them inside one 30 s window"
    assert len(handler.gate.proofs) == len(peers)
    refused = {kind: count for kind, count in handler.counters.items() if count and kind != "retry"}
    assert refused == {}
