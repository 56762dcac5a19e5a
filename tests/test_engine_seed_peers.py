"""A seed-era peer (README, "Authenticated peers"): introduced by a punch without keys, it is talked to in the
seed's text (``hello <id>``, ``msg <id> <text>``, ``keepalive``), its bare ``hello`` from the address we
punched is its probe, and what it sends is shown as unauthenticated. The seed client's side is the seed's
exact exchange (seedclient/, datagram for datagram), played by hand against the in-memory lab's server.
"""

from __future__ import annotations

from client.engine.core import AgentCore, CoreConfig, Output, Send
from client.engine.events import describe
from client.engine.path import PathState
from protocol import Endpoint, Frame, Hello, Keepalive, Msg, Punch, Sealed, box_associated_data, encode, parse
from tests.support.engine_outputs import events, field
from tests.support.signal_server import SignalServer
from tests.test_client_core import SERVER, TIMING
from trust import Identity, PeerSession

ALICE = Endpoint("198.18.0.11", 40000)  # alice's address as the server and carol see it
CAROL = Endpoint("198.18.0.13", 41000)  # the seed client's
ELSEWHERE = Endpoint("198.18.0.66", 41000)


def carried(server: SignalServer, core: AgentCore, outputs: list[Output], now: float) -> list[Output]:
    """Carry what ``core`` sends its server there and the answers back, until quiet; the rest is returned."""
    rest: list[Output] = []
    while outputs:
        output, outputs = outputs[0], outputs[1:]
        if isinstance(output, Send) and output.to == SERVER:
            for reply, to in server.receive(encode(output.message), ALICE):
                if to == ALICE:
                    outputs = outputs + core.receive(reply, SERVER, now)
        else:
            rest.append(output)
    return rest


def introduced() -> tuple[AgentCore, list[Output], list[bytes]]:
    """alice registered (v2) and carol (the seed's text); carol typed ``/connect alice``. alice's outputs from
    the punch she got, and what the server told carol."""
    server = SignalServer()
    alice = AgentCore(CoreConfig("alice", SERVER, TIMING))
    carried(server, alice, alice.start(1.0), 1.0)
    assert alice.registered
    assert server.receive(b"register carol", CAROL) == [(b"ok", CAROL)]
    to_carol: list[bytes] = []
    to_alice: list[bytes] = []
    for reply, to in server.receive(b"connect carol alice", CAROL):
        (to_carol if to == CAROL else to_alice).append(reply)
    assert to_carol == [f"punch alice {ALICE}".encode()]  # the seed's own punch: it ignores any other
    [punch] = to_alice
    assert parse(punch) == Frame(0, Punch("carol", CAROL))  # v2, no keys, no candidates: a seed-era peer
    return alice, alice.receive(punch, SERVER, 2.0), to_carol


def test_a_punch_without_keys_means_text_probes_to_a_seed_era_peer() -> None:
    alice, out, _ = introduced()
    assert [(o.message, o.to) for o in out if isinstance(o, Send)] == [(Hello("alice"), CAROL)]
    status = alice.peer_status("carol")
    assert status is not None
    assert (status["seed"], status["path"]) == (True, "punching")


def test_the_seeds_bare_hello_from_the_punched_address_confirms_the_path_unanswered() -> None:
    alice, _, _ = introduced()
    out = alice.receive(b"hello", CAROL, 2.05)
    assert [field(e, "addr") for e in events(out, "direct_confirmed")] == [str(CAROL)]
    # No hello-ack: the seed's client would print "unknown command hello-ack"; our probes reach it anyway.
    assert [o for o in out if isinstance(o, Send)] == []
    assert alice.peers["carol"].path.state is PathState.DIRECT


def test_a_bare_hello_from_anywhere_else_confirms_nothing() -> None:
    alice, _, _ = introduced()
    assert [type(o).__name__ for o in alice.receive(b"hello", ELSEWHERE, 2.05)] == ["Log"]
    assert alice.dropped()["unknown_source"] == 1
    assert alice.peers["carol"].path.state is PathState.PUNCHING


def test_chat_with_a_seed_era_peer_is_text_both_ways_and_shown_as_unauthenticated() -> None:
    alice, _, _ = introduced()
    alice.receive(b"hello", CAROL, 2.05)
    out = alice.receive(b"msg carol hello alice, this is the seed", CAROL, 2.1)
    [received] = events(out, "message_received")
    assert (field(received, "text"), field(received, "seed")) == ("hello alice, this is the seed", True)
    assert describe(received).speaker == "peer carol, seed-era, unauthenticated"
    sent = alice.send("carol", "gday from natlab", 2.2)
    assert sent.ticket is None  # the seed never acknowledges
    assert [(o.message, o.to) for o in sent.outputs if isinstance(o, Send)] == [
        (Msg("alice", "gday from natlab"), CAROL)
    ]
    keepalives = [(o.message, o.to) for o in alice.tick(11.0) if isinstance(o, Send) and o.to == CAROL]
    assert keepalives == [(Keepalive(), CAROL)]  # text, as the seed sends its own
    assert encode(Keepalive()) == b"keepalive"


def test_a_sealed_datagram_claiming_a_seed_era_peer_has_no_key_to_open() -> None:
    alice, _, _ = introduced()
    alice.receive(b"hello", CAROL, 2.05)
    mallory = Identity.generate()
    public = alice.config.identity.public
    session = PeerSession(mallory, "carol", "alice", public, boot=1)
    inner = encode(Frame(0, Hello("carol")))
    box = session.seal(inner, lambda b, c: box_associated_data(Frame(0, Sealed("carol", b, c, bytes(16)))))
    alice.receive(encode(Frame(0, Sealed("carol", *box))), ELSEWHERE, 2.1)
    assert alice.dropped()["no_key"] == 1
    assert alice.peers["carol"].path.addr == CAROL
