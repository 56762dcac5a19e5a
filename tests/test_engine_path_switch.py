"""A path switch under traffic (issue 12): the direct path's active check loses a dead direct path within
about a second while traffic goes out on it, leaves an idle path to keepalive-paced liveness and a lossy but
live path alone, and traffic moves back to a restored direct path only once it is answered both ways.

Two cores, the fake signal server and the in-memory TURN server of test_client_relay; tunnel traffic is
:meth:`AgentCore.tunnel_sent` every 0.1 s from both hosts (a ping and its reply), as the shell reports each
batch WireGuard writes. No sockets, no sleeps."""

from __future__ import annotations

from collections.abc import Callable

from client.engine.paths import CHECK_DEADLINE, CHECK_QUIET
from client.engine.routes import Route
from protocol import Endpoint, Hello
from tests.test_client_core import CONE, SERVER
from tests.test_client_relay import TURN, RelayLab, connected, relay_lab

PING = 0.1
"""Seconds between the simulated tunnel's batches each way."""
ALICE_NAT = "198.18.0.11"


class SwitchLab(RelayLab):
    """The relay lab with a share of direct datagrams lost (``direct_loss``, each way) and one direction of the
    direct path cut on its own (``cut_from``: datagrams whose source is that NAT address)."""

    def __init__(self, keepalive: float = 10.0) -> None:
        super().__init__(keepalive)
        self.direct_loss = 0.0
        self.cut_from: str | None = None

    def _blocked(self, source: Endpoint, dst: Endpoint) -> bool:
        if source.host == TURN.host or SERVER in (source, dst):
            return False
        if super()._blocked(source, dst) or source.host == self.cut_from:
            return True
        return self.direct_loss > 0 and self.random.random() < self.direct_loss


def switch_lab() -> SwitchLab:
    lab = relay_lab(CONE, CONE, kind=SwitchLab)
    assert isinstance(lab, SwitchLab)
    return lab


def direct_with_warm_relay() -> SwitchLab:
    lab = switch_lab()
    lab.request("alice", lambda core: core.connect("bob", lab.now))
    lab.run_until(connected(lab, "direct"))
    lab.run_for(1.0)  # the relay path confirms behind it, as a standby
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        assert lab.cores[host].confirmed(peer)[1] is not None, "the relay is warm"
    return lab


def traffic(lab: SwitchLab, seconds: float, *, check: bool = False, until: Callable[[], bool] | None = None) -> None:
    """Both hosts send tunnel batches every PING s for ``seconds`` (or until ``until()``); with ``check``, at
    every step a host that routes direct to its peer is heard there: the peer takes datagrams from its
    direct address."""
    end = lab.now + seconds
    while lab.now < end - 1e-9 and not (until is not None and until()):
        for host, peer in (("alice", "bob"), ("bob", "alice")):
            lab.cores[host].tunnel_sent(peer, lab.now)
        lab.run_for(PING)
        if check:
            assert_accepted(lab)


def assert_accepted(lab: SwitchLab) -> None:
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        route = lab.cores[host].route(peer)
        if route is not None and route[0] is Route.DIRECT:
            assert lab.cores[peer].confirmed(host)[0] is not None, f"{peer} would drop {host}'s direct datagrams"


def test_a_cut_direct_path_under_traffic_falls_to_the_warm_relay_within_the_check() -> None:
    lab = direct_with_warm_relay()
    traffic(lab, 2.0)
    cut = lab.now
    lab.block_direct = True
    traffic(lab, 5.0, until=connected(lab, "relay"))
    # Noticed between CHECK_DEADLINE and CHECK_QUIET + CHECK_DEADLINE after the cut (plus a step of the loop).
    assert CHECK_DEADLINE <= lab.now - cut <= CHECK_QUIET + CHECK_DEADLINE + PING + 1e-6
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        status = lab.status(host, peer)
        assert status["relay"] is not None
        assert status["reason"].endswith("within 1 s while sending; relayed, still probing direct"), status
        [change] = [e for e in lab.named(host, "path_changed") if (e["old"], e["new"]) == ("direct", "relay")]
        assert str(change["reason"]).startswith("direct lost: no response from "), change


