"""Bring your own host: a plain Debian image with netcat (images/user-netcat, no natlab code) is alice and bob,
natlab's agent runs beside each (alice-agent, bob-agent), and netcat's UDP gets through the NATs as theory says.

Theory for netcat, which knows no STUN and predicts nothing: each side sends from a fixed port P to the other
router's WAN address at port P. That reaches the other side only if both NATs map endpoint-independently and
keep the source port (then P on the LAN is P on the WAN, for every destination), and each side's own sends open
its filter for the other's: cone-cone. With symmetric NATs each send to the peer leaves from a fresh random
port, so both sides aim at ports nobody mapped, and the routers' conntrack keeps both flows UNREPLIED. What
each side knows of its NAT comes from the agent beside it (`client nat-type`), not from the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from protocol import Endpoint
from scenarios.harness import Lab, LabError, Role, start_lab
from scenarios.steps import server_peers

PORT = 40000
"""netcat's UDP port at both ends (LAN and, when the NAT preserves it, WAN)."""
SENDS, GAP_S, RUN_S = 50, 0.1, 6
"""Each side sends SENDS lines GAP_S apart, and its netcat stops after RUN_S seconds: bounded in count and time,
and long enough that the two sides' sends overlap by seconds even when one `docker exec` starts late."""
HOSTS = {"alice": ("router-a", "router-b"), "bob": ("router-b", "router-a")}
"""Each user host: its own router, and the router it sends to."""
EIM = "endpoint-independent"


@dataclass(frozen=True)
class Case:
    """Both sites' router profile, and whether netcat must get through."""

    profile: str
    reaches: bool

    @property
    def id(self) -> str:
        return f"{self.profile}-{self.profile}"


CASES = (Case("cone", reaches=True), Case("symmetric", reaches=False))


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.id)
def case(request: pytest.FixtureRequest) -> Case:
    chosen: Case = request.param
    return chosen


@pytest.fixture(scope="module")
def user_lab(case: Case, user_image: str) -> Iterator[Lab]:
    """A lab whose alice and bob are the user image (its own command), natlab's agents beside them."""
    env = {"NAT_A": case.profile, "NAT_B": case.profile, "HOST_A_IMAGE": user_image, "HOST_B_IMAGE": user_image}
    with start_lab(name=f"user-{case.id}", env=env) as lab:
        yield lab


@pytest.fixture(scope="module")
def nat_reports(user_lab: Lab) -> dict[str, dict[str, Any]]:
    """What each host knows of its NAT: `client nat-type --json` from the agent beside its own container
    (same network namespace), once per lab (each run takes seconds)."""
    return {host: user_lab.json(f"{host}-agent", "client", "nat-type", "--json") for host in HOSTS}


def test_the_users_container_is_the_host_with_nothing_of_natlabs(user_lab: Lab, user_image: str) -> None:
    """alice is the user's image under the host's own name; it holds no natlab code, key or variable, and
    routes through its router because it lives in its agent's network namespace."""
    assert user_lab.topology.with_role(Role.USER) == ["alice", "bob"]
    for host, (router, _) in HOSTS.items():
        container = user_lab.container(host)
        assert container.attrs["Config"]["Image"] == user_image
        assert container.attrs["HostConfig"]["NetworkMode"] == f"container:{user_lab.container(f'{host}-agent').id}"
        assert not [v for v in container.attrs["Config"]["Env"] if v.startswith("NATLAB")]
        script = "! ls /opt/natlab /run/natlab-secrets 2>/dev/null && ! command -v client lab-entrypoint"
        user_lab.exec_ok(host, "sh", "-c", script)
        (lan,) = user_lab.service(f"{host}-agent").addresses
        route = user_lab.exec_ok(host, "ip", "-4", "route", "show", "default")
        assert route.split()[:3] == ["default", "via", user_lab.address(router, lan)], route


