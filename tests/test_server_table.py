"""The peer table as a pure state machine: time is passed in, nothing sleeps."""

import pytest

from protocol import Candidates, Endpoint, Keys
from server.table import Outcome, Peer, PeerTable

A1 = Endpoint("198.18.0.11", 40000)
A2 = Endpoint("198.18.0.11", 40001)
B1 = Endpoint("198.18.0.12", 50000)
RELAY1 = Endpoint("198.18.0.20", 49160)
RELAY2 = Endpoint("198.18.0.20", 49162)
KEYS = Keys(b"s" * 32, b"b" * 32)


@pytest.fixture
def table():
    """A table with a 10 s ttl and room for 3 peers, all of which may be unkeyed."""
    return PeerTable(ttl=10, max_peers=3, unkeyed_share=1)


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


@pytest.mark.parametrize(
    "limits",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"max_peers": 0},
        {"ids_per_ip": 0},
        {"unkeyed_share": 0},
        {"unkeyed_share": 1.5},
    ],
)
def test_bad_limits_rejected(limits):
    with pytest.raises(ValueError, match="ttl must be"):
        PeerTable(**limits)


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
    table = PeerTable(ttl=120, max_peers=1024, ids_per_ip=1024, unkeyed_share=1)
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


# --- limits: ids per source ip, the unkeyed share of the table ---


def at(ip, port):
    return Endpoint(ip, port)


def test_ids_per_ip_quota_refuses_one_more_id_from_that_ip_only():
    table = PeerTable(ids_per_ip=2)
    assert table.register("a", at("198.18.0.11", 1), now=0).outcome is Outcome.NEW
    assert table.register("b", at("198.18.0.11", 2), now=0).outcome is Outcome.NEW
    refused = table.register("c", at("198.18.0.11", 3), now=0)
    assert (refused.outcome, refused.peer) == (Outcome.QUOTA, None)
    assert refused.outcome.refused
    assert table.lookup("c", now=0) is None
    assert table.register("c", at("198.18.0.12", 3), now=0).outcome is Outcome.NEW, "another ip has room"
    assert table.register("c", at("198.18.0.11", 3), now=0).outcome is Outcome.QUOTA, "nor may c move in"


def test_quota_never_refuses_what_does_not_add_an_id_to_the_ip():
    table = PeerTable(ids_per_ip=2)
    table.register("a", at("198.18.0.11", 1), now=0)
    table.register("b", at("198.18.0.11", 2), now=0)
    assert table.register("a", at("198.18.0.11", 1), now=1).outcome is Outcome.REFRESHED
    assert table.register("a", at("198.18.0.11", 9), now=2).outcome is Outcome.MOVED, "a new port, same ip"
    replaced = table.register("c", at("198.18.0.11", 2), now=3)
    assert (replaced.outcome, replaced.replaced) == (Outcome.NEW, "b"), "c takes b's address, and its slot"


def test_quota_frees_up_when_ids_leave_the_ip():
    table = PeerTable(ttl=10, ids_per_ip=1)
    table.register("a", at("198.18.0.11", 1), now=0)
    assert table.register("b", at("198.18.0.11", 2), now=1).outcome is Outcome.QUOTA
    table.register("a", at("198.18.0.12", 1), now=2)  # a moved away
    assert table.register("b", at("198.18.0.11", 2), now=3).outcome is Outcome.NEW
    table.expire(now=13)  # b expired
    assert table.register("c", at("198.18.0.11", 3), now=13).outcome is Outcome.NEW


def test_an_ipv6_64_is_one_source():
    table = PeerTable(ids_per_ip=1)
    table.register("a", at("2001:db8:1:2::1", 1), now=0)
    assert table.register("b", at("2001:db8:1:2::ffff", 1), now=0).outcome is Outcome.QUOTA
    assert table.register("b", at("2001:db8:1:3::1", 1), now=0).outcome is Outcome.NEW


def test_unkeyed_ids_fill_only_their_share_and_keyed_ones_find_room():
    table = PeerTable(max_peers=4, ids_per_ip=100, unkeyed_share=0.5)
    assert table.max_unkeyed == 2
    assert table.register("a", at("198.18.0.11", 1), now=0).outcome is Outcome.NEW
    assert table.register("b", at("198.18.0.11", 2), now=0).outcome is Outcome.NEW
    assert table.register("c", at("198.18.0.11", 3), now=0).outcome is Outcome.UNKEYED_FULL
    assert table.register("k1", at("198.18.0.11", 4), now=0, keys=KEYS).outcome is Outcome.NEW
    keyed = table.register("k2", at("198.18.0.11", 5), now=0, keys=KEYS).peer
    assert keyed is not None
    assert keyed.keyed
    assert table.register("k3", at("198.18.0.11", 6), now=0, keys=KEYS).outcome is Outcome.FULL


def test_a_keyed_peer_that_re_registers_unkeyed_needs_an_unkeyed_slot():
    table = PeerTable(max_peers=2, ids_per_ip=100, unkeyed_share=0.5)
    table.register("a", at("198.18.0.11", 1), now=0)
    table.register("k", at("198.18.0.11", 2), now=0, keys=KEYS)
    assert table.register("k", at("198.18.0.11", 2), now=1).outcome is Outcome.UNKEYED_FULL
    kept = table.lookup("k", now=1)
    assert kept is not None
    assert kept.keyed, "a refused register changes nothing"
    assert table.register("a", at("198.18.0.11", 1), now=1, keys=KEYS).outcome is Outcome.REFRESHED
    assert table.register("k", at("198.18.0.11", 2), now=2).outcome is Outcome.REFRESHED, "a's slot is free"


