"""The pytest plugin as another project uses it: examples/ copied into a project of its own (its own pytest.ini,
nothing of natlab's configuration or conftest), run by pytest in a subprocess, where only the installed
entry point provides ``natlab_lab``. Its labs pass as the example's theory says and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scenarios.harness import LABEL, PROJECT_LABEL, REPO, docker_client

EXAMPLE = REPO / "examples" / "test_netcat_through_nats.py"


def plugin_projects() -> set[str]:
    """Compose projects of labs the plugin started (``natlab-pytest-...``) that still have a container."""
    with docker_client() as client:
        # sparse: the list alone, no inspect per container (other labs' containers come and go meanwhile)
        containers = client.containers.list(all=True, sparse=True, filters={"label": LABEL})
    labels = (c.attrs.get("Labels") or {} for c in containers)
    return {p for label in labels if (p := label.get(PROJECT_LABEL, "")).startswith("natlab-pytest-")}


def test_the_example_passes_in_a_project_of_its_own_through_the_plugin(tmp_path: Path, user_image: str) -> None:
    project = tmp_path / "their-project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(EXAMPLE, project / "tests" / EXAMPLE.name)
    (project / "pytest.ini").write_text("[pytest]\n")
    before = plugin_projects()
    env = os.environ | {"NETCAT_IMAGE": user_image}
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)
    said = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, said
    assert "natlab-0.1.0" in said, said  # pytest's header lists the plugin by its distribution
    assert "2 passed" in said, said
    assert plugin_projects() <= before, "the plugin left a lab behind"
    assert not (project / "natlab-artifacts").exists(), "artifacts saved for a test that passed"
