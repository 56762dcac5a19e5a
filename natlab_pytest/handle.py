"""What a test holds of a running lab: :class:`NatLab`, a thin face over the harness's :class:`Lab` in the words
of someone testing their own stack (hosts, their routers, the TURN server), not natlab's services."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scenarios.harness import Lab, LabError
from scenarios.turn_usage import peer_usage

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """One command's exit code and combined output."""

    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class NatLab:
    """A running lab: alice behind router-a, bob behind router-b, the signal server and coturn on the WAN.

    A host given an image (``host_a_image=``) is that image, with natlab's agent beside it as
    ``alice-agent``; :meth:`agent` names whichever runs the agent. Services are compose's names: ``alice``,
    ``bob``, ``alice-agent``, ``router-a``, ``router-b``, ``server``, ``turn``.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        """The harness's lab (scenarios/harness.py) for anything this face does not say."""

    @property
    def project(self) -> str:
        return self.lab.project

    def exec(self, service: str, *command: str) -> Result:
        """Run a command in a service's container (a host: in the user's own container when it has one)."""
        code, output = self.lab.exec(service, *command)
        return Result(code, output)

    def exec_ok(self, service: str, *command: str) -> str:
        """Run a command and return its output; a non-zero exit raises LabError with the output and logs."""
        return self.lab.exec_ok(service, *command)

    def spawn(self, service: str, script: str) -> None:
        """Start a shell script in a service's container and return at once (the script outlives the call)."""
        self.lab.container(service).exec_run(["sh", "-c", script], detach=True)

    def logs(self, service: str, tail: int | None = None) -> str:
        """A service's output (its last `tail` lines when given)."""
        logs = self.lab.container(service).logs(tail="all" if tail is None else tail)
        return bytes(logs).decode("utf-8", "replace")

    def agent(self, host: str) -> str:
        """The service running natlab's agent for `host`: ``alice-agent`` beside a user's image, else ``alice``."""
        return f"{host}-agent" if f"{host}-agent" in self.lab.topology.services else host

    def router(self, host: str) -> str:
        """The NAT router in front of `host` (``router-a`` for alice)."""
        return self.lab.topology.router_of(self.agent(host))

    def lan_address(self, host: str) -> str:
        """`host`'s own address on its LAN (behind its NAT)."""
        return self.lab.address(self.agent(host))

    def wan_address(self, host: str) -> str:
        """The public address in front of `host`: its router's WAN address, where the rest of the lab sees it."""
        return self.lab.address(self.router(host), "wan")

    def stun_server(self) -> str:
        """coturn's STUN/TURN address, ip:port (TURN user ``natlab``, password in the agent's
        /run/natlab-secrets/turn-password)."""
        return f"{self.lab.address('turn')}:3478"

    def nat_type(self, host: str) -> dict[str, Any]:
        """RFC 5780 discovery from `host`'s network namespace (`client nat-type --json` in its agent)."""
        report: dict[str, Any] = self.lab.json(self.agent(host), "client", "nat-type", "--json")
        return report

    def router_profile(self, host: str) -> dict[str, Any]:
        """The NAT profile of `host`'s router (name, mapping, filtering, ...)."""
        profile: dict[str, Any] = self.lab.json(self.router(host), "cat", "/run/natlab/profile.json")
        return profile

    def conntrack(self, router: str) -> list[dict[str, Any]]:
        """A router's UDP conntrack table: each flow's ``orig`` and ``reply`` (src, sport, dst, dport) and
        ``flags`` (``UNREPLIED``: nothing came back; ``ASSURED``: both ways)."""
        flows: list[dict[str, Any]] = self.lab.json(router, "nat", "conntrack", "--json")
        return flows

    def flows(self, host: str, port: int, peer: str) -> list[dict[str, Any]]:
        """The flows `host`'s router holds from `host`'s `port` to `peer`'s public (WAN) address."""
        lan, wan = self.lan_address(host), self.wan_address(peer)
        return [
            flow
            for flow in self.conntrack(self.router(host))
            if (flow["orig"]["src"], int(flow["orig"]["sport"]), flow["orig"]["dst"]) == (lan, port, wan)
        ]

    def turn_usage(self) -> dict[str, int]:
        """coturn's own count of relayed bytes, by TURN session, for the sessions that have closed (coturn
        reports a session's total when its allocation ends)."""
        return peer_usage(self.lab)

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll `probe` until it returns something other than None; after `timeout` seconds raise LabTimeout
        with the lab's logs."""
        return self.lab.wait_for(probe, timeout, what)

    def save_artifacts(self, folder: Path) -> Path:
        """Logs, routers' conntrack tables and rulesets, agents' event logs and packet captures into `folder`."""
        return self.lab.collect_artifacts(folder)

    def services(self) -> Sequence[str]:
        return self.lab.services()


__all__ = ["LabError", "NatLab", "Result"]
