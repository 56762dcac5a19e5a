"""The peer table as a pure state machine: time is passed in, nothing sleeps."""

import pytest

from protocol import Candidates, Endpoint
from server.table import Outcome, Peer, PeerTable

A1 = Endpoint("198.18.0.11", 40000)
A2 = Endpoint("198.18.0.11", 40001)
B1 = Endpoint("198.18.0.12", 50000)
RELAY1 = Endpoint("198.18.0.20", 49160)
RELAY2 = Endpoint("198.18.0.20", 49162)


@pytest.fixture
def table():
    """A table with a 10 s ttl and room for 3 peers."""
    return PeerTable(ttl=10, max_peers=3)


def test_register_new_peer(table):
    result = table.register("alice", A1, now=100)
    assert result.outcome is Outcome.NEW
    assert result.peer == Peer("alice", A1, registered_at=100, last_seen=100)
    assert (result.previous, result.replaced) == (None, None)
    assert table.lookup("alice", now=101) == result.peer
    assert len(table) == 1


def test_register_again_from_same_address_refreshes(table):
    table.register("alice", A1, now=100)
    result = table.register("alice", A1, now=105)
    assert result.outcome is Outcome.REFRESHED
    assert result.peer == Peer("alice", A1, registered_at=100, last_seen=105)


def test_register_from_new_address_moves(table):
    table.register("alice", A1, now=100)
    result = table.register("alice", A2, now=105)
    assert result.outcome is Outcome.MOVED
    assert result.previous == A1
    assert table.lookup("alice", now=105) == Peer("alice", A2, registered_at=105, last_seen=105)
    assert table.touch(A1, now=106) is None, "the old address no longer belongs to alice"
    assert table.touch(A2, now=106) is not None


def test_new_id_at_anothers_address_replaces_it(table):
    table.register("alice", A1, now=100)
    result = table.register("bob", A1, now=101)
    assert (result.outcome, result.replaced) == (Outcome.NEW, "alice")
    assert table.lookup("alice", now=101) is None
    assert [p.id for p in table.snapshot(now=101)] == ["bob"]


def test_lookup_unknown_peer(table):
    assert table.lookup("nobody", now=0) is None


def test_touch_refreshes_peer_at_address(table):
    table.register("alice", A1, now=100)
    assert table.touch(A1, now=108) == Peer("alice", A1, registered_at=100, last_seen=108)
    assert table.lookup("alice", now=117) is not None, "expiry counts from the touch"
    assert table.touch(B1, now=108) is None


def test_peer_expires_after_ttl(table):
    table.register("alice", A1, now=100)
    table.register("bob", B1, now=105)
    assert table.lookup("alice", now=109.9) is not None
    assert table.lookup("alice", now=110) is None, "expired peers are invisible before expire() runs"
    assert table.touch(A1, now=110) is None, "and a keepalive does not revive them"
    assert [p.id for p in table.snapshot(now=110)] == ["bob"]
    assert len(table) == 2
    gone = table.expire(now=110)
    assert [p.id for p in gone] == ["alice"]
    assert len(table) == 1
    assert table.expire(now=110) == [], "each expiry is reported once"


def test_expired_peer_registers_as_new(table):
    table.register("alice", A1, now=100)
    result = table.register("alice", A2, now=200)
    assert result.outcome is Outcome.NEW
    assert result.previous is None


def test_table_full_refuses_new_ids_only(table):
    for n, peer_id in enumerate(["a", "b", "c"]):
        table.register(peer_id, Endpoint("10.0.0.1", 1000 + n), now=100)
    result = table.register("d", Endpoint("10.0.0.1", 2000), now=100)
    assert result.outcome is Outcome.FULL
    assert result.peer is None
    assert table.lookup("d", now=100) is None
    assert table.register("a", Endpoint("10.0.0.1", 3000), now=101).outcome is Outcome.MOVED
    assert table.register("d", Endpoint("10.0.0.1", 1001), now=101).replaced == "b", "taking b's address"


def test_full_table_makes_room_after_expire(table):
    for n, peer_id in enumerate(["a", "b", "c"]):
        table.register(peer_id, Endpoint("10.0.0.1", 1000 + n), now=100 + n)
    assert table.register("d", B1, now=110.5).outcome is Outcome.FULL, "expired 'a' still holds a slot"
    assert [p.id for p in table.expire(now=110.5)] == ["a"]
    assert table.register("d", B1, now=110.5).outcome is Outcome.NEW


def test_snapshot_is_sorted_by_id(table):
    table.register("carol", A2, now=0)
    table.register("alice", A1, now=0)
    table.register("bob", B1, now=0)
    assert [p.id for p in table.snapshot(now=1)] == ["alice", "bob", "carol"]


def test_version_counts_changes(table):
    versions = [table.version]
    table.register("alice", A1, now=0)
    versions.append(table.version)
    table.touch(A1, now=1)
    versions.append(table.version)
    table.lookup("alice", now=2)
    table.snapshot(now=2)
    table.touch(B1, now=2)
    versions.append(table.version)
    table.expire(now=100)
    versions.append(table.version)
    assert versions == [0, 1, 2, 2, 3]


