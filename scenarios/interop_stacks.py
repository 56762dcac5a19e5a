"""The host side of the interop drivers (README "Interop"): one attempt of a third-party stack between two lab
hosts, each side's :class:`interop.report.Report` back.

The lab is a normal natlab lab started from the interop image (:func:`interop_image`, then ``NATLAB_IMAGE`` in
the lab's env); the drivers (package ``interop``) run in its hosts with `docker exec`, in the background, and
leave their reports in a per-attempt folder under /tmp/natlab-interop that this side polls. Descriptions
(aiortc) and certificates (nebula) are carried between containers by this side, so the hosts need no channel
of their own.
"""

from __future__ import annotations

import io
import ipaddress
import secrets
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from interop.nebula import ADDRESSES as NEBULA_ADDRESSES
from interop.report import Report
from scenarios.harness import REPO, Lab, LabError

EXCHANGE_ROOT = Path("/tmp/natlab-interop")
AIORTC_PYTHON = "/opt/aiortc/bin/python"
SIDES = ("a", "b")


def interop_image() -> str:
    """Build (or find) the interop image with `make interop-image`, which fetches the wheels on this machine
    first; its content-hash reference."""
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "interop-image"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise LabError(f"make interop-image failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout.strip().splitlines()[-1]


def put_file(lab: Lab, service: str, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in a service's container (folders made as needed)."""
    lab.exec_ok(service, "mkdir", "-p", str(path.parent))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(f".{path.name}.part")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    if not lab.container(service).put_archive(str(path.parent), archive.getvalue()):
        raise LabError(f"{service}: could not write {path}")
    lab.exec_ok(service, "mv", str(path.parent / f".{path.name}.part"), str(path))  # whole, as the readers expect


def read_file(lab: Lab, service: str, path: Path) -> str | None:
    """A file's text in a service's container, None while it is not there."""
    code, output = lab.exec(service, "cat", str(path))
    return output if code == 0 else None


def carry(lab: Lab, source: str, target: str, path: Path, timeout: float) -> None:
    """Wait for ``path`` in ``source``'s container and copy it to the same path in ``target``'s."""
    text = lab.wait_for(lambda: read_file(lab, source, path), timeout, f"{path.name} from {source}")
    put_file(lab, target, path, text.encode())


def reports(
    lab: Lab, hosts: dict[str, str], exchange: Path, timeout: float, per_side_folder: bool = False
) -> dict[str, Report]:
    """Each side's report once both are there ({side: host} in, {side: report} out); ``per_side_folder``: each
    side's is in its own subfolder of ``exchange`` (nebula's), not in ``exchange`` itself (aiortc's)."""

    def path(side: str) -> Path:
        return (exchange / side if per_side_folder else exchange) / f"result-{side}.json"

    def both() -> dict[str, Report] | None:
        found = {side: read_file(lab, host, path(side)) for side, host in hosts.items()}
        if any(text is None for text in found.values()):
            return None
        return {side: Report.from_json(text) for side, text in found.items() if text is not None}

    return lab.wait_for(both, timeout, f"both sides' reports in {exchange}")


def webrtc(lab: Lab, a: str = "alice", b: str = "bob", timeout: float = 30.0) -> dict[str, Report]:
    """One aiortc data-channel attempt: ``a`` offers, ``b`` answers; the descriptions are carried across."""
    exchange = EXCHANGE_ROOT / f"webrtc-{secrets.token_hex(4)}"
    hosts = {"a": a, "b": b}
    for side, host in hosts.items():
        command = [AIORTC_PYTHON, "-m", "interop.webrtc", "--side", side, "--exchange", str(exchange)]
        command += ["--timeout", str(timeout)]
        lab.exec_ok(host, "mkdir", "-p", str(exchange))
        lab.container(host).exec_run(command, detach=True)
    carry(lab, a, b, exchange / "offer.json", timeout)
    carry(lab, b, a, exchange / "answer.json", timeout)
    return reports(lab, hosts, exchange, timeout + 10)


def conntrack_flows(lab: Lab, router: str, lan: str, destination: str) -> list[dict[str, Any]]:
    """The router's UDP conntrack entries from a host on its ``lan`` network to ``destination`` (``ip:port``)."""
    host, _, port = destination.rpartition(":")
    flows: list[dict[str, Any]] = lab.json(router, "nat", "conntrack", "--json")
    subnet = lab.topology.networks[lan]
    return [
        flow
        for flow in flows
        if flow["orig"]["dst"] == host
        and int(flow["orig"]["dport"]) == int(port)
        and ipaddress.ip_address(flow["orig"]["src"]) in subnet
    ]


def replied(flow: dict[str, Any]) -> bool:
    """Whether conntrack has seen the flow's reply direction (no UNREPLIED flag)."""
    return "UNREPLIED" not in str(flow.get("flags", ""))


NEBULA_PKI = "pki"


def nebula_certificates(lab: Lab, service: str, exchange: Path) -> dict[str, dict[str, bytes]]:
    """A fresh CA and a certificate per node (lighthouse, a, b) made with ``nebula-cert`` in ``service``;
    per node, the files its folder needs (``ca.crt``, ``host.crt``, ``host.key``)."""
    pki = exchange / NEBULA_PKI
    lab.exec_ok(service, "mkdir", "-p", str(pki))
    ca = [f"-ca-crt={pki}/ca.crt", f"-ca-key={pki}/ca.key"]
    lab.exec_ok(
        service, "nebula-cert", "ca", "-name", "natlab-interop", f"-out-crt={pki}/ca.crt", f"-out-key={pki}/ca.key"
    )
    files: dict[str, dict[str, bytes]] = {}
    for role, address in NEBULA_ADDRESSES.items():
        crt, key = f"{pki}/{role}.crt", f"{pki}/{role}.key"
        lab.exec_ok(
            service,
            "nebula-cert",
            "sign",
            *ca,
            "-name",
            role,
            "-ip",
            f"{address}/24",
            f"-out-crt={crt}",
            f"-out-key={key}",
        )
        files[role] = {
            "ca.crt": lab.exec_ok(service, "cat", f"{pki}/ca.crt").encode(),
            "host.crt": lab.exec_ok(service, "cat", crt).encode(),
            "host.key": lab.exec_ok(service, "cat", key).encode(),
        }
    return files


def nebula(
    lab: Lab, relays: bool, *, a: str = "alice", b: str = "bob", lighthouse: str = "server", timeout: float = 15.0
) -> dict[str, Report]:
    """One nebula attempt: certificates made afresh, the lighthouse started in ``lighthouse`` (a WAN service),
    then both sides, each pinging the other; every nebula stopped afterwards."""
    exchange = EXCHANGE_ROOT / f"nebula-{'relays-' if relays else ''}{secrets.token_hex(4)}"
    nodes = {"lighthouse": lighthouse, "a": a, "b": b}
    try:
        for role, files in nebula_certificates(lab, lighthouse, exchange).items():
            for name, data in files.items():
                put_file(lab, nodes[role], exchange / role / name, data)
        start_nebula(lab, "lighthouse", lighthouse, exchange, relays=relays, timeout=timeout)
        lighthouse_log = exchange / "lighthouse" / "nebula.log"
        lab.wait_for(
            lambda: True if "interface is active" in (read_file(lab, lighthouse, lighthouse_log) or "") else None,
            10,
            "nebula's lighthouse to start",
        )
        start_nebula(lab, "a", a, exchange, relays=relays, timeout=timeout, lighthouse=lab.address(lighthouse))
        start_nebula(lab, "b", b, exchange, relays=relays, timeout=timeout, lighthouse=lab.address(lighthouse))
        return reports(lab, {"a": a, "b": b}, exchange, timeout + 20, per_side_folder=True)
    finally:
        for role, service in nodes.items():
            lab.exec(service, "touch", str(exchange / role / "stop"))


def start_nebula(
    lab: Lab, role: str, service: str, exchange: Path, *, relays: bool, timeout: float, lighthouse: str = ""
) -> None:
    """Start interop.nebula in the background as ``role`` (lighthouse, a, b) in ``service``."""
    command = ["python3", "-m", "interop.nebula", "--side", role, "--exchange", str(exchange / role)]
    command += ["--lighthouse", lighthouse or lab.address(service), "--relays", "on" if relays else "off"]
    command += ["--peer", NEBULA_ADDRESSES["b" if role == "a" else "a"], "--timeout", str(timeout)]
    lab.container(service).exec_run(command, detach=True)


def natlab(lab: Lab, a: str = "alice", b: str = "bob", timeout: float = 15.0) -> dict[str, Report]:
    """One attempt of natlab's own client: ``a`` connects to ``b`` and settles; both forget each other after."""
    exchange = EXCHANGE_ROOT / f"natlab-{secrets.token_hex(4)}"
    hosts = {"a": a, "b": b}
    try:
        for side, host in hosts.items():
            peer = b if side == "a" else a
            command = ["python3", "-m", "interop.natlab", "--side", side, "--peer", peer, "--exchange", str(exchange)]
            lab.exec_ok(host, "mkdir", "-p", str(exchange))
            lab.container(host).exec_run([*command, "--timeout", str(timeout)], detach=True)
        return reports(lab, hosts, exchange, timeout + 15)
    finally:
        lab.exec(a, "client", "disconnect", b)
        lab.exec(b, "client", "disconnect", a)
