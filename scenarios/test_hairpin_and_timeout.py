"""Hairpinning works exactly where the profile enables it; an idle mapping expires, a kept-alive one stays.

Hairpin: the hairpin topology (``scenarios/topologies/hairpin.yaml``) puts carol next to alice behind
router-a. The signal server sees both at router-a's WAN address, so their direct path needs the router to
reflect traffic sent to its own WAN address back into the LAN; without hairpinning the pair takes the relay.
``client nat-type`` (RFC 5780 section 4.5) measures the same from one host.

Timeout: with NAT_A_UDP_TIMEOUT=3, a mapping alice leaves idle is gone from router-a's conntrack table after
the timeout, while one she keeps sending on stays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scenarios.harness import COMPOSE_FILE, Lab, start_lab
from scenarios.steps import punch_timeout_s
from scenarios.topologies.generate import HERE

HAIRPIN_TOPOLOGY = (COMPOSE_FILE, HERE / "hairpin.yaml")


@pytest.fixture(scope="module", params=["on", "off"], ids=["hairpin-on", "hairpin-off"])
def hairpin_lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    env = {"NAT_A": "cone", "NAT_B": "cone", "NAT_A_HAIRPIN": request.param}
    with start_lab(HAIRPIN_TOPOLOGY, name=f"hairpin-{request.param}", env=env) as lab:
        yield lab


def hairpinning(lab: Lab) -> bool:
    return lab.service("router-a").environment["NAT_HAIRPIN"] == "on"


def test_hosts_behind_one_nat_go_direct_only_with_hairpinning(hairpin_lab: Lab) -> None:
    lab = hairpin_lab
    for host, peer in (("alice", "carol"), ("carol", "alice")):
        lab.exec_ok(host, "client", "disconnect", peer)
    view = lab.exec_ok("alice", "client", "connect", "carol", "--json")
    expected = "direct" if hairpinning(lab) else "relay"
    timeout = punch_timeout_s(lab, "alice") + 5
    settled = lab.wait_for(lambda: settled_path(lab, "alice", "carol"), timeout, "a settled path")
    assert settled == expected, view


def test_nat_type_sees_hairpinning_as_configured(hairpin_lab: Lab) -> None:
    turn = hairpin_lab.address("turn")
    report = hairpin_lab.json("alice", "client", "nat-type", "--server", f"{turn}:3478", "--json")
    assert report["hairpinning"] is hairpinning(hairpin_lab), report


def settled_path(lab: Lab, host: str, peer: str) -> str | None:
    """The path once it has settled: direct, or the relay (or none) after punching gave up."""
    status = lab.json(host, "client", "status", "--json")
    view = next((p for p in status["peers"] if p["id"] == peer), None)
    if view is None or view["path"] == "punching" or (view["path"] != "direct" and view["reason"] is None):
        return None
    return str(view["path"])


# Inside alice: one socket sends once and then stays idle, the other sends every half second; both to the
# TURN server (any WAN address would do: the router's conntrack entry is the mapping). Prints both ports.
IDLE_AND_KEPT = """
import socket, sys, time
server, seconds = (sys.argv[1], 3478), float(sys.argv[2])
idle, kept = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
for s in (idle, kept):
    s.bind(("0.0.0.0", 0))
idle.sendto(b"natlab timeout probe", server)
end = time.monotonic() + seconds
while time.monotonic() < end:
    kept.sendto(b"natlab timeout probe", server)
    time.sleep(0.5)
print(idle.getsockname()[1], kept.getsockname()[1])
"""


@pytest.fixture(scope="module")
def short_timeout_lab(docker_ready: None) -> Iterator[Lab]:
    with start_lab(name="timeout", env={"NAT_A": "cone", "NAT_B": "cone", "NAT_A_UDP_TIMEOUT": "3"}) as lab:
        yield lab


def test_idle_mapping_expires_and_kept_alive_one_survives(short_timeout_lab: Lab) -> None:
    lab = short_timeout_lab
    idle, kept = lab.exec_ok("alice", "python3", "-c", IDLE_AND_KEPT, lab.address("turn"), "6").split()
    flows = json.loads(lab.exec_ok("router-a", "nat", "conntrack", "--json"))
    ports = {str(f["orig"]["sport"]) for f in flows if f["orig"]["dst"] == lab.address("turn")}
    assert kept in ports, flows
    assert idle not in ports, flows
