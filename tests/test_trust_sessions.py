"""trust.sessions: two peers' sessions in memory, and what an attacker on the path can and cannot do."""

from __future__ import annotations

import pytest

from trust import AUTH_REASONS, WINDOW, AuthError, Identity, PeerSession, ReplayWindow
from trust.sessions import nonce

BOOT = 1_750_000_000_000_000_000  # wall-clock ns, as the agent passes time.time_ns()


def header(sender: str):
    """What the codec's header looks like to the AEAD: the Sealed datagram's bytes before BOX."""
    return lambda boot, counter: (
        b"\xf5\x02\x30" + sender.encode() + boot.to_bytes(8, "big") + counter.to_bytes(8, "big")
    )


@pytest.fixture
def pair() -> tuple[PeerSession, PeerSession]:
    """alice's session with bob and bob's with alice, from each other's public keys."""
    alice, bob = Identity.generate(), Identity.generate()
    return (
        PeerSession(alice, "alice", "bob", bob.public, boot=BOOT),
        PeerSession(bob, "bob", "alice", alice.public, boot=BOOT + 5),
    )


def _send(session: PeerSession, text: bytes):
    sealing = session.seal(text, header(session.own_id))
    return sealing, header(session.own_id)(sealing.boot, sealing.counter)


def test_round_trip_both_ways(pair) -> None:
    alice, bob = pair
    for i in range(3):
        sealing, associated = _send(alice, b"hello bob %d" % i)
        assert (sealing.boot, sealing.counter) == (BOOT, i)
        assert b"hello bob" not in sealing.box  # encrypted
        assert len(sealing.box) == len(b"hello bob 0") + 16
        assert bob.open(sealing.boot, sealing.counter, associated, sealing.box) == b"hello bob %d" % i
    sealing, associated = _send(bob, b"")
    assert alice.open(sealing.boot, sealing.counter, associated, sealing.box) == b""


def test_each_direction_has_its_own_key(pair) -> None:
    """A datagram reflected back to its sender does not open (swapped direction)."""
    alice, _ = pair
    sealing, associated = _send(alice, b"to bob")
    with pytest.raises(AuthError) as caught:
        alice.open(sealing.boot, sealing.counter, associated, sealing.box)
    assert caught.value.reason == "bad_mac"


@pytest.mark.parametrize("where", ["box", "tag", "associated", "boot", "counter"])
def test_tampering_anywhere_is_bad_mac(pair, where: str) -> None:
    alice, bob = pair
    sealing, associated = _send(alice, b"pay bob 10")
    boot, counter, box = sealing
    if where == "box":
        box = bytes([box[0] ^ 1]) + box[1:]
    elif where == "tag":
        box = box[:-1] + bytes([box[-1] ^ 1])
    elif where == "associated":
        associated = associated.replace(b"alice", b"alicf")
    elif where == "boot":
        boot += 1  # a newer boot: not rejected as old, so it reaches the MAC
    else:
        counter += 1
    with pytest.raises(AuthError, match="bad_mac"):
        bob.open(boot, counter, associated, box)
    assert (
        bob.open(sealing.boot, sealing.counter, header("alice")(sealing.boot, sealing.counter), sealing.box)
        == b"pay bob 10"
    )  # window unmoved


def test_short_or_out_of_range_boxes_are_bad_mac(pair) -> None:
    _, bob = pair
    for boot, counter, box in ((BOOT, 0, b"x" * 15), (2**64, 0, b"x" * 32), (BOOT, -1, b"x" * 32)):
        with pytest.raises(AuthError) as caught:
            bob.open(boot, counter, b"", box)
        assert caught.value.reason == "bad_mac"


def test_wrong_peer_cannot_speak_for_alice() -> None:
    """mallory, with a key of her own, seals as 'alice' to bob; bob's session holds alice's real key."""
    alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    bob_with_alice = PeerSession(bob, "bob", "alice", alice.public, boot=BOOT)
    forged = PeerSession(mallory, "alice", "bob", bob.public, boot=BOOT)
    sealing, associated = _send(forged, b"i am alice")
    with pytest.raises(AuthError, match="bad_mac"):
        bob_with_alice.open(sealing.boot, sealing.counter, associated, sealing.box)


def test_keys_are_bound_to_both_ids() -> None:
    """The same key pairs under other ids give other keys: bob cannot pass alice's datagrams off as carol's."""
    alice, bob = Identity.generate(), Identity.generate()
    sender = PeerSession(alice, "alice", "bob", bob.public, boot=BOOT)
    as_carol = PeerSession(bob, "bob", "carol", alice.public, boot=BOOT)
    as_dave = PeerSession(bob, "dave", "alice", alice.public, boot=BOOT)
    sealing, associated = _send(sender, b"hi")
    for receiver in (as_carol, as_dave):
        with pytest.raises(AuthError, match="bad_mac"):
            receiver.open(sealing.boot, sealing.counter, associated, sealing.box)


