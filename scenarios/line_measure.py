"""Measuring a lab router's impairments from the host, through the router itself: ``client linecheck`` from a
host behind it to an echo in the lab's server container (on the WAN, behind no NAT), and iperf3 between the
same two for a shaped rate. The host's router is the only impaired hop on that path, so its ``up`` is the
way out and its ``down`` the way back.

The echo and the iperf3 server are started for one measurement each (``docker exec`` in the server
container, not lab services): the echo answers only the run's random token and exits when the sender says
done (or when idle), the iperf3 server after its one test (or after a minute).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from client.diagnostics.line_stats import LineReport
from nat.impair.model import ImpairmentError, Impairments
from nat.state import IMPAIR_FILE, STATE_DIR
from scenarios import iperf
from scenarios.harness import Lab, LabError, Role, Service
from scenarios.impair_tolerance import RATE_OFFER, Probe, Row, direction_rows, probe_for, rate_row

ECHO_PORTS = range(41000, 49000)
"""UDP/TCP ports the echo and iperf3 server take in the server container, one at random per measurement."""
SENDER_TIMEOUT = 10.0
"""Seconds the sender waits for the echo's hello and summary answers (and for replies to stop)."""
RATE_SECONDS = 3.0
ECHO_START_SLACK = 60.0
"""Seconds the echo waits for its sender's first datagram beyond the run's own length."""


@dataclass(frozen=True)
class Site:
    """A router, a host behind it, and the echo on the WAN beyond it: the path a measurement takes."""

    router: str
    host: str
    echo: str
    echo_address: str


def sites(services: Sequence[Service]) -> list[Site]:
    """Each router with the first host behind it (sharing a network with it), measured against the signal
    server's container; routers without a host are left out."""
    echoes = [s for s in services if s.role is Role.SERVER]
    if not echoes or "wan" not in echoes[0].addresses:
        raise LabError("no signal server on the lab's wan network to run the echo in")
    echo = echoes[0]
    found = []
    for router in (s for s in services if s.role is Role.ROUTER):
        lans = router.addresses.keys() - {"wan"}
        hosts = sorted(s.name for s in services if s.role is Role.HOST and lans & s.addresses.keys())
        if hosts:
            found.append(Site(router.name, hosts[0], echo.name, echo.addresses["wan"]))
    return found


def configured(lab: Lab, router: str) -> Impairments:
    """The impairments in force in ``router`` (its state file); none when it has no such file."""
    code, output = lab.exec(router, "cat", str(STATE_DIR / IMPAIR_FILE))
    if code != 0:
        if "No such file" in output:
            return Impairments()
        raise LabError(f"{router}: cannot read its impairments: {output}")
    try:
        return Impairments.from_dict(json.loads(output))
    except (ValueError, ImpairmentError) as exc:
        raise LabError(f"{router}: {STATE_DIR / IMPAIR_FILE} is not an impairment: {exc}\n{output}") from None


def _in_twin(lab: Lab, service: str, command: Sequence[str]) -> tuple[int, str]:
    """Run a command in a service on a Docker client of its own (for a thread beside the lab's own calls)."""
    with closing(Lab(lab.files, project=lab.project)) as twin:
        return twin.exec(service, *command)


def linecheck(lab: Lab, site: Site, probe: Probe) -> dict[str, Any]:
    """One ``client linecheck`` run from the site's host to an echo started for it; the sender's JSON report."""
    token, port = secrets.token_hex(16), secrets.choice(ECHO_PORTS)
    idle = SENDER_TIMEOUT + 5  # longer than the sender's longest silence (its wait for the last replies)
    echo = ["client", "linecheck", "echo", "--port", str(port), "--token", token, "--idle", f"{idle:g}"]
    # idle counts from the sender's first datagram; until then the duration bounds the echo's life, with room
    # for a sender that `docker exec` starts late on a busy host
    echo += ["--duration", f"{probe.count / probe.rate + 4 * SENDER_TIMEOUT + idle + ECHO_START_SLACK:g}"]
    send = ["client", "linecheck", "send", f"{site.echo_address}:{port}", "--token", token]
    send += ["--count", str(probe.count), "--rate", f"{probe.rate:g}", "--size", str(probe.size)]
    send += ["--timeout", f"{SENDER_TIMEOUT:g}"]
    with ThreadPoolExecutor(1) as pool:
        echoing = pool.submit(_in_twin, lab, site.echo, echo)
        # On a busy host `docker exec` can take seconds to start a process: the sender starts once the echo
        # listens, so its hellos measure the path, not the echo's start-up.
        lab.wait_for(lambda: _listening(lab, site.echo, "-Hlun", port), 30, f"the echo in {site.echo} on {port}")
        code, output, error = lab.exec_split(site.host, *send)
        echo_code, echo_output = echoing.result()
    if not output.strip():
        said = f"{site.host}: {' '.join(send)} exited {code}: {error}\n{site.echo} (exit {echo_code}): {echo_output}"
        raise LabError(said)
    report: dict[str, Any] = json.loads(output)
    return report


def _listening(lab: Lab, service: str, options: str, port: int) -> bool | None:
    """Whether something listens on ``port`` in ``service`` (``ss`` options: -Hltn TCP, -Hlun UDP)."""
    code, output = lab.exec(service, "ss", options, f"sport = :{port}")
    return True if code == 0 and output.strip() else None


def rate(lab: Lab, site: Site, direction: str, offered_bps: int, seconds: float = RATE_SECONDS) -> iperf.RateResult:
    """iperf3 UDP between the site's host and its echo container, ``up`` or ``down`` (``-R``)."""
    port = secrets.choice(ECHO_PORTS)
    with ThreadPoolExecutor(1) as pool:
        serving = pool.submit(_in_twin, lab, site.echo, iperf.server_command(port))
        lab.wait_for(lambda: _listening(lab, site.echo, "-Hltn", port), 30, f"iperf3 in {site.echo} on {port}")
        command = iperf.client_command(site.echo_address, port, direction, offered_bps, seconds)
        code, output, error = lab.exec_split(site.host, *command)
        serving.result()
    try:
        return iperf.parse_client(output, direction, offered_bps)
    except ValueError as exc:
        raise LabError(f"{site.host}: {' '.join(command)} exited {code}: {exc}\n{error}") from None


@dataclass(frozen=True)
class Measurement:
    """A site measured: what was configured, the probe, the line check's report, and the rows."""

    site: Site
    impairments: Impairments
    probe: Probe
    report: dict[str, Any]
    rows: list[Row]

    @property
    def ok(self) -> bool:
        return all(row.ok is not False for row in self.rows)


def measure(lab: Lab, site: Site, seconds: float, with_rate: bool = True) -> Measurement:
    """Configured against measured for one router: a line check of about ``seconds``, then iperf3 in each
    shaped direction (``with_rate``)."""
    impairments = configured(lab, site.router)
    probe = probe_for(impairments, seconds)
    raw = linecheck(lab, site, probe)
    report = LineReport.from_dict(raw)
    rows: list[Row] = []
    for direction, link, stats in (("up", impairments.up, report.up), ("down", impairments.down, report.down)):
        if stats is None:
            rows.append(Row(site.router, direction, "line", "-", str(raw.get("summary_error")), "", False))
        else:
            rows += direction_rows(site.router, direction, link, stats, probe)
        if link.rate_bps:
            result = rate(lab, site, direction, round(RATE_OFFER * link.rate_bps)) if with_rate else None
            row = rate_row(site.router, link, result, direction)
            rows += [row] if row else []
    return Measurement(site, impairments, probe, raw, rows)
