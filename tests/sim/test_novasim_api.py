"""novasim as a client sees it: the real openstacksdk and openstack CLI over HTTP.

What Nova itself answers is pinned by the conformance tier (tests/conformance, against a real
Nova too); these tests cover what only the simulator has or what the conformance fleets are too
small for: discovery and microversions, paging, legacy service actions, concurrency, faults,
token expiry, holds, the CLI and the clouds.yaml it writes.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
from pathlib import Path

import openstack
import openstack.config
import pytest
import requests
import yaml

from novasim.testing import SimProcess

BIN = Path(sys.executable).parent

FLEET = {
    "aggregates": [
        {"name": "L40-n3", "metadata": {"availability_zone": "nova"}, "hosts": ["gpu-l40-[001-030]"]},
        {"name": "L40-n3-spot", "hosts": []},
    ],
    "hosts": [{"name": "gpu-l40-[001-005]", "instances": 1}, {"name": "gpu-l40-030", "state": "down"}],
}


def connect(sim: SimProcess) -> openstack.connection.Connection:
    config = openstack.config.OpenStackConfig(config_files=[str(sim.clouds_yaml)], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=sim.cloud_name))


@pytest.fixture
def sim(tmp_path):
    with SimProcess(FLEET, tmp_path) as running:
        yield running


def token(sim: SimProcess) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "secret"}},
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    response = requests.post(f"{sim.auth_url}/auth/tokens", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def nova(sim, method, path, tok, version=None, **kwargs):
    headers = {"X-Auth-Token": tok}
    if version:
        headers["OpenStack-API-Version"] = f"compute {version}"
    return requests.request(method, f"{sim.url}/compute/v2.1{path}", headers=headers, timeout=10, **kwargs)


def test_keystone_rejects_wrong_password_and_catalog_lists_compute(sim):
    bad = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "password": "nope"}},
            },
            "scope": {"project": {"name": "admin"}},
        }
    }
    response = requests.post(f"{sim.auth_url}/auth/tokens", json=bad, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["title"] == "Unauthorized"
    tok = token(sim)
    catalog = requests.get(
        f"{sim.auth_url}/auth/tokens", headers={"X-Auth-Token": tok, "X-Subject-Token": tok}, timeout=10
    ).json()["token"]["catalog"]
    compute = next(s for s in catalog if s["type"] == "compute")
    assert {e["url"] for e in compute["endpoints"]} == {f"{sim.url}/compute/v2.1"}


def test_microversion_negotiation(sim):
    tok = token(sim)
    response = nova(sim, "GET", "/os-services", tok, version="2.53")
    assert response.headers["OpenStack-API-Version"] == "compute 2.53"
    assert len(response.json()["services"][0]["id"]) == 36
    old = nova(sim, "GET", "/os-services", tok)  # no header: 2.1
    assert old.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert isinstance(old.json()["services"][0]["id"], int)
    too_new = nova(sim, "GET", "/os-services", tok, version="2.999")
    assert too_new.status_code == 406
    assert "Minimum is 2.1 and maximum is 2.104" in too_new.json()["computeFault"]["message"]
    garbled = nova(sim, "GET", "/os-services", tok, version="two")
    assert garbled.status_code == 400
    assert "invalid format" in garbled.json()["badRequest"]["message"]
    latest = nova(sim, "GET", "/os-aggregates", tok, version="latest")
    assert latest.headers["OpenStack-API-Version"] == "compute 2.104"
    assert "uuid" in latest.json()["aggregates"][0]


def test_unauthenticated_and_unknown_routes(sim):
    response = requests.get(f"{sim.url}/compute/v2.1/os-aggregates", timeout=10)
    assert response.status_code == 401
    assert requests.get(f"{sim.url}/compute/v2.1/", timeout=10).json()["version"]["version"] == "2.104"
    missing = nova(sim, "GET", "/os-nothing", token(sim))
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "The resource could not be found."


def test_paging_of_servers_and_hypervisors(sim):
    conn = connect(sim)
    servers = list(conn.compute.servers(all_projects=True, limit=2))  # the SDK follows the links
    assert len(servers) == 5
    assert list(conn.compute.servers()) == []  # not all_tenants: the admin's own project has none
    tok = token(sim)
    page = nova(sim, "GET", "/os-hypervisors/detail?limit=10", tok, version="2.87").json()
    assert len(page["hypervisors"]) == 10
    seen = [h["hypervisor_hostname"] for h in page["hypervisors"]]
    while "hypervisors_links" in page:
        page = requests.get(
            page["hypervisors_links"][0]["href"],
            headers={"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.87"},
            timeout=10,
        ).json()
        seen += [h["hypervisor_hostname"] for h in page["hypervisors"]]
    assert seen == [f"gpu-l40-{i:03d}" for i in range(1, 31)]


def test_legacy_service_actions_before_2_53(sim):
    tok = token(sim)
    body = {"host": "gpu-l40-007", "binary": "nova-compute", "disabled_reason": "maintenance"}
    response = nova(sim, "PUT", "/os-services/disable-log-reason", tok, version="2.52", json=body)
    assert response.status_code == 200
    assert response.json()["service"] == {**body, "status": "disabled"}
    (svc,) = nova(sim, "GET", "/os-services?host=gpu-l40-007", tok).json()["services"]
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", "maintenance")
    enable = {"host": "gpu-l40-007", "binary": "nova-compute"}
    assert nova(sim, "PUT", "/os-services/enable", tok, version="2.52", json=enable).status_code == 200
    (svc,) = nova(sim, "GET", "/os-services?host=gpu-l40-007", tok).json()["services"]
    assert (svc["status"], svc["disabled_reason"]) == ("enabled", None)
    # At 2.53 the id is a UUID: the old action paths are gone.
    gone = nova(sim, "PUT", "/os-services/disable", tok, version="2.53", json=enable)
    assert gone.status_code == 400
    assert gone.json()["badRequest"]["message"] == "Invalid uuid disable"
    scheduler = {"host": "controller-1", "binary": "nova-scheduler"}
    refused = nova(sim, "PUT", "/os-services/disable", tok, version="2.52", json=scheduler)
    assert refused.status_code == 400
    assert "Only nova-compute services can be updated" in refused.json()["badRequest"]["message"]


def test_concurrent_moves_keep_every_host_exactly_once(sim):
    """Many clients moving hosts back and forth at once: no host lost or doubled."""
    conn = connect(sim)
    aggs = {a.name: a for a in conn.compute.aggregates()}
    source, target = aggs["L40-n3"], aggs["L40-n3-spot"]
    hosts = [f"gpu-l40-{i:03d}" for i in range(6, 30)]
    errors: list[Exception] = []
    lock = threading.Lock()

    def move(host: str) -> None:
        c = connect(sim)
        try:
            c.compute.remove_host_from_aggregate(source, host)
            c.compute.add_host_to_aggregate(target, host)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            with lock:
                errors.append(exc)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(move, hosts))
    assert errors == []
    state = {a["name"]: a["hosts"] for a in sim.state()["aggregates"]}
    assert sorted(state["L40-n3-spot"]) == hosts
    assert sorted(state["L40-n3"] + state["L40-n3-spot"]) == [f"gpu-l40-{i:03d}" for i in range(1, 31)]


def test_injected_errors_latency_and_counters(sim):
    tok = token(sim)
    sim.reset_stats()
    route = "GET /compute/v2.1/os-aggregates"
    sim.faults(routes={route: {"error_rate": 1.0, "error_status": 500, "count": 2}})
    codes = [nova(sim, "GET", "/os-aggregates", tok).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    first = nova(sim, "GET", "/os-services", tok)
    sim.faults(routes={"GET /compute/v2.1/os-services": {"error_rate": 1.0, "error_status": 503}})
    lb = nova(sim, "GET", "/os-services", tok)
    assert (first.status_code, lb.status_code) == (200, 503)
    assert lb.headers["Content-Type"].startswith("text/html")  # the load balancer's page, not Nova's
    sim.clear_faults()
    stats = sim.stats()
    assert stats["by_route"][route] == 3
    assert stats["by_route"]["GET /compute/v2.1/os-services"] == 2
    assert stats["by_status"]["500"] == 2


def test_sdk_recovers_from_token_expiry(sim):
    conn = connect(sim)
    assert len(list(conn.compute.aggregates())) == 2
    assert sim.expire_tokens() >= 1
    assert len(list(conn.compute.aggregates())) == 2  # 401, re-authenticate, retry
    assert sim.stats()["by_status"]["401"] >= 1


def test_out_of_band_changes(sim):
    conn = connect(sim)
    sim.start_instance("gpu-l40-010", name="surprise")
    servers = list(conn.compute.servers(all_projects=True, compute_host="gpu-l40-010"))
    assert [s.name for s in servers] == ["surprise"]
    sim.move_host("gpu-l40-011", "L40-n3", "L40-n3-spot")
    spot = next(a for a in conn.compute.aggregates() if a.name == "L40-n3-spot")
    assert spot.hosts == ["gpu-l40-011"]
    assert sim.delete_instances("gpu-l40-010") == 1


def test_hold_applies_the_request_and_keeps_the_answer_back(sim):
    conn = connect(sim)
    spot = next(a for a in conn.compute.aggregates() if a.name == "L40-n3-spot")
    hold = sim.hold("POST", "/compute/v2.1/os-aggregates/{aggregate_id}/action", body_contains="add_host")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(conn.compute.add_host_to_aggregate, spot, "gpu-l40-012")
        sim.wait_held(hold, timeout=10)
        assert not pending.done()
        in_nova = next(a for a in sim.state()["aggregates"] if a["name"] == "L40-n3-spot")
        assert "gpu-l40-012" in in_nova["hosts"]  # applied before the answer
        sim.release(hold)
        assert pending.result(timeout=10).hosts == ["gpu-l40-012"]


def test_gpupool_sim_serves_the_openstack_cli(tmp_path):
    """`gpupool sim` writes ./clouds.yaml (keeping other entries); `openstack --os-cloud sim` works."""
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": {"prod": {"auth": {"auth_url": "x"}}}}))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(FLEET))
    proc = subprocess.Popen(
        [str(BIN / "gpupool"), "sim", "--fleet", str(fleet)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "serving 2 aggregates and 30 hosts" in proc.stdout.readline()
        assert "wrote cloud 'sim'" in proc.stdout.readline()
        clouds = yaml.safe_load((tmp_path / "clouds.yaml").read_text())["clouds"]
        assert set(clouds) == {"prod", "sim"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        listed = subprocess.run(
            [str(BIN / "openstack"), "--os-cloud", "sim", "aggregate", "list", "-f", "yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        assert [a["Name"] for a in yaml.safe_load(listed.stdout)] == ["L40-n3", "L40-n3-spot"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_hanging_request_times_the_client_out_and_the_next_one_is_answered(sim):
    tok = token(sim)
    sim.faults(routes={"GET /compute/v2.1/os-services": {"hang": True, "count": 1}})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{sim.url}/compute/v2.1/os-services", headers={"X-Auth-Token": tok}, timeout=0.5)
    assert nova(sim, "GET", "/os-services", tok).status_code == 200
