"""The bench's server-rate run in the lab image: every server starts pinned, answers the generator and stops."""

from __future__ import annotations

import os
from contextlib import closing

import docker

from scenarios import server_rate
from scenarios.harness import LABEL


def test_every_server_answers_the_generator_in_the_lab_image(docker_ready: None) -> None:
    image = os.environ["NATLAB_IMAGE"]
    settings = server_rate.Settings(seconds=0.5, warmup=0.2, sockets=8)
    results = server_rate.measure(image, settings)
    assert list(results) == [mode.name for mode in server_rate.MODES]
    for name, result in results.items():
        assert result["replies"] > 0, name
        assert result["server_cpu"] > 0, name
    assert len(server_rate.report(results, settings)) >= 1 + len(results)


def test_the_image_serves_on_uvloop_by_default(docker_ready: None) -> None:
    command = ["python3", "-c", "from server.event_loop import choose; print(choose('auto').name)"]
    with closing(docker.from_env()) as client:
        output = client.containers.run(
            os.environ["NATLAB_IMAGE"], command, network_mode="none", remove=True, labels={LABEL: "bench"}
        )
    assert output.decode().startswith("uvloop 0.17")
