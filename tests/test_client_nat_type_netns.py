"""``client nat-type`` (and the third-party classifiers) through a real NAT: ``nat run`` in a network namespace.

Topology (throwaway namespaces, addresses only in 198.19.210.0/24 and 198.19.211.0/24; no traffic leaves
them):

    wan ns  coturn on 198.19.210.2 (primary) and .3 (alternate)  ──  198.19.210.1 eth0  router ns
    eth1 198.19.211.1  ──  198.19.211.2  host ns (runs the classifiers)

Needs root, ``ip netns``, nft, conntrack and coturn's ``turnserver`` on the host, and for the classifier
checks ``turnutils_natdiscovery`` (coturn) and ``stun`` (stun-client): skipped without them, failed under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.diagnostics.nat_type import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT
from protocol import Endpoint
from scenarios.classifiers import (
    natdiscovery_argv,
    parse_natdiscovery,
    parse_stun_client,
    stun_client_argv,
)
from scenarios.processes import logged_process
from tests.support.coturn import LAB_FLAGS, turnserver_command
from tests.support.nat_router import running_nat

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.needs("ip", "nft", "conntrack", "turnserver", root=True)

WAN_SUBNET, LAN_SUBNET = "198.19.210.0/24", "198.19.211.0/24"
ROUTER_WAN, ROUTER_LAN, HOST = "198.19.210.1", "198.19.211.1", "198.19.211.2"
PRIMARY, ALTERNATE = "198.19.210.2", "198.19.210.3"
STUN = Endpoint(PRIMARY, 3478)
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@dataclass
class Lab:
    """Three namespaces joined by veth pairs: ``wan`` (coturn), ``router`` (``nat run``), ``host``."""

    tag: str

    @property
    def wan(self) -> str:
        return f"{self.tag}-w"

    @property
    def router(self) -> str:
        return f"{self.tag}-r"

    @property
    def host(self) -> str:
        return f"{self.tag}-h"

    def run(self, ns: str, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=timeout, env=ENV, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} in {ns} failed ({done.returncode}): {done.stderr}")
        return done

    def build(self) -> None:
        for ns in (self.wan, self.router, self.host):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        for suffix, ns, router_side in (("w", self.wan, "eth0"), ("h", self.host, "eth1")):
            a, b = f"{self.tag}r{suffix}", f"{self.tag}{suffix}r"
            subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
            subprocess.run(["ip", "link", "set", a, "netns", self.router, "name", router_side], check=True)
            subprocess.run(["ip", "link", "set", b, "netns", ns, "name", "eth0"], check=True)
        for ns, device, address in (
            (self.router, "eth0", f"{ROUTER_WAN}/24"),
            (self.router, "eth1", f"{ROUTER_LAN}/24"),
            (self.wan, "eth0", f"{PRIMARY}/24"),
            (self.wan, "eth0", f"{ALTERNATE}/24"),
            (self.host, "eth0", f"{HOST}/24"),
        ):
            self.run(ns, "ip", "addr", "add", address, "dev", device)
        for ns in (self.wan, self.router, self.host):
            self.run(ns, "ip", "link", "set", "lo", "up")
        for ns, device in ((self.router, "eth0"), (self.router, "eth1"), (self.wan, "eth0"), (self.host, "eth0")):
            self.run(ns, "ip", "link", "set", device, "up")
        self.run(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run(self.host, "ip", "route", "add", "default", "via", ROUTER_LAN)

    def destroy(self) -> None:
        for ns in (self.wan, self.router, self.host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The namespaces and coturn in the WAN one, answering on both addresses; all removed afterwards."""
    topology = Lab(f"nltype{os.getpid() % 100000}")
    workdir = tmp_path_factory.mktemp("coturn-netns")
    try:
        topology.build()
        with running_coturn(topology, workdir):
            yield topology
    finally:
        topology.destroy()


@contextlib.contextmanager
def running_coturn(lab: Lab, workdir: Path) -> Iterator[None]:
    """coturn as the lab runs it, plus a second listening IP (its first --listening-ip is the primary)."""
    log = workdir / "turnserver.log"
    command = turnserver_command(
        "turnserver",
        workdir,
        listening_ips=(PRIMARY, ALTERNATE),
        port=3478,
        relay_ports=range(49152, 49408),
        secret=secrets.token_urlsafe(12),
        extra=(*LAB_FLAGS, "--simple-log"),
    )
    with logged_process(["ip", "netns", "exec", lab.wan, *command], log):
        for server in (PRIMARY, ALTERNATE):  # stun-ping retries with a deadline: coturn needs ~100 ms to answer
            ping = lab.run(
                lab.wan, sys.executable, "-m", "client", "stun-ping", f"{server}:3478", "--wait", "10", check=False
            )
            assert ping.returncode == 0, f"coturn not answering on {server}: {ping.stderr}\n{log.read_text()}"
        yield


