"""Fixtures of the sim tier: novasim in a child process, gpupool run as the real CLI."""

from __future__ import annotations

import pytest

from novasim.testing import SimProcess


@pytest.fixture
def start_sim(tmp_path):
    """start_sim(fleet, **options) -> a running SimProcess, stopped after the test."""
    started: list[SimProcess] = []

    def start(fleet, **options) -> SimProcess:
        sim = SimProcess(fleet, tmp_path / f"sim-{len(started)}", **options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
