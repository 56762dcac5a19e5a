"""`make lab-status`: the interactive lab at a glance: profiles, addresses, who is registered, the signal
server's counters, each host's presence (online or offline, and since when the server has not heard it),
each pair's path.

Everything shown comes from the running lab: its containers' ``natlab.role`` labels, addresses and
environment, its networks, and each service's state document (:data:`scenarios.harness.STATE_COMMAND`), so
it is true wherever the lab was placed (``make lab-up NATLAB_WAN=...``) and whatever topology it runs.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker.errors

from scenarios.harness import STATE_COMMAND, Lab, LabError, Role, Service, health_of


@dataclass(frozen=True)
class ServiceView:
    """What the status shows of one service: the service, its health, and its state document (or None)."""

    service: Service
    health: str
    state: Any


def interactive_lab() -> Lab:
    """The lab `make lab-up` started (COMPOSE_PROJECT_NAME, `natlab` by default)."""
    return Lab.interactive()


def query(lab: Lab, service: Service) -> Any:
    """The one JSON document that describes a service (see STATE_COMMAND), or None. A user's own image is
    described from its container (it may have no tool to ask): the image and the command it runs."""
    if service.role is Role.USER:
        config = lab.container(service.name).attrs["Config"]
        return {"image": config.get("Image"), "command": config.get("Cmd") or []}
    command = STATE_COMMAND[service.role]
    if command is None:
        return None
    try:
        return lab.json(service.name, *command)
    except (LabError, json.JSONDecodeError, docker.errors.APIError):
        return None


def describe(view: ServiceView) -> str:
    """One line on what a service is doing, by its role."""
    service, state = view.service, view.state or {}
    match service.role:
        case Role.ROUTER:
            fields = ", ".join(f"{k} {state[k]}" for k in ("mapping", "filtering") if k in state)
            return f"profile {state.get('name', service.environment.get('NAT_PROFILE', '?'))} ({fields or '?'})"
        case Role.SERVER:
            peers = [f"{p['id']}@{p['addr']}" for p in state.get("peers", [])]
            return f"{len(peers)} registered: {', '.join(peers) or '-'}"
        case Role.TURN:
            addresses = [service.environment.get(k) for k in ("NATLAB_TURN_IP", "NATLAB_TURN_ALT_IP")]
            listening = " and ".join(f"{a}:3478" for a in addresses if a) or "?"
            ready = "answering STUN" if view.health == "healthy" else "not answering STUN yet"
            return f"STUN/TURN relay on {listening}, {ready}"
        case Role.HOST:
            return host_agent(state)
        case Role.ATTACKER | Role.VICTIM:
            return attack_service(service, state)
        case Role.USER:
            return user_host(service, state)


def user_host(service: Service, state: Any) -> str:
    """A user's own image (README "Bring your own host"): what it runs, and that natlab's agent is beside it."""
    command = shlex.join(state.get("command") or []) or "its own command"
    return f"your image {state.get('image', '?')} ({command}), in {service.name}-agent's network namespace"


def host_agent(state: Any) -> str:
    """A host's agent: registered or not, with which server, and its TURN allocation."""
    if not state:
        return "agent not answering"
    registered = "registered" if state.get("registered") else "NOT registered"
    relay = state.get("turn") or {}
    allocation = f", relay {relay.get('state')}" if relay else ", no relay"
    return f"{registered} as {state.get('id', '?')} with {state.get('server', '?')}{allocation}"


def attack_service(service: Service, state: Any) -> str:
    """The attacker and its victim (compose profile ``attack``): how to use one, what the other received."""
    if service.role is Role.ATTACKER:
        return f"attacker: docker compose --profile attack exec {service.name} python3 -m attacks --help"
    if not state:
        return "counter not answering"
    total = state.get("total") or {}
    received = f"{total.get('datagrams', 0)} datagrams, {total.get('payload_bytes', 0)} bytes"
    return f"victim: received {received} from {len(state.get('by_source') or {})} sources"


def paths(host: str, status: Any) -> list[str]:
    """One line per pair; while the host's tunnel is up, a second line: what the tunnel carries to the peer."""
    lines = []
    tunnel = (status or {}).get("tunnel") or {}
    carried = {peer["id"]: peer for peer in tunnel.get("peers", [])} if tunnel.get("up") else {}
    for peer in (status or {}).get("peers", []):
        timing = f", direct in {peer['time_to_direct_ms']:.1f} ms" if peer.get("time_to_direct_ms") else ""
        reason = f" ({peer['reason']})" if peer.get("reason") else ""
        lines.append(f"  {host} -> {peer['id']}: {peer['path']} via {peer.get('addr')}{timing}{reason}")
        if peer["id"] in carried:
            lines.append(f"    {tunnel_line(carried[peer['id']])}")
    return lines


