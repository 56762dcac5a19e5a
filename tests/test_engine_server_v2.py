"""The agent's v2 dialogue with its server (client/engine/server_link.py), at the core's public API: a
transaction id per request that its retransmissions keep, the server's cookie taken from a Retry and echoed,
our keys and a fresh proof in every keyed request, a Retry to a keepalive (an expired cookie, or a NAT
rebinding) answered by registering again, and the whole exchange against the in-memory lab's server. Pure
cores, time passed in.
"""

from __future__ import annotations

from dataclasses import replace

from client.engine.core import AgentCore, CoreConfig
from protocol import (
    Candidates,
    Connect,
    Endpoint,
    Err,
    ErrorCode,
    Frame,
    Keys,
    Ok,
    Register,
    Retry,
    encode,
    parse,
)
from tests.support.engine_outputs import events, frames, kind
from tests.support.signal_server import answer, register
from tests.test_client_core import CONE, SERVER, TIMING, Nat, connect, two_hosts
from trust import PROOF_CONTEXT, verify_proof

COOKIE = b"\x01" + bytes(range(16))
WALL = 1_767_225_600.0  # the shell's wall-clock offset: now = 0 is this Unix time


def alice(**options: object) -> AgentCore:
    return AgentCore(CoreConfig("alice", SERVER, TIMING, wall_offset=WALL, **options))  # type: ignore[arg-type]


def verified(core: AgentCore, frame: Frame) -> bool:
    """Whether ``frame``'s proof is ``core``'s key's, over the bytes the server will read."""
    received = parse(encode(frame))
    assert isinstance(received, Frame)
    return verify_proof(core.config.identity.public.sign, received)


def test_a_register_carries_our_keys_and_a_proof_with_a_wall_clock_timestamp() -> None:
    core = alice()
    [request] = frames(core.start(2.5), SERVER)
    public = core.config.identity.public
    assert request.message == Register("alice", Candidates(None))
    assert request.keys == Keys(public.sign, public.box)
    assert request.cookie is None  # none yet: the server will answer with a Retry
    assert request.proof is not None
    assert request.proof.timestamp_ms == round((WALL + 2.5) * 1000)
    assert verified(core, request)
    assert parse(encode(request)).signed.startswith(PROOF_CONTEXT)  # type: ignore[union-attr]


def test_retry_takes_the_cookie_and_resends_at_once_under_the_same_txid_with_a_new_proof() -> None:
    core = alice()
    [first] = frames(core.start(0.0), SERVER)
    [again] = frames(answer(core, first, Retry(COOKIE), 0.01), SERVER)
    assert (again.txid, again.message, again.cookie) == (first.txid, first.message, COOKIE)
    assert again.proof is not None
    assert first.proof is not None
    assert again.proof.nonce != first.proof.nonce  # the server takes each proof once
    assert verified(core, again)
    # A retry with the cookie we have answers an older copy: nothing at once, the next retransmission has it.
    assert frames(answer(core, first, Retry(COOKIE), 0.02), SERVER) == []
    [later] = frames(core.tick(0.26), SERVER)
    assert (later.txid, later.cookie) == (first.txid, COOKIE)
    assert [kind(e) for e in events(answer(core, first, Ok(), 0.3))] == ["registered"]
    assert core.registered
    # The cookie goes with every request from now on.
    [connect_] = frames(core.connect("bob", 0.4), SERVER)
    assert (connect_.message, connect_.cookie) == (Connect("alice", "bob"), COOKIE)
    assert verified(core, connect_)
    [refresh] = frames(core.tick(10.0), SERVER)[:1]  # the keepalive period's register
    assert (refresh.message, refresh.cookie) == (Register("alice", Candidates(None)), COOKIE)
    assert verified(core, refresh)


