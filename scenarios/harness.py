"""Host-side lab harness: any natlab compose file, brought up as a uniquely named project, then the docker SDK.

Compose files are the topology language; the harness knows no topology. It reads the compose model
(`docker compose config`) to learn each service's role (the ``natlab.role`` label), its addresses and its
environment; everything after `up` (exec, logs, inspect, teardown) goes through the docker SDK. Every object
carries the `natlab` label and the compose project label, so teardown removes by label even after a crashed
or interrupted run. Each two-site lab gets its own /24s inside 198.18.0.0/15 (a "slot"), so labs can run side
by side.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from scenarios.captures import copy_pcaps

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose.yaml"
USER_HOST_OVERLAYS = {
    "HOST_A_IMAGE": REPO / "scenarios" / "topologies" / "user-host-a.yaml",
    "HOST_B_IMAGE": REPO / "scenarios" / "topologies" / "user-host-b.yaml",
}
"""Bring your own host (README): a lab whose ``env`` sets HOST_A_IMAGE (HOST_B_IMAGE) also gets this overlay,
which runs that image as alice (bob), with HOST_A_COMMAND as its command, and natlab's agent beside it in the
same network namespace as the service alice-agent (bob-agent)."""
LABEL = "natlab"
ROLE_LABEL = "natlab.role"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NETWORK_LABEL = "com.docker.compose.network"
INTERACTIVE_PROJECT = "natlab"
SLOTS = range(1, 64)
"""Two-site slots, each a /22 of 198.18.0.0/16: slot 0 (198.18.0-2.x) is the interactive lab's, and
198.19.0.0/16 belongs to the grid, whose fixed subnets a slot there would collide with."""
UP_TIMEOUT_S = 90
CAPTURE_VARIABLE, SCENARIO_CAPTURE = "NATLAB_CAPTURE", "ring"
"""Every lab `start_lab` brings up captures a ring of packets on each router (nat/capture.py), which a failed
scenario saves with its artifacts; NATLAB_CAPTURE in the caller's environment (off, full) overrides it."""
TUNNEL_VARIABLE = "NATLAB_TUNNEL"
"""compose.yaml brings the hosts' WireGuard tunnel up at start (the interactive lab); a scenario lab starts
without it (its WireGuard traffic and connects would be in every other scenario's figures) unless its ``env``
says ``NATLAB_TUNNEL=1``, as scenarios/test_tunnel.py's does."""
POOL_OVERLAP = "pool overlaps"
"""What Docker says (through compose) when a network's subnet overlaps one another network holds."""

T = TypeVar("T")


class LabError(RuntimeError):
    """The lab could not be built or did not behave; the message carries the relevant logs."""


class LabTimeout(LabError):
    """A condition in the lab did not come true in time; the message carries the logs."""


class SubnetInUse(LabError):
    """A network of the lab overlaps a subnet another Docker network holds; the message is compose's own."""


class Role(StrEnum):
    """What a service is, from its ``natlab.role`` compose label; the harness treats services by role."""

    SERVER = "server"
    """The signal server: its state is /run/natlab/server.json."""
    TURN = "turn"
    """The STUN/TURN server (coturn): no natlab state of its own."""
    ROUTER = "router"
    """A NAT router (`nat run`): its profile is /run/natlab/profile.json."""
    HOST = "host"
    """A client host running the agent: `client status --json`; healthy once registered."""
    ATTACKER = "attacker"
    """The lab's attacker on the WAN (compose profile ``attack``): runs `python3 -m attacks` when told to."""
    VICTIM = "victim"
    """A bystander on the WAN that counts every UDP byte reaching it (`python3 -m attacks sink show`)."""
    USER = "user"
    """A user's own image in a host's network namespace (bring your own host): no natlab code, no state."""


STATE_COMMAND: dict[Role, tuple[str, ...] | None] = {
    Role.SERVER: ("cat", "/run/natlab/server.json"),
    Role.TURN: None,
    Role.ROUTER: ("cat", "/run/natlab/profile.json"),
    Role.HOST: ("client", "status", "--json"),
    Role.ATTACKER: None,
    Role.VICTIM: ("python3", "-m", "attacks", "sink", "show"),
    Role.USER: None,
}
"""The command that prints a service's state as one JSON document, by role (None: it keeps none)."""

