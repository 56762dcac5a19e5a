"""``--max-proofs``: the replay guard's size, which bounds the keyed requests a second the server admits for
long (a proof is remembered for its 30 s window; a full guard refuses new ones with 503)."""

from __future__ import annotations

from dataclasses import replace

from protocol import Endpoint, Err, ErrorCode, Frame, Ok, Retry, parse
from server.__main__ import config_of, parse_args
from server.app import Config
from tests.support.v2peer import WALL_MS, V2Peer
from trust.proofs import DEFAULT_MAX_ENTRIES


def test_the_option_sizes_the_servers_replay_guard():
    assert Config().handler().gate.proofs.max_entries == DEFAULT_MAX_ENTRIES
    config = config_of(parse_args(["--max-proofs", "2"]))
    assert config.max_proofs == 2
    assert config.handler().gate.proofs.max_entries == 2


def test_a_full_guard_refuses_the_next_keyed_register():
    handler = replace(Config(), max_proofs=2).handler()

    def answer(peer: V2Peer, at: Endpoint) -> object:
        [(data, to)] = handler.handle(peer.register(), at, now=1.0, wall_ms=WALL_MS)
        assert to == at
        frame = parse(data)
        assert isinstance(frame, Frame)
        return frame.message

    for n in range(3):
        peer, at = V2Peer.new(f"p{n}"), Endpoint("198.18.0.11", 40000 + n)
        retry = answer(peer, at)
        assert isinstance(retry, Retry)
        peer.cookie = retry.cookie
        expected = Ok() if n < 2 else Err("too many fresh proofs: try again", ErrorCode.TABLE_FULL)
        assert answer(peer, at) == expected
    assert handler.counters["proofs_full"] == 1