def test_the_agent_beside_the_users_container_works(
    user_lab: Lab, case: Case, nat_reports: dict[str, dict[str, Any]]
) -> None:
    """The agent registers the host at its router's WAN address, and `client nat-type` from the host's
    namespace reports the router's own profile."""
    peers = server_peers(user_lab)
    for host, (router, _) in HOSTS.items():
        assert Endpoint.parse(peers[host]["addr"]).host == user_lab.address(router, "wan")
        profile = user_lab.json(router, "cat", "/run/natlab/profile.json")
        report = nat_reports[host]
        assert profile["name"] == case.profile
        assert (report["mapping"], report["filtering"]) == (profile["mapping"], profile["filtering"]), report


def test_netcat_gets_through_as_theory_says(user_lab: Lab, case: Case, nat_reports: dict[str, dict[str, Any]]) -> None:
    """Both netcats start together; each receives the other's lines exactly when theory says, and the
    routers' conntrack agrees: replied flows at the preserved port, or UNREPLIED ones at fresh ports."""
    theory = all(r["mapping"] == EIM and r["port_preserved"] for r in nat_reports.values())
    assert theory is case.reaches, nat_reports
    for host, (_, far_router) in HOSTS.items():
        start_netcat(user_lab, host, user_lab.address(far_router, "wan"))
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        probe = partial(heard_from, user_lab, host, peer, until_done=not case.reaches)
        heard = user_lab.wait_for(probe, RUN_S + 15, f"{host}'s netcat")
        flows = flows_to_peer(user_lab, host)
        assert len(flows) == 1, flows
        flow = flows[0]
        if case.reaches:
            assert heard, f"{host} heard nothing from {peer}: {user_lab.exec(host, 'cat', '/tmp/nc.err')}"
            assert "UNREPLIED" not in flow["flags"], flow
            assert int(flow["reply"]["dport"]) == PORT, flow  # the port theory said the peer should aim at
        else:
            assert not heard, f"{host} heard {peer} through a symmetric NAT: {heard}"
            assert "UNREPLIED" in flow["flags"], flow
            assert int(flow["reply"]["dport"]) != PORT, flow  # mapped to a port nobody aimed at


def start_netcat(lab: Lab, host: str, peer_wan: str) -> None:
    """In the user's container: send SENDS numbered lines from PORT to the peer's router at PORT, print what
    comes back, stop after RUN_S seconds; /tmp/nc.out holds what it heard, /tmp/nc.done its exit code."""
    script = (
        f'rm -f /tmp/nc.*; i=0; while [ $i -lt {SENDS} ]; do i=$((i+1)); echo "{host} $i"; sleep {GAP_S}; done'
        f" | timeout {RUN_S} nc -u -p {PORT} {peer_wan} {PORT} >/tmp/nc.out 2>/tmp/nc.err; echo $? >/tmp/nc.done"
    )
    lab.container(host).exec_run(["sh", "-c", script], detach=True)


def heard_from(lab: Lab, host: str, peer: str, until_done: bool) -> list[str] | None:
    """The lines `host`'s netcat received from `peer`: as soon as there are some (unless `until_done`), else
    once netcat has finished (then possibly none); None while it may still hear."""
    code, output = lab.exec(host, "cat", "/tmp/nc.out")
    heard = [line for line in output.splitlines() if line.startswith(f"{peer} ")] if code == 0 else []
    if heard and not until_done:
        return heard
    finished, _ = lab.exec(host, "test", "-f", "/tmp/nc.done")
    return heard if finished == 0 else None


def flows_to_peer(lab: Lab, host: str) -> list[dict[str, Any]]:
    """The UDP flows `host`'s router holds from the host's PORT to the far router's WAN address at PORT."""
    router, far_router = HOSTS[host]
    lan = lab.address(f"{host}-agent")
    flows: list[dict[str, Any]] = lab.json(router, "nat", "conntrack", "--json")
    found = [
        f
        for f in flows
        if (f["orig"]["src"], int(f["orig"]["sport"])) == (lan, PORT)
        and (f["orig"]["dst"], int(f["orig"]["dport"])) == (lab.address(far_router, "wan"), PORT)
    ]
    if not found:
        raise LabError(f"{router} has no flow {lan}:{PORT} -> {far_router}:{PORT}: {flows}")
    return found