ARTIFACTS: dict[Role, list[tuple[str, list[str]]]] = {
    Role.ROUTER: [
        ("ruleset.nft", ["nft", "list", "ruleset"]),
        ("conntrack.txt", ["conntrack", "-L"]),
        ("nat-show.txt", ["nat", "show"]),
    ],
    Role.HOST: [
        ("events.jsonl", ["client", "events"]),
        ("status.json", ["client", "status", "--json"]),
        ("routes.txt", ["ip", "route"]),
        ("ruleset.nft", ["nft", "list", "ruleset"]),  # the tunnel's kernel path and its counters
        ("sockets.txt", ["ss", "-tuanmi"]),  # TCP's state over the tunnel, UDP sockets' drops (skmem d)
        ("wireguard.txt", ["wg", "show", "all"]),
    ],
    Role.SERVER: [("server.json", ["cat", "/run/natlab/server.json"])],
    Role.TURN: [("addresses.txt", ["ip", "-4", "addr"])],
    Role.ATTACKER: [("addresses.txt", ["ip", "-4", "addr"])],
    Role.VICTIM: [("sink.json", ["python3", "-m", "attacks", "sink", "show"])],
    Role.USER: [],  # its log only: the image may have no tool at all; the agent beside it saves the routes
}
"""What a failed scenario saves from each service besides its log, by role."""


@dataclass(frozen=True)
class Service:
    """One service as natlab sees it: role, IPv4 address on each network (by compose network name), environment."""

    name: str
    role: Role
    addresses: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def role_of(name: str, labels: Mapping[str, str]) -> Role:
        try:
            return Role(labels[ROLE_LABEL])
        except (KeyError, ValueError):
            known = ", ".join(Role)
            raise LabError(f"service {name!r} needs the label {ROLE_LABEL}: one of {known}") from None

    @classmethod
    def from_compose(cls, name: str, spec: Mapping[str, Any]) -> Service:
        """From a service of `docker compose config --format json`."""
        networks = spec.get("networks") or {}
        addresses = {
            net: str(conf["ipv4_address"]) for net, conf in networks.items() if (conf or {}).get("ipv4_address")
        }
        environment = {k: "" if v is None else str(v) for k, v in (spec.get("environment") or {}).items()}
        return cls(name, cls.role_of(name, spec.get("labels") or {}), addresses, environment)

    @classmethod
    def from_container(cls, container: Container) -> Service:
        """From a running (or stopped) container of a lab: its labels, attached networks and environment."""
        labels = container.labels
        name = labels.get(SERVICE_LABEL, container.name or "?")
        networks = container.attrs["NetworkSettings"]["Networks"] or {}
        project = labels.get(PROJECT_LABEL, "")
        addresses = {
            net.removeprefix(f"{project}_"): n["IPAddress"] for net, n in networks.items() if n.get("IPAddress")
        }
        pairs = (entry.partition("=") for entry in container.attrs["Config"].get("Env") or [])
        return cls(name, cls.role_of(name, labels), addresses, {k: v for k, _, v in pairs})

    @property
    def address(self) -> str:
        """Its address when it has one network (hosts, the servers); routers: see :meth:`Lab.address`."""
        if len(self.addresses) != 1:
            raise LabError(f"{self.name} is on {sorted(self.addresses)}: name the network")
        return next(iter(self.addresses.values()))


@dataclass(frozen=True)
class Topology:
    """A compose model as natlab reads it: the services (by name, in file order) and each network's subnet."""

    services: Mapping[str, Service]
    networks: Mapping[str, ipaddress.IPv4Network]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Topology:
        """From the JSON `docker compose config --format json` prints (interpolated, overlays merged)."""
        services = {name: Service.from_compose(name, spec) for name, spec in (config.get("services") or {}).items()}
        networks = {}
        for name, spec in (config.get("networks") or {}).items():
            for pool in ((spec or {}).get("ipam") or {}).get("config") or []:
                networks[name] = ipaddress.IPv4Network(pool["subnet"])
        return cls(services, networks)

    def with_role(self, role: Role) -> list[str]:
        return [name for name, service in self.services.items() if service.role is role]

    def router_of(self, host: str) -> str:
        """The router on the host's network: the one whose LAN it is (its gateway)."""
        networks = self.services[host].addresses.keys()
        for router in self.with_role(Role.ROUTER):
            if networks & self.services[router].addresses.keys():
                return router
        raise LabError(f"no router shares a network with {host}")


