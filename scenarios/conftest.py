"""Scenario fixtures: one isolated lab per NAT pair, removed by label afterwards; artifacts on failure.

Scenarios need Docker. Run alone by a developer without Docker they skip; under CI (CI set) a missing
Docker is an error, so a scenario suite can never pass by not running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from scenarios.harness import REPO, Lab, start_lab
from scenarios.pairs import PAIRS, Pair

ARTIFACTS = REPO / "artifacts"
_report_key = pytest.StashKey[pytest.TestReport]()
_artifact_folders: list[Path] = []


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI time-out, `kill`) unwinds like Ctrl-C, so fixtures still remove their labs.
    signal.signal(signal.SIGTERM, _interrupt)


SCENARIO_TIMEOUT = 1800
"""Seconds a scenario may take, fixtures included, instead of the unit tests' minute (pyproject): the first
one builds the lab image (bootstrapping the base on a fresh machine) and each pair starts a lab."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.scenario)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or report.failed:
        item.stash[_report_key] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for folder in _artifact_folders:
        terminalreporter.write_line(f"natlab artifacts: {folder}")


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Docker reachable and the lab image built (fast when nothing changed); skip or fail loudly if not."""
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Docker is required for the scenarios in CI and is not reachable: {exc}", pytrace=False)
        pytest.skip(f"Docker is not reachable ({exc}); scenarios need it")
    for step in (["images/install-compose.sh", sys.executable], ["images/build.sh"]):
        done = subprocess.run(step, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(step)} failed:\n{done.stderr}{done.stdout}", pytrace=False)
    # Pin the labs to the exact image just built (build.sh prints its content-hash tag), not to
    # natlab-lab:latest, which another checkout building at the same time would move.
    os.environ["NATLAB_IMAGE"] = done.stdout.strip()


@pytest.fixture(scope="session")
def user_image(docker_ready: None) -> str:
    """The example user image (plain Debian + netcat, README "Bring your own host"), built by
    images/build-user-netcat.sh: content-hashed, so only when its inputs changed."""
    done = subprocess.run(["images/build-user-netcat.sh"], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"images/build-user-netcat.sh failed:\n{done.stderr}{done.stdout}", pytrace=False)
    return done.stdout.strip()


@pytest.fixture(scope="session", params=PAIRS, ids=lambda pair: pair.id)
def pair(request: pytest.FixtureRequest) -> Pair:
    """The NAT pair under test; test ids name it (cone-symmetric), so `-k symmetric` selects."""
    selected: Pair = request.param
    return selected


@pytest.fixture(scope="session")
def lab(pair: Pair, docker_ready: None) -> Iterator[Lab]:
    """An isolated lab for `pair` (own compose project and subnets), removed by label afterwards."""
    # Keepalives every 2 s, so a path that dies (TURN stopped) is noticed within seconds.
    with start_lab(name=pair.id, env={"NAT_A": pair.a, "NAT_B": pair.b, "NATLAB_KEEPALIVE": "2"}) as running:
        yield running


@pytest.fixture(autouse=True)
def _artifacts_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test that used a lab fails, save the lab's logs, event logs, conntrack and rulesets."""
    yield
    report = request.node.stash.get(_report_key, None)
    labs = [name for name in request.fixturenames if name.endswith("lab")]
    if report is None or not report.failed or not labs:
        return
    running = request.getfixturevalue(labs[0])
    assert isinstance(running, Lab)
    folder = running.collect_artifacts(ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid))
    _artifact_folders.append(folder)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nnatlab artifacts for {request.node.nodeid}: {folder}")


_passed_scenarios: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "scenario" in report.keywords:
        _passed_scenarios.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a scenario run in which no scenario passed is a failure, never a silent green."""
    if os.environ.get("CI") and exitstatus == 0 and not _passed_scenarios:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("natlab: CI ran no scenario to a pass; failing the run", red=True)
