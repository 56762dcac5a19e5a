"""The state file's content, rendered from a peer list: pure, times passed in."""

from protocol import Candidates, Endpoint
from server.state import render_state
from server.table import Peer

LISTEN = Endpoint("0.0.0.0", 9000)
WALL_EPOCH = 1_735_732_800.0  # 2025-01-01T12:00:00Z


def render(peers):
    return render_state(LISTEN, started=WALL_EPOCH, peers=peers, counters={"empty": 1}, now=100.0, wall_now=WALL_EPOCH)


def test_state_lists_peers_with_relay_and_extended():
    peers = [
        Peer("alice", Endpoint("198.18.0.11", 40000), 90.0, 100.0),
        Peer("bob", Endpoint("198.18.0.12", 50000), 40.0, 95.0, Candidates(Endpoint("198.18.0.20", 49161))),
        Peer("carol", Endpoint("2001:db8::7", 4000), 100.0, 100.0, Candidates(None)),
    ]
    assert render(peers) == {
        "listen": "0.0.0.0:9000",
        "started": "2025-01-01T12:00:00+00:00",
        "peers": [
            {
                "id": "alice",
                "addr": "198.18.0.11:40000",
                "registered_at": "2025-01-01T11:59:50+00:00",
                "last_seen": "2025-01-01T12:00:00+00:00",
                "relay": None,
                "extended": False,
                "keyed": False,
            },
            {
                "id": "bob",
                "addr": "198.18.0.12:50000",
                "registered_at": "2025-01-01T11:59:00+00:00",
                "last_seen": "2025-01-01T11:59:55+00:00",
                "relay": "198.18.0.20:49161",
                "extended": True,
                "keyed": False,
            },
            {
                "id": "carol",
                "addr": "[2001:db8::7]:4000",
                "registered_at": "2025-01-01T12:00:00+00:00",
                "last_seen": "2025-01-01T12:00:00+00:00",
                "relay": None,
                "extended": True,
                "keyed": False,
            },
        ],
        "gone": [],
        "counters": {"empty": 1},
    }


def test_state_lists_recently_expired_peers_with_their_last_seen():
    state = render_state(
        LISTEN, started=WALL_EPOCH, peers=[], gone=[("carol", 40.0)], counters={}, now=100.0, wall_now=WALL_EPOCH
    )
    assert state["gone"] == [{"id": "carol", "last_seen": "2025-01-01T11:59:00+00:00"}]