@dataclass(frozen=True)
class Subnets:
    """Where a lab sits in address space: the compose variables that place its networks, with their values.

    compose.yaml and its overlays read NATLAB_WAN, NATLAB_LAN_A, NATLAB_LAN_B (first three octets of each
    /24) and NATLAB_CGN (the carrier network of the CGNAT overlay); the grid reads NATLAB_GRID_NET and
    NATLAB_GRID_CGN (first two octets). The networks themselves are read back from the compose model.
    """

    prefixes: Mapping[str, str]

    @classmethod
    def for_slot(cls, slot: int) -> Subnets:
        """Two-site slot n owns the /22 at 198.18.0.0 + n*1024 (WAN, LAN A, LAN B, one spare) and 100.64.n/24."""
        base = int(ipaddress.IPv4Address("198.18.0.0")) + slot * 1024
        wan, lan_a, lan_b = (str(ipaddress.IPv4Address(base + i * 256)).rsplit(".", 1)[0] for i in range(3))
        return cls({"NATLAB_WAN": wan, "NATLAB_LAN_A": lan_a, "NATLAB_LAN_B": lan_b, "NATLAB_CGN": f"100.64.{slot}"})

    def env(self) -> dict[str, str]:
        return dict(self.prefixes)


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, logs: Callable[[], str], interval: float = 0.1
) -> T:
    """Poll `probe` until it returns something other than None; on timeout raise LabTimeout with the logs."""
    retrying = Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(interval), retry=retry_if_result(lambda r: r is None)
    )
    try:
        result = retrying(probe)
    except RetryError:
        raise LabTimeout(f"timed out after {timeout} s waiting for {what}\n{logs()}") from None
    assert result is not None
    return result


def docker_client() -> closing[docker.DockerClient]:
    """A docker SDK client that is closed when the with block ends."""
    return closing(docker.from_env())


def remove_labelled(project: str | None = None) -> None:
    """Remove natlab containers, networks and volumes (only `project`'s when given), whatever state they are in."""
    labels = [LABEL] + ([f"{PROJECT_LABEL}={project}"] if project else [])
    with docker_client() as client:
        for container in client.containers.list(all=True, filters={"label": labels}):
            with suppress(docker.errors.NotFound):
                container.remove(force=True)
        for network in client.networks.list(filters={"label": labels}):
            with suppress(docker.errors.NotFound, docker.errors.APIError):
                network.remove()
        for volume in client.volumes.list(filters={"label": labels}):
            with suppress(docker.errors.NotFound, docker.errors.APIError):
                volume.remove(force=True)


