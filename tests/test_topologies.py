"""The topology compose files: the generated grid is up to date, and every file is one compose accepts."""

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from interop.nebula import OVERLAY as NEBULA_OVERLAY
from scenarios.harness import COMPOSE_FILE, SLOTS, USER_HOST_OVERLAYS, Lab, LabError, Role, Subnets
from scenarios.topologies import generate
from scenarios.topologies.generate import DEFAULT_CGN, DEFAULT_NET, GRID_FILE, HERE, render, sites
from tests.support.host import require
from trust.overlay import OVERLAY_NET


def test_grid_file_is_what_the_generator_writes() -> None:
    assert GRID_FILE.read_text() == render(), "run `python -m scenarios.topologies.generate`"


def test_grid_has_two_sites_per_profile_and_unique_addresses() -> None:
    names = [site.name for site in sites()]
    assert len(names) == 2 * len(generate.SITES) == len(set(names))
    assert {site.index for site in sites()} == set(range(1, len(names) + 1))


@pytest.mark.needs("docker")
@pytest.mark.parametrize(
    "files", [[GRID_FILE], [COMPOSE_FILE, HERE / "hairpin.yaml"], [COMPOSE_FILE, HERE / "cgnat.yaml"]]
)
def test_compose_accepts_the_topology(files: list[object]) -> None:
    command = ["docker", "compose", *[arg for f in files for arg in ("-f", str(f))], "config", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if "is not a docker command" in done.stderr:
        require(["the Docker Compose plugin (make compose)"])
    assert done.returncode == 0, done.stderr


@pytest.mark.needs("docker")
@pytest.mark.parametrize(
    "files", [(GRID_FILE,), (COMPOSE_FILE,), (COMPOSE_FILE, HERE / "hairpin.yaml"), (COMPOSE_FILE, HERE / "cgnat.yaml")]
)
def test_every_service_has_a_role_and_every_host_a_router_inside_the_lab_ranges(files: tuple[Path, ...]) -> None:
    """What the harness reads from a topology (scenarios/harness.py, class Lab) is there in each file."""
    lab = Lab(files, project="natlab-model-check", subnets=Subnets.for_slot(5))
    topology = lab.topology  # raises LabError for a service without a natlab.role label
    assert topology.with_role(Role.SERVER) == ["server"]
    assert topology.with_role(Role.TURN) == ["turn"]
    for host in lab.hosts:
        router = topology.services[topology.router_of(host)]
        assert router.environment["NAT_PROFILE"], router
    allowed = [ipaddress.IPv4Network("198.18.0.0/15"), ipaddress.IPv4Network("100.64.0.0/10")]
    assert topology.networks, files
    for name, subnet in topology.networks.items():
        assert any(subnet.subnet_of(net) for net in allowed), (name, subnet)


@pytest.mark.needs("docker")
def test_the_attack_profile_adds_an_attacker_and_a_victim_on_the_wan_only() -> None:
    """mallory and victim exist only with the compose profile `attack`, sit on the WAN alone, have no way
    out of the lab (--no-default-route) and rotate their logs like every service."""
    plain = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5))
    assert not {"mallory", "victim"} & set(plain.topology.services), "make lab-up must not start the attacker"
    lab = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5), env={"COMPOSE_PROFILES": "attack"})
    assert lab.topology.with_role(Role.ATTACKER) == ["mallory"]
    assert lab.topology.with_role(Role.VICTIM) == ["victim"]
    wan = lab.topology.networks["wan"]
    command = ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=lab.compose_env())
    assert done.returncode == 0, done.stderr
    for name in ("mallory", "victim"):
        assert list(lab.service(name).addresses) == ["wan"]
        assert ipaddress.IPv4Address(lab.address(name)) in wan
        spec = json.loads(done.stdout)["services"][name]
        assert spec["command"][:3] == ["lab-entrypoint", "--no-default-route", "--"], spec["command"]
        assert spec["logging"]["driver"] == "json-file"


@pytest.mark.needs("docker")
def test_routers_block_each_other_by_name() -> None:
    """NATLAB_BLOCK_EACH_OTHER=1 makes each router of compose.yaml drop the other's WAN address from the start."""
    lab = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5), env={"NATLAB_BLOCK_EACH_OTHER": "1"})
    assert lab.service("router-a").environment["NAT_BLOCK"] == lab.address("router-b", "wan")
    assert lab.service("router-b").environment["NAT_BLOCK"] == lab.address("router-a", "wan")
    unblocked = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5))
    assert unblocked.service("router-a").environment["NAT_BLOCK"] == ""


IMPAIR_BLANK = {
    f"{prefix}_IMPAIR{suffix}": ""
    for prefix in ("NAT_A", "NAT_B", "NAT_CARRIER", "NATLAB_GRID")
    for suffix in ("", "_UP", "_DOWN")
}
"""Every impairment variable blank, whatever the shell running the tests has set."""


def impairments_of(lab: Lab, service: str) -> tuple[str, str]:
    environment = lab.service(service).environment
    return environment.get("NAT_IMPAIR_UP", ""), environment.get("NAT_IMPAIR_DOWN", "")


