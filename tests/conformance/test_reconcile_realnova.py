"""`gpupool reconcile` on both backends: hosts lent from a second on-demand aggregate come back to it.

The origin of such a host is kept in Nova as a metadata key on the pool aggregate; this checks that
a real Nova 34 takes the key (its metadata schema restricts key characters), deletes it with a null
value, and that two separate runs (nothing remembered between them but Nova) end with the same
membership on novasim and on the real Nova.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.checks import aggregate_state, run_reconcile, service_state

pytestmark = pytest.mark.conformance
AGGREGATES = ["L40-n3", "L40-n3-NVLink", "L40-n3-spot"]

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-001]
  - name: L40-n3-NVLink
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-002, gpu-l40-003]
  - name: L40-n3-spot
    hosts: []
"""


def reconcile(d, tmp_path: Path, spot: int) -> dict:
    spec = {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "l40"},
        "spec": {
            "gpuType": "L40",
            "cloud": d.cloud_name,
            "onDemand": {"aggregates": [d.name("L40-n3"), d.name("L40-n3-NVLink")]},
            "pools": {"spot": {"aggregate": d.name("L40-n3-spot"), "hosts": spot}},
            "policy": {"maxConcurrentMoves": 2},
        },
    }
    return run_reconcile(d, spec, tmp_path)["status"]


def view(d) -> dict:
    """Membership and gpupool's origin records, in logical names."""
    state = aggregate_state(d, AGGREGATES)
    hosts = {name: agg["hosts"] for name, agg in state.items()}
    records = {}
    for key, value in state["L40-n3-spot"]["metadata"].items():
        if key.startswith("gpupool.origin."):
            records[d.logical(key.removeprefix("gpupool.origin."))] = d.logical(value)
    return {"hosts": hosts, "records": records}


def test_hosts_lent_from_nvlink_return_there_in_a_later_run(cloud, observe, tmp_path):
    d = cloud.deploy(FLEET)
    reconcile(d, tmp_path, spot=3)
    lent = view(d)
    observe("after-grow", lent)
    assert lent == {
        "hosts": {
            "L40-n3": [],
            "L40-n3-NVLink": [],
            "L40-n3-spot": ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"],
        },
        "records": {"gpu-l40-002": "L40-n3-NVLink", "gpu-l40-003": "L40-n3-NVLink"},
    }

    reconcile(d, tmp_path, spot=0)
    back = view(d)
    observe("after-shrink", back)
    assert back == {
        "hosts": {
            "L40-n3": ["gpu-l40-001"],
            "L40-n3-NVLink": ["gpu-l40-002", "gpu-l40-003"],
            "L40-n3-spot": [],
        },
        "records": {},
    }
    for host in ("gpu-l40-001", "gpu-l40-002", "gpu-l40-003"):
        service = service_state(d, host)
        assert (service["status"], service["disabled_reason"]) == ("enabled", None), (host, service)
