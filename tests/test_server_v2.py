"""The server's handler speaking protocol v2 beside the seed's text: cookies and Retry, keyed ids and proofs,
connect from the registered address only, punches in each peer's version, presence, stats, and the
amplification budget. Pure: real keys (trust.Identity), real frames (the codec), no sockets, time passed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from protocol import (
    MAX_DATAGRAM,
    Candidates,
    Endpoint,
    Err,
    ErrorCode,
    Frame,
    Message,
    Ok,
    PresenceReport,
    Punch,
    Retry,
    StatsReport,
    encode,
    parse,
)
from server.auth import Gate
from server.handler import COUNTERS, Handler
from server.table import PeerTable
from tests.support.v2peer import WALL_MS, V2Peer
from trust import Identity, Registry

ALICE_AT = Endpoint("198.18.0.11", 40000)
BOB_AT = Endpoint("198.18.0.12", 50000)
CAROL_AT = Endpoint("198.18.0.13", 60000)
MALLORY_AT = Endpoint("198.18.0.66", 6666)
RELAY = Endpoint("198.18.0.20", 49160)
TTL = 30.0


@dataclass
class Lab:
    """A handler whose registry holds alice and bob, and their clients."""

    handler: Handler
    alice: V2Peer
    bob: V2Peer

    def send(self, datagram: bytes, source: Endpoint, now: float = 1.0, wall_ms: int = WALL_MS) -> list[Sent]:
        """What the handler sends for ``datagram``, parsed; every datagram within the size limit."""
        replies = self.handler.handle(datagram, source, now, wall_ms)
        for data, _ in replies:
            assert len(data) <= MAX_DATAGRAM
        return [Sent(parse(data), to) for data, to in replies]

    def answer(self, datagram: bytes, source: Endpoint, now: float = 1.0, wall_ms: int = WALL_MS) -> Message:
        """The one reply to ``datagram``, sent back to ``source``: a text message or a frame's message."""
        [sent] = self.send(datagram, source, now, wall_ms)
        assert sent.to == source
        return sent.item.message if isinstance(sent.item, Frame) else sent.item

    def fetch_cookie(self, peer: V2Peer, source: Endpoint, now: float = 1.0) -> None:
        """A request from ``source`` without a cookie gets a Retry: ``peer`` keeps its cookie."""
        retry = self.answer(peer.keepalive(cookie=None), source, now)
        assert isinstance(retry, Retry)
        peer.cookie = retry.cookie

    def admit(self, peer: V2Peer, source: Endpoint, now: float = 1.0, relay: Endpoint | None = None) -> None:
        """Register ``peer`` at ``source`` as a v2 client does: without a cookie, Retry, again with it: Ok."""
        peer.cookie = None
        retry = self.answer(peer.register(relay), source, now)
        assert isinstance(retry, Retry)
        peer.cookie = retry.cookie
        assert self.answer(peer.register(relay), source, now) == Ok()

    def last_seen(self, peer_id: str, now: float) -> float:
        peer = self.handler.table.lookup(peer_id, now)
        assert peer is not None, f"{peer_id} is not registered"
        return peer.last_seen

    def counted(self) -> dict[str, int]:
        return {kind: n for kind, n in self.handler.counters.items() if n}


@dataclass
class Sent:
    item: Message | Frame
    to: Endpoint


def make_lab(require_keys: bool = False, ids_per_ip: int = 16) -> Lab:
    alice, bob = V2Peer.new("alice"), V2Peer.new("bob")
    registry = Registry({"alice": alice.identity.public, "bob": bob.identity.public})
    table = PeerTable(ttl=TTL, max_peers=8, ids_per_ip=ids_per_ip, unkeyed_share=1.0)
    return Lab(Handler(table, gate=Gate(registry, require_keys)), alice, bob)


@pytest.fixture
def lab() -> Lab:
    return make_lab()


@pytest.fixture
def both(lab: Lab) -> Lab:
    """alice and bob registered (v2, with a relay for bob) at t=1."""
    lab.admit(lab.alice, ALICE_AT)
    lab.admit(lab.bob, BOB_AT, relay=RELAY)
    return lab


def is_err(message: Message, code: ErrorCode) -> bool:
    return isinstance(message, Err) and message.code is code


# --- return routability: cookies and Retry ---


