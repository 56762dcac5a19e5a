"""Host-side lab harness: start a lab as a uniquely named compose project, wait for it, then use the docker SDK.

Compose files are the topology language; everything after `up` (exec, logs, inspect, teardown) goes through
the docker SDK. Every object carries the `natlab` label and the compose project label, so teardown removes
by label even after a crashed or interrupted run. Each lab gets its own /24s inside 198.18.0.0/15 (a "slot"),
so labs can run side by side.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose.yaml"
LABEL = "natlab"
PROJECT_LABEL = "com.docker.compose.project"
INTERACTIVE_PROJECT = "natlab"
SLOTS = range(1, 128)  # slot 0 (198.18.0-2.x) is the interactive lab's
UP_TIMEOUT_S = 90
HOSTS = ("alice", "bob")

T = TypeVar("T")


class LabError(RuntimeError):
    """The lab could not be built or did not behave; the message carries the relevant logs."""


class LabTimeout(LabError):
    """A condition in the lab did not come true in time; the message carries the logs."""


@dataclass(frozen=True)
class Subnets:
    """The three /24s of one lab, each given as its first three octets (what compose.yaml expects)."""

    wan: str
    lan_a: str
    lan_b: str
    cgn: str = "100.64.0"
    """A carrier-grade NAT's inside network (in 100.64.0.0/10), for the CGNAT topology."""

    @classmethod
    def for_slot(cls, slot: int) -> Subnets:
        """Slot n owns the /22 at 198.18.0.0 + n*1024: WAN, LAN A, LAN B and one spare /24."""
        base = int(ipaddress.IPv4Address("198.18.0.0")) + slot * 1024
        prefix = [".".join(str(ipaddress.IPv4Address(base + i * 256)).split(".")[:3]) for i in range(3)]
        wan, lan_a, lan_b = prefix
        return cls(wan, lan_a, lan_b, cgn=f"100.64.{slot}")

    def networks(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(f"{p}.0/24") for p in (self.wan, self.lan_a, self.lan_b, self.cgn)]

    def env(self) -> dict[str, str]:
        prefixes = {"WAN": self.wan, "LAN_A": self.lan_a, "LAN_B": self.lan_b, "CGN": self.cgn}
        return {f"NATLAB_{name}": prefix for name, prefix in prefixes.items()}

    # Static addresses, as compose.yaml assigns them.
    @property
    def server(self) -> str:
        return f"{self.wan}.10"

    @property
    def turn(self) -> str:
        return f"{self.wan}.20"

    @property
    def router_a_wan(self) -> str:
        return f"{self.wan}.11"

    @property
    def router_b_wan(self) -> str:
        return f"{self.wan}.12"


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


def docker_client() -> docker.DockerClient:
    return docker.from_env()


def remove_labelled(project: str | None = None) -> None:
    """Remove natlab containers and networks (only `project`'s when given), whatever state they are in."""
    client = docker_client()
    labels = [LABEL] + ([f"{PROJECT_LABEL}={project}"] if project else [])
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
    for network in docker_client().networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            with suppress(ValueError, KeyError):
                subnets.append(ipaddress.IPv4Network(config["Subnet"]))
    return subnets


def free_slots() -> Iterator[int]:
    """Slots whose subnets overlap nothing on this engine, starting at a random one so parallel runs spread."""
    taken = used_subnets()
    start = secrets.randbelow(len(SLOTS))
    for offset in range(len(SLOTS)):
        slot = SLOTS[(start + offset) % len(SLOTS)]
        if not any(a.overlaps(b) for a in Subnets.for_slot(slot).networks() for b in taken):
            yield slot


