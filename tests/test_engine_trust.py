"""Authenticated peers (README, "Authenticated peers"): a punch carrying the peer's keys makes a session, and
from then on every datagram between the two agents is sealed; whatever does not open under the sender's key,
opens twice, comes from an older boot or names another id inside is dropped and counted by reason, and never
shown, acknowledged, or allowed to move a path. Two cores and the in-memory lab's signal server; the
attacker is a test sending datagrams of its choosing from addresses of its choosing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from client.engine.bounds import Bounds
from client.engine.core import CoreConfig, Output
from client.engine.path import PathState
from protocol import (
    Ack,
    Data,
    Endpoint,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Message,
    Sealed,
    box_associated_data,
    encode,
    parse,
)
from tests.support.engine_outputs import events, field
from tests.test_client_core import CONE, SERVER, TIMING, Lab, Nat, connect, two_hosts
from trust import Identity, PeerSession

STRANGER = Endpoint("198.18.0.66", 40000)
BOB_AT = Endpoint("198.18.0.12", 50001)  # bob's address as alice's path has it (his NAT's mapping)


def pair() -> Lab:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    assert lab.cores["alice"].peers["bob"].path.addr == BOB_AT
    return lab


def inject(lab: Lab, data: bytes, source: Endpoint = STRANGER) -> list[Output]:
    """``data`` arrives at alice from ``source`` (past her NAT: an attacker on the path, or a spoofer)."""
    out = lab.cores["alice"].receive(data, source, lab.now)
    lab.perform("alice", out)
    lab.deliver()
    return out


def sealed_by_bob(lab: Lab, message: Message) -> bytes:
    """A fresh datagram bob's agent seals for alice (as his core would send it)."""
    bob = lab.cores["bob"]
    return encode(bob.sealer.seal(bob.peers["alice"], message))


def sent_by(lab: Lab, source: Endpoint, want: Callable[[Message | Frame | bytes], bool]) -> list[bytes]:
    """The datagrams from ``source`` on the wire whose content (opened by the wiretap) ``want`` accepts."""
    return [data for s, _, data in lab.wire if s == source and want(lab.tap.plain(data))]


def shown(lab: Lab, host: str = "alice") -> list[str]:
    return [e["text"] for e in lab.named(host, "message_received")]


def drops(lab: Lab) -> dict[str, int]:
    return {reason: n for reason, n in lab.cores["alice"].dropped().items() if n}


# -- sealed, all of it ------------------------------------------------------------------------------


def test_a_punch_with_keys_makes_every_peer_datagram_sealed_and_the_texts_unreadable() -> None:
    lab = pair()
    lab.request("alice", lambda core: core.send("bob", "meet at the usual place", lab.now).outputs)
    lab.request("bob", lambda core: core.send("alice", "on my way", lab.now).outputs)
    lab.run_for(12.0)  # a keepalive period
    assert (shown(lab, "bob"), shown(lab)) == (["meet at the usual place"], ["on my way"])
    between = [data for s, d, data in lab.wire if SERVER not in (s, d)]
    assert all(isinstance(f := parse(d), Frame) and isinstance(f.message, Sealed) for d in between)
    assert not any(b"usual place" in d or b"on my way" in d for d in between)
    inside = {type(lab.tap.plain(d)) for d in between}
    assert inside == {Hello, HelloAck, Data, Ack, Keepalive}
    status = lab.cores["alice"].peer_status("bob")
    assert status is not None
    assert (status["seed"], status["path"], status["delivered"]) == (False, "direct", 1)
    assert drops(lab) == {}