def test_a_request_without_a_cookie_gets_a_retry_under_its_txid_and_is_not_processed(lab: Lab) -> None:
    [sent] = lab.send(lab.alice.register(txid=77), ALICE_AT)
    assert isinstance(sent.item, Frame)
    assert (sent.item.txid, type(sent.item.message), sent.to) == (77, Retry, ALICE_AT)
    assert lab.handler.table.lookup("alice", 1) is None
    assert lab.counted() == {"retry": 1}
    assert not lab.handler.budget.is_validated(ALICE_AT)


def test_with_the_cookie_the_request_is_processed_and_the_address_validated(lab: Lab) -> None:
    lab.admit(lab.alice, ALICE_AT)
    peer = lab.handler.table.lookup("alice", 1)
    assert peer is not None
    assert (peer.addr, peer.keys, peer.candidates) == (ALICE_AT, lab.alice.keys, Candidates(None))
    assert lab.handler.budget.is_validated(ALICE_AT)
    assert lab.counted() == {"retry": 1}


@pytest.mark.parametrize("request_kind", ["register", "connect", "presence", "stats", "keepalive"])
def test_every_request_type_needs_the_cookie(both: Lab, request_kind: str) -> None:
    alice = both.alice
    datagram = {
        "register": lambda: alice.register(cookie=None),
        "connect": lambda: alice.connect("bob", cookie=None),
        "presence": lambda: alice.presence("bob", cookie=None),
        "stats": lambda: alice.stats(cookie=None),
        "keepalive": lambda: alice.keepalive(cookie=None),
    }[request_kind]()
    assert isinstance(both.answer(datagram, ALICE_AT), Retry)


def test_a_cookie_is_good_only_for_its_address_and_for_one_to_two_rotations(lab: Lab) -> None:
    lab.admit(lab.alice, ALICE_AT, now=1)
    elsewhere = Endpoint("198.18.0.11", 40001)
    assert isinstance(lab.answer(lab.alice.register(), elsewhere, now=2), Retry), "another port, another cookie"
    assert lab.answer(lab.alice.register(txid=2), ALICE_AT, now=119) == Ok(), "the previous epoch's cookie"
    assert isinstance(lab.answer(lab.alice.register(txid=3), ALICE_AT, now=121), Retry), "two rotations later"


def test_frames_meant_for_clients_are_dropped_silently(both: Lab) -> None:
    for message in (Ok(), Retry(b"c"), Punch("bob", BOB_AT, None)):
        assert both.send(encode(Frame(9, message)), MALLORY_AT) == []
    assert both.handler.counters["not_for_server"] == 3


def test_a_malformed_v2_request_gets_err_400_and_another_version_505(lab: Lab) -> None:
    bad_field = b"\xf5\x02\x01" + bytes(7) + b"\x09" + b"\x01\x00\x03b@d\x04\x00\x00"
    answer = lab.answer(bad_field, MALLORY_AT)
    assert is_err(answer, ErrorCode.BAD_REQUEST)
    [sent] = lab.send(b"\xf5\x03\x01" + bytes(7) + b"\x0a", MALLORY_AT)
    assert sent.item == Frame(10, Err("", ErrorCode.VERSION_NOT_SUPPORTED))


# --- keyed ids: registry, first-come binding, --require-keys, proofs ---


def test_register_needs_keys_and_a_proof(both: Lab) -> None:
    alice = both.alice
    [sent] = both.send(alice.register(keys=None, txid=5), ALICE_AT)
    assert sent.item == Frame(5, Err("register needs keys and a proof", ErrorCode.BAD_PROOF)), "under its txid"
    assert is_err(both.answer(alice.register(proof=False, txid=6), ALICE_AT), ErrorCode.BAD_PROOF)
    assert both.handler.counters["bad_proof"] == 2


def test_a_proof_by_another_key_is_refused(both: Lab) -> None:
    forged = both.alice.register(signer=Identity.generate())
    assert is_err(both.answer(forged, ALICE_AT), ErrorCode.BAD_PROOF)


def test_takeover_of_a_registry_id_by_v2_with_another_key_is_forbidden(both: Lab) -> None:
    mallory = V2Peer.new("alice")
    both.fetch_cookie(mallory, MALLORY_AT)  # mallory's own, for her own address
    answer = both.answer(mallory.register(), MALLORY_AT)
    assert is_err(answer, ErrorCode.FORBIDDEN)
    assert isinstance(answer, Err)
    assert answer.reason == "id is held by another key"
    peer = both.handler.table.lookup("alice", 1)
    assert peer is not None
    assert (peer.addr, peer.keys) == (ALICE_AT, both.alice.keys), "alice keeps her address and key"
    assert both.handler.counters["key_mismatch"] == 1