@pytest.mark.needs("docker")
def test_impairments_reach_each_router_by_site_and_direction() -> None:
    """NAT_A_IMPAIR sets both directions of router-a unless NAT_A_IMPAIR_UP/_DOWN says otherwise; nothing set,
    nothing impaired; the CGNAT carrier has its own (NAT_CARRIER_IMPAIR), not router-a's."""
    subnets = Subnets.for_slot(5)
    env = IMPAIR_BLANK | {"NAT_A_IMPAIR": "lte", "NAT_A_IMPAIR_DOWN": "rate=10mbit", "NAT_B_IMPAIR_UP": "loss=1%"}
    lab = Lab(project="natlab-model-check", subnets=subnets, env=env)
    assert impairments_of(lab, "router-a") == ("lte", "rate=10mbit")
    assert impairments_of(lab, "router-b") == ("loss=1%", "")
    plain = Lab(project="natlab-model-check", subnets=subnets, env=IMPAIR_BLANK)
    assert impairments_of(plain, "router-a") == impairments_of(plain, "router-b") == ("", "")
    cgnat = Lab(
        (COMPOSE_FILE, HERE / "cgnat.yaml"),
        project="natlab-model-check",
        subnets=subnets,
        env=IMPAIR_BLANK | {"NAT_A_IMPAIR": "dsl", "NAT_CARRIER_IMPAIR_UP": "delay=5ms"},
    )
    assert impairments_of(cgnat, "router-a") == ("dsl", "dsl")
    assert impairments_of(cgnat, "carrier") == ("delay=5ms", "")


@pytest.mark.needs("docker")
def test_the_grid_impairs_every_sites_own_router_and_no_carrier() -> None:
    env = IMPAIR_BLANK | {"NATLAB_GRID_IMPAIR": "lte", "NATLAB_GRID_IMPAIR_UP": "off"}
    lab = Lab((GRID_FILE,), project="natlab-model-check", subnets=Subnets.for_slot(5), env=env)
    routers = lab.topology.with_role(Role.ROUTER)
    assert {f"nat-{site.name}" for site in sites()} <= set(routers)
    for router in routers:
        assert impairments_of(lab, router) == (("", "") if router.startswith("cgn-") else ("off", "lte")), router


@pytest.mark.needs("docker")
@pytest.mark.parametrize(
    "files", [(GRID_FILE,), (COMPOSE_FILE,), (COMPOSE_FILE, HERE / "hairpin.yaml"), (COMPOSE_FILE, HERE / "cgnat.yaml")]
)
def test_every_service_rotates_its_logs(files: tuple[Path, ...]) -> None:
    """A service flooded with bad datagrams logs a line each: its log must be bounded, not the host's disk."""
    command = ["docker", "compose", *[arg for f in files for arg in ("-f", str(f))], "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if "is not a docker command" in done.stderr:
        require(["the Docker Compose plugin (make compose)"])
    assert done.returncode == 0, done.stderr
    for name, service in json.loads(done.stdout)["services"].items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", (name, logging)
        options = logging.get("options", {})
        assert options.get("max-size"), (name, logging)
        assert options.get("max-file"), (name, logging)


@pytest.mark.needs("docker")
@pytest.mark.parametrize(
    "files", [(GRID_FILE,), (COMPOSE_FILE,), (COMPOSE_FILE, HERE / "hairpin.yaml"), (COMPOSE_FILE, HERE / "cgnat.yaml")]
)
def test_the_server_makes_a_key_for_every_host_and_each_host_reads_its_own(files: tuple[Path, ...]) -> None:
    """server-entrypoint makes keys for NATLAB_HOSTS; a host missing there would wait for its key and fail,
    and a host reading another's key file (an overlay's copy of alice) would hold alice's identity."""
    command = ["docker", "compose", *[arg for f in files for arg in ("-f", str(f))], "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if "is not a docker command" in done.stderr:
        require(["the Docker Compose plugin (make compose)"])
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    hosts = sorted(name for name, spec in services.items() if spec["labels"]["natlab.role"] == "host")
    server = services["server"]
    assert "server-entrypoint" in server["command"], server["command"]
    assert "/run/natlab-secrets" in [volume["target"] for volume in server["volumes"]]
    assert sorted(server["environment"]["NATLAB_HOSTS"].split(",")) == hosts
    for host in hosts:
        environment = services[host]["environment"]
        assert environment["NATLAB_KEY_FILE"] == f"/run/natlab-secrets/keys/{environment['NATLAB_ID']}.json", host


def test_no_scenario_slot_overlaps_the_interactive_lab_or_the_grid() -> None:
    """A scenario lab in any slot can run beside `make lab-up` and the grid (the grid's subnets are fixed:
    a slot inside 198.19.0.0/16 once made the reduced grid fail with "Pool overlaps")."""
    interactive = [ipaddress.IPv4Network(f"{p}.0/24") for p in Subnets.for_slot(0).prefixes.values()]
    grid = [ipaddress.IPv4Network(f"{DEFAULT_NET}.0.0/16"), ipaddress.IPv4Network(f"{DEFAULT_CGN}.0.0/16")]
    for slot in SLOTS:
        for prefix in Subnets.for_slot(slot).prefixes.values():
            net = ipaddress.IPv4Network(f"{prefix}.0/24")
            assert not any(net.overlaps(other) for other in interactive + grid), (slot, net)


def test_no_lab_grid_or_slot_network_overlaps_the_overlay_block() -> None:
    """The tunnel's overlay block (198.19.255.0/24, trust.overlay) is routed to natlab0 on every host: a lab
    network inside it would be unreachable from the hosts. Every network of every slot, of the interactive
    lab, of the grid's topology as generated and of the CGNAT topology stays out of it."""
    networks = [ipaddress.IPv4Network(f"{p}.0/24") for slot in SLOTS for p in Subnets.for_slot(slot).prefixes.values()]
    networks += [ipaddress.IPv4Network(f"{p}.0/24") for p in Subnets.for_slot(0).prefixes.values()]
    grid = yaml.safe_load(GRID_FILE.read_text())["networks"]
    for spec in grid.values():
        subnet = spec["ipam"]["config"][0]["subnet"]
        networks.append(
            ipaddress.IPv4Network(
                subnet.replace("${NATLAB_GRID_NET:-198.19}", DEFAULT_NET).replace(
                    "${NATLAB_GRID_CGN:-100.100}", DEFAULT_CGN
                )
            )
        )
    networks.append(ipaddress.IPv4Network("100.64.0.0/16"))  # the CGNAT topology's carrier insides
    assert len(networks) > len(SLOTS) * 3
    nebula = ipaddress.IPv4Network(f"{NEBULA_OVERLAY}.0/24")  # the interop nebula's overlay, reserved likewise
    assert nebula.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))
    assert not nebula.overlaps(OVERLAY_NET)
    for net in networks:
        assert not net.overlaps(OVERLAY_NET), net
        assert not net.overlaps(nebula), net