def tunnel_line(peer: Mapping[str, Any]) -> str:
    """The tunnel to one peer (README "Tunnel"): its name and overlay address, path and who carries it,
    handshake and bytes."""
    age = peer.get("handshake_age_s")
    handshake = "no handshake yet" if age is None else f"handshake {age:.0f} s ago"
    carrier = f" by the {peer['carrier']}" if peer.get("carrier") else ""
    return (
        f"tunnel {peer['name']} ({peer['overlay']}) over {peer['path']}{carrier}, {handshake}, "
        f"{peer['rx_bytes']} B in, {peer['tx_bytes']} B out"
    )


def counters(views: Sequence[ServiceView]) -> list[str]:
    """The signal server's counters (drops and refusals by kind), one line per kind that is not zero."""
    lines = []
    for view in views:
        if view.service.role is Role.SERVER and view.state:
            counts = {kind: n for kind, n in view.state.get("counters", {}).items() if n}
            lines.append(f"{view.service.name} counters:" + ("" if counts else " all zero"))
            lines += [f"  {kind:<15} {n:>10}" for kind, n in counts.items()]
    return lines


def presence(views: Sequence[ServiceView], wall_now: float) -> list[str]:
    """Each host's presence as the signal server's state file has it: online (registered) or offline (expired
    recently, or never heard), and how long ago the server last heard it; nothing without a server state."""
    server = next((v.state for v in views if v.service.role is Role.SERVER and v.state), None)
    if server is None:
        return []
    heard = {gone["id"]: ("offline", gone["last_seen"]) for gone in server.get("gone", [])}
    heard |= {peer["id"]: ("online", peer["last_seen"]) for peer in server.get("peers", [])}
    lines = []
    width = max([9, *(len(view.service.name) for view in views if view.service.role is Role.HOST)])
    for view in views:
        if view.service.role is Role.HOST:
            host_id = (view.state or {}).get("id") or view.service.name
            state, last_seen = heard.get(host_id, ("offline", None))
            age = "never heard" if last_seen is None else f"last heard {_age(last_seen, wall_now)} ago"
            lines.append(f"  {view.service.name:<{width}} {state:<8} {age}")
    return ["presence (signal server):", *lines] if lines else []


def _age(iso: str, wall_now: float) -> str:
    seconds = max(0, round(wall_now - datetime.fromisoformat(iso).timestamp()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60} s"


def render(
    project: str,
    networks: Mapping[str, ipaddress.IPv4Network],
    views: Sequence[ServiceView],
    wall_now: float | None = None,
) -> str:
    """The whole status text (``wall_now``: the time presence ages are counted to, default now)."""
    placed = ", ".join(f"{name} {subnet}" for name, subnet in networks.items()) or "-"
    width = max([9, *(len(view.service.name) for view in views)])  # alice-agent: a user host's agent
    lines = [f"natlab lab '{project}': {placed}", f"  {'SERVICE':<{width}} {'STATE':<10} {'ADDRESSES':<27} DETAIL"]
    for view in views:
        addresses = " ".join(view.service.addresses.values())
        lines.append(f"  {view.service.name:<{width}} {view.health:<10} {addresses:<27} {describe(view)}")
    lines += counters(views)
    lines += presence(views, time.time() if wall_now is None else wall_now)
    lines.append("paths:")
    pairs = [line for v in views if v.service.role is Role.HOST for line in paths(v.service.name, v.state)]
    lines.append("\n".join(pairs) if pairs else "  none yet (try: docker compose exec alice client bob)")
    return "\n".join(lines)


def main() -> int:
    with closing(interactive_lab()) as lab:
        services = lab.running()
        if not services:
            print(f"natlab: the lab '{lab.project}' is not running (start it with `make lab-up`)")
            return 1
        with ThreadPoolExecutor(len(services)) as pool:  # one `docker exec` each, side by side
            states = list(pool.map(lambda service: query(lab, service), services))
        views = [
            ServiceView(service, health_of(lab.container(service.name)), state)
            for service, state in zip(services, states, strict=True)
        ]
        print(render(lab.project, lab.networks(), views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