def test_an_id_outside_the_registry_is_bound_to_the_first_key_while_the_table_holds_it(lab: Lab) -> None:
    carol, mallory = V2Peer.new("carol"), V2Peer.new("carol")
    lab.admit(carol, CAROL_AT, now=1)
    lab.fetch_cookie(mallory, MALLORY_AT, now=2)
    assert is_err(lab.answer(mallory.register(txid=2), MALLORY_AT, now=2), ErrorCode.FORBIDDEN)
    assert lab.handler.counters["key_mismatch"] == 1
    assert lab.answer(carol.register(txid=3), CAROL_AT, now=20) == Ok(), "carol refreshes with her key"
    assert lab.answer(b"register carol", MALLORY_AT, now=21) == Err("id is keyed")
    # once carol has expired (three missed keepalives), the server no longer remembers her key
    lab.fetch_cookie(mallory, MALLORY_AT, now=60)
    assert lab.answer(mallory.register(txid=5), MALLORY_AT, now=60) == Ok()


def test_require_keys_refuses_v2_ids_outside_the_registry() -> None:
    lab = make_lab(require_keys=True)
    carol = V2Peer.new("carol")
    lab.fetch_cookie(carol, CAROL_AT)
    answer = lab.answer(carol.register(), CAROL_AT)
    assert answer == Err("id not in the registry", ErrorCode.FORBIDDEN)
    assert lab.handler.counters["not_in_registry"] == 1
    lab.admit(lab.alice, ALICE_AT)
    assert lab.answer(b"register dave", Endpoint("198.18.0.14", 1)) == Ok(), "text ids no key holds: as ever"


def test_a_replayed_register_is_refused(both: Lab) -> None:
    datagram = both.alice.register(txid=9)
    assert both.answer(datagram, ALICE_AT, now=2) == Ok()
    answer = both.answer(datagram, ALICE_AT, now=3)
    assert answer == Err("replayed proof", ErrorCode.STALE_PROOF)
    assert both.handler.counters["replayed"] == 1


@pytest.mark.parametrize(("offset_ms", "counter"), [(-31_000, "stale"), (31_000, "future")])
def test_a_proof_outside_the_window_is_refused(both: Lab, offset_ms: int, counter: str) -> None:
    datagram = both.alice.register(exact_ms=WALL_MS + offset_ms)
    assert is_err(both.answer(datagram, ALICE_AT, wall_ms=WALL_MS), ErrorCode.STALE_PROOF)
    assert both.handler.counters[counter] == 1
    assert both.answer(both.alice.register(wall_ms=WALL_MS + 29_000), ALICE_AT) == Ok(), "within 30 s"


def test_a_proof_no_later_than_the_keys_last_admitted_one_is_refused(both: Lab) -> None:
    """WireGuard's rule: alice's last admitted proof is her prover's latest (the fixture's register); a new
    proof at that same millisecond, or one made earlier, is refused even with a new nonce and txid."""
    last = both.alice.prover.last_ms
    for txid, exact_ms in ((7, last), (8, last - 1)):
        answer = both.answer(both.alice.register(txid=txid, exact_ms=exact_ms), ALICE_AT)
        assert answer == Err("replayed proof", ErrorCode.STALE_PROOF)
    assert both.handler.counters["replayed"] == 2
    assert both.answer(both.alice.register(txid=9, exact_ms=last + 1), ALICE_AT) == Ok()


def test_requests_from_one_prover_in_one_millisecond_are_all_admitted(both: Lab) -> None:
    """A register, a connect and a presence query sent at once: the prover makes each timestamp greater."""
    alice = both.alice
    assert both.answer(alice.register(txid=20), ALICE_AT) == Ok()
    assert len(both.send(alice.connect("bob", txid=21), ALICE_AT)) == 2
    assert isinstance(both.answer(alice.presence("bob", txid=22), ALICE_AT), PresenceReport)
    assert both.handler.counters["replayed"] == 0