def test_a_register_is_retried_until_its_own_ok_and_answers_to_nothing_are_dropped() -> None:
    core = alice(register_retry=0.25)
    [first] = frames(core.start(0.0), SERVER)
    assert core.wakeup() == 0.25
    assert core.tick(0.1) == []
    assert [f.txid for f in frames(core.tick(0.25), SERVER)] == [first.txid]
    assert [f.txid for f in frames(core.tick(0.5), SERVER)] == [first.txid]
    stray = replace(first, txid=first.txid ^ 1)
    assert events(answer(core, stray, Ok(), 0.55)) == []  # an ok for another request registers nothing
    assert not core.registered
    assert core.dropped()["unmatched"] == 1
    assert core.receive(b"ok", SERVER, 0.56)[0].text.endswith("unmatched")  # type: ignore[union-attr]
    assert [kind(e) for e in events(answer(core, first, Ok(), 0.6))] == ["registered"]
    assert answer(core, first, Ok(), 0.7) == []  # a duplicate ok
    assert core.tick(0.75) == []
    assert core.wakeup() == 10.0  # only the keepalive is left


def test_an_err_to_the_register_is_reported_and_the_register_retried() -> None:
    core = alice()
    [first] = frames(core.start(0.0), SERVER)
    out = answer(core, first, Err("alice is held by another key", ErrorCode.FORBIDDEN), 0.1)
    assert [(kind(e), e.reason) for e in events(out)] == [("server_error", "alice is held by another key")]  # type: ignore[attr-defined]
    assert [f.txid for f in frames(core.tick(0.25), SERVER)] == [first.txid]
    out = answer(core, first, Err("", ErrorCode.STALE_PROOF), 0.3)  # no reason: the code's phrase
    assert [e.reason for e in events(out)] == ["stale or replayed proof"]  # type: ignore[attr-defined]


def test_each_keepalive_period_registers_again_once_and_a_retry_resends_it_with_the_new_cookie() -> None:
    core = alice()
    register(core)
    [refresh] = frames(core.tick(10.0), SERVER)
    # The register again, a new request: it keeps the mapping and presence fresh, and puts us back in the
    # server's table whatever happened (a rebinding, a server restart, an expiry while we were cut off).
    assert isinstance(refresh.message, Register)
    assert verified(core, refresh)
    assert not core.server.reannouncing  # sent once: not repeated until its ok
    assert frames(core.tick(10.3), SERVER) == []
    new = b"\x02" + bytes(16)
    [again] = frames(answer(core, refresh, Retry(new), 10.4), SERVER)
    assert (again.txid, again.message, again.cookie) == (refresh.txid, refresh.message, new)
    assert verified(core, again)
    assert answer(core, refresh, Ok(), 10.5) == []
    assert core.registered
    [next_period] = frames(core.tick(20.0), SERVER)
    assert (next_period.txid != refresh.txid, next_period.cookie) == (True, new)


def test_the_lab_server_sees_every_request_with_the_cookie_it_gave_and_a_proof_it_verifies() -> None:
    lab = two_hosts(CONE, CONE)
    connect(lab)
    requests = [frame for _, frame in lab.server.requests]
    assert {type(f.message).__name__ for f in requests} >= {"Register", "Connect"}
    assert lab.server.retries == 2  # each agent's first register only
    assert [f.message for f in requests if f.cookie is None] == [
        Register("alice", Candidates(None)),
        Register("bob", Candidates(None)),
    ]
    for frame in requests:
        sender = getattr(frame.message, "id", None) or getattr(frame.message, "from_id", None)
        if sender is not None:
            assert verify_proof(lab.tap.identities[sender].public.sign, frame)


def test_cookie_rotation_and_a_nat_rebinding_keep_the_registration() -> None:
    lab = two_hosts(CONE, CONE)
    lab.server.rotate()  # the server's secret rotated: every cookie given so far is refused
    lab.run_for(10.0)  # a keepalive period: each agent's register gets a Retry, and goes again with the cookie
    assert lab.server.retries == 4
    assert all(core.registered and not core.server.reannouncing for core in lab.cores.values())
    # alice's NAT forgets her mapping (a reboot): her next keepalive comes from a new port, gets a Retry (the
    # cookie is bound to the old address), and her register, with a proof, moves her.
    before = lab.server.peers["alice"].addr
    lab.nats["alice"] = Nat("198.18.0.11", **CONE, _next_port=51000)  # type: ignore[arg-type]
    lab.run_for(10.0)
    after = lab.server.peers["alice"].addr
    assert (before, after) == (Endpoint("198.18.0.11", 50001), Endpoint("198.18.0.11", 51001))
    connect(lab)  # and the server introduces her at her new address
    assert str(lab.cores["bob"].peers["alice"].path.addr) == "198.18.0.11:51001"
