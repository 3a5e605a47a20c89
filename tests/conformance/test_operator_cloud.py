"""The operator's own cloud layer (gpupool.cloud) on both backends: snapshot and the move steps,
including the idempotent "already done" answers it recognises by Nova's messages."""

from __future__ import annotations

import pytest
from checks import aggregate_state, service_state

from gpupool.cloud import Cloud, RetryPolicy

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-003]"]
  - name: L40-n3-spot
    hosts: [gpu-l40-004]
hosts:
  - name: gpu-l40-001
    instances: 1
  - name: gpu-l40-003
    state: down
    status: disabled
    disabled_reason: RMA
"""
HOSTS = ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003", "gpu-l40-004"]


@pytest.fixture
def operator_cloud(cloud, monkeypatch):
    """Deploy FLEET; a gpupool Cloud on the same clouds.yaml entry (as the operator finds it)."""
    d = cloud.deploy(FLEET)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(d.clouds_yaml))
    c = Cloud(d.cloud_name, timeout=60, retry=RetryPolicy(attempts=2, base_delay=0.05))
    yield d, c
    c.close()


def test_snapshot(operator_cloud, observe):
    d, c = operator_cloud
    snap = c.snapshot()
    hosts = {
        d.logical(h.name): (h.state, h.status, h.disabled_reason, h.instances)
        for h in snap.hosts.values()
        if d.logical(h.name) in HOSTS
    }
    aggregates = {
        d.logical(a.name): (sorted(d.logical(h) for h in a.hosts), dict(a.metadata))
        for a in snap.aggregates.values()
        if d.logical(a.name) in ("L40-n3", "L40-n3-spot")
    }
    observe("snapshot", {"hosts": hosts, "aggregates": aggregates})
    assert hosts == {
        "gpu-l40-001": ("up", "enabled", None, 1),
        "gpu-l40-002": ("up", "enabled", None, 0),
        "gpu-l40-003": ("down", "disabled", "RMA", 0),
        "gpu-l40-004": ("up", "enabled", None, 0),
    }
    assert aggregates == {
        "L40-n3": (["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"], {"availability_zone": "nova"}),
        "L40-n3-spot": (["gpu-l40-004"], {}),
    }
    assert c.instances_on(d.host("gpu-l40-001")) == 1
    assert c.instances_on(d.host("gpu-l40-002")) == 0


def test_move_steps_are_idempotent(operator_cloud, observe):
    d, c = operator_cloud
    snap = c.snapshot()
    host = snap.hosts[d.host("gpu-l40-002")]
    source = snap.aggregates[d.name("L40-n3")]
    target = snap.aggregates[d.name("L40-n3-spot")]
    reason = "gpupool: moving L40-n3 -> L40-n3-spot"
    c.disable_service(host, reason)
    assert service_state(d, "gpu-l40-002")["disabled_reason"] == reason
    c.remove_host(source, host.name)
    c.remove_host(source, host.name)  # "not in the aggregate": done already
    c.add_host(target, host.name)
    c.add_host(target, host.name)  # "already has host": done already
    c.enable_service(host)
    state = aggregate_state(d, ["L40-n3", "L40-n3-spot"])
    observe("after-move", state)
    assert state["L40-n3"]["hosts"] == ["gpu-l40-001", "gpu-l40-003"]
    assert state["L40-n3-spot"]["hosts"] == ["gpu-l40-002", "gpu-l40-004"]
    after = service_state(d, "gpu-l40-002")
    assert (after["status"], after["disabled_reason"]) == ("enabled", None)
