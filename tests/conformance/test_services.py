"""nova-compute services: listing with filters, disable with a reason and enable (microversion
2.53 `PUT /os-services/{id}`, as openstacksdk and the operator do it)."""

from __future__ import annotations

import pytest

from tests.conformance.checks import check_error, service_state

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-001, gpu-l40-003]
hosts:
  - name: gpu-l40-002
  - name: gpu-l40-003
    state: down
    status: disabled
    disabled_reason: "RMA"
"""


def test_service_list_with_host_and_binary_filters(cloud, observe):
    d = cloud.deploy(FLEET)
    states = {h: service_state(d, h) for h in ("gpu-l40-001", "gpu-l40-002", "gpu-l40-003")}
    observe("services", states)
    assert states == {
        "gpu-l40-001": {
            "host": "gpu-l40-001",
            "binary": "nova-compute",
            "state": "up",
            "status": "enabled",
            "disabled_reason": None,
            "zone": "nova",
        },
        "gpu-l40-002": {
            "host": "gpu-l40-002",
            "binary": "nova-compute",
            "state": "up",
            "status": "enabled",
            "disabled_reason": None,
            "zone": "nova",
        },
        "gpu-l40-003": {
            "host": "gpu-l40-003",
            "binary": "nova-compute",
            "state": "down",
            "status": "disabled",
            "disabled_reason": "RMA",
            "zone": "nova",
        },
    }
    ours = {d.host(h) for h in states}
    by_binary = [s for s in d.conn.compute.services(binary="nova-compute") if s.host in ours]
    assert sorted(d.logical(s.host) for s in by_binary) == sorted(states)
    assert list(d.conn.compute.services(host=d.host("gpu-l40-001"), binary="nova-scheduler")) == []
    assert list(d.conn.compute.services(host="no-such-host")) == []
    # the raw body at 2.53: ids are UUIDs
    code, body = d.request("GET", f"/os-services?host={d.host('gpu-l40-001')}", microversion="2.53")
    assert code == 200
    (svc,) = body["services"]
    assert set(svc) >= {
        "id",
        "binary",
        "host",
        "zone",
        "status",
        "state",
        "updated_at",
        "disabled_reason",
        "forced_down",
    }
    assert isinstance(svc["id"], str) and len(svc["id"]) == 36


def test_service_disable_with_reason_and_enable(cloud, observe):
    d = cloud.deploy(FLEET)
    conn = d.conn
    (svc,) = conn.compute.services(host=d.host("gpu-l40-001"), binary="nova-compute")
    reason = "gpupool: moving L40-n3 -> L40-n3-spot"
    disabled = conn.compute.disable_service(svc, svc.host, svc.binary, disabled_reason=reason)
    assert (disabled.status, disabled.disabled_reason) == ("disabled", reason)
    after_disable = service_state(d, "gpu-l40-001")
    observe("after-disable", after_disable)
    assert after_disable["status"] == "disabled"
    assert after_disable["disabled_reason"] == reason
    assert after_disable["state"] == "up"

    enabled = conn.compute.enable_service(svc, svc.host, svc.binary)
    assert enabled.status == "enabled"
    after_enable = service_state(d, "gpu-l40-001")
    observe("after-enable", after_enable)
    assert after_enable["status"] == "enabled"
    assert after_enable["disabled_reason"] is None


def test_service_update_raw_put(cloud, observe):
    """The operator's own request: PUT /os-services/{id} at 2.53, on a down host too."""
    d = cloud.deploy(FLEET)
    (svc,) = d.conn.compute.services(host=d.host("gpu-l40-003"), binary="nova-compute")
    code, body = d.request(
        "PUT",
        f"/os-services/{svc.id}",
        {"status": "disabled", "disabled_reason": "gpupool: moving"},
        microversion="2.53",
    )
    assert code == 200, body
    shown = {k: body["service"][k] for k in ("status", "disabled_reason", "state")}
    observe("disable-down-host", shown)
    assert shown == {"status": "disabled", "disabled_reason": "gpupool: moving", "state": "down"}
    code, body = d.request("PUT", f"/os-services/{svc.id}", {"status": "enabled"}, microversion="2.53")
    assert code == 200, body
    shown = {k: body["service"][k] for k in ("status", "disabled_reason", "state")}
    observe("enable-down-host", shown)
    assert shown == {"status": "enabled", "disabled_reason": None, "state": "down"}


def test_service_update_unknown_id(cloud, observe):
    d = cloud.deploy(FLEET)
    missing = "8a5f0a47-3c8e-4a2d-9d3b-0f6f1c2f0b11"
    check_error(
        d,
        observe,
        "update-unknown-service",
        d.request("PUT", f"/os-services/{missing}", {"status": "disabled"}, microversion="2.53"),
        status=404,
        text=f"Service {missing} could not be found.",
        meaning=[missing, r"could not be found|not found"],
    )