def test_keys_are_bound_to_the_signing_keys_too() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    other_sign = type(alice.public)(Identity.generate().public.sign, alice.public.box)
    sender = PeerSession(alice, "alice", "bob", bob.public, boot=BOOT)
    receiver = PeerSession(bob, "bob", "alice", other_sign, boot=BOOT)
    sealing, associated = _send(sender, b"hi")
    with pytest.raises(AuthError, match="bad_mac"):
        receiver.open(sealing.boot, sealing.counter, associated, sealing.box)


def test_replays_are_rejected_inside_and_outside_the_window(pair) -> None:
    alice, bob = pair
    sent = [_send(alice, b"m%d" % i) for i in range(WINDOW + 10)]
    first, first_ad = sent[0]
    assert bob.open(first.boot, first.counter, first_ad, first.box) == b"m0"
    with pytest.raises(AuthError, match="replayed: counter 0 seen before"):
        bob.open(first.boot, first.counter, first_ad, first.box)
    last, last_ad = sent[-1]
    assert bob.open(last.boot, last.counter, last_ad, last.box) == b"m%d" % (WINDOW + 9)
    with pytest.raises(AuthError, match="older than the window"):  # counter 9 is 64 behind 73
        bob.open(sent[9][0].boot, sent[9][0].counter, sent[9][1], sent[9][0].box)
    ok, ok_ad = sent[10]  # 63 behind: inside the window, never seen, so reordering within it is fine
    assert bob.open(ok.boot, ok.counter, ok_ad, ok.box) == b"m10"
    with pytest.raises(AuthError) as caught:
        bob.open(ok.boot, ok.counter, ok_ad, ok.box)
    assert caught.value.reason == "replayed"


def test_out_of_order_within_the_window(pair) -> None:
    alice, bob = pair
    sent = [_send(alice, b"m%d" % i) for i in range(5)]
    for i in (4, 0, 2, 1, 3):
        sealing, associated = sent[i]
        assert bob.open(sealing.boot, sealing.counter, associated, sealing.box) == b"m%d" % i
    for sealing, associated in sent:
        with pytest.raises(AuthError, match="replayed"):
            bob.open(sealing.boot, sealing.counter, associated, sealing.box)


def test_a_newer_boot_resets_the_window_and_an_older_one_is_refused() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    receiver = PeerSession(bob, "bob", "alice", alice.public, boot=BOOT)
    before = PeerSession(alice, "alice", "bob", bob.public, boot=BOOT)
    old = [_send(before, b"old %d" % i) for i in range(2)]
    assert receiver.open(old[0][0].boot, old[0][0].counter, old[0][1], old[0][0].box) == b"old 0"
    restarted = PeerSession(alice, "alice", "bob", bob.public, boot=BOOT + 10**9)  # alice restarted 1 s later
    new, new_ad = _send(restarted, b"new 0")
    assert new.counter == 0
    assert receiver.open(new.boot, new.counter, new_ad, new.box) == b"new 0"  # counter 0 again, but a newer boot
    with pytest.raises(AuthError) as caught:
        receiver.open(
            old[1][0].boot, old[1][0].counter, old[1][1], old[1][0].box
        )  # never seen, but from the older boot
    assert caught.value.reason == "old_boot"


def test_a_forged_newer_boot_does_not_reset_the_window(pair) -> None:
    alice, bob = pair
    sealing, associated = _send(alice, b"m0")
    assert bob.open(sealing.boot, sealing.counter, associated, sealing.box) == b"m0"
    with pytest.raises(AuthError, match="bad_mac"):
        bob.open(BOOT + 10**12, 0, associated, sealing.box)
    with pytest.raises(AuthError, match="replayed"):  # still in alice's boot: the forgery moved nothing
        bob.open(sealing.boot, sealing.counter, associated, sealing.box)


def test_no_session_with_a_low_order_key() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    bad = type(bob.public)(bob.public.sign, bytes(32))
    with pytest.raises(AuthError) as caught:
        PeerSession(alice, "alice", "bob", bad, boot=BOOT)
    assert caught.value.reason == "no_key"


def test_session_arguments_are_checked() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    with pytest.raises(ValueError, match="invalid id"):
        PeerSession(alice, "alice", "b b", bob.public, boot=BOOT)
    with pytest.raises(ValueError, match="not a u64"):
        PeerSession(alice, "alice", "bob", bob.public, boot=2**64)


def test_auth_error_reasons_are_the_counted_ones() -> None:
    assert AUTH_REASONS == ("bad_mac", "replayed", "old_boot", "unknown_peer", "no_key", "wrong_id")
    assert str(AuthError("wrong_id", "inner id carol")) == "wrong_id: inner id carol"
    with pytest.raises(ValueError, match="unknown reason"):
        AuthError("oops")


def test_nonce_layout() -> None:
    assert nonce(1, 2) == bytes(7) + b"\x01" + bytes(7) + b"\x02" + bytes(8)


def test_replay_window_alone() -> None:
    window = ReplayWindow()
    window.check(BOOT, 100)
    window.accept(BOOT, 100)
    window.accept(BOOT, 300)  # a jump of more than the window forgets everything before it
    assert window.top == 300
    assert window.seen == 1
    with pytest.raises(AuthError, match="older than the window"):
        window.check(BOOT, 236)
    window.check(BOOT, 237)
