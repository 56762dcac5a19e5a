"""natlab's pytest plugin (entry point ``pytest11: natlab``): the ``natlab_lab`` fixture, for any project's tests.

``natlab_lab(nat_a="cone", nat_b="symmetric", host_a_image="myapp:1", host_a_command="myapp --serve")``
(:class:`LabSpec`'s fields) starts a lab (the harness's :func:`scenarios.harness.start_lab`: its own compose
project and subnets, every service healthy) and returns a :class:`natlab_pytest.handle.NatLab`; every lab
the test started is removed when it ends, passed or failed, and a failed test's logs, conntrack tables and
packet captures are saved first, under ``natlab-artifacts/`` in the project's rootdir. :func:`open_lab`
(``with open_lab(LabSpec(...)) as lab``) is the same as a context manager, for a fixture of wider scope that
shares one lab between tests.

Loaded into every pytest run of an environment where natlab is installed, so it imports nothing heavy (the
docker SDK, the harness) until a test asks for a lab.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from natlab_pytest.handle import NatLab

CHECKOUT = Path(__file__).resolve().parent.parent
"""The natlab checkout this plugin runs from: its compose files and image recipes (an editable install)."""
ARTIFACTS = "natlab-artifacts"
_report_key = pytest.StashKey[pytest.TestReport]()


@dataclass(frozen=True)
class LabSpec:
    """A lab to start: both routers' NAT profiles, each host's own image and command (None: natlab's agent
    alone, README "Bring your own host"), each router's impairments (README "Impairments"), and any other
    compose variable in ``env`` (``NAT_A_HAIRPIN``, ``NATLAB_KEEPALIVE``, ...), which wins."""

    nat_a: str = "cone"
    nat_b: str = "cone"
    host_a_image: str | None = None
    host_a_command: str | None = None
    host_b_image: str | None = None
    host_b_command: str | None = None
    impair_a: str | None = None
    impair_b: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def variables(self) -> dict[str, str]:
        """The compose variables of compose.yaml (and its user-host overlays) that make this lab."""
        given = {
            "NAT_A": self.nat_a,
            "NAT_B": self.nat_b,
            "HOST_A_IMAGE": self.host_a_image,
            "HOST_A_COMMAND": self.host_a_command,
            "HOST_B_IMAGE": self.host_b_image,
            "HOST_B_COMMAND": self.host_b_command,
            "NAT_A_IMPAIR": self.impair_a,
            "NAT_B_IMPAIR": self.impair_b,
        }
        return {name: value for name, value in given.items() if value is not None} | dict(self.env)


class LabFactory:
    """What ``natlab_lab`` yields: call it with :class:`LabSpec`'s fields to start a lab; it keeps every lab it
    started open on the test's exit stack (removed when the test ends) and in :attr:`labs`."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self.labs: list[NatLab] = []

    def __call__(
        self,
        nat_a: str = "cone",
        nat_b: str = "cone",
        *,
        host_a_image: str | None = None,
        host_a_command: str | None = None,
        host_b_image: str | None = None,
        host_b_command: str | None = None,
        impair_a: str | None = None,
        impair_b: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> NatLab:
        spec = LabSpec(
            nat_a, nat_b, host_a_image, host_a_command, host_b_image, host_b_command, impair_a, impair_b, env or {}
        )
        lab = self._stack.enter_context(open_lab(spec))
        self.labs.append(lab)
        return lab


@cache
def lab_image() -> str:
    """The lab image, built from the checkout if its inputs changed (once per run); with Compose installed
    when `docker compose` is missing. A failure is the build's own words."""
    for step in (["images/install-compose.sh", sys.executable], ["images/build.sh"]):
        done = subprocess.run(step, cwd=CHECKOUT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"natlab: {' '.join(step)} failed in {CHECKOUT}:\n{done.stderr}{done.stdout}")
    return done.stdout.strip()


@contextmanager
def open_lab(spec: LabSpec = LabSpec(), name: str = "pytest") -> Iterator[NatLab]:
    """Start the lab `spec` describes (its compose project is ``natlab-<name>-<random>``) and remove it when
    the block ends, however it ends."""
    from natlab_pytest.handle import NatLab
    from scenarios.harness import start_lab

    variables = {"NATLAB_IMAGE": lab_image()} | spec.variables()
    with start_lab(name=name, env=variables) as lab:
        yield NatLab(lab)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or report.failed:
        item.stash[_report_key] = report
    return report


@pytest.fixture
def natlab_lab(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """Start labs: ``lab = natlab_lab(nat_a="cone", nat_b="symmetric", host_a_image=...)``. Each is removed
    when the test ends; if the test failed, its artifacts are saved first (``natlab-artifacts/<test>/``)."""
    with ExitStack() as stack:
        factory = LabFactory(stack)
        yield factory
        report = request.node.stash.get(_report_key, None)
        if report is not None and report.failed:
            _save_artifacts(request, factory.labs)


def _save_artifacts(request: pytest.FixtureRequest, labs: list[NatLab]) -> None:
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for lab in labs:
        folder = lab.save_artifacts(request.config.rootpath / ARTIFACTS / test / lab.project)
        if reporter is not None:
            reporter.write_line(f"\nnatlab artifacts for {request.node.nodeid}: {folder}")