@pytest.mark.parametrize(("ttl", "max_peers"), [(0, 10), (-1, 10), (10, 0)])
def test_bad_limits_rejected(ttl, max_peers):
    with pytest.raises(ValueError, match="ttl must be"):
        PeerTable(ttl=ttl, max_peers=max_peers)


def test_seed_peer_has_no_candidates(table):
    peer = table.register("alice", A1, now=100).peer
    assert (peer.candidates, peer.extended, peer.relay) == (None, False, None)


@pytest.mark.parametrize(
    ("candidates", "relay", "relay_changed"),
    [
        (Candidates(RELAY1), RELAY1, True),
        (Candidates(None), None, False),
        (None, None, False),
    ],
    ids=["relay", "relay=-", "seed"],
)
def test_new_peer_stores_candidates(table, candidates, relay, relay_changed):
    result = table.register("alice", A1, now=100, candidates=candidates)
    assert result.peer == Peer("alice", A1, registered_at=100, last_seen=100, candidates=candidates)
    assert (result.peer.extended, result.peer.relay) == (candidates is not None, relay)
    assert result.relay_changed is relay_changed
    assert table.lookup("alice", now=100) == result.peer


@pytest.mark.parametrize(
    ("before", "after", "relay_changed"),
    [
        (Candidates(None), Candidates(RELAY1), True),
        (Candidates(RELAY1), Candidates(RELAY2), True),
        (Candidates(RELAY1), Candidates(None), True),
        (Candidates(RELAY1), Candidates(RELAY1), False),
        (Candidates(None), Candidates(None), False),
        (None, Candidates(RELAY1), True),
        (Candidates(RELAY1), None, True),
        (None, Candidates(None), False),
    ],
    ids=["gained", "changed", "lost", "same", "still-none", "seed-upgraded", "seed-again", "seed-to-extended"],
)
def test_refresh_from_same_address_updates_candidates(table, before, after, relay_changed):
    table.register("alice", A1, now=100, candidates=before)
    result = table.register("alice", A1, now=105, candidates=after)
    assert result.outcome is Outcome.REFRESHED
    assert result.relay_changed is relay_changed
    assert result.peer == Peer("alice", A1, registered_at=100, last_seen=105, candidates=after)
    assert table.lookup("alice", now=105) == result.peer


def test_move_keeps_the_relay_it_is_sent(table):
    table.register("alice", A1, now=100, candidates=Candidates(RELAY1))
    same = table.register("alice", A2, now=105, candidates=Candidates(RELAY1))
    assert (same.outcome, same.relay_changed, same.peer.relay) == (Outcome.MOVED, False, RELAY1)
    other = table.register("alice", A1, now=106, candidates=Candidates(RELAY2))
    assert (other.outcome, other.relay_changed, other.peer.relay) == (Outcome.MOVED, True, RELAY2)


def test_candidate_update_counts_as_a_change(table):
    table.register("alice", A1, now=100, candidates=Candidates(None))
    version = table.version
    table.register("alice", A1, now=100, candidates=Candidates(RELAY1))
    assert table.version == version + 1


def test_touch_keeps_candidates(table):
    table.register("alice", A1, now=100, candidates=Candidates(RELAY1))
    assert table.touch(A1, now=101).candidates == Candidates(RELAY1)


def test_expire_finds_a_peer_kept_alive_out_of_registration_order():
    """The table stays in last_seen order: a touch moves its peer behind the others."""
    table = PeerTable(ttl=120)
    table.register("alice", Endpoint("198.18.0.11", 40000), now=0)
    table.register("bob", Endpoint("198.18.0.12", 40000), now=10)
    table.touch(Endpoint("198.18.0.11", 40000), now=20)
    assert [p.id for p in table.expire(now=135)] == ["bob"]
    assert [p.id for p in table.expire(now=145)] == ["alice"]


def test_expire_looks_at_one_live_peer_however_many_there_are(monkeypatch):
    """What a register costs the server must not grow with the table (a flood of sources, issue 10)."""
    table = PeerTable(ttl=120, max_peers=1024)
    for i in range(1024):
        table.register(f"p{i}", Endpoint("198.18.0.11", 1000 + i), now=i / 100)
    looked_at: list[str] = []
    real_live = table._live

    def counted_live(peer: Peer, now: float) -> bool:
        looked_at.append(peer.id)
        return real_live(peer, now)

    monkeypatch.setattr(table, "_live", counted_live)
    assert table.expire(now=20) == []
    assert looked_at == ["p0"]
    looked_at.clear()
    gone = table.expire(now=120 + 0.995)  # p0..p99 were last seen before 1.0 s
    assert [p.id for p in gone] == [f"p{i}" for i in range(100)]
    assert len(looked_at) == 101  # the expired ones and the first live one