def test_requests_reordered_on_the_way_the_later_proof_first_refuse_the_earlier(both: Lab) -> None:
    """The price of remembering one timestamp per key: of two requests overtaking each other, the one made
    first is refused (409 replayed); the client sends it again with a new proof, as after any loss."""
    made_first, made_second = both.alice.register(txid=30), both.alice.connect("bob", txid=31)
    assert len(both.send(made_second, ALICE_AT)) == 2
    assert both.answer(made_first, ALICE_AT) == Err("replayed proof", ErrorCode.STALE_PROOF)
    assert both.answer(both.alice.register(txid=30), ALICE_AT) == Ok()


def test_a_keyed_peer_that_moved_re_registers_from_its_new_address(both: Lab) -> None:
    """A NAT rebinding: alice's mapping changed. Her old cookie is for the old address: Retry, then Ok."""
    moved = Endpoint("198.18.0.11", 41234)
    assert isinstance(both.answer(both.alice.register(txid=2), moved, now=5), Retry)
    both.admit(both.alice, moved, now=5)
    peer = both.handler.table.lookup("alice", 5)
    assert peer is not None
    assert peer.addr == moved
    punches = both.send(both.alice.connect("bob"), moved, now=6)
    assert [s.to for s in punches] == [moved, BOB_AT]


def test_a_keyed_peers_old_address_can_no_longer_act_for_it(both: Lab) -> None:
    old_cookie = both.alice.cookie
    both.admit(both.alice, Endpoint("198.18.0.11", 41234), now=5)
    answer = both.answer(both.alice.connect("bob", cookie=old_cookie), ALICE_AT, now=6)
    assert answer == Err("not from from_id's address", ErrorCode.FORBIDDEN)


# --- text clients and keyed ids ---


@pytest.mark.parametrize("source", [MALLORY_AT, ALICE_AT], ids=["from-elsewhere", "from-alices-address"])
def test_text_register_of_a_keyed_id_is_refused(both: Lab, source: Endpoint) -> None:
    assert both.answer(b"register alice", source) == Err("id is keyed")
    peer = both.handler.table.lookup("alice", 1)
    assert peer is not None
    assert (peer.addr, peer.keyed) == (ALICE_AT, True)
    assert both.handler.counters["keyed_id"] == 1


def test_text_register_of_a_registry_id_nobody_holds_yet_is_refused(lab: Lab) -> None:
    assert lab.answer(b"register alice", MALLORY_AT) == Err("id is keyed")


def test_text_register_of_an_id_bound_on_first_use_is_refused(lab: Lab) -> None:
    lab.admit(V2Peer.new("carol"), CAROL_AT)
    assert lab.answer(b"register carol relay=-", MALLORY_AT) == Err("id is keyed")


def test_a_text_register_from_a_keyed_peers_address_does_not_replace_it(both: Lab) -> None:
    assert both.answer(b"register mallory", ALICE_AT) == Err("address held by a keyed id")
    assert both.handler.table.lookup("alice", 1) is not None
    assert both.handler.table.lookup("mallory", 1) is None


def test_a_text_id_no_key_holds_works_as_in_the_seed(both: Lab) -> None:
    assert both.answer(b"register carol", CAROL_AT) == Ok()
    assert both.answer(b"register carol", MALLORY_AT) == Ok(), "unkeyed: the seed's rules, moves included"


def test_a_v2_id_takes_an_unkeyed_ids_address_as_the_seed_did(both: Lab) -> None:
    both.answer(b"register carol", CAROL_AT)
    both.admit(V2Peer.new("dave"), CAROL_AT)
    assert both.handler.table.lookup("carol", 1) is None


def test_text_datagrams_do_not_refresh_a_keyed_peers_presence_but_v2_keepalives_do(both: Lab) -> None:
    assert both.send(b"keepalive", ALICE_AT, now=20) == []
    assert both.last_seen("alice", 20) == 1
    assert both.send(both.alice.keepalive(), ALICE_AT, now=25) == []
    assert both.last_seen("alice", 25) == 25
    assert isinstance(both.answer(both.alice.keepalive(cookie=None), ALICE_AT, now=26), Retry)
    assert both.last_seen("alice", 26) == 25, "no cookie: not processed"


# --- connect ---