def test_quota_is_checked_before_room():
    table = PeerTable(max_peers=1, ids_per_ip=1)
    table.register("a", at("198.18.0.11", 1), now=0)
    assert table.register("b", at("198.18.0.11", 2), now=0).outcome is Outcome.QUOTA
    assert table.register("b", at("198.18.0.12", 2), now=0).outcome is Outcome.FULL


def test_counts_stay_right_through_moves_replacements_and_expiry():
    """Whatever happened, a full cycle of expiry leaves every limit with all its room."""
    table = PeerTable(ttl=10, max_peers=8, ids_per_ip=2, unkeyed_share=0.5)
    steps = [("a", "198.18.0.11", 1, False), ("b", "198.18.0.11", 2, True), ("a", "198.18.0.12", 1, False),
             ("c", "198.18.0.12", 1, False), ("b", "198.18.0.13", 5, False), ("d", "198.18.0.13", 5, True),
             ("c", "198.18.0.11", 7, True)]  # fmt: skip
    for now, (peer_id, ip, port, keyed) in enumerate(steps):
        assert not table.register(peer_id, at(ip, port), now=now, keys=KEYS if keyed else None).outcome.refused, peer_id
    table.expire(now=100)
    assert len(table) == 0
    for i in range(4):
        assert table.register(f"u{i}", at(f"198.18.0.{20 + i}", 1), now=100).outcome is Outcome.NEW
    assert table.register("u4", at("198.18.0.24", 1), now=100).outcome is Outcome.UNKEYED_FULL
    assert table.register("k0", at("198.18.0.11", 1), now=100, keys=KEYS).outcome is Outcome.NEW
    assert table.register("k1", at("198.18.0.11", 2), now=100, keys=KEYS).outcome is Outcome.NEW
    assert table.register("k2", at("198.18.0.11", 3), now=100, keys=KEYS).outcome is Outcome.QUOTA


def test_registry_ids_are_exempt_from_the_ip_quota_and_leave_it_for_others():
    table = PeerTable(ids_per_ip=2, unkeyed_share=1)
    table.register("a", at("100.64.0.1", 1), now=0)
    table.register("b", at("100.64.0.1", 2), now=0)
    alice = table.register("alice", at("100.64.0.1", 3), now=0, keys=KEYS, in_registry=True)
    assert alice.outcome is Outcome.NEW, "an attacker behind the same address does not shut a registry id out"
    assert table.register("alice", at("100.64.0.1", 4), now=1, keys=KEYS, in_registry=True).outcome is Outcome.MOVED
    assert table.register("c", at("100.64.0.1", 5), now=1).outcome is Outcome.QUOTA, "alice took no slot"
    table.register("b", at("198.18.0.12", 2), now=2)  # b moved away: one slot is free again
    assert table.register("c", at("100.64.0.1", 5), now=2).outcome is Outcome.NEW
    table.expire(now=1000)
    assert table.register("x", at("100.64.0.1", 6), now=1000).outcome is Outcome.NEW
    assert table.register("y", at("100.64.0.1", 7), now=1000).outcome is Outcome.NEW, "every count back to zero"


def test_at_and_touch_can_leave_keyed_peers_alone(table):
    table.register("alice", A1, now=0, keys=KEYS)
    assert table.at(A1, now=1).id == "alice"
    assert table.at(A2, now=1) is None
    assert table.touch(A1, now=5, keyed_too=False) is None, "a text datagram does not vouch for a keyed peer"
    assert table.lookup("alice", now=5).last_seen == 0
    assert table.touch(A1, now=6).last_seen == 6


@pytest.mark.parametrize("candidates", [None, Candidates(RELAY1)], ids=["seed", "extended"])
def test_plain_refresh_is_a_full_register(table, candidates):
    """A register that changes nothing but last_seen takes a shortcut (most registers are these); it must
    leave the table as the full path does: peer updated, in last_seen order, counted as a change."""
    table.register("alice", A1, now=0, candidates=candidates)
    table.register("bob", B1, now=2)
    version = table.version
    result = table.register("alice", A1, now=5, candidates=candidates)
    assert (result.outcome, result.previous, result.replaced, result.relay_changed) == (
        Outcome.REFRESHED,
        None,
        None,
        False,
    )
    assert result.peer == Peer("alice", A1, registered_at=0, last_seen=5, candidates=candidates)
    assert table.version > version
    assert [p.id for p in table.expire(now=12.5)] == ["bob"]  # alice, registered first, is now behind bob
    assert [p.id for p in table.expire(now=15.5)] == ["alice"]


def test_a_refresh_that_changes_keys_or_standing_stores_them(table):
    table.register("alice", A1, now=0)
    assert table.register("alice", A1, now=1, keys=KEYS).peer == Peer("alice", A1, 0, 1, keys=KEYS)
    stored = table.register("alice", A1, now=2, keys=KEYS, in_registry=True).peer
    assert stored == Peer("alice", A1, 0, 2, keys=KEYS, in_registry=True)
