"""What a host-moving operator must see although Nova's host filter does not show it yet:

- a build the scheduler placed on a host but the host's compute has not claimed: the server
  exists (BUILD) with no host, so neither `GET /servers?host=H` nor the hypervisor's servers
  show it, while Placement already holds its allocation on H's provider;
- a live migration to a host, in progress: the instance is still on its source host, Placement
  holds its allocation on the destination and the migration's (consumer = migration uuid) on the
  source, and `GET /os-migrations?host=H` shows it for both hosts.

On the real Nova, register.py writes what the conductor, scheduler and compute leave behind at
those moments (tests/conformance/backends.py `actions`).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-002]"]
hosts:
  - name: gpu-l40-001
    instances: 1
"""
FLAVOR = {"VCPU": 16, "MEMORY_MB": 131072, "DISK_GB": 100}


def server(d, uuid: str) -> dict:
    code, body = d.request("GET", f"/servers/{uuid}", microversion="2.87")
    assert code == 200, body
    s = body["server"]
    return {
        "status": s["status"],
        "host": d.logical(s["OS-EXT-SRV-ATTR:host"]) if s["OS-EXT-SRV-ATTR:host"] else None,
        "task_state": s["OS-EXT-STS:task_state"],
        "vm_state": s["OS-EXT-STS:vm_state"],
        "zone": s["OS-EXT-AZ:availability_zone"],
    }


def hypervisor(d, hypervisor_id: str, aliases: dict[str, str]) -> dict:
    code, body = d.request("GET", f"/os-hypervisors/{hypervisor_id}?with_servers=true", microversion="2.87")
    assert code == 200, body
    hyp = body["hypervisor"]
    return {"running_vms": hyp["running_vms"], "servers": sorted(aliases[s["uuid"]] for s in hyp["servers"])}


def allocations(d, provider: str, aliases: dict[str, str]) -> dict:
    code, body, _ = d.placement("GET", f"/resource_providers/{provider}/allocations", "1.39")
    assert code == 200, body
    assert all(a["resources"] == FLAVOR for a in body["allocations"].values()), body
    return {aliases.get(c, c): a["consumer_generation"] for c, a in body["allocations"].items()}


def test_build_scheduled_but_not_claimed(cloud, observe):
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(["gpu-l40-001", "gpu-l40-002"])
    build = d.actions.schedule_build("gpu-l40-002", "vm-build-1")
    aliases = {build: "build"}

    before = {
        "server": server(d, build),
        "listed": build
        in [
            s["id"]
            for s in d.request("GET", f"/servers?all_tenants=1&name={d.name('vm-build-1')}")[1]["servers"]
        ],
        "listed-on-host": build in d.servers_on("gpu-l40-002"),
        "hypervisor": hypervisor(d, ids["gpu-l40-002"], aliases),
        "placement": allocations(d, ids["gpu-l40-002"], aliases),
    }
    observe("scheduled", before)
    assert before == {
        "server": {
            "status": "BUILD",
            "host": None,
            "task_state": "scheduling",
            "vm_state": "building",
            "zone": "nova",
        },
        "listed": True,
        "listed-on-host": False,
        "hypervisor": {"running_vms": 0, "servers": []},
        "placement": {"build": 1},  # the scheduler's claim is there already
    }

    d.actions.claim_build(build)
    after = {
        "server": server(d, build),
        "listed-on-host": build in d.servers_on("gpu-l40-002"),
        "hypervisor": hypervisor(d, ids["gpu-l40-002"], aliases),
        "placement": allocations(d, ids["gpu-l40-002"], aliases),
    }
    observe("claimed", after)
    assert after == {
        "server": {
            "status": "ACTIVE",
            "host": "gpu-l40-002",
            "task_state": None,
            "vm_state": "active",
            "zone": "nova",
        },
        "listed-on-host": True,
        "hypervisor": {"running_vms": 1, "servers": ["build"]},
        "placement": {"build": 1},
    }


def _migrations(d, query: str, version: str, aliases: dict[str, str]) -> list[dict]:
    code, body = d.request("GET", f"/os-migrations{query}", microversion=version)
    assert code == 200, body
    seen = []
    for m in body["migrations"]:
        if m["instance_uuid"] not in aliases:
            continue  # the real Nova is shared by the session's scenarios
        entry = {
            k: v for k, v in m.items() if k not in ("id", "created_at", "updated_at", "user_id", "project_id")
        }
        entry["instance_uuid"] = aliases[m["instance_uuid"]]
        for key in ("source_compute", "dest_compute", "source_node", "dest_node"):
            entry[key] = d.logical(entry[key])
        if "uuid" in entry:
            entry["uuid"] = aliases[entry["uuid"]]
        if "links" in entry:
            assert [link["href"].split("/servers/", 1)[1] for link in entry["links"]] == [
                f"{m['instance_uuid']}/migrations/{m['id']}"
            ] * 2
            entry["links"] = [link["rel"] for link in entry["links"]]
        assert isinstance(m["id"], int) and m["created_at"] and m["updated_at"]
        seen.append(entry)
    return seen


