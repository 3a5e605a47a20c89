"""GET /os-hypervisors/{id}?with_servers=true: what a host runs, in one request (2.53+; the
operator's move protocol asks at 2.87)."""

from __future__ import annotations

import re

import pytest

from tests.conformance.checks import check_error

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-004]"]
hosts:
  - name: gpu-l40-001
    instances: 2
  - name: gpu-l40-003
    status: disabled
    disabled_reason: "RMA 4711"
    instances: 1
  - name: gpu-l40-004
    state: down
"""
HOSTS = ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003", "gpu-l40-004"]
INSTANCE_NAME = re.compile(r"^instance-[0-9a-f]{8}$")  # Nova's instance_name_template


def show(d, hypervisor_id: str, microversion: str, query: str = "?with_servers=true"):
    return d.request("GET", f"/os-hypervisors/{hypervisor_id}{query}", microversion=microversion)


def test_hypervisor_show_with_servers(cloud, observe):
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(HOSTS)
    code, detail = d.request("GET", "/os-hypervisors/detail", microversion="2.87")
    assert code == 200
    listed = {h["id"]: h for h in detail["hypervisors"]}
    seen = {}
    for host in HOSTS:
        code, body = show(d, ids[host], "2.87")
        assert code == 200, body
        hyp = body["hypervisor"]
        # the same hypervisor as in the detail list at 2.87, plus its servers
        assert {k: v for k, v in hyp.items() if k != "servers"} == listed[ids[host]]
        assert hyp["id"] == ids[host] and len(hyp["id"]) == 36
        assert hyp["hypervisor_hostname"] == d.host(host) and hyp["service"]["host"] == d.host(host)
        assert all(INSTANCE_NAME.match(s["name"]) for s in hyp["servers"]), hyp["servers"]
        assert sorted(s["uuid"] for s in hyp["servers"]) == sorted(d.servers_on(host))
        seen[host] = {
            "state": hyp["state"],
            "status": hyp["status"],
            "disabled_reason": hyp["service"]["disabled_reason"],
            "running_vms": hyp["running_vms"],
            "servers": len(hyp["servers"]),
        }
    observe("show-2.87", seen)
    assert seen == {
        "gpu-l40-001": {
            "state": "up",
            "status": "enabled",
            "disabled_reason": None,
            "running_vms": 2,
            "servers": 2,
        },
        "gpu-l40-002": {
            "state": "up",
            "status": "enabled",
            "disabled_reason": None,
            "running_vms": 0,
            "servers": 0,
        },
        "gpu-l40-003": {
            "state": "up",
            "status": "disabled",
            "disabled_reason": "RMA 4711",
            "running_vms": 1,
            "servers": 1,
        },
        "gpu-l40-004": {
            "state": "down",
            "status": "enabled",
            "disabled_reason": None,
            "running_vms": 0,
            "servers": 0,
        },
    }


def test_hypervisor_show_servers_key_by_microversion(cloud, observe):
    """2.75 made `servers` always present ([] for none) when asked for; never without asking."""
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(["gpu-l40-001", "gpu-l40-002"])
    keys = {}
    for version in ("2.53", "2.74", "2.75", "2.87", "2.88"):  # all 2.xx: compared as text below
        for host in ("gpu-l40-001", "gpu-l40-002"):
            for query in ("?with_servers=true", "?with_servers=false", ""):
                code, body = show(d, ids[host], version, query)
                assert code == 200, body
                hyp = body["hypervisor"]
                keys[f"{version} {host} {query or '-'}"] = (
                    len(hyp["servers"]) if "servers" in hyp else None,
                    "running_vms" in hyp,
                    "uptime" in hyp,
                )
    observe("servers-key", keys)
    for key, (servers, running_vms, uptime) in keys.items():
        version, host, query = key.split(" ")
        if query != "?with_servers=true":
            assert servers is None, key
        elif host == "gpu-l40-001":
            assert servers == 2, key
        else:
            assert servers == (0 if version >= "2.75" else None), key
        assert running_vms == (version < "2.88") and uptime == (version >= "2.88"), key


def test_hypervisor_show_errors(cloud, observe):
    d = cloud.deploy(FLEET)
    missing = "8a5f0a47-3c8e-4a2d-9d3b-0f6f1c2f0b11"
    check_error(
        d,
        observe,
        "unknown-id",
        show(d, missing, "2.87"),
        status=404,
        text=f"Hypervisor with ID '{missing}' could not be found.",
        meaning=[missing, "could not be found"],
    )
    check_error(
        d,
        observe,
        "not-a-uuid",
        show(d, "not-a-uuid", "2.87"),
        status=400,
        text="Invalid uuid not-a-uuid",
        meaning=["Invalid uuid not-a-uuid"],
    )
    check_error(
        d,
        observe,
        "integer-id-at-2.87",
        show(d, "1", "2.87"),
        status=400,
        text="Invalid uuid 1",
        meaning=["Invalid uuid 1"],
    )
    (host_id,) = d.hypervisor_ids(["gpu-l40-001"]).values()
    d.names["<id of gpu-l40-001>"] = host_id  # normalize() shows it by name
    check_error(
        d,
        observe,
        "with_servers-not-boolean",
        show(d, host_id, "2.87", "?with_servers=maybe"),
        status=400,
        text="Invalid input for query parameters with_servers. Value: maybe. 'maybe' is not one of "
        "[True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', "
        "'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']",
        meaning=["with_servers", "maybe"],
    )
    check_error(
        d,
        observe,
        "unknown-query-parameter",
        show(d, host_id, "2.87", "?with_servers=true&foo=1"),
        status=400,
        text="Additional properties are not allowed ('foo' was unexpected)",
        meaning=["'foo' was unexpected"],
    )
    # before 2.53 the id is the integer one: a uuid is simply not found
    check_error(
        d,
        observe,
        "uuid-at-2.52",
        show(d, host_id, "2.52", ""),
        status=404,
        text="Hypervisor with ID '<id of gpu-l40-001>' could not be found.",
        meaning=["<id of gpu-l40-001>", "could not be found"],
    )