def test_an_idle_direct_path_keeps_keepalive_liveness() -> None:
    lab = direct_with_warm_relay()
    lab.block_direct = True
    lab.run_for(5.0)  # no traffic: nothing checks the path but its keepalives' silence
    assert lab.path("alice", "bob") == "direct"
    lab.run_until(lambda: lab.path("alice", "bob") == "relay", limit=3 * lab.keepalive + 1)
    assert "within 30 s" in lab.status("alice", "bob")["reason"]


def test_a_30_percent_lossy_direct_path_under_traffic_stays_direct() -> None:
    lab = direct_with_warm_relay()
    lab.direct_loss = 0.3  # each way: a probe's round trip gets through about half the time
    traffic(lab, 60.0)
    assert lab.named("alice", "path_changed") == lab.named("bob", "path_changed") == []
    sent = sum(1 for _, dst, _ in lab.wire if dst.host != TURN.host and dst != SERVER)
    assert sent > 100, "the checks did probe the lossy path"


def test_messages_count_as_traffic_and_their_acks_as_answers() -> None:
    lab = direct_with_warm_relay()
    for i in range(20):
        lab.send("alice", "bob", f"m{i}")
        lab.run_for(PING)
    probes_before = _hellos(lab)
    for i in range(20):
        lab.send("alice", "bob", f"n{i}")
        lab.run_for(PING)
    assert _hellos(lab) == probes_before, "acks answered: no probe needed"
    lab.block_direct = True
    for i in range(30):
        lab.send("alice", "bob", f"o{i}")
        lab.run_for(PING)
    assert lab.path("alice", "bob") == "relay"
    lab.run_until(lambda: lab.delivered("alice") == 70)
    assert lab.received("bob") == [f"{p}{i}" for p, n in (("m", 20), ("n", 20), ("o", 30)) for i in range(n)]


def _hellos(lab: SwitchLab) -> int:
    """alice's direct probes so far (bob, who only acks, checks his path on his own: acks are traffic too)."""
    return sum(1 for source, dst, said in lab.plain() if isinstance(said, Hello) and source.host == ALICE_NAT)


def test_a_restored_direct_path_takes_the_traffic_back_with_both_sides_accepting_it() -> None:
    lab = direct_with_warm_relay()
    lab.block_direct = True
    traffic(lab, 3.0)
    assert lab.path("alice", "bob") == lab.path("bob", "alice") == "relay"
    lab.block_direct = False
    traffic(lab, 3.0, check=True)  # background probing (every 1 s) finds it again
    assert lab.path("alice", "bob") == lab.path("bob", "alice") == "direct"
    for host in ("alice", "bob"):
        assert [(e["old"], e["new"]) for e in lab.named(host, "path_changed")] == [
            ("direct", "relay"),
            ("relay", "direct"),
        ]


def test_a_half_open_direct_path_never_takes_the_traffic_from_the_relay() -> None:
    """Only bob -> alice gets through: bob's background probes confirm alice's direct path, but her probes go
    unanswered, so her traffic stays on the relay (and the path is lost again after CHECK_DEADLINE)."""
    lab = direct_with_warm_relay()
    lab.block_direct = True
    traffic(lab, 3.0)
    lab.block_direct = False
    lab.cut_from = ALICE_NAT
    traffic(lab, 5.0)
    assert lab.path("alice", "bob") == "relay"
    assert ("relay", "direct") not in [(e["old"], e["new"]) for e in lab.named("alice", "path_changed")]
    confirmed = lab.named("alice", "direct_confirmed")
    assert len(confirmed) >= 2, "bob's probes did confirm her direct path: it is the answer that was missing"
    failed = [str(e["reason"]) for e in lab.named("alice", "punch_failed")]
    assert any("to our probes" in reason for reason in failed), failed
