"""Hypervisors and the servers on a host: how the operator counts instances before a move."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-003]"]
hosts:
  - name: gpu-l40-001
    instances: 2
  - name: gpu-l40-002
    instances:
      - {name: vm-train-1, flavor: gpu.l40.1, status: ACTIVE}
      - {name: vm-train-2, flavor: gpu.l40.1, status: SHUTOFF}
      - {name: vm-train-3, flavor: gpu.l40.1, status: ERROR}
  - name: gpu-l40-003
    state: down
    status: disabled
    disabled_reason: "RMA"
"""
HOSTS = ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"]


def test_hypervisor_list(cloud, observe):
    d = cloud.deploy(FLEET)
    ours = {d.host(h) for h in HOSTS}
    # openstacksdk's default (2.88: no running_vms, uptime in the detail)
    found = {
        d.logical(h.name): {"state": h.state, "status": h.status, "uptime_known": h.uptime is not None}
        for h in d.conn.compute.hypervisors(details=True)
        if h.name in ours
    }
    observe("hypervisors", found)
    assert found == {
        "gpu-l40-001": {"state": "up", "status": "enabled", "uptime_known": True},
        "gpu-l40-002": {"state": "up", "status": "enabled", "uptime_known": True},
        "gpu-l40-003": {"state": "down", "status": "disabled", "uptime_known": False},
    }


def test_hypervisor_running_vms_at_2_87(cloud, observe):
    """The operator's one-request instance count (cloud.py, HYPERVISOR_COUNTS_MICROVERSION)."""
    d = cloud.deploy(FLEET)
    code, body = d.request("GET", "/os-hypervisors/detail", microversion="2.87")
    assert code == 200
    counts = {
        d.logical(h["service"]["host"]): h["running_vms"]
        for h in body["hypervisors"]
        if h["service"]["host"] in {d.host(x) for x in HOSTS}
    }
    observe("running_vms", counts)
    assert counts == {"gpu-l40-001": 2, "gpu-l40-002": 3, "gpu-l40-003": 0}
    for h in body["hypervisors"]:
        assert isinstance(h["id"], str) and len(h["id"]) == 36  # UUIDs since 2.53
    code, body = d.request("GET", "/os-hypervisors/detail", microversion="2.88")
    assert code == 200
    assert all("running_vms" not in h for h in body["hypervisors"])


def test_servers_on_a_host(cloud, observe):
    d = cloud.deploy(FLEET)
    conn = d.conn
    found = {}
    for h in HOSTS:
        servers = list(conn.compute.servers(all_projects=True, compute_host=d.host(h)))
        found[h] = sorted((d.logical(s.name), s.status, d.logical(s.compute_host)) for s in servers)
    observe("servers", {h: [x for x in v if h != "gpu-l40-001"] or len(v) for h, v in found.items()})
    # instances given as a count: their names are the backend's choice
    assert [(status, host) for _, status, host in found.pop("gpu-l40-001")] == [("ACTIVE", "gpu-l40-001")] * 2
    assert found == {
        "gpu-l40-002": [
            ("vm-train-1", "ACTIVE", "gpu-l40-002"),
            ("vm-train-2", "SHUTOFF", "gpu-l40-002"),
            ("vm-train-3", "ERROR", "gpu-l40-002"),
        ],
        "gpu-l40-003": [],
    }


def test_servers_on_a_host_count(cloud, observe):
    """The operator's authoritative re-check: GET /servers?all_tenants=1&host=H&limit=1."""
    d = cloud.deploy(FLEET)
    counts = {}
    for h in HOSTS:
        code, body = d.request("GET", f"/servers?all_tenants=1&host={d.host(h)}&limit=1")
        assert code == 200, body
        counts[h] = len(body["servers"])
    observe("limit-1", counts)
    assert counts == {"gpu-l40-001": 1, "gpu-l40-002": 1, "gpu-l40-003": 0}
    # openstacksdk's `host=` is a client-side attribute filter: it matches nothing
    assert list(d.conn.compute.servers(all_projects=True, host=d.host("gpu-l40-001"))) == []