@pytest.mark.needs("docker")
def test_a_users_own_images_join_their_agents_namespace_with_nothing_of_natlabs() -> None:
    """Bring your own host: HOST_A_IMAGE / HOST_B_IMAGE in a lab's env add their overlays (the caller's shell
    does not); the user's container keeps the host's service name with its own role, joins the namespace of
    the agent (compose.yaml's host, renamed, with the same id and address) and gets no capability, device,
    volume or environment of natlab's; its command is HOST_A_COMMAND, else the image's own."""
    env = {"HOST_A_IMAGE": "myapp:1", "HOST_A_COMMAND": "myapp --serve 'a b'", "HOST_B_IMAGE": "other:2"}
    lab = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5), env=env)
    assert lab.files == (COMPOSE_FILE, *USER_HOST_OVERLAYS.values())
    assert lab.topology.with_role(Role.USER) == ["alice", "bob"]
    assert sorted(lab.hosts) == ["alice-agent", "bob-agent"]
    assert lab.service("alice-agent").environment["NATLAB_ID"] == "alice"
    assert lab.address("alice-agent") == f"{Subnets.for_slot(5).prefixes['NATLAB_LAN_A']}.10"
    assert lab.topology.router_of("bob-agent") == "router-b"
    done = lab.compose("config", "--format", "json")
    services = json.loads(done.stdout)["services"]
    for user, image, command in (("alice", "myapp:1", ["myapp", "--serve", "a b"]), ("bob", "other:2", None)):
        spec = services[user]
        assert spec["image"] == image
        assert (spec.get("command") or None) == command, spec.get("command")
        assert spec["network_mode"] == f"service:{user}-agent"
        assert spec["depends_on"][f"{user}-agent"]["condition"] == "service_healthy"
        assert not {"networks", "cap_add", "devices", "volumes", "environment", "healthcheck"} & spec.keys(), spec
        assert spec["labels"] == {"natlab": "lab", "natlab.role": "user"}
    only_a = Lab(project="natlab-model-check", subnets=Subnets.for_slot(5), env={"HOST_A_IMAGE": "myapp:1"})
    assert only_a.files == (COMPOSE_FILE, USER_HOST_OVERLAYS["HOST_A_IMAGE"])
    assert only_a.topology.with_role(Role.HOST) == ["alice-agent", "bob"]


def test_a_host_image_in_the_callers_shell_leaves_a_scenarios_lab_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_A_IMAGE", "myapp:1")
    assert Lab(project="natlab-model-check").files == (COMPOSE_FILE,)


def test_a_host_command_without_its_image_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="HOST_B_COMMAND needs HOST_B_IMAGE"):
        Lab(project="natlab-model-check", env={"HOST_B_COMMAND": "myapp --serve"})


def test_a_host_image_needs_compose_yamls_sites() -> None:
    with pytest.raises(LabError, match=r"HOST_A_IMAGE brings a host into compose\.yaml's sites"):
        Lab((GRID_FILE,), project="natlab-model-check", env={"HOST_A_IMAGE": "myapp:1"})
