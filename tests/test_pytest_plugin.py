"""natlab's pytest plugin without Docker: its entry point, the compose variables a lab spec makes, and that
loading it (into every pytest run of the environment) imports nothing heavy."""

import subprocess
import sys
from importlib.metadata import entry_points

from natlab_pytest.plugin import CHECKOUT, LabSpec


def test_pytest_finds_the_plugin_by_its_entry_point() -> None:
    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "natlab"]
    assert entry.value == "natlab_pytest.plugin"
    assert (CHECKOUT / "compose.yaml").is_file()


def test_a_spec_sets_only_what_it_was_given_and_env_wins() -> None:
    assert LabSpec().variables() == {"NAT_A": "cone", "NAT_B": "cone"}
    spec = LabSpec(
        "cone",
        "symmetric",
        host_a_image="myapp:1",
        host_a_command="myapp --serve",
        impair_b="lte",
        env={"NAT_B": "udp-blocked", "NATLAB_KEEPALIVE": "2"},
    )
    assert spec.variables() == {
        "NAT_A": "cone",
        "NAT_B": "udp-blocked",
        "HOST_A_IMAGE": "myapp:1",
        "HOST_A_COMMAND": "myapp --serve",
        "NAT_B_IMPAIR": "lte",
        "NATLAB_KEEPALIVE": "2",
    }


def test_loading_the_plugin_imports_neither_docker_nor_the_harness() -> None:
    probe = "import sys, natlab_pytest.plugin; print(sorted({'docker', 'scenarios.harness'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
