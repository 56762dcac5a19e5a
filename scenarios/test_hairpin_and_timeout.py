"""Hairpinning works exactly where the profile enables it; an idle mapping expires, a kept-alive one stays.

Hairpin: the hairpin topology (``scenarios/topologies/hairpin.yaml``) puts carol next to alice behind
router-a. The signal server sees both at router-a's WAN address, so their direct path needs the router to
reflect traffic sent to its own WAN address back into the LAN; without hairpinning the pair takes the relay.
``client nat-type`` (RFC 5780 section 4.5) measures the same from one host.

Timeout: with NAT_A_UDP_TIMEOUT=3, a mapping alice leaves idle (one ``client stun-ping``) is gone from
router-a's conntrack table after the timeout, while one she keeps sending on (``client stun-ping --count 13
--interval 0.5``, one socket for 6 s) stays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from protocol import Endpoint
from scenarios.harness import COMPOSE_FILE, Lab, start_lab
from scenarios.topologies.generate import HERE

HAIRPIN_TOPOLOGY = (COMPOSE_FILE, HERE / "hairpin.yaml")
HOSTS = ("alice", "bob", "carol")


@pytest.fixture(scope="module", params=["on", "off"], ids=["hairpin-on", "hairpin-off"])
def hairpin_lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    options = {"topology": HAIRPIN_TOPOLOGY, "hosts": HOSTS, "env": {"NAT_A_HAIRPIN": request.param}}
    with start_lab("cone", "cone", name=f"hairpin-{request.param}", **options) as lab:
        yield lab


def hairpinning(lab: Lab) -> bool:
    return lab.extra_env["NAT_A_HAIRPIN"] == "on"


def test_hosts_behind_one_nat_go_direct_only_with_hairpinning(hairpin_lab: Lab) -> None:
    lab = hairpin_lab
    for host, peer in (("alice", "carol"), ("carol", "alice")):
        lab.exec_ok(host, "client", "disconnect", peer)
    view = lab.exec_ok("alice", "client", "connect", "carol", "--json")
    expected = "direct" if hairpinning(lab) else "relay"
    settled = lab.wait_for(lambda: settled_path(lab, "alice", "carol"), lab.punch_timeout_s + 5, "a settled path")
    assert settled == expected, view


def test_nat_type_sees_hairpinning_as_configured(hairpin_lab: Lab) -> None:
    report = hairpin_lab.json("alice", "client", "nat-type", "--server", f"{hairpin_lab.subnets.turn}:3478", "--json")
    assert report["hairpinning"] is hairpinning(hairpin_lab), report


def settled_path(lab: Lab, host: str, peer: str) -> str | None:
    """The path once it has settled: direct, or the relay (or none) after punching gave up."""
    status = lab.json(host, "client", "status", "--json")
    view = next((p for p in status["peers"] if p["id"] == peer), None)
    if view is None or view["path"] == "punching" or (view["path"] != "direct" and view["reason"] is None):
        return None
    return str(view["path"])


@pytest.fixture(scope="module")
def short_timeout_lab(docker_ready: None) -> Iterator[Lab]:
    with start_lab("cone", "cone", name="timeout", env={"NAT_A_UDP_TIMEOUT": "3"}) as lab:
        yield lab


def test_idle_mapping_expires_and_kept_alive_one_survives(short_timeout_lab: Lab) -> None:
    lab = short_timeout_lab
    # Both to the TURN server (any WAN address would do: router-a's conntrack entry is the mapping). The
    # idle one is one exchange, then silence; the kept one is 13 from one socket 0.5 s apart (6 s, twice
    # the timeout), so the idle mapping has been quiet for more than 3 s when the table is read.
    turn = f"{lab.subnets.turn}:3478"
    idle = lab.json("alice", "client", "stun-ping", turn, "--json")
    kept = lab.json("alice", "client", "stun-ping", turn, "--count", "13", "--interval", "0.5", "--json")
    assert len(kept["replies"]) == 13, kept
    idle_port, kept_port = (Endpoint.parse(run["local"]).port for run in (idle, kept))
    assert idle_port != kept_port, "the kernel gave both sockets one port: the runs cannot be told apart"
    flows = json.loads(lab.exec_ok("router-a", "nat", "conntrack", "--json"))
    ports = {f["orig"]["sport"] for f in flows if f["orig"]["dst"] == lab.subnets.turn}
    assert kept_port in ports, flows
    assert idle_port not in ports, flows
