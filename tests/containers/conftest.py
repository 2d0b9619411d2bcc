"""A Docker engine and Seesaw's CPU images for the tests that build and run them.

The engine is the user's (DOCKER_HOST or the default socket) when one answers, else a private
dockerd started for the session and stopped after it (tools/docker_engine.py). The images are
built once by `tools/images.py` on a Python base made from Debian's packages, with the
engine's layer cache: later sessions reuse what did not change. After every test that uses
the engine, nothing of a run is left on it: no container, network or volume.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from seesaw.local.docker_runtime import RUN_LABEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/fakes, as tests/operator reaches it


@pytest.fixture(scope="session")
def docker_engine():
    """(client, DOCKER_HOST for child processes)."""
    from docker_engine import engine

    with engine() as (client, host):
        yield client, host


@pytest.fixture(scope="session")
def cpu_images(docker_engine) -> dict[str, str]:
    """{image name: reference} of the CPU set, built (or found in the layer cache) once."""
    from images import build_set

    client, _ = docker_engine
    return build_set(client, "cpu", "debian")


@pytest.fixture
def engine_left_clean(docker_engine):
    """Fails the test if a run left a container, a network or a volume on the engine."""
    client, host = docker_engine
    volumes_before = {v.name for v in client.volumes.list()}
    yield client, host
    containers = [c.name for c in client.containers.list(all=True, filters={"label": RUN_LABEL})]
    networks = [n.name for n in client.networks.list(filters={"label": RUN_LABEL})]
    volumes = sorted({v.name for v in client.volumes.list()} - volumes_before)
    assert not (containers or networks or volumes), f"left behind: {containers} {networks} {volumes}"
