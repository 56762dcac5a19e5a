"""The harness itself, against the real Docker engine: a subnet another network holds is a SubnetInUse that
carries compose's own message (and leaves nothing behind), and start_lab moves on to another slot from it.

Only the signal server is started (`services=["server"]`), so each lab costs a second or two.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from scenarios import harness
from scenarios.harness import LABEL, PROJECT_LABEL, Lab, SubnetInUse, Subnets, docker_client, free_slots, start_lab


@pytest.fixture
def taken_slot(docker_ready: None) -> Iterator[int]:
    """A free slot whose WAN subnet a (natlab-labelled) network of no lab then holds, as another lab would."""
    slot = next(free_slots())
    wan = Subnets.for_slot(slot).prefixes["NATLAB_WAN"]
    pool = docker.types.IPAMPool(subnet=f"{wan}.0/24", gateway=f"{wan}.1")
    with docker_client() as client:
        network = client.networks.create(
            f"natlab-squatter-{secrets.token_hex(3)}", ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            labels={LABEL: "squatter"},
        )  # fmt: skip
        try:
            yield slot
        finally:
            network.remove()


def project_objects(project: str) -> list[str]:
    with docker_client() as client:
        labels: dict[str, str | list[str] | bool] = {"label": f"{PROJECT_LABEL}={project}"}
        containers = [c.name or "?" for c in client.containers.list(all=True, filters=labels)]
        return containers + [n.name or "?" for n in client.networks.list(filters=labels)]


def test_a_taken_subnet_is_subnet_in_use_with_composes_message(taken_slot: int) -> None:
    project = f"natlab-overlap-{secrets.token_hex(3)}"
    lab = Lab(project=project, subnets=Subnets.for_slot(taken_slot), services=["server"])
    with pytest.raises(SubnetInUse) as raised, lab:
        pytest.fail("the lab came up on a subnet another network holds")
    assert "Pool overlaps with other one on this address space" in str(raised.value)
    assert project_objects(project) == [], "a lab that failed to start leaves nothing behind"


def test_start_lab_moves_on_from_a_taken_slot(taken_slot: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if another run had taken the slot between start_lab's look at the engine and its `up`.
    others = (slot for slot in free_slots() if slot != taken_slot)
    monkeypatch.setattr(harness, "free_slots", lambda: iter([taken_slot, next(others)]))
    with start_lab(name="moves-on", services=["server"]) as lab:
        assert lab.subnets != Subnets.for_slot(taken_slot)
        assert lab.health("server") == "healthy"
        project = lab.project
    assert project_objects(project) == []