# -- strangers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"hello bob", b"hello-ack bob", b"msg bob forged", b"data bob 777 0 0 forged", b"ack bob 1 1", b"keepalive"],
)
@pytest.mark.parametrize("source", [STRANGER, BOB_AT], ids=["stranger", "spoofing-bobs-address"])
def test_text_naming_a_keyed_peer_is_dropped_whoever_sends_it(data: bytes, source: Endpoint) -> None:
    lab = pair()
    assert [type(o).__name__ for o in inject(lab, data, source)] == ["Log"]
    # A text keepalive names no one: from an address no path uses it is a stranger's, from bob's it is unsealed.
    unsealed = data != b"keepalive" or source == BOB_AT
    assert drops(lab) == {"unsealed" if unsealed else "unknown_source": 1}
    assert shown(lab) == []
    assert lab.cores["alice"].peers["bob"].path.addr == BOB_AT
    lab.request("bob", lambda core: core.send("alice", "the real one", lab.now).outputs)
    assert shown(lab) == ["the real one"]  # the forged data's epoch changed nothing


def test_sealed_with_the_wrong_key_or_altered_does_not_open() -> None:
    lab = pair()
    mallory = Identity.generate()
    alice_public = lab.tap.identities["alice"].public
    # mallory seals "as bob" with her own key: alice opens bob's datagrams with bob's key only.
    forger = PeerSession(mallory, "bob", "alice", alice_public, boot=2**62)
    inner = encode(Frame(0, Data("bob", 9, 0, 0, "forged")))
    forged = forger.seal(inner, lambda boot, counter: _header("bob", boot, counter))
    inject(lab, encode(Frame(0, Sealed("bob", *forged))))
    # bob's own datagram with one byte of its box changed.
    real = bytearray(sealed_by_bob(lab, Data("bob", 9, 0, 0, "altered")))
    real[-1] ^= 1
    inject(lab, bytes(real), BOB_AT)
    assert drops(lab) == {"bad_mac": 2}
    assert shown(lab) == []


def test_a_sealed_frame_naming_another_id_inside_is_dropped() -> None:
    lab = pair()
    inject(lab, sealed_by_bob(lab, Hello("carol")), STRANGER)
    inject(lab, sealed_by_bob(lab, Data("carol", 1, 0, 0, "as carol")), BOB_AT)
    assert drops(lab) == {"wrong_id": 2}
    assert shown(lab) == []
    assert lab.cores["alice"].peers["bob"].path.addr == BOB_AT
    assert "carol" not in lab.cores["alice"].peers


def test_sealed_datagrams_from_ids_we_do_not_know_or_that_have_no_keys_are_dropped() -> None:
    lab = pair()
    mallory = Identity.generate()
    alice_public = lab.tap.identities["alice"].public
    session = PeerSession(mallory, "mallory", "alice", alice_public, boot=1)
    box = session.seal(encode(Frame(0, Hello("mallory"))), lambda boot, counter: _header("mallory", boot, counter))
    inject(lab, encode(Frame(0, Sealed("mallory", *box))))
    assert drops(lab) == {"unknown_peer": 1}
    assert "mallory" not in lab.cores["alice"].peers


# -- replays ----------------------------------------------------------------------------------------


def test_a_replayed_sealed_datagram_is_dropped_and_shown_once() -> None:
    lab = pair()
    lab.request("bob", lambda core: core.send("alice", "pay mallory 10", lab.now).outputs)
    [recorded] = sent_by(lab, BOB_AT, lambda said: isinstance(said, Data))
    for source in (BOB_AT, STRANGER):
        inject(lab, recorded, source)
    assert shown(lab) == ["pay mallory 10"]
    assert drops(lab) == {"replayed": 2}


def test_an_older_boot_is_dropped() -> None:
    lab = pair()
    bob = lab.tap.identities["bob"]
    # bob's key, but a boot before the one alice has seen from him (a datagram of an earlier run, replayed).
    old = PeerSession(bob, "bob", "alice", lab.tap.identities["alice"].public, boot=1)
    box = old.seal(encode(Frame(0, Data("bob", 5, 0, 0, "from the past"))), lambda b, c: _header("bob", b, c))
    inject(lab, encode(Frame(0, Sealed("bob", *box))), BOB_AT)
    assert drops(lab) == {"old_boot": 1}
    assert shown(lab) == []


