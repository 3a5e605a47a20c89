"""novasim's Placement, hypervisor show, os-migrations and the /_sim controls for builds and
migrations, as a client and a test see them: openstacksdk's conn.placement, the SimProcess
helpers, /_sim/state.

What real Nova 34 and Placement 16 answer is pinned by the conformance tier
(tests/conformance/test_placement.py, test_hypervisor_show.py, test_moves_in_flight.py); these
tests cover the simulator's own side: the controls and their errors, the state view, what
happens to allocations when instances go away or hosts change aggregates, paging and faults.
"""

from __future__ import annotations

import openstack
import openstack.config
import pytest
import requests

from novasim.testing import SimError, SimProcess

FLEET = {
    "aggregates": [
        {"name": "L40-n3", "metadata": {"availability_zone": "nova"}, "hosts": ["gpu-l40-[001-004]"]},
        {"name": "L40-n3-spot", "hosts": []},
    ],
    "hosts": [{"name": "gpu-l40-001", "instances": 2}, {"name": "gpu-l40-004", "state": "down"}],
}
FLAVOR = {"VCPU": 16, "MEMORY_MB": 131072, "DISK_GB": 100}


def connect(sim: SimProcess) -> openstack.connection.Connection:
    config = openstack.config.OpenStackConfig(config_files=[str(sim.clouds_yaml)], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=sim.cloud_name))


@pytest.fixture
def sim(tmp_path):
    with SimProcess(FLEET, tmp_path) as running:
        yield running


def host(sim: SimProcess, name: str) -> dict:
    return next(h for h in sim.state()["hosts"] if h["name"] == name)


def test_placement_through_openstacksdk(sim):
    """The catalog lists placement; conn.placement.get reaches it with a microversion."""
    conn = connect(sim)
    assert conn.placement.get_endpoint().rstrip("/") == f"{sim.url}/placement"
    providers = conn.placement.get("/resource_providers", microversion="1.39").json()["resource_providers"]
    assert [p["name"] for p in providers] == [f"gpu-l40-{i:03d}" for i in range(1, 5)]
    hypervisors = conn.compute.get("/os-hypervisors/detail", microversion="2.87").json()["hypervisors"]
    assert [h["id"] for h in hypervisors] == [p["uuid"] for p in providers]
    first = providers[0]["uuid"]
    response = conn.placement.get(f"/resource_providers/{first}/allocations", microversion="1.39")
    assert response.headers["OpenStack-API-Version"] == "placement 1.39"
    assert sorted(response.json()["allocations"]) == sorted(
        i["id"] for i in host(sim, "gpu-l40-001")["instances"]
    )
    assert conn.placement.get(f"/resource_providers/{first}/usages", microversion="1.9").json()["usages"] == {
        "VCPU": 32,
        "MEMORY_MB": 262144,
        "DISK_GB": 200,
    }