def test_incoming_live_migration(cloud, observe):
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(["gpu-l40-001", "gpu-l40-002"])
    (instance,) = d.servers_on("gpu-l40-001")
    migration = d.actions.start_migration(instance, "gpu-l40-002")
    aliases = {instance: "instance", migration: "migration"}

    during = {
        "server": server(d, instance),
        "source": hypervisor(d, ids["gpu-l40-001"], aliases),
        "dest": hypervisor(d, ids["gpu-l40-002"], aliases),
        "source-placement": allocations(d, ids["gpu-l40-001"], aliases),
        "dest-placement": allocations(d, ids["gpu-l40-002"], aliases),
    }
    observe("in-progress", during)
    assert during == {
        "server": {
            "status": "MIGRATING",
            "host": "gpu-l40-001",
            "task_state": "migrating",
            "vm_state": "active",
            "zone": "nova",
        },
        "source": {"running_vms": 1, "servers": ["instance"]},
        "dest": {"running_vms": 0, "servers": []},
        "source-placement": {"migration": 1},  # Nova's migration-based allocations
        "dest-placement": {"instance": 1},
    }
    code, held, _ = d.placement("GET", f"/allocations/{migration}", "1.39")
    assert code == 200 and list(held["allocations"]) == [ids["gpu-l40-001"]]

    listed = {
        "2.80 host=dest": _migrations(d, f"?host={d.host('gpu-l40-002')}", "2.80", aliases),
        "2.59 host=source status=running": _migrations(
            d, f"?host={d.host('gpu-l40-001')}&status=running", "2.59", aliases
        ),
        "2.23 host=dest": _migrations(d, f"?host={d.host('gpu-l40-002')}", "2.23", aliases),
        "2.1 host=dest": _migrations(d, f"?host={d.host('gpu-l40-002')}", "2.1", aliases),
        "2.80 source_compute=dest": _migrations(
            d, f"?source_compute={d.host('gpu-l40-002')}", "2.80", aliases
        ),
        "2.80 host=dest status=completed": _migrations(
            d, f"?host={d.host('gpu-l40-002')}&status=completed", "2.80", aliases
        ),
    }
    observe("os-migrations", listed)
    running = {
        "source_compute": "gpu-l40-001",
        "dest_compute": "gpu-l40-002",
        "source_node": "gpu-l40-001",
        "dest_node": "gpu-l40-002",
        "dest_host": None,
        "old_instance_type_id": listed["2.1 host=dest"][0]["old_instance_type_id"],
        "new_instance_type_id": listed["2.1 host=dest"][0]["old_instance_type_id"],
        "instance_uuid": "instance",
        "status": "running",
    }
    assert isinstance(running["old_instance_type_id"], int)
    v223 = {**running, "migration_type": "live-migration", "links": ["self", "bookmark"]}
    assert listed == {
        "2.80 host=dest": [{**v223, "uuid": "migration"}],
        "2.59 host=source status=running": [{**v223, "uuid": "migration"}],
        "2.23 host=dest": [v223],
        "2.1 host=dest": [running],
        "2.80 source_compute=dest": [],
        "2.80 host=dest status=completed": [],
    }
    code, body = d.request("GET", "/os-migrations?foo=1", microversion="2.80")
    assert (code, body) == (
        400,
        {
            "badRequest": {
                "code": 400,
                "message": "Additional properties are not allowed ('foo' was unexpected)",
            }
        },
    )

    d.actions.finish_migration(migration)
    after = {
        "server": server(d, instance),
        "source": hypervisor(d, ids["gpu-l40-001"], aliases),
        "dest": hypervisor(d, ids["gpu-l40-002"], aliases),
        "source-placement": allocations(d, ids["gpu-l40-001"], aliases),
        "dest-placement": allocations(d, ids["gpu-l40-002"], aliases),
        "os-migrations": _migrations(d, f"?host={d.host('gpu-l40-002')}", "2.80", aliases),
    }
    observe("finished", after)
    done = {k: v for k, v in v223.items() if k != "links"}
    assert after == {
        "server": {
            "status": "ACTIVE",
            "host": "gpu-l40-002",
            "task_state": None,
            "vm_state": "active",
            "zone": "nova",
        },
        "source": {"running_vms": 0, "servers": []},
        "dest": {"running_vms": 1, "servers": ["instance"]},
        "source-placement": {},
        "dest-placement": {"instance": 1},
        "os-migrations": [{**done, "status": "completed", "uuid": "migration"}],  # no links once done
    }
