"""Write ``grid.yaml``: the traversal grid's compose file, one site per NAT profile and side.

The grid has too many services to keep in step by hand, so this generates it; the file is checked in (it is
the topology users read and start) and a unit test fails when it is out of date. Run
``python -m scenarios.topologies.generate`` after changing the site list.

Layout (``NATLAB_GRID_NET`` is the first two octets, 198.19 by default; ``NATLAB_GRID_CGN`` the first two
octets of the carrier-grade NATs' inside networks, inside 100.64.0.0/10):

    server .10, turn .20 (+ .21 for RFC 5780)                       wan            NET.0.0/24
    router nat-<site> WAN .(100+i), LAN .2 ── host <site> .10       site i         NET.i.0/24
    CGNAT site: carrier cgn-<site> WAN .(100+i), inside .2;         inside         CGN.k.0/24
                home router nat-<site> inside .3 ── host .10        home LAN       NET.i.0/24

Every profile has two sites, ``<profile>-a`` (rows: the host that connects) and ``<profile>-b`` (columns), so
that a profile meets itself across two NATs, as in the two-site lab.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
GRID_FILE = HERE / "grid.yaml"
SIDES = ("a", "b")
PROFILES = ("full-cone", "restricted-cone", "cone", "symmetric", "symmetric-pp", "symmetric-seq", "udp-blocked")
CGNAT = "cgnat"
"""A host behind a home NAT (cone) behind a carrier NAT (cone, 100.64.0.0/10 inside)."""
CGNAT_PROFILES = ("cone", "cone")
"""(carrier, home) profiles of the CGNAT site: RFC 6888 asks carrier NATs for endpoint-independent mapping."""
SITES = (*PROFILES, CGNAT)

DEFAULT_NET, DEFAULT_CGN = "198.19", "100.100"
"""First two octets of the grid's own networks and of its carrier NATs' insides (both overridable)."""
NET = f"${{NATLAB_GRID_NET:-{DEFAULT_NET}}}"
CGN = f"${{NATLAB_GRID_CGN:-{DEFAULT_CGN}}}"
WAN = f"{NET}.0"
GRID_IMPAIR = {
    "NAT_IMPAIR_UP": "${NATLAB_GRID_IMPAIR_UP:-${NATLAB_GRID_IMPAIR:-}}",
    "NAT_IMPAIR_DOWN": "${NATLAB_GRID_IMPAIR_DOWN:-${NATLAB_GRID_IMPAIR:-}}",
}
"""Every site's own router impairs its access link alike (``NATLAB_GRID_IMPAIR=lte``); a CGNAT site's carrier
does not, so that every site adds one access link's impairments, whatever its NATs."""


@dataclass(frozen=True)
class Site:
    """One grid site: its name (``cone-a``), profile name (or ``cgnat``) and index (its LAN is NET.index)."""

    profile: str
    side: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.profile}-{self.side}"


def sites() -> list[Site]:
    return [Site(profile, side, i) for i, (profile, side) in enumerate(((p, s) for p in SITES for s in SIDES), 1)]


def _lab(role: str, **fields: Any) -> dict[str, Any]:
    """A service on the lab image, labelled with its role (what scenarios/harness.py knows it by)."""
    return {"<<": "*lab", "labels": {"natlab": "lab", "natlab.role": role}, **fields}


Networks = dict[str, dict[str, str]]
"""A service's ``networks:`` entry: network name -> {"ipv4_address": ...}."""


def _router(profile: str, wan_subnet: str, lan_subnet: str, wan: Networks, lan: Networks) -> dict[str, Any]:
    return {
        "role": "router",
        "command": ["python3", "-m", "nat", "run"],
        "environment": {
            "NAT_PROFILE": profile,
            "NAT_WAN_SUBNET": wan_subnet,
            "NAT_LAN_SUBNET": lan_subnet,
            "NAT_UDP_TIMEOUT": "${NATLAB_GRID_UDP_TIMEOUT:-}",
            "NAT_UDP_ALLOW": f"{WAN}.10,{WAN}.20,{WAN}.21",  # signal + TURN servers, for udp-blocked
            "NAT_CAPTURE": "${NATLAB_CAPTURE:-}",  # ring|full: packet captures (nat/capture.py)
        },
        "sysctls": "*router-sysctls",
        "networks": {**wan, **lan},
        "healthcheck": "*router-health",
    }