def test_connect_sends_each_v2_peer_a_punch_frame_with_the_others_keys(both: Lab) -> None:
    to_alice, to_bob = both.send(both.alice.connect("bob", txid=42), ALICE_AT)
    assert (to_alice.to, to_bob.to) == (ALICE_AT, BOB_AT)
    assert to_alice.item == Frame(42, Punch("bob", BOB_AT, Candidates(RELAY)), keys=both.bob.keys)
    assert to_bob.item == Frame(42, Punch("alice", ALICE_AT, Candidates(None)), keys=both.alice.keys)


def test_connect_from_a_wrong_address_is_forbidden(both: Lab) -> None:
    both.fetch_cookie(both.alice, MALLORY_AT)  # the attacker's own cookie, with alice's id (and key, say)
    answer = both.answer(both.alice.connect("bob"), MALLORY_AT)
    assert answer == Err("not from from_id's address", ErrorCode.FORBIDDEN)
    assert both.handler.counters["wrong_address"] == 1


def test_connect_without_a_proof_or_with_anothers_is_refused(both: Lab) -> None:
    assert is_err(both.answer(both.alice.connect("bob", proof=False), ALICE_AT), ErrorCode.BAD_PROOF)
    forged = both.alice.connect("bob", signer=both.bob.identity)
    assert is_err(both.answer(forged, ALICE_AT), ErrorCode.BAD_PROOF)
    assert both.handler.counters["bad_proof"] == 2


def test_a_replayed_connect_is_refused(both: Lab) -> None:
    datagram = both.alice.connect("bob")
    assert len(both.send(datagram, ALICE_AT)) == 2
    assert both.answer(datagram, ALICE_AT) == Err("replayed proof", ErrorCode.STALE_PROOF)


@pytest.mark.parametrize("to_id", ["nobody", "alice"])
def test_connect_to_an_unknown_peer_or_to_itself_is_404(both: Lab, to_id: str) -> None:
    assert both.answer(both.alice.connect(to_id), ALICE_AT) == Err("invalid peers", ErrorCode.INVALID_PEERS)


def test_a_v2_and_a_seed_peer_each_get_the_punch_they_understand(both: Lab) -> None:
    both.answer(b"register carol", CAROL_AT)
    to_alice, to_carol = both.send(both.alice.connect("carol", txid=7), ALICE_AT)
    assert to_alice.item == Frame(7, Punch("carol", CAROL_AT, None)), "no keys, no relay: a seed-era peer"
    assert (to_carol.item, to_carol.to) == (Punch("alice", ALICE_AT, None), CAROL_AT), "the seed's plain punch"


def test_a_natlab_text_peer_gets_the_relay_of_a_v2_peer_and_gives_its_own(both: Lab) -> None:
    both.answer(b"register carol relay=198.18.0.20:49170", CAROL_AT)
    to_bob, to_carol = both.send(both.bob.connect("carol"), BOB_AT)
    assert to_bob.item == Frame(2, Punch("carol", CAROL_AT, Candidates(Endpoint("198.18.0.20", 49170))))
    assert to_carol.item == Punch("bob", BOB_AT, Candidates(RELAY))


def test_a_seed_client_connects_its_own_id_to_a_keyed_peer(both: Lab) -> None:
    assert both.answer(b"register carol", CAROL_AT) == Ok()
    to_carol, to_alice = both.send(b"connect carol alice", CAROL_AT)
    assert to_carol.item == Punch("alice", ALICE_AT, None)
    assert to_alice.item == Frame(0, Punch("carol", CAROL_AT, None)), "txid 0: a text connect has none"


def test_text_connect_never_acts_for_a_keyed_id_and_only_from_from_ids_address(both: Lab) -> None:
    both.answer(b"register carol", CAROL_AT)
    assert both.answer(b"connect alice carol", ALICE_AT) == Err("id is keyed")
    assert both.answer(b"connect carol bob", MALLORY_AT) == Err("not from from_id's address")
    assert both.handler.counters["keyed_id"] == 1
    assert both.handler.counters["wrong_address"] == 1


# --- presence and stats ---


def test_presence_online_recently_expired_and_unknown(both: Lab) -> None:
    assert both.answer(both.alice.presence("bob", txid=11), ALICE_AT, now=3.5) == PresenceReport("bob", True, 2500)
    for now in (15, 30):  # alice keeps alive, bob does not
        both.send(both.alice.keepalive(), ALICE_AT, now=now)
    assert both.answer(both.alice.presence("bob", txid=12), ALICE_AT, now=40) == PresenceReport("bob", False, 39000)
    assert both.answer(both.alice.presence("nobody", txid=13), ALICE_AT, now=40) == PresenceReport("nobody", False)


