"""Third-party stacks behind natlab's NATs (README "Interop"): aiortc and nebula, in two labs of the interop
image shared by all tests here, cone-cone and cone-symmetric.

Each check is on the real path, not only on what the stack says: a direct path must be a replied flow in the
routers' conntrack between the two routers' WAN addresses; aiortc's relayed path must be a TURN relay
candidate on the lab's coturn, which counts the data channel's bytes as relayed; nebula's failure (relays
off, cone-symmetric) must be its handshakes left UNREPLIED in the symmetric router's conntrack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from interop.nebula import PORT as LIGHTHOUSE_PORT
from interop.report import DIRECT, RELAY
from scenarios.harness import Lab, start_lab
from scenarios.interop_stacks import conntrack_flows, interop_image, nebula, replied, webrtc
from scenarios.pairs import Pair
from scenarios.turn_usage import peer_usage

INTEROP_PAIRS = (Pair("cone", "cone"), Pair("cone", "symmetric"))
PAYLOAD = 64 * 1024
"""Bytes each aiortc side sends once connected (interop.webrtc's default)."""


@pytest.fixture(scope="module", params=INTEROP_PAIRS, ids=lambda pair: pair.id)
def interop_pair(request: pytest.FixtureRequest) -> Pair:
    selected: Pair = request.param
    return selected


@pytest.fixture(scope="module")
def image(docker_ready: None) -> str:
    """The interop image (`make interop-image`: wheels fetched on this host, then built; cached by hash)."""
    return interop_image()


@pytest.fixture(scope="module")
def interop_lab(interop_pair: Pair, image: str) -> Iterator[Lab]:
    env = {"NATLAB_IMAGE": image, "NAT_A": interop_pair.a, "NAT_B": interop_pair.b}
    with start_lab(name=f"interop-{interop_pair.id}", env=env) as running:
        yield running


def test_aiortc_data_channel_takes_the_path_theory_says(interop_lab: Lab, interop_pair: Pair) -> None:
    lab = interop_lab
    closed_before = set(peer_usage(lab))
    reports = webrtc(lab)
    for side, report in reports.items():
        assert report.connected, (side, report)
        assert report.error is None, (side, report)
        assert report.path == interop_pair.expected_path, (side, report)
        assert report.time_to_connect_ms is not None, report
        assert report.rtt_ms is not None, report
    a, b = reports["a"], reports["b"]
    assert a.peer_endpoint, a
    assert b.peer_endpoint, b
    if interop_pair.expected_path == DIRECT:
        # Each side sends to the other router's WAN address, and router-a holds that flow, replied.
        assert a.peer_endpoint.rpartition(":")[0] == lab.address("router-b", "wan"), a
        assert b.peer_endpoint.rpartition(":")[0] == lab.address("router-a", "wan"), b
        flows = conntrack_flows(lab, "router-a", "lan-a", a.peer_endpoint)
        assert flows, f"router-a has no flow to {a.peer_endpoint}"
        assert all(replied(flow) for flow in flows), flows
        return
    assert f"{RELAY} {lab.address('turn')}:" in a.how_path_was_known + b.how_path_was_known, (a, b)
    # aiortc released its allocations on close: coturn reports their sessions with the bytes it relayed.
    usage = lab.wait_for(
        lambda: (
            u if sum((u := {s: n for s, n in peer_usage(lab).items() if s not in closed_before}).values()) else None
        ),
        15,
        "coturn to report aiortc's relayed sessions",
    )
    assert sum(usage.values()) >= 2 * PAYLOAD, usage


def test_nebula_without_relays_punches_where_theory_says_and_fails_elsewhere(
    interop_lab: Lab, interop_pair: Pair
) -> None:
    lab = interop_lab
    reports = nebula(lab, relays=False)
    a, b = reports["a"], reports["b"]
    if interop_pair.expected_path == DIRECT:
        for report in (a, b):
            assert report.connected, report
            assert report.path == DIRECT, report
        assert a.peer_endpoint, a
        assert a.peer_endpoint.rpartition(":")[0] == lab.address("router-b", "wan"), a
        assert b.peer_endpoint, b
        assert b.peer_endpoint.rpartition(":")[0] == lab.address("router-a", "wan"), b
        flows = conntrack_flows(lab, "router-a", "lan-a", a.peer_endpoint)
        assert flows, f"router-a has no flow to {a.peer_endpoint}"
        assert all(replied(flow) for flow in flows), flows
        return
    # Without a relay nebula has no way round a symmetric NAT: both sides give up, and bob's handshakes to
    # alice's mapped port never got an answer through router-b (router-a's port-restricted filter drops them).
    for report in (a, b):
        assert not report.connected, report
        assert report.path == "none", report
    all_flows = lab.json("router-b", "nat", "conntrack", "--json")
    to_lighthouse = f"{lab.address('server')}:{LIGHTHOUSE_PORT}"
    nebula_ports = {flow["orig"]["sport"] for flow in conntrack_flows(lab, "router-b", "lan-b", to_lighthouse)}
    to_alice = [
        flow
        for flow in all_flows
        if flow["orig"]["sport"] in nebula_ports and flow["orig"]["dst"] == lab.address("router-a", "wan")
    ]
    assert to_alice, f"router-b shows no nebula handshake towards router-a: {all_flows}"
    assert not any(replied(flow) for flow in to_alice), to_alice
