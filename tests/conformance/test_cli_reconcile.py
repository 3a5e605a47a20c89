"""`gpupool reconcile`, the real CLI, on both backends: the same small fleet and spec, the same
resulting membership on novasim and on a real Nova 34."""

from __future__ import annotations

import pytest

from tests.conformance.checks import aggregate_state, run_reconcile, service_state

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-005]"]
  - name: L40-n3-spot
    hosts: [gpu-l40-006]
  - name: L40-n3-runpod
    hosts: []
hosts:
  - name: gpu-l40-001
    instances: 1
  - name: gpu-l40-002
    status: disabled
    disabled_reason: RMA 4711
"""


def test_reconcile_grows_and_shrinks_pools(cloud, observe, tmp_path):
    d = cloud.deploy(FLEET)
    spec = {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "l40"},
        "spec": {
            "gpuType": "L40",
            "cloud": d.cloud_name,
            "onDemand": {"aggregates": [d.name("L40-n3")]},
            "pools": {
                "spot": {"aggregate": d.name("L40-n3-spot"), "hosts": 0},
                "runpod": {"aggregate": d.name("L40-n3-runpod"), "hosts": 2},
            },
            "policy": {"maxConcurrentMoves": 2},
        },
    }
    output = run_reconcile(d, spec, tmp_path)
    state = aggregate_state(d, ["L40-n3", "L40-n3-spot", "L40-n3-runpod"])
    hosts = {name: agg["hosts"] for name, agg in state.items()}
    observe("membership", hosts)
    # gpu-l40-001 has an instance and gpu-l40-002 is disabled by someone else: neither moves.
    assert hosts == {
        "L40-n3": ["gpu-l40-001", "gpu-l40-002", "gpu-l40-005", "gpu-l40-006"],
        "L40-n3-spot": [],
        "L40-n3-runpod": ["gpu-l40-003", "gpu-l40-004"],
    }
    services = {h: service_state(d, h) for h in ("gpu-l40-002", "gpu-l40-003", "gpu-l40-006")}
    observe("services", {h: (s["status"], s["disabled_reason"]) for h, s in services.items()})
    assert (services["gpu-l40-002"]["status"], services["gpu-l40-002"]["disabled_reason"]) == (
        "disabled",
        "RMA 4711",
    )
    for h in ("gpu-l40-003", "gpu-l40-006"):
        assert (services[h]["status"], services[h]["disabled_reason"]) == ("enabled", None)
    moves = output["status"]["lastMoves"]
    assert sorted(d.logical(m["host"]) for m in moves) == ["gpu-l40-003", "gpu-l40-004", "gpu-l40-006"]
