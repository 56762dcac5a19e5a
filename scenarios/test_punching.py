"""Punching: cone-cone confirms a direct path the routers' conntrack shows; a symmetric side fails, with the reason."""

from __future__ import annotations

import re
import time

from protocol import Endpoint
from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import connect, peer_status, reset_paths

FAILED_REASON = re.compile(r"punch failed: no response from (\S+) within (\d+) s")


def udp_flows(lab: Lab, router: str) -> list[dict]:
    flows: list[dict] = lab.json(router, "nat", "conntrack", "--json")
    return flows


def test_punch_outcome_matches_the_nat_pair(lab: Lab, pair: Pair) -> None:
    reset_paths(lab)
    started = time.monotonic()
    code, alice_view = connect(lab, "alice")
    elapsed = time.monotonic() - started

    if pair.expected_path == "direct":
        assert code == 0, alice_view
        assert alice_view["path"] == "direct"
        assert Endpoint.parse(alice_view["addr"]).host == lab.subnets.router_b_wan
        assert alice_view["time_to_direct_ms"] > 0
        bob_view = lab.wait_for(
            lambda: v if (v := peer_status(lab, "bob")) and v["path"] == "direct" else None, 5, "bob direct"
        )
        assert Endpoint.parse(bob_view["addr"]).host == lab.subnets.router_a_wan
        assert_conntrack_shows_flow(lab, alice_view["addr"], bob_view["addr"])
    else:
        assert code == 1, alice_view
        assert alice_view["path"] == "none"
        assert FAILED_REASON.fullmatch(alice_view["reason"] or ""), alice_view["reason"]
        assert elapsed < lab.punch_timeout_s + 5, f"failure took {elapsed:.1f} s"
        bob_view = lab.wait_for(
            lambda: v if (v := peer_status(lab, "bob")) and v["reason"] else None,
            lab.punch_timeout_s + 5,
            "bob to give up punching",
        )
        assert FAILED_REASON.fullmatch(bob_view["reason"] or ""), bob_view["reason"]


def assert_conntrack_shows_flow(lab: Lab, bob_addr: str, alice_addr: str) -> None:
    """Router A holds alice's LAN flow to bob's public endpoint, translated to alice's public endpoint, replied."""
    bob_public, alice_public = Endpoint.parse(bob_addr), Endpoint.parse(alice_addr)
    flows = udp_flows(lab, "router-a")
    matching = [
        f
        for f in flows
        if f["orig"]["dst"] == bob_public.host
        and int(f["orig"]["dport"]) == bob_public.port
        and f["orig"]["src"].startswith(lab.subnets.lan_a + ".")
        and f["reply"]["dst"] == alice_public.host
        and int(f["reply"]["dport"]) == alice_public.port
    ]
    assert matching, f"no conntrack flow alice -> {bob_public} as {alice_public} on router-a: {flows}"
    assert all("UNREPLIED" not in str(f.get("flags", "")) for f in matching), matching