def running_router(lab: Lab, state_dir: Path, **env: str) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """``nat run`` in the router namespace, polled until ready; SIGTERM afterwards."""
    return running_nat(
        lab.router, state_dir, "198.19.210.254", NAT_WAN_SUBNET=WAN_SUBNET, NAT_LAN_SUBNET=LAN_SUBNET, **env
    )


def nat_type(lab: Lab, *args: str) -> dict[str, Any]:
    done = lab.run(lab.host, sys.executable, "-m", "client", "nat-type", "--server", str(STUN), "--json", *args)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_without_nat_the_router_only_routes(lab: Lab) -> None:
    """The topology itself: from the router namespace (no NAT in between) coturn sees us as we are."""
    done = lab.run(lab.router, sys.executable, "-m", "client", "nat-type", "--server", str(STUN), "--json")
    report = json.loads(done.stdout)
    assert (report["nat"], report["mapping"], report["filtering"]) == (
        False,
        ENDPOINT_INDEPENDENT,
        ENDPOINT_INDEPENDENT,
    )
    assert report["other"] == f"{ALTERNATE}:3479"


def test_cone_is_endpoint_independent_mapping_with_port_dependent_filtering(lab: Lab, tmp_path: Path) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE="cone"):
        report = nat_type(lab)
    assert report["nat"] is True
    assert report["mapped"].startswith(f"{ROUTER_WAN}:")
    assert report["local"].startswith(f"{HOST}:")
    assert (report["mapping"], report["filtering"]) == (ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT)
    assert report["classic"] == "port-restricted cone"
    assert report["port_preserved"] is True
    assert len(set(report["mapped_ports"])) == 1
    assert report["hairpinning"] is False


def test_symmetric_is_port_dependent_both_ways(lab: Lab, tmp_path: Path) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE="symmetric"):
        report = nat_type(lab)
    assert report["nat"] is True
    assert (report["mapping"], report["filtering"]) == (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)
    assert report["classic"] == "symmetric"
    assert len(set(report["mapped_ports"])) == 3


def test_binding_lifetime_finds_the_routers_udp_timeout(lab: Lab, tmp_path: Path) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE="cone", NAT_UDP_TIMEOUT="3"):
        started = time.monotonic()
        report = nat_type(lab, "--lifetime-max", "5")
        took = time.monotonic() - started
    # Probed at 1, 2, 3, 4 and 5 s idle; the conntrack entry lives 3 s (expiry is checked to the jiffy,
    # so the 3 s probe may go either way).
    assert report["lifetime_max_s"] == 5
    assert report["lifetime_s"] in (2, 3), report
    assert report["lifetime_lost_s"] in (3, 4), report
    assert took < 5 + 4, "the probes run at once, not one after another"


@pytest.mark.needs("turnutils_natdiscovery")
@pytest.mark.parametrize(
    ("profile", "mapping"), [("cone", ENDPOINT_INDEPENDENT), ("symmetric", ADDRESS_AND_PORT_DEPENDENT)]
)
def test_turnutils_natdiscovery_agrees(lab: Lab, tmp_path: Path, profile: str, mapping: str) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE=profile):
        done = lab.run(lab.host, *natdiscovery_argv(STUN, local_ip=HOST), timeout=60)
    verdict = parse_natdiscovery(done.stdout)
    assert (verdict.nat, verdict.mapping, verdict.filtering) == (True, mapping, ADDRESS_AND_PORT_DEPENDENT), done.stdout


@pytest.mark.needs("stun")
def test_stun_client_agrees_on_cone(lab: Lab, tmp_path: Path) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE="cone"):
        done = lab.run(lab.host, *stun_client_argv(STUN), check=False, timeout=60)
    verdict = parse_stun_client(done.stdout + done.stderr, done.returncode)
    assert (verdict.nat, verdict.mapping, verdict.filtering) == (True, ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT)
    assert (verdict.port_preserved, verdict.hairpinning) == (True, False)


@pytest.mark.needs("stun")
def test_stun_client_on_symmetric_says_dependent_mapping_only(lab: Lab, tmp_path: Path) -> None:
    with running_router(lab, tmp_path, NAT_PROFILE="symmetric"):
        done = lab.run(lab.host, *stun_client_argv(STUN), check=False, timeout=60)
    verdict = parse_stun_client(done.stdout + done.stderr, done.returncode)
    assert verdict.nat is True
    assert verdict.mapping is None
    assert ENDPOINT_INDEPENDENT not in verdict.mapping_possible
    assert verdict.filtering is None
