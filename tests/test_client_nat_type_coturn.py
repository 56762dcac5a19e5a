"""``client nat-type`` and the third-party classifiers against a real coturn on loopback, with no NAT.

coturn does RFC 5780 only with two listening IPs of one family: it listens on 127.0.0.1 (first: the
primary address) and 127.0.0.2, each on port P and P+1 (``--alt-listening-port`` defaults to P+1), with
the lab's flags. Skipped when the binary is missing (``apt-get install coturn``); the classifiers' tests
when theirs are (coturn's ``turnutils_natdiscovery``, stun-client's ``stun``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.cli.main import main
from client.diagnostics.nat_discovery import discover
from client.diagnostics.nat_type import ENDPOINT_INDEPENDENT, DiscoveryError
from client.diagnostics.stun_ping import StunTimeout, stun_ping
from protocol import Endpoint
from scenarios.classifiers import (
    NoVerdict,
    natdiscovery_argv,
    parse_natdiscovery,
    parse_stun_client,
    stun_client_argv,
)
from scenarios.processes import logged_process
from tests.support.coturn import LAB_FLAGS, turnserver_command
from tests.support.ports import free_udp_ports

TURNSERVER = shutil.which("turnserver")
pytestmark = pytest.mark.needs("turnserver")  # apt-get install coturn
PRIMARY, ALTERNATE = "127.0.0.1", "127.0.0.2"
RELAY_PORTS = 8


@dataclass
class Coturn:
    primary: Endpoint
    log: Path

    @property
    def alternate(self) -> Endpoint:
        return Endpoint(ALTERNATE, self.primary.port)


@contextlib.contextmanager
def running_coturn(workdir: Path, *ips: str) -> Iterator[Coturn]:
    """coturn as the lab runs it (``images/bin/turn-entrypoint``), listening on ``ips`` (the first is the
    primary), answering STUN before the block runs; terminated afterwards."""
    assert TURNSERVER is not None
    ports = free_udp_ports(2 + RELAY_PORTS, ips)  # P, P+1 (the alternate port), then the relay ports
    port, log = ports[0], workdir / "turnserver.log"
    command = turnserver_command(
        TURNSERVER,
        workdir,
        listening_ips=ips,
        port=port,
        relay_ports=ports[2:],
        secret=secrets.token_urlsafe(12),
        extra=(*LAB_FLAGS, "--no-tcp"),
    )
    with logged_process(command, log):
        deadline = time.monotonic() + 10
        for ip in ips:  # stun_ping repeats its request until answered (coturn needs ~100 ms)
            try:
                stun_ping(Endpoint(ip, port), wait=max(0.1, deadline - time.monotonic()))
            except StunTimeout:
                raise RuntimeError(f"coturn not answering on {ip}:{port}:\n{log.read_text()}") from None
        yield Coturn(Endpoint(ips[0], port), log)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with running_coturn(tmp_path_factory.mktemp("coturn-rfc5780"), PRIMARY, ALTERNATE) as server:
        yield server


def test_no_nat_on_loopback(coturn: Coturn) -> None:
    report = discover(coturn.primary)
    assert (report.nat, report.mapping, report.filtering) == (False, ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT)
    assert report.other == Endpoint(ALTERNATE, coturn.primary.port + 1)  # the default alternate port: P+1
    assert report.mapped == report.local
    assert (report.port_preserved, report.hairpinning) == (True, True)


def test_binding_lifetime_uses_response_port(coturn: Coturn) -> None:
    report = discover(coturn.primary, lifetime_max=1)
    assert report.lifetime is not None
    assert (report.lifetime.kept, report.lifetime.lost) == (1.0, None)


def test_coturns_second_listening_ip_is_refused(coturn: Coturn) -> None:
    """Its OTHER-ADDRESS names itself (127.0.0.2, port P+1) and it ignores "change IP": useless for RFC 5780."""
    with pytest.raises(DiscoveryError, match=rf"reports OTHER-ADDRESS {ALTERNATE}:\d+.*first --listening-ip"):
        discover(coturn.alternate)


def test_cli_json(coturn: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nat-type", "--json"], {"NATLAB_TURN": str(coturn.primary)}) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["nat"], report["mapping"], report["filtering"]) == (
        False,
        ENDPOINT_INDEPENDENT,
        ENDPOINT_INDEPENDENT,
    )
    assert report["classic"] == "open"


def test_coturn_with_one_ip_is_not_rfc5780(tmp_path: Path) -> None:
    with (
        running_coturn(tmp_path, PRIMARY) as single,
        pytest.raises(DiscoveryError, match=r"does not support RFC 5780.*no OTHER-ADDRESS"),
    ):
        discover(single.primary)


@pytest.mark.needs("stun")
def test_stun_client_on_coturn_with_one_ip_is_refused(tmp_path: Path) -> None:
    """stun takes the 420 to CHANGE-REQUEST for an answer ("Open"); the parser refuses it."""
    with running_coturn(tmp_path, PRIMARY) as single:
        done = subprocess.run(stun_client_argv(single.primary), capture_output=True, text=True, timeout=30, check=False)
    with pytest.raises(NoVerdict, match="answered with an error"):
        parse_stun_client(done.stdout + done.stderr, done.returncode)


@pytest.mark.needs("turnutils_natdiscovery")
def test_turnutils_natdiscovery_says_no_nat(coturn: Coturn) -> None:
    argv = natdiscovery_argv(coturn.primary, local_ip=PRIMARY, hairpinning=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    verdict = parse_natdiscovery(done.stdout)
    assert (verdict.nat, verdict.mapping, verdict.filtering, verdict.hairpinning) == (
        False,
        ENDPOINT_INDEPENDENT,
        ENDPOINT_INDEPENDENT,
        True,
    ), done.stdout


@pytest.mark.needs("stun")
def test_stun_client_says_open(coturn: Coturn) -> None:
    done = subprocess.run(stun_client_argv(coturn.primary), capture_output=True, text=True, timeout=30, check=False)
    verdict = parse_stun_client(done.stdout + done.stderr, done.returncode)
    assert (verdict.nat, verdict.mapping, verdict.filtering, verdict.summary) == (
        False,
        ENDPOINT_INDEPENDENT,
        ENDPOINT_INDEPENDENT,
        "Open",
    )