# -- paths move only on authenticated probes ---------------------------------------------------------


def test_a_path_is_not_moved_by_an_unauthenticated_or_replayed_probe_from_another_address() -> None:
    lab = pair()
    [probe] = sent_by(lab, BOB_AT, lambda said: isinstance(said, Hello))[:1]  # bob's probe, recorded
    inject(lab, b"hello bob", STRANGER)
    inject(lab, probe, STRANGER)
    inject(lab, sealed_by_bob(lab, Hello("carol")), STRANGER)  # bob's key, another id inside
    path = lab.cores["alice"].peers["bob"].path
    assert (path.state, path.addr) == (PathState.DIRECT, BOB_AT)
    assert drops(lab) == {"unsealed": 1, "replayed": 1, "wrong_id": 1}
    lab.request("alice", lambda core: core.send("bob", "still to bob", lab.now).outputs)
    assert shown(lab, "bob") == ["still to bob"]


def test_a_fresh_authenticated_probe_from_a_new_address_moves_the_path() -> None:
    # The positive control: a NAT rebinding on bob's side looks like this, and must keep working.
    lab = pair()
    moved = Endpoint("198.18.0.12", 50999)
    out = inject(lab, sealed_by_bob(lab, Hello("bob")), moved)
    assert lab.cores["alice"].peers["bob"].path.addr == moved
    assert any("moved from 198.18.0.12:50001 to 198.18.0.12:50999" in getattr(o, "text", "") for o in out)
    assert drops(lab) == {}


# -- a forgotten peer ---------------------------------------------------------------------------------


class IdleLab(Lab):
    def config(self, name: str) -> CoreConfig:
        return CoreConfig(name, SERVER, TIMING, keepalive=self.keepalive, bounds=Bounds(peer_idle=20.0))


def test_a_forgotten_peer_comes_back_only_by_a_fresh_authenticated_probe() -> None:
    lab = IdleLab()
    lab.add("alice", Nat("198.18.0.11", **CONE))  # type: ignore[arg-type]
    lab.add("bob", Nat("198.18.0.12", **CONE))  # type: ignore[arg-type]
    connect(lab)
    bob = lab.cores.pop("bob")  # bob's agent goes quiet: alice loses the path, then forgets him
    [recorded] = sent_by(lab, BOB_AT, lambda said: isinstance(said, Hello))[:1]
    lab.run_for(60.0)
    alice = lab.cores["alice"]
    assert "bob" not in alice.peers
    assert [e["peer"] for e in lab.named("alice", "peer_forgotten")] == ["bob"]
    # A recorded probe, replayed: bob's session was remembered with its replay window.
    inject(lab, recorded, STRANGER)
    assert "bob" not in alice.peers
    assert alice.dropped()["replayed"] == 1
    # bob's agent, back, probes: authenticated by the key our server introduced, it brings bob back.
    out = inject(lab, encode(bob.sealer.seal(bob.peers["alice"], Hello("bob"))), BOB_AT)
    assert [field(e, "peer") for e in events(out, "direct_confirmed")] == ["bob"]
    assert alice.peers["bob"].session is not None


def _header(sender: str, boot: int, counter: int) -> bytes:
    """A sealed datagram's associated data (what a forger's session must authenticate)."""
    return box_associated_data(Frame(0, Sealed(sender, boot, counter, bytes(16))))


def test_a_sealed_datagram_is_built_as_the_codec_encodes_its_frame() -> None:
    # The sealer writes the datagram from the AEAD's own associated data (not encoding the frame again): the
    # bytes must be the codec's, for every boot and counter, or peers would not parse them.
    lab = pair()
    bob = lab.cores["bob"]
    for message in (Hello("bob"), Data("bob", 2**32 - 1, 5, 0, "x" * 1000), Keepalive()):
        frame, wire = bob.sealer.wire(bob.peers["alice"], message)
        assert wire == encode(frame)
        assert parse(wire) == frame