def test_presence_is_answered_only_to_an_authenticated_peer(both: Lab) -> None:
    both.answer(b"register carol", CAROL_AT)
    carol = V2Peer("carol", Identity.generate())
    both.fetch_cookie(carol, CAROL_AT)
    assert both.answer(carol.presence("bob"), CAROL_AT) == Err(
        "only a registered keyed id may ask", ErrorCode.FORBIDDEN
    ), "carol's id is a text client's"
    both.fetch_cookie(both.alice, MALLORY_AT)
    assert is_err(both.answer(both.alice.presence("bob"), MALLORY_AT), ErrorCode.FORBIDDEN), "not alice's address"
    assert is_err(both.answer(both.bob.presence("alice", proof=False), BOB_AT), ErrorCode.BAD_PROOF)
    assert both.handler.counters["unauthenticated"] == 1
    assert both.handler.counters["wrong_address"] == 1


def test_stats_are_answered_to_a_validated_address_with_every_counter(both: Lab) -> None:
    stranger = V2Peer.new("x")
    both.fetch_cookie(stranger, MALLORY_AT)
    report = both.answer(stranger.stats(), MALLORY_AT)
    assert isinstance(report, StatsReport)
    assert [name for name, _ in report.counters] == list(COUNTERS)
    assert dict(report.counters)["retry"] == 3


# --- the amplification budget: 3x to an address that has not echoed a cookie ---

VICTIM = "198.18.0.77"


def bytes_to(lab: Lab, datagrams: list[bytes], source: Endpoint) -> tuple[int, int]:
    """Send each datagram from ``source`` (forged); bytes received by the server, bytes sent to ``source``."""
    sent_in = sent_out = 0
    for datagram in datagrams:
        sent_in += len(datagram)
        sent_out += sum(len(data) for data, to in lab.handler.handle(datagram, source, 1.0, WALL_MS) if to == source)
    return sent_in, sent_out


def spoofed_requests(lab: Lab) -> dict[str, bytes]:
    """One of every request type and of every refusal, as a spoofing attacker sends them."""
    mallory = V2Peer("alice", Identity.generate(), cookie=bytes(17))
    return {
        "text register": b"register p relay=[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        "text register ok, short": b"register p",
        "text bad id": b"register \x01",
        "text bad register": b"register",
        "text bad connect": b"connect",
        "text invalid peers": b"connect p nobody",
        "text keyed id": b"register alice",
        "text keyed connect": b"connect alice bob",
        "text wrong address": b"connect bob alice",
        "text keepalive": b"keepalive",
        "garbage": b"foo",
        "v2 register, no cookie": mallory.register(cookie=None),
        "v2 register, bad cookie": mallory.register(),
        "v2 connect, bad cookie": mallory.connect("bob"),
        "v2 presence, no cookie": mallory.presence("bob", cookie=None),
        "v2 stats, no cookie": mallory.stats(cookie=None),
        "v2 keepalive, no cookie": mallory.keepalive(cookie=None),
        "v2 bare keepalive": b"\xf5\x02\x03" + bytes(8),
        "v2 bad field": b"\xf5\x02\x01" + bytes(8) + b"\x01\x00\x03b@d\x04\x00\x00",
        "v2 bad version": b"\xf5\x09\x01" + bytes(8),
        "v2 truncated": b"\xf5\x02",
    }


@pytest.mark.parametrize("name", list(spoofed_requests(make_lab())))
def test_a_spoofed_source_gets_at_most_3x_what_it_sent(both: Lab, name: str) -> None:
    both.answer(b"register p", Endpoint(VICTIM, 1))  # p at another of the victim's ports
    datagram = spoofed_requests(both)[name]
    for port in (2, 3):
        received, sent = bytes_to(both, [datagram] * 20, Endpoint(VICTIM, port))
        assert sent <= 3 * received, (name, received, sent)


