"""The runbook's by-hand checks, run as written with the real OpenStack CLI (and its Placement
plugin, osc-placement) against novasim: what an operator types at 3 a.m. must work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"

FLEET = {
    "aggregates": [{"name": "L40-n3", "hosts": ["gpu-l40-[001-002]"]}, {"name": "L40-n3-spot", "hosts": []}]
}


@pytest.fixture
def sim(start_sim):
    return start_sim(FLEET)


def openstack(sim, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | sim.env()
    done = subprocess.run(
        [str(BIN / "openstack"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def allocations_of(sim, host: str) -> str:
    """The runbook's "check it is empty", command for command."""
    uuid = openstack(sim, "resource", "provider", "list", "--name", host, "-f", "value", "-c", "uuid")
    return openstack(
        sim, "resource", "provider", "show", "--allocations", uuid, "-f", "value", "-c", "allocations"
    )


def test_the_runbook_gives_these_commands():
    text = RUNBOOK.read_text()
    assert "openstack resource provider list --name H -f value -c uuid" in text
    assert "openstack resource provider show --allocations UUID" in text
    assert "osc-placement" in text


def test_check_it_is_empty_sees_instances_builds_and_migrations(sim):
    assert allocations_of(sim, "gpu-l40-001") == "{}"
    sim.start_instance("gpu-l40-001")
    assert "VCPU" in allocations_of(sim, "gpu-l40-001")
    sim.schedule_build("gpu-l40-002")  # placed by the scheduler, not claimed by its compute yet
    assert "VCPU" in allocations_of(sim, "gpu-l40-002")
