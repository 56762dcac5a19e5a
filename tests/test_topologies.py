"""The topology compose files: the generated grid is up to date, and every file is one compose accepts."""

import subprocess

import pytest

from scenarios.harness import COMPOSE_FILE
from scenarios.topologies import generate
from scenarios.topologies.generate import GRID_FILE, HERE, render, sites
from tests.support.host import require


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