def used_subnets() -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet any Docker network on this engine holds (ours or not)."""
    subnets = []
    with docker_client() as client:
        for network in client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                with suppress(ValueError, KeyError):
                    subnets.append(ipaddress.IPv4Network(config["Subnet"]))
    return subnets


def free_slots() -> Iterator[int]:
    """Slots whose two-site subnets overlap nothing on this engine, from a random start so parallel runs spread."""
    taken = used_subnets()
    start = secrets.randbelow(len(SLOTS))
    for offset in range(len(SLOTS)):
        slot = SLOTS[(start + offset) % len(SLOTS)]
        prefixes = Subnets.for_slot(slot).prefixes.values()
        nets = [ipaddress.IPv4Network(f"{p}.0/24") for p in prefixes]
        if not any(a.overlaps(b) for a in nets for b in taken):
            yield slot


class Lab:
    """One lab: a compose project of any natlab topology file(s), under its own name, torn down by label.

    Writing a topology (a compose file, or an overlay on compose.yaml):

    * label every service ``natlab: lab`` and ``natlab.role: server | turn | router | host | attacker |
      victim | user`` (see
      :class:`Role`); overlays that ``extends`` a service inherit its labels. Label every network and
      volume ``natlab: lab``. Give each service a static ``ipv4_address`` on each of its networks.
    * a host's router is the router on the host's network (:meth:`Topology.router_of`); a router's NAT
      profile and options are its environment (``NAT_PROFILE``, ``NAT_HAIRPIN``, ...), set through compose
      variables (compose.yaml: ``NAT_A``, ``NAT_B``, ``NAT_A_HAIRPIN``, ``NATLAB_BLOCK_EACH_OTHER``, ...).
    * place every network with compose variables (e.g. ``${NATLAB_WAN:-198.18.0}.0/24``) so that labs can
      sit side by side: :class:`Subnets` sets them.

    Writing a scenario: a fixture opens ``start_lab(files, name=..., env={...})`` (a free slot, retried on
    :class:`SubnetInUse`) or ``with Lab(files, project=..., subnets=...)``. Entering runs `compose up
    --wait` (every service healthy, every host's TURN allocation in place); leaving, also on failure or
    Ctrl-C, removes every object of the project. Inside: :meth:`exec` / :meth:`exec_ok` / :meth:`json`
    run commands in a service, :meth:`address` and :meth:`service` answer from the compose model
    (addresses, environment), :meth:`wait_for` polls a condition with a deadline, :meth:`stop` /
    :meth:`start` take a service away and back.

    ``env`` are compose variables (NAT profiles, timers, options), applied over ``subnets``' placement
    and the caller's environment; ``services`` starts only those (all by default). ``env`` with
    ``HOST_A_IMAGE`` (``HOST_B_IMAGE``) brings the user's own image in as alice (bob), natlab's agent beside
    it as alice-agent (bob-agent): :data:`USER_HOST_OVERLAYS`.
    """

    def __init__(
        self,
        files: Sequence[Path] = (COMPOSE_FILE,),
        *,
        project: str,
        subnets: Subnets | None = None,
        env: Mapping[str, str] | None = None,
        services: Sequence[str] = (),
    ) -> None:
        self.project = project
        self.subnets = subnets or Subnets({})
        self.env = self.subnets.env() | dict(env or {})
        self.files = tuple(files) + user_host_overlays(files, self.env)
        self.only = tuple(services)
        self._docker: docker.DockerClient | None = None

    @classmethod
    def interactive(cls) -> Lab:
        """The lab `make lab-up` runs (compose.yaml under COMPOSE_PROJECT_NAME, `natlab` by default)."""
        return cls(project=os.environ.get("COMPOSE_PROJECT_NAME") or INTERACTIVE_PROJECT)

    # -- the compose model -----------------------------------------------------------------------------
    @cached_property
    def topology(self) -> Topology:
        """The compose model with this lab's variables, limited to the services it starts."""
        done = self.compose("config", "--format", "json")
        topology = Topology.from_config(json.loads(done.stdout))
        unknown = set(self.only) - topology.services.keys()
        if unknown:
            raise LabError(f"{', '.join(sorted(unknown))}: no such service in {', '.join(map(str, self.files))}")
        kept = {name: svc for name, svc in topology.services.items() if not self.only or name in self.only}
        return Topology(kept, topology.networks)

    @property
    def hosts(self) -> list[str]:
        return self.topology.with_role(Role.HOST)

    def service(self, name: str) -> Service:
        try:
            return self.topology.services[name]
        except KeyError:
            raise LabError(f"lab {self.project} has no service {name!r}") from None

    def address(self, service: str, network: str | None = None) -> str:
        """A service's static IPv4 address (on `network` when it has several, e.g. a router's "wan")."""
        svc = self.service(service)
        if network is None:
            return svc.address
        if network not in svc.addresses:
            raise LabError(f"{service} is not on {network} (it is on {sorted(svc.addresses)})")
        return svc.addresses[network]

    # -- lifecycle -------------------------------------------------------------------------------------
    def compose_env(self) -> dict[str, str]:
        """The environment the compose files are interpolated with for this lab."""
        return os.environ | self.env

    def compose_argv(self, *args: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return ["docker", "compose", "-p", self.project, *files, *args]

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `docker compose` on this lab; a failure raises LabError (SubnetInUse for a pool overlap)."""
        command = self.compose_argv(*args)
        result = subprocess.run(command, env=self.compose_env(), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            said = f"{result.stderr}{result.stdout}".strip()
            error = SubnetInUse if POOL_OVERLAP in said.lower() else LabError
            raise error(f"{' '.join(command)} failed ({result.returncode}):\n{said}")
        return result

    def up(self) -> None:
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), *self.only)
        except SubnetInUse:
            raise
        except LabError as exc:
            raise LabError(f"lab {self.project} did not become healthy: {exc}\n{self.logs()}") from None
        # Healthy hosts are registered; their TURN allocations may still be on the way (the TURN server
        # and its credential can come up after them). Scenarios start from a lab where both are in place.
        for host in self.hosts:
            self.wait_for(partial(self.relay_allocated, host), 30, f"{host}'s TURN allocation")

    def relay_allocated(self, host: str) -> bool | None:
        turn = self.json(host, "client", "status", "--json").get("turn")
        return True if turn is None or turn.get("state") == "allocated" else None

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "1", check=False)
        remove_labelled(self.project)

    def close(self) -> None:
        """Close the docker SDK client (the lab keeps running)."""
        if self._docker is not None:
            self._docker.close()
            self._docker = None

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.down()
        finally:
            self.close()

    # -- access ----------------------------------------------------------------------------------------
    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = docker.from_env()
        return self._docker

    def container(self, service: str) -> Container:
        found = self.docker.containers.list(
            all=True, filters={"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]}
        )
        if not found:
            raise LabError(f"lab {self.project} has no container for service {service!r}")
        return found[0]

    def running(self) -> list[Service]:
        """The lab's services as its containers say (labels, attached addresses, environment), by name."""
        containers = self.docker.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return sorted((Service.from_container(c) for c in containers), key=lambda s: s.name)

    def services(self) -> list[str]:
        """The names of the lab's services that have a container (whatever their labels)."""
        containers = self.docker.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return sorted(c.labels[SERVICE_LABEL] for c in containers)

    def networks(self) -> dict[str, ipaddress.IPv4Network]:
        """The lab's networks as Docker holds them: compose name -> subnet."""
        found = {}
        for network in self.docker.networks.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            name = network.attrs.get("Labels", {}).get(NETWORK_LABEL, network.name)
            for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
                found[name] = ipaddress.IPv4Network(pool["Subnet"])
        return dict(sorted(found.items()))

    def exec(self, service: str, *command: str) -> tuple[int, str]:
        """Run a command in a service's container; returns (exit code, combined output)."""
        result = self.container(service).exec_run(list(command))
        output = result.output if isinstance(result.output, bytes) else b"".join(result.output)
        return result.exit_code or 0, output.decode("utf-8", "replace")

    def exec_split(self, service: str, *command: str) -> tuple[int, str, str]:
        """Run a command; returns (exit code, stdout, stderr), kept apart (combined output interleaves
        mid-line when a tool writes both, as the classic stun client does)."""
        result = self.container(service).exec_run(list(command), demux=True)
        out, err = (bytes(part or b"").decode("utf-8", "replace") for part in result.output)
        return result.exit_code or 0, out, err

    def exec_ok(self, service: str, *command: str) -> str:
        code, output = self.exec(service, *command)
        if code != 0:
            raise LabError(f"{service}: {' '.join(command)} exited {code}:\n{output}\n{self.logs(service)}")
        return output

    def json(self, service: str, *command: str) -> Any:
        """Run a command that prints JSON (e.g. `client status --json`) and parse it."""
        return json.loads(self.exec_ok(service, *command))

    def logs(self, *services: str, tail: int = 60) -> str:
        """Recent logs of the given services (all of the lab's by default), for error messages."""
        parts = []
        with suppress(docker.errors.APIError):
            services = services or tuple(self.services())
        for service in services:
            with suppress(LabError, docker.errors.APIError):
                text = self.container(service).logs(tail=tail, timestamps=True).decode("utf-8", "replace")
                parts.append(f"--- {service} (last {tail} lines) ---\n{text}")
        return "\n".join(parts)

    def stop(self, service: str) -> None:
        """Stop a service's container (SIGTERM, as `docker stop`): e.g. take the TURN server away."""
        self.container(service).stop(timeout=2)

    def start(self, service: str, timeout: float = 30) -> None:
        """Start a stopped service again and wait until its healthcheck passes."""
        self.container(service).start()
        self.wait_for(lambda: True if self.health(service) == "healthy" else None, timeout, f"{service} healthy")
        if service in self.hosts:
            self.wait_for(partial(self.relay_allocated, service), timeout, f"{service}'s TURN allocation")

    def health(self, service: str) -> str:
        return health_of(self.container(service))

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        return wait_for(probe, timeout, f"{what} in lab {self.project}", self.logs)

    # -- artifacts -------------------------------------------------------------------------------------
    def collect_artifacts(self, folder: Path) -> Path:
        """Write logs and, by role (:data:`ARTIFACTS`), event logs, conntrack tables and rulesets into `folder`;
        and each router's packet captures (``router-a.wan-1.pcap``, ...: :func:`scenarios.captures.copy_pcaps`)."""
        folder.mkdir(parents=True, exist_ok=True)
        for service in self.running():
            with suppress(docker.errors.APIError, LabError):
                logs = self.container(service.name).logs(timestamps=True)
                (folder / f"{service.name}.log").write_bytes(logs)
            for name, command in ARTIFACTS[service.role]:
                with suppress(docker.errors.APIError, LabError):
                    code, output = self.exec(service.name, *command)
                    text = output if code == 0 else f"exit {code}\n{output}"
                    (folder / f"{service.name}.{name}").write_text(text)
            if service.role is Role.ROUTER:
                with suppress(docker.errors.APIError, LabError, OSError, tarfile.TarError):
                    copy_pcaps(self.container(service.name), folder, prefix=f"{service.name}.")
        return folder


def user_host_overlays(files: Sequence[Path], env: Mapping[str, str]) -> tuple[Path, ...]:
    """The bring-your-own-host overlays (:data:`USER_HOST_OVERLAYS`) whose image variable ``env`` sets, that
    `files` do not name already. Only ``env`` counts, not the caller's environment: a HOST_A_IMAGE left in a
    shell must not change the scenarios' labs."""
    for variable in USER_HOST_OVERLAYS:
        command = variable.replace("_IMAGE", "_COMMAND")
        if env.get(command) and not env.get(variable):
            raise LabError(f"{command} needs {variable}, the image to run it in")
        if env.get(variable) and COMPOSE_FILE not in files:
            raise LabError(f"{variable} brings a host into compose.yaml's sites, and {COMPOSE_FILE} is not started")
    return tuple(path for variable, path in USER_HOST_OVERLAYS.items() if env.get(variable) and path not in files)


def health_of(container: Container) -> str:
    """The healthcheck's verdict (healthy, starting, unhealthy), or the container's state when it has none."""
    state = container.attrs["State"]
    return str(state.get("Health", {}).get("Status", state["Status"]))


@contextmanager
def start_lab(
    files: Sequence[Path] = (COMPOSE_FILE,),
    *,
    name: str = "lab",
    env: Mapping[str, str] | None = None,
    services: Sequence[str] = (),
) -> Iterator[Lab]:
    """Bring up an isolated lab of `files` in a free slot; always torn down by label afterwards.

    ``env``: compose variables, e.g. ``{"NAT_A": "cone", "NAT_B": "symmetric"}``; see :class:`Lab`. The
    routers capture a ring of packets unless ``env`` or the environment says otherwise (``NATLAB_CAPTURE``);
    the hosts start without the tunnel unless ``env`` has ``NATLAB_TUNNEL=1``. ``env`` may bring the user's
    own host images: ``{"HOST_A_IMAGE": "myapp:latest", "HOST_A_COMMAND": "myapp --serve"}`` (README "Bring
    your own host").
    """
    env = {CAPTURE_VARIABLE: os.environ.get(CAPTURE_VARIABLE) or SCENARIO_CAPTURE, TUNNEL_VARIABLE: "0", **(env or {})}
    last_error: SubnetInUse | None = None
    for slot in free_slots():
        project = f"natlab-{name}-{secrets.token_hex(3)}"
        lab = Lab(files, project=project, subnets=Subnets.for_slot(slot), env=env, services=services)
        try:
            lab.__enter__()
        except SubnetInUse as exc:
            # Another run took the same subnets between our look and our `up`: try the next slot.
            last_error = exc
            continue
        try:
            yield lab
        finally:
            lab.__exit__(None, None, None)
        return
    raise LabError(f"no free subnet slot in 198.18.0.0/15 for a new lab: {last_error}")