def test_spoofed_registers_and_connects_reflect_at_most_3x_at_the_victim(both: Lab) -> None:
    """Two ids registered from the victim's ports (forged, with the longest relay), then 50 connects naming
    them, forged from the first: the punches go to the victim's two ports, each held to 3x what came from it
    (before v2, each 11-byte connect sent the victim two punches of up to 90 bytes)."""
    first, second = Endpoint(VICTIM, 40001), Endpoint(VICTIM, 40002)
    relay = b" relay=[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
    forged = [(b"register p" + relay, first), (b"register q" + relay, second)] + [(b"connect p q", first)] * 50
    received = sent = 0
    for datagram, source in forged:
        received += len(datagram)
        sent += sum(len(data) for data, to in both.handler.handle(datagram, source, 1.0, WALL_MS) if to.host == VICTIM)
    assert sent <= 3 * received, (received, sent)
    assert both.handler.counters["amplification"] > 0, "the punches beyond the budget were dropped"


def test_a_seed_client_lives_within_its_budget(lab: Lab) -> None:
    """The seed's exchange: register, connect, punch; keepalives every 10 s bring the credit for more."""
    assert lab.answer(b"register carol", CAROL_AT) == Ok()
    assert lab.answer(b"register dave", Endpoint("198.18.0.14", 1)) == Ok()
    to_carol, to_dave = lab.send(b"connect carol dave", CAROL_AT)
    assert to_carol.item == Punch("dave", Endpoint("198.18.0.14", 1), None)
    assert to_dave.item == Punch("carol", CAROL_AT, None)
    for now in range(2, 20):  # carol connects again and again: dave, who only registered, runs out of credit
        lab.send(b"connect carol dave", CAROL_AT, now=now)
    assert lab.handler.counters["amplification"] > 0
    lab.send(b"keepalive", Endpoint("198.18.0.14", 1), now=20)
    lab.send(b"keepalive", Endpoint("198.18.0.14", 1), now=30)
    assert [s.to for s in lab.send(b"connect carol dave", CAROL_AT, now=31)] == [CAROL_AT, Endpoint("198.18.0.14", 1)]


def test_punches_to_a_keyed_peer_are_not_held_to_the_budget(both: Lab) -> None:
    for txid in range(100, 140):
        assert len(both.send(both.alice.connect("bob", txid=txid), ALICE_AT)) == 2
    assert both.handler.counters["amplification"] == 0


# --- quota, limits ---


def test_registry_ids_are_exempt_from_the_ip_quota() -> None:
    lab = make_lab(ids_per_ip=2)
    for port in (1, 2):
        assert lab.answer(f"register m{port}".encode(), Endpoint("100.64.0.1", port)) == Ok()
    assert lab.answer(b"register m3", Endpoint("100.64.0.1", 3)) == Err("too many ids from this ip")
    lab.admit(lab.alice, Endpoint("100.64.0.1", 4))
    carol = V2Peer.new("carol")
    lab.fetch_cookie(carol, Endpoint("100.64.0.1", 5))
    answer = lab.answer(carol.register(), Endpoint("100.64.0.1", 5))
    assert answer == Err("too many ids from this ip", ErrorCode.RATE_LIMITED), "carol is not in the registry"


def test_the_longest_punches_and_reports_fit_a_datagram() -> None:
    """32-character ids, IPv6 addresses and relays, both keys: every reply within MAX_DATAGRAM."""
    long_a, long_b = "a" * 32, "b" * 32
    six = [Endpoint(f"2001:db8:ffff:ffff:ffff:ffff:ffff:{n}", 65535) for n in range(1, 5)]
    lab = make_lab()
    first, second = V2Peer.new(long_a), V2Peer.new(long_b)
    lab.admit(first, six[0], relay=six[2])
    lab.admit(second, six[1], relay=six[3])
    lab.answer(f"register {'c' * 32} relay={six[2]}".encode(), Endpoint("2001:db8::c", 65535))
    sent = lab.send(first.connect(long_b), six[0]) + lab.send(first.connect("c" * 32), six[0])
    sent += lab.send(first.presence(long_b), six[0]) + lab.send(first.stats(), six[0])
    longest = max(len(encode(s.item)) for s in sent)
    assert len(sent) == 6
    assert longest <= MAX_DATAGRAM, longest


def test_every_counter_of_a_refusal_starts_at_zero() -> None:
    assert set(COUNTERS) >= {
        "retry", "bad_proof", "stale", "future", "replayed", "key_mismatch", "not_in_registry",
        "wrong_address", "keyed_id", "unauthenticated", "amplification",
    }  # fmt: skip
    assert Handler(PeerTable()).counters == dict.fromkeys(COUNTERS, 0)