def test_state_shows_allocations_builds_and_migrations(sim):
    first = host(sim, "gpu-l40-001")
    (a, b) = (i["id"] for i in first["instances"])
    assert first["allocations"] == {
        a: {"kind": "instance", "resources": FLAVOR},
        b: {"kind": "instance", "resources": FLAVOR},
    }
    assert first["provider"]["generation"] == 4  # inventory, L40-n3, two instances

    build = sim.schedule_build("gpu-l40-002", name="train-7")
    state = sim.state()
    assert state["builds"] == [
        {"id": build, "name": "train-7", "status": "BUILD", "scheduled_to": "gpu-l40-002"}
    ]
    assert host(sim, "gpu-l40-002")["instances"] == []
    assert sim.allocations("gpu-l40-002") == {build: {"kind": "instance", "resources": FLAVOR}}

    migration = sim.start_migration(a, "gpu-l40-003")
    (listed,) = sim.state()["migrations"]
    assert listed == {
        "id": 1,
        "uuid": migration,
        "instance": a,
        "source": "gpu-l40-001",
        "dest": "gpu-l40-003",
        "status": "running",
        "migration_type": "live-migration",
    }
    assert sim.allocations("gpu-l40-001") == {
        b: {"kind": "instance", "resources": FLAVOR},
        migration: {"kind": "migration", "resources": FLAVOR},
    }
    assert sim.allocations("gpu-l40-003") == {a: {"kind": "instance", "resources": FLAVOR}}
    assert [i["status"] for i in host(sim, "gpu-l40-001")["instances"]] == ["MIGRATING", "ACTIVE"]

    assert sim.claim_build(build) == "gpu-l40-002"
    sim.finish_migration(migration)
    state = sim.state()
    assert state["builds"] == []
    assert state["migrations"][0]["status"] == "completed"
    assert [i["id"] for i in host(sim, "gpu-l40-002")["instances"]] == [build]
    assert [i["id"] for i in host(sim, "gpu-l40-003")["instances"]] == [a]
    assert sim.allocations("gpu-l40-001") == {b: {"kind": "instance", "resources": FLAVOR}}


def test_controls_refuse_what_cannot_happen(sim):
    (a, _) = (i["id"] for i in host(sim, "gpu-l40-001")["instances"])
    with pytest.raises(SimError, match="404"):
        sim.schedule_build("no-such-host")
    with pytest.raises(SimError, match="404.*No unclaimed build"):
        sim.claim_build(a)  # already on a host
    with pytest.raises(SimError, match="400.*already on gpu-l40-001"):
        sim.start_migration(a, "gpu-l40-001")
    with pytest.raises(SimError, match="404.*no-such-host"):
        sim.start_migration(a, "no-such-host")
    migration = sim.start_migration(a, "gpu-l40-002")
    with pytest.raises(SimError, match="409.*task_state migrating"):
        sim.start_migration(a, "gpu-l40-003")
    sim.finish_migration(migration)
    with pytest.raises(SimError, match="409.*completed"):
        sim.finish_migration(migration)
    with pytest.raises(SimError, match="404"):
        sim.finish_migration("8a5f0a47-3c8e-4a2d-9d3b-0f6f1c2f0b11")
    build = sim.schedule_build("gpu-l40-003")
    sim.claim_build(build)
    with pytest.raises(SimError, match="404"):
        sim.claim_build(build)  # claimed once only


def test_allocations_follow_instances_and_aggregates(sim):
    conn = connect(sim)
    provider = host(sim, "gpu-l40-001")["provider"]["uuid"]
    generation = host(sim, "gpu-l40-001")["provider"]["generation"]
    # deleting the instances deletes their allocations (one write each)
    assert sim.delete_instances("gpu-l40-001") == 2
    assert sim.allocations("gpu-l40-001") == {}
    assert host(sim, "gpu-l40-001")["provider"]["generation"] == generation + 2
    # Nova mirrors aggregate membership into Placement
    spot = next(a for a in conn.compute.aggregates() if a.name == "L40-n3-spot")
    conn.compute.add_host_to_aggregate(spot, "gpu-l40-001")
    body = conn.placement.get(f"/resource_providers/{provider}/aggregates", microversion="1.19").json()
    assert sorted(body["aggregates"]) == sorted(a.uuid for a in conn.compute.aggregates())
    assert body["resource_provider_generation"] == generation + 3
    members = conn.placement.get(f"/resource_providers?member_of={spot.uuid}", microversion="1.3").json()
    assert [p["name"] for p in members["resource_providers"]] == ["gpu-l40-001"]
    conn.compute.remove_host_from_aggregate(spot, "gpu-l40-001")
    sim.move_host("gpu-l40-001", "L40-n3", "L40-n3-spot")  # someone else, through the API too
    assert host(sim, "gpu-l40-001")["provider"]["generation"] == generation + 6


