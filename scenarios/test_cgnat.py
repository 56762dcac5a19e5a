"""A host behind two NATs: alice's home router (cone) sits behind a carrier-grade NAT (cone) whose inside is
in 100.64.0.0/10 (``scenarios/topologies/cgnat.yaml``), and bob is behind an ordinary cone NAT.

Both NATs map endpoint-independently, so alice's public address (the carrier's WAN address) is stable
towards every destination and the pair goes direct, with the server, the classifiers and the carrier's
conntrack table all seeing alice through both layers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from protocol import Endpoint
from scenarios.harness import COMPOSE_FILE, Lab, start_lab
from scenarios.steps import connect_expecting, reset_paths, server_peers
from scenarios.topologies.generate import HERE

CGNAT_TOPOLOGY = (COMPOSE_FILE, HERE / "cgnat.yaml")


@pytest.fixture(scope="module")
def cgnat_lab(docker_ready: None) -> Iterator[Lab]:
    with start_lab(CGNAT_TOPOLOGY, name="cgnat", env={"NAT_A": "cone", "NAT_B": "cone"}) as lab:
        yield lab


def test_server_sees_alice_at_the_carrier_address(cgnat_lab: Lab) -> None:
    peers = server_peers(cgnat_lab)
    assert Endpoint.parse(peers["alice"]["addr"]).host == cgnat_lab.address("carrier", "wan"), peers


def test_cgnat_cone_pair_goes_direct_through_both_nats(cgnat_lab: Lab) -> None:
    reset_paths(cgnat_lab)
    view = connect_expecting(cgnat_lab, "alice", "direct")
    assert view["path"] == "direct"
    carrier = json.loads(cgnat_lab.exec_ok("carrier", "nat", "conntrack", "--json"))
    home_wan = cgnat_lab.address("router-a", "cgn")
    assert any(f["orig"]["src"] == home_wan for f in carrier), carrier  # the carrier NATs the home NAT


def test_nat_type_sees_one_cone_through_two(cgnat_lab: Lab) -> None:
    report = cgnat_lab.json("alice", "client", "nat-type", "--server", f"{cgnat_lab.address('turn')}:3478", "--json")
    assert (report["mapping"], report["filtering"]) == ("endpoint-independent", "address-and-port-dependent")
    assert Endpoint.parse(report["mapped"]).host == cgnat_lab.address("carrier", "wan")