def services() -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid's services and networks, with ``*anchor`` strings where compose anchors go."""
    svc: dict[str, Any] = {
        "server": {
            "role": "server",
            "command": ["lab-entrypoint", "--no-default-route", "--", "server-entrypoint",
                        "--listen", "0.0.0.0:9000", "--state-file", "/run/natlab/server.json"],
            "environment": {"NATLAB_HOSTS": ",".join(site.name for site in sites())},  # it makes their keys
            "volumes": ["secrets:/run/natlab-secrets"],
            "networks": {"wan": {"ipv4_address": f"{WAN}.10"}},
            "healthcheck": {"<<": "*health", "test": ["CMD", "test", "-s", "/run/natlab/server.json"]},
        },
        "turn": {
            "role": "turn",
            "command": ["lab-entrypoint", "--no-default-route", "--", "turn-entrypoint"],
            "environment": {
                "NATLAB_WAN": WAN,
                "NATLAB_TURN_IP": f"{WAN}.20",
                "NATLAB_TURN_ALT_IP": f"{WAN}.21",
            },
            "volumes": ["secrets:/run/natlab-secrets"],
            "networks": {"wan": {"ipv4_address": f"{WAN}.20"}},
            "healthcheck": {"<<": "*health", "test": ["CMD", "test", "-f", "/run/natlab/ready"]},
        },
    }  # fmt: skip
    nets: dict[str, Any] = {"wan": _network(f"{WAN}")}
    cgn_index = 0
    for site in sites():
        lan = f"lan-{site.name}"
        nets[lan] = _network(f"{NET}.{site.index}")
        wan_ip = {"wan": {"ipv4_address": f"{WAN}.{100 + site.index}"}}
        lan_ip = {lan: {"ipv4_address": f"{NET}.{site.index}.2"}}
        lan_subnet = f"{NET}.{site.index}.0/24"
        if site.profile == CGNAT:
            inside = f"inside-{site.name}"
            nets[inside] = _network(f"{CGN}.{cgn_index}")
            carrier, home = CGNAT_PROFILES
            svc[f"cgn-{site.name}"] = _router(
                carrier,
                f"{WAN}.0/24",
                f"{CGN}.{cgn_index}.0/24",
                wan_ip,
                {inside: {"ipv4_address": f"{CGN}.{cgn_index}.2"}},
            )
            router = _router(
                home, f"{CGN}.{cgn_index}.0/24", lan_subnet, {inside: {"ipv4_address": f"{CGN}.{cgn_index}.3"}}, lan_ip
            )
            router["environment"]["NAT_GATEWAY"] = f"{CGN}.{cgn_index}.2"  # upstream: the carrier NAT
            cgn_index += 1
        else:
            router = _router(site.profile, f"{WAN}.0/24", lan_subnet, wan_ip, lan_ip)
        router["environment"].update(GRID_IMPAIR)
        svc[f"nat-{site.name}"] = router
        svc[site.name] = {
            "role": "host",
            "command": ["lab-entrypoint", "--gateway", f"{NET}.{site.index}.2", "--",
                        "python3", "-m", "client", "agent"],
            "environment": {"<<": "*host-env", "NATLAB_ID": site.name,
                            "NATLAB_KEY_FILE": f"/run/natlab-secrets/keys/{site.name}.json"},
            "volumes": ["secrets:/run/natlab-secrets:ro"],
            "devices": ["/dev/net/tun:/dev/net/tun"],  # the tunnel's TUN device (README "Tunnel")
            "sysctls": {"net.ipv4.ip_local_reserved_ports": "51820"},  # WireGuard's port (see compose.yaml)
            "networks": {lan: {"ipv4_address": f"{NET}.{site.index}.10"}},
            "healthcheck": "*host-health",
        }  # fmt: skip
    return svc, nets


def _network(prefix: str) -> dict[str, Any]:
    return {
        "labels": {"natlab": "lab"},
        "driver_opts": {"com.docker.network.bridge.enable_ip_masquerade": "false"},  # see compose.yaml
        "ipam": {"config": [{"subnet": f"{prefix}.0/24", "gateway": f"{prefix}.1"}]},
    }


HEADER = """\
# natlab traversal grid: GENERATED by `python -m scenarios.topologies.generate`; edit that, not this file.
# One site per NAT profile and side (rows connect, columns answer), a CGNAT site (home NAT behind a carrier
# NAT with a 100.64.0.0/10 inside), the signal server and the TURN server (two WAN addresses, RFC 5780).
# `make grid` runs it; `docker compose -f scenarios/topologies/grid.yaml -p natlab-grid up -d` starts it by hand.
name: natlab-grid

x-lab: &lab
  image: ${NATLAB_IMAGE:-natlab-lab:latest}
  pull_policy: never
  init: true
  stop_grace_period: 2s
  cap_add: [NET_ADMIN, NET_RAW]
  logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
  labels:
    natlab: lab

# Healthchecks are `docker exec`s: at compose.yaml's 300 ms, 36 containers keep 2 cores busy (load 50).
x-health: &health
  interval: 2s
  timeout: 3s
  retries: 60

x-router-sysctls: &router-sysctls
  net.ipv4.ip_forward: 1
  net.ipv4.conf.all.rp_filter: 0
  net.ipv4.conf.default.rp_filter: 0

x-router-health: &router-health
  <<: *health
  test: [CMD, test, -f, /run/natlab/ready]

x-host-health: &host-health
  <<: *health
  test: [CMD, test, -f, /run/natlab/registered]

x-host-env: &host-env
  NATLAB_SERVER: "{net}.0.10:9000"
  NATLAB_PUNCH_TIMEOUT: "${NATLAB_PUNCH_TIMEOUT:-2}"
  NATLAB_KEEPALIVE: "${NATLAB_KEEPALIVE:-2}"
  NATLAB_TURN: "{net}.0.20:3478"
  NATLAB_TURN_USER: natlab
  NATLAB_TURN_PASSWORD_FILE: /run/natlab-secrets/turn-password
  NATLAB_TUNNEL: "${NATLAB_TUNNEL:-0}"
  NATLAB_TUNNEL_CONNECT: "0"

"""


def render() -> str:
    """The grid compose file's text (YAML anchors written as ``*name`` strings, then unquoted)."""
    svc, nets = services()
    body = {
        "services": {name: _lab(**fields) for name, fields in svc.items()},
        "volumes": {"secrets": {"labels": {"natlab": "lab"}}},
        "networks": nets,
    }
    text = yaml.safe_dump(body, sort_keys=False, width=200, default_flow_style=False)
    # PyYAML quotes '*anchor' and '<<' strings; compose needs them as YAML aliases and merge keys.
    for anchor in ("lab", "health", "router-sysctls", "router-health", "host-health", "host-env"):
        text = text.replace(f"'*{anchor}'", f"*{anchor}")
    return HEADER.replace("{net}", NET) + text.replace("'<<'", "<<")


def main() -> int:
    GRID_FILE.write_text(render())
    print(f"wrote {GRID_FILE.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
