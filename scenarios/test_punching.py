"""Punching: cone-cone confirms a direct path the routers' conntrack shows; with a symmetric side punching
fails, both peers say why, and the pair is relayed."""

from __future__ import annotations

import ipaddress
import re
import time
from functools import partial

from protocol import Endpoint
from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import connect, connect_expecting, peer_status, punch_timeout_s, reset_paths

FAILED_REASON = re.compile(r"punch failed: no response from (\S+) within (\d+) s")


def udp_flows(lab: Lab, router: str) -> list[dict]:
    flows: list[dict] = lab.json(router, "nat", "conntrack", "--json")
    return flows


def punch_failure(lab: Lab, host: str) -> dict | None:
    """`host`'s view of its peer once it reports the failed punch, else None."""
    view = peer_status(lab, host)
    return view if view and FAILED_REASON.search(view["reason"] or "") else None


def test_punch_outcome_matches_the_nat_pair(lab: Lab, pair: Pair) -> None:
    reset_paths(lab)
    started = time.monotonic()
    code, alice_view = connect(lab, "alice")
    assert code == 0, alice_view

    if pair.expected_path == "direct":
        alice_view = connect_expecting(lab, "alice", "direct")  # a relay may have confirmed first
        assert alice_view["relay"] is None
        assert Endpoint.parse(alice_view["addr"]).host == lab.address("router-b", "wan")
        assert alice_view["time_to_direct_ms"] > 0
        bob_view = lab.wait_for(
            lambda: v if (v := peer_status(lab, "bob")) and v["path"] == "direct" else None, 5, "bob direct"
        )
        assert Endpoint.parse(bob_view["addr"]).host == lab.address("router-a", "wan")
        assert_conntrack_shows_flow(lab, alice_view["addr"], bob_view["addr"])
        return

    # Punching cannot work here: both sides say so, with the reason, within the punch timeout; meanwhile
    # the pair already talks through the lab's TURN server.
    assert alice_view["path"] == "relay", alice_view
    assert Endpoint.parse(alice_view["relay"]).host == lab.address("turn")
    for host in ("alice", "bob"):
        timeout = punch_timeout_s(lab, host) + 5
        view = lab.wait_for(partial(punch_failure, lab, host), timeout, f"{host}'s punch failure")
        assert view["path"] == "relay", view
        assert view["time_to_direct_ms"] is None
    assert time.monotonic() - started < punch_timeout_s(lab, "alice") + 5


def assert_conntrack_shows_flow(lab: Lab, bob_addr: str, alice_addr: str) -> None:
    """Router A holds alice's LAN flow to bob's public endpoint, translated to alice's public endpoint, replied."""
    bob_public, alice_public = Endpoint.parse(bob_addr), Endpoint.parse(alice_addr)
    flows = udp_flows(lab, "router-a")
    matching = [
        f
        for f in flows
        if f["orig"]["dst"] == bob_public.host
        and int(f["orig"]["dport"]) == bob_public.port
        and ipaddress.ip_address(f["orig"]["src"]) in lab.topology.networks["lan-a"]
        and f["reply"]["dst"] == alice_public.host
        and int(f["reply"]["dport"]) == alice_public.port
    ]
    assert matching, f"no conntrack flow alice -> {bob_public} as {alice_public} on router-a: {flows}"
    assert all("UNREPLIED" not in str(f.get("flags", "")) for f in matching), matching