class Lab:
    """One running lab: a compose project of compose.yaml with its own name and subnets.

    Use as a context manager (or `start_lab`): entering brings it up and waits until every service is
    healthy; leaving removes every object of the project, also when the body failed.
    """

    def __init__(
        self,
        project: str,
        subnets: Subnets,
        nat_a: str,
        nat_b: str,
        *,
        punch_timeout_s: int = 5,
        keepalive_s: int = 10,
        routers_block_each_other: bool = False,
        topology: Sequence[Path] = (COMPOSE_FILE,),
        hosts: Sequence[str] = HOSTS,
        services: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``topology``: compose files, later ones overlaying earlier ones; ``hosts``: its client hosts;
        ``services``: start only these (all by default); ``env``: more variables for compose (e.g.
        ``NAT_A_HAIRPIN``), applied last."""
        self.project = project
        self.topology = tuple(topology)
        self.hosts = tuple(hosts)
        self.only = tuple(services)
        self.extra_env = dict(env or {})
        self.keepalive_s = keepalive_s
        self.routers_block_each_other = routers_block_each_other
        self.subnets = subnets
        self.nat_a = nat_a
        self.nat_b = nat_b
        self.punch_timeout_s = punch_timeout_s
        self.docker = docker_client()

    # -- lifecycle -------------------------------------------------------------------------------------
    def compose_env(self) -> dict[str, str]:
        """The environment compose.yaml is interpolated with for this lab."""
        env = os.environ | self.subnets.env()
        env |= {
            "NAT_A": self.nat_a,
            "NAT_B": self.nat_b,
            "NATLAB_PUNCH_TIMEOUT": str(self.punch_timeout_s),
            "NATLAB_KEEPALIVE": str(self.keepalive_s),
        }
        if self.routers_block_each_other:  # each router drops inbound UDP from the other's WAN address
            env |= {"NAT_A_BLOCK": self.subnets.router_b_wan, "NAT_B_BLOCK": self.subnets.router_a_wan}
        return env | self.extra_env

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [arg for path in self.topology for arg in ("-f", str(path))]
        command = ["docker", "compose", "-p", self.project, *files, *args]
        result = subprocess.run(command, env=self.compose_env(), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result

    def up(self) -> None:
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), *self.only)
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

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # -- access ----------------------------------------------------------------------------------------
    def container(self, service: str) -> Container:
        found = self.docker.containers.list(
            all=True,
            filters={"label": [f"{PROJECT_LABEL}={self.project}", f"com.docker.compose.service={service}"]},
        )
        if not found:
            raise LabError(f"lab {self.project} has no container for service {service!r}")
        return found[0]

    def services(self) -> list[str]:
        containers = self.docker.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return sorted(c.labels["com.docker.compose.service"] for c in containers)

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
        for service in services or self.services():
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
        state = self.container(service).attrs["State"]
        return str(state.get("Health", {}).get("Status", state["Status"]))

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        return wait_for(probe, timeout, f"{what} in lab {self.project}", self.logs)

    # -- artifacts -------------------------------------------------------------------------------------
    def collect_artifacts(self, folder: Path) -> Path:
        """Write logs, client event logs, conntrack tables and rulesets of every service into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        per_service: dict[str, list[tuple[str, list[str]]]] = {
            "router": [
                ("ruleset.nft", ["nft", "list", "ruleset"]),
                ("conntrack.txt", ["conntrack", "-L"]),
                ("nat-show.txt", ["nat", "show"]),
            ],
            "host": [
                ("events.jsonl", ["client", "events"]),
                ("status.json", ["client", "status", "--json"]),
                ("routes.txt", ["ip", "route"]),
            ],
            "server": [("server.json", ["cat", "/run/natlab/server.json"])],
        }
        for service in self.services():
            with suppress(docker.errors.APIError, LabError):
                logs = self.container(service).logs(timestamps=True)
                (folder / f"{service}.log").write_bytes(logs)
            kind = "router" if service.startswith("router") else "server" if service == "server" else "host"
            for name, command in per_service[kind]:
                with suppress(docker.errors.APIError, LabError):
                    code, output = self.exec(service, *command)
                    (folder / f"{service}.{name}").write_text(output if code == 0 else f"exit {code}\n{output}")
        return folder


@contextmanager
def start_lab(nat_a: str, nat_b: str, name: str = "lab", **options: Any) -> Iterator[Lab]:
    """Bring up an isolated lab for one NAT pair in a free slot; always torn down by label afterwards.

    ``options`` are :class:`Lab`'s keyword arguments (punch_timeout_s, keepalive_s, topology, env, ...).
    """
    last_error: LabError | None = None
    for slot in free_slots():
        project = f"natlab-{name}-{secrets.token_hex(3)}"
        lab = Lab(project, Subnets.for_slot(slot), nat_a, nat_b, **options)
        try:
            lab.__enter__()
        except LabError as exc:
            # Another run may have taken the same subnets between our look and our `up`: try the next slot.
            if "overlap" not in str(exc).lower():
                raise
            last_error = exc
            continue
        try:
            yield lab
        finally:
            lab.__exit__(None, None, None)
        return
    raise LabError(f"no free subnet slot in 198.18.0.0/15 for a new lab: {last_error}")
