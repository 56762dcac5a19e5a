"""Hairpinning works exactly where the profile enables it; an idle mapping expires, a kept-alive one stays.

Hairpin: the hairpin topology (``scenarios/topologies/hairpin.yaml``) puts carol next to alice behind
router-a. The signal server sees both at router-a's WAN address, so their direct path needs the router to
reflect traffic sent to its own WAN address back into the LAN; without hairpinning the pair takes the relay.
``client nat-type`` (RFC 5780 section 4.5) measures the same from one host.

Timeout: with NAT_A_UDP_TIMEOUT=3, a mapping alice leaves idle (one ``client stun-ping``) is gone from
router-a's conntrack table after the timeout, while one she keeps sending on (``client stun-ping --count 30
--interval 0.5``, one socket for 15 s, the table read while it still sends) stays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from protocol import Endpoint
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


@pytest.fixture(scope="module")
def short_timeout_lab(docker_ready: None) -> Iterator[Lab]:
    with start_lab(name="timeout", env={"NAT_A": "cone", "NAT_B": "cone", "NAT_A_UDP_TIMEOUT": "3"}) as lab:
        yield lab


def test_idle_mapping_expires_and_kept_alive_one_survives(short_timeout_lab: Lab) -> None:
    lab = short_timeout_lab
    # Both to the TURN server (any WAN address would do: router-a's conntrack entry is the mapping). The kept
    # one runs in the background, 30 exchanges from one socket 0.5 s apart (15 s); the idle one is a single
    # exchange, then silence. The table is read while the kept one is still sending, as soon as the idle
    # mapping is gone, so no docker exec latency can make the kept one look idle too.
    turn = lab.address("turn")
    with ThreadPoolExecutor(max_workers=1) as pool:
        kept_run = pool.submit(
            lab.json, "alice", "client", "stun-ping", f"{turn}:3478", "--count", "30", "--interval", "0.5", "--json"
        )
        idle = lab.json("alice", "client", "stun-ping", f"{turn}:3478", "--json")
        idle_port = Endpoint.parse(idle["local"]).port

        def idle_gone() -> list[dict[str, Any]] | None:
            flows: list[dict[str, Any]] = json.loads(lab.exec_ok("router-a", "nat", "conntrack", "--json"))
            return None if idle_port in {f["orig"]["sport"] for f in flows if f["orig"]["dst"] == turn} else flows

        flows = lab.wait_for(idle_gone, 12, f"the idle mapping (alice port {idle_port}) to expire")
        assert not kept_run.done(), "the kept-alive run ended before the idle mapping expired: nothing to compare"
        kept = kept_run.result()
    assert len(kept["replies"]) == 30, kept
    kept_port = Endpoint.parse(kept["local"]).port
    assert idle_port != kept_port, "the kernel gave both sockets one port: the runs cannot be told apart"
    assert kept_port in {f["orig"]["sport"] for f in flows if f["orig"]["dst"] == turn}, flows