def test_os_migrations_paging_and_filters(sim):
    conn = connect(sim)
    (a, b) = (i["id"] for i in host(sim, "gpu-l40-001")["instances"])
    first = sim.start_migration(a, "gpu-l40-002")
    second = sim.start_migration(b, "gpu-l40-003")
    sim.finish_migration(first)

    def get(query: str, version: str = "2.80"):
        return conn.compute.get(f"/os-migrations{query}", microversion=version).json()

    page = get("?limit=1")
    assert [m["uuid"] for m in page["migrations"]] == [second]  # newest first
    href = page["migrations_links"][0]["href"]
    assert href.startswith(f"{sim.url}/compute/v2.1/os-migrations?") and f"marker={second}" in href
    assert [m["uuid"] for m in get(f"?limit=1&marker={second}")["migrations"]] == [first]
    assert [m["id"] for m in get("", "2.58")["migrations"]] == [1, 2]  # before 2.59: oldest first
    assert [m["uuid"] for m in get("?status=running")["migrations"]] == [second]
    assert [m["uuid"] for m in get("?host=gpu-l40-001")["migrations"]] == [second, first]
    assert [m["uuid"] for m in get("?source_compute=gpu-l40-003")["migrations"]] == []
    assert [m["uuid"] for m in get(f"?instance_uuid={a}")["migrations"]] == [first]
    assert get("?changes-since=2100-01-01T00:00:00Z")["migrations"] == []
    bad = conn.compute.get("/os-migrations?limit=1&marker=nope", microversion="2.59")
    assert bad.status_code == 400
    assert bad.json()["badRequest"]["message"] == "Marker nope could not be found."
    links = {m["uuid"]: "links" in m for m in get("")["migrations"]}
    assert links == {first: False, second: True}  # only in-progress live migrations link to their server


def test_hypervisor_lists_with_servers(sim):
    conn = connect(sim)

    def get(path: str, version: str = "2.87"):
        return conn.compute.get(path, microversion=version)

    listed = get("/os-hypervisors?with_servers=true").json()["hypervisors"]
    assert [len(h["servers"]) for h in listed] == [2, 0, 0, 0]
    assert "servers" not in get("/os-hypervisors?with_servers=true", "2.74").json()["hypervisors"][1]
    assert "servers" not in get("/os-hypervisors?with_servers=true", "2.52").json()["hypervisors"][0]
    paged = get("/os-hypervisors?hypervisor_hostname_pattern=gpu&limit=1")
    assert paged.status_code == 400
    none = get("/os-hypervisors?hypervisor_hostname_pattern=nothing")
    assert none.json()["itemNotFound"]["message"] == "No hypervisor matching 'nothing' could be found."
    unknown = get("/os-hypervisors/detail?foo=1&bar=2")
    assert (
        unknown.json()["badRequest"]["message"]
        == "Additional properties are not allowed ('bar', 'foo' were unexpected)"
    )
    old = get("/os-hypervisors/2", "2.52").json()["hypervisor"]
    assert (old["id"], old["hypervisor_hostname"]) == (2, "gpu-l40-002")


def test_placement_faults_and_stats(sim):
    conn = connect(sim)
    route = "GET /placement/resource_providers"
    sim.reset_stats()
    sim.faults(routes={route: {"error_rate": 1.0, "error_status": 500, "count": 1}})
    failed = conn.placement.get("/resource_providers", microversion="1.39")
    assert failed.status_code == 500
    (error,) = failed.json()["errors"]  # Placement's error body, not Nova's
    assert error["status"] == 500
    assert conn.placement.get("/resource_providers", microversion="1.39").status_code == 200
    assert sim.stats()["by_route"][route] == 2
    # an unknown method on a known path: 405 with the methods novasim serves
    response = requests.post(
        f"{sim.url}/placement/resource_providers",
        headers={"X-Auth-Token": conn.auth_token, "OpenStack-API-Version": "placement 1.39"},
        timeout=10,
    )
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
