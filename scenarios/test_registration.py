"""Registration: the server must see each client at its router's WAN address, never its LAN address."""

from __future__ import annotations

import json
from typing import Any

from protocol import Endpoint
from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import server_peers
from trust import PublicKeys

PORT_PRESERVING = {"cone"}


def both_registered(lab: Lab) -> dict[str, dict[str, Any]] | None:
    peers = server_peers(lab)
    return peers if {"alice", "bob"} <= peers.keys() else None


def test_server_sees_clients_at_their_routers_wan_address(lab: Lab, pair: Pair) -> None:
    peers = lab.wait_for(lambda: both_registered(lab), 10, "both clients registered with the server")
    for host, profile in (("alice", pair.a), ("bob", pair.b)):
        router = lab.topology.router_of(host)
        assert lab.service(router).environment["NAT_PROFILE"] == profile
        router_wan = lab.address(router, "wan")
        seen = Endpoint.parse(peers[host]["addr"])
        status = lab.json(host, "client", "status", "--json")
        local = Endpoint.parse(status["local"])
        assert status["registered"] is True
        assert status["server"] == f"{lab.address('server')}:9000"
        assert seen.host == router_wan, f"server saw {host} at {seen}, not behind its router {router_wan}"
        if profile in PORT_PRESERVING:
            assert seen.port == local.port, f"{profile} should preserve {host}'s port {local.port}, saw {seen.port}"


def test_every_host_runs_with_the_key_the_server_registered(lab: Lab, pair: Pair) -> None:
    """The server made the hosts' keys at start (server-entrypoint): its registry holds exactly the lab's
    hosts, and each host's agent loaded its own key file (owner-only, read as root from the shared volume)."""
    registry = json.loads(lab.exec_ok("server", "cat", "/run/natlab-secrets/registry.json"))["ids"]
    assert sorted(registry) == sorted(lab.hosts) == ["alice", "bob"]
    for host in lab.hosts:
        status = lab.json(host, "client", "status", "--json")
        assert status["key"] == PublicKeys.from_json(registry[host], host).fingerprint, host
        assert status["key_file"] == f"/run/natlab-secrets/keys/{host}.json"
        assert lab.exec_ok(host, "stat", "-c", "%a", status["key_file"]).strip() == "600"
