"""The operator's own cloud layer (gpupool.cloud) on both backends: snapshot and the move steps,
including the idempotent "already done" answers it recognises by Nova's messages."""

from __future__ import annotations

import pytest

from gpupool.cloud import Cloud, RetryPolicy
from gpupool.errors import HostNotInAggregate
from gpupool.intent import LOCK_AGGREGATE, MoveIntent
from tests.conformance.checks import aggregate_state, service_state

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
    assert all(snap.hosts[d.host(h)].hypervisor_id for h in HOSTS)  # the compute node uuids


def test_reads_right_before_a_step(operator_cloud, observe):
    """The check and the confirm (one hypervisor read: service and instances) and the verify
    (Placement: everything that claims the host)."""
    d, c = operator_cloud
    snap = c.snapshot()
    now = {h: c.host_now(snap.hosts[d.host(h)]) for h in HOSTS}
    claims = {h: len(c.claims_on(snap.hosts[d.host(h)])) for h in HOSTS}
    seen = {h: (n.status, n.state, n.disabled_reason, len(n.servers or ())) for h, n in now.items()}
    observe("host-now", {"hosts": seen, "claims": claims})
    assert seen == {
        "gpu-l40-001": ("enabled", "up", None, 1),
        "gpu-l40-002": ("enabled", "up", None, 0),
        "gpu-l40-003": ("disabled", "down", "RMA", 0),
        "gpu-l40-004": ("enabled", "up", None, 0),
    }
    assert claims == {"gpu-l40-001": 1, "gpu-l40-002": 0, "gpu-l40-003": 0, "gpu-l40-004": 0}


def test_the_move_lock_is_an_aggregate_only_one_process_can_create(operator_cloud, observe):
    d, c = operator_cloud
    name = d.alias(LOCK_AGGREGATE)  # unique per scenario on the shared real Nova
    held = c.create_aggregate(name)
    assert held is not None
    assert c.create_aggregate(name) is None  # taken: Nova keeps aggregate names unique
    c.set_aggregate_metadata(held, {"gpupool.holder": "test", "gpupool.expires": "2026-12-02T00:00:00Z"})
    listed = c.snapshot().aggregates[name]
    observe("lock", {"metadata": dict(listed.metadata), "hosts": sorted(listed.hosts)})
    assert listed.metadata["gpupool.holder"] == "test" and listed.created_at
    assert c.delete_aggregate(held) is True
    assert c.delete_aggregate(held) is False  # gone already: a lock re-created since is never deleted by id


def test_move_steps_are_idempotent(operator_cloud, observe):
    d, c = operator_cloud
    snap = c.snapshot()
    host = snap.hosts[d.host("gpu-l40-002")]
    source = snap.aggregates[d.name("L40-n3")]
    target = snap.aggregates[d.name("L40-n3-spot")]
    reason = MoveIntent(host.name, "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    c.disable_service(host, reason)
    assert service_state(d, "gpu-l40-002")["disabled_reason"] == reason
    c.remove_host(source, host.name, expect_member=True)
    c.remove_host(source, host.name)  # "not in the aggregate": done already
    with pytest.raises(HostNotInAggregate):  # ... unless we expected it there: someone moved it
        c.remove_host(source, host.name, expect_member=True)
    c.add_host(target, host.name)
    c.add_host(target, host.name)  # "already has host": done already
    c.enable_service(host)
    state = aggregate_state(d, ["L40-n3", "L40-n3-spot"])
    observe("after-move", state)
    assert state["L40-n3"]["hosts"] == ["gpu-l40-001", "gpu-l40-003"]
    assert state["L40-n3-spot"]["hosts"] == ["gpu-l40-002", "gpu-l40-004"]
    after = service_state(d, "gpu-l40-002")
    assert (after["status"], after["disabled_reason"]) == ("enabled", None)
