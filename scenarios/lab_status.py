"""`make lab-status`: the interactive lab at a glance: profiles, addresses, who is registered, each pair's path."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scenarios.harness import INTERACTIVE_PROJECT, Lab, LabError, Subnets

HOSTS = ("alice", "bob")


def interactive_lab() -> Lab:
    default = Subnets.for_slot(0)
    subnets = Subnets(
        os.environ.get("NATLAB_WAN", default.wan),
        os.environ.get("NATLAB_LAN_A", default.lan_a),
        os.environ.get("NATLAB_LAN_B", default.lan_b),
    )
    return Lab(INTERACTIVE_PROJECT, subnets, os.environ.get("NAT_A", "cone"), os.environ.get("NAT_B", "cone"))


def read_json(lab: Lab, service: str, *command: str) -> Any:
    try:
        return lab.json(service, *command)
    except (LabError, json.JSONDecodeError):
        return None


def query(lab: Lab, service: str) -> Any:
    """The one JSON document that describes a service: profile, peer table or client status."""
    if service.startswith("router"):
        return read_json(lab, service, "cat", "/run/natlab/profile.json")
    if service == "server":
        return read_json(lab, service, "cat", "/run/natlab/server.json")
    return read_json(lab, service, "client", "status", "--json")


def describe(service: str, state: Any) -> str:
    state = state or {}
    if service.startswith("router"):
        fields = ", ".join(f"{k} {state[k]}" for k in ("mapping", "filtering") if k in state)
        return f"profile {state.get('name', '?')} ({fields})"
    if service == "server":
        peers = [f"{p['id']}@{p['addr']}" for p in state.get("peers", [])]
        return f"{len(peers)} registered: {', '.join(peers) or '-'}"
    registered = "registered" if state.get("registered") else "NOT registered"
    return f"{registered} as {state.get('id', '?')} with {state.get('server', '?')}"


def paths(host: str, status: Any) -> list[str]:
    lines = []
    for peer in (status or {}).get("peers", []):
        timing = f", direct in {peer['time_to_direct_ms']:.1f} ms" if peer.get("time_to_direct_ms") else ""
        reason = f" ({peer['reason']})" if peer.get("reason") else ""
        lines.append(f"  {host} -> {peer['id']}: {peer['path']} via {peer.get('addr')}{timing}{reason}")
    return lines


def main() -> int:
    lab = interactive_lab()
    services = lab.services()
    if not services:
        print("natlab: the lab is not running (start it with `make lab-up`)")
        return 1
    print(f"natlab lab '{lab.project}': wan {lab.subnets.wan}.0/24")
    with ThreadPoolExecutor(len(services)) as pool:  # one `docker exec` each, side by side
        states = dict(zip(services, pool.map(lambda service: query(lab, service), services), strict=True))
    print(f"  {'SERVICE':<9} {'STATE':<10} {'ADDRESSES':<27} DETAIL")
    for service in services:
        container = lab.container(service)
        health = container.attrs["State"].get("Health", {}).get("Status", container.status)
        networks = container.attrs["NetworkSettings"]["Networks"].values()
        addresses = " ".join(n["IPAddress"] for n in networks if n.get("IPAddress"))
        print(f"  {service:<9} {health:<10} {addresses:<27} {describe(service, states[service])}")
    print("paths:")
    lines = [line for host in HOSTS if host in services for line in paths(host, states[host])]
    print("\n".join(lines) if lines else "  none yet (try: docker compose exec alice client bob)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
