"""Register compute hosts and their instances in the real Nova, through nova's own objects.

Runs inside the real-Nova venv (services.py starts it with OS_NOVA_CONFIG_DIR set). Reads JSON
on stdin and writes JSON on stdout:

    {"project_id": "...",
     "hosts": [{"name": "gpu-l40-001", "state": "up", "status": "enabled", "disabled_reason": null}],
     "instances": {"gpu-l40-001": 2},          # a count, or a list of {name, flavor, status, extra_specs}
     "builds": {"gpu-l40-002": 1},             # scheduled onto the host, not yet claimed by it
     "claims": ["<instance uuid>"],            # the compute claims a build
     "migrations": [{"instance": "<uuid>", "dest": "gpu-l40-003", "type": "live-migration"}],
     "finish_migrations": ["<migration uuid>"]}

and answers {"hosts": {name: {service_id, compute_node}}, "instances": {host: [uuid]},
"builds": {host: [uuid]}, "migrations": [uuid]}. The keys are applied in that order.

For each host it writes what a booting nova-compute writes: the nova-compute Service record, the
ComputeNode (with its uptime in the stats, so the hypervisor list at microversion >= 2.88 does not
ask the missing compute over RPC, and running_vms and the used resources as the resource tracker
would count them), the HostMapping (what `nova-manage cell_v2 discover_hosts` creates), the
Placement resource provider (uuid = the compute node's uuid, name = the host) and its VCPU,
MEMORY_MB and DISK_GB inventory as the resource tracker reports it (the fake driver's
update_provider_tree: reserved_host_memory_mb 512, allocation ratios from the node).
Instances get an Instance record on the host plus their InstanceMapping (what the conductor
writes when a server boots) and the allocation the scheduler claims in Placement (consumer = the
instance uuid, resources from the flavor, through SchedulerReportClient.claim_resources).

A build is an instance the scheduler placed on a host that its compute has not claimed yet: the
allocation is claimed against the host's provider, the Instance exists (vm_state building,
task_state scheduling, its availability zone set by the conductor) but its host and node are
unset, as until the resource tracker's instance_claim. A claim sets them (vm_state active).

A migration is an in-progress live migration as the conductor and scheduler leave it: a Migration
record (status running) from the instance's host to `dest`, the instance's allocation moved to the
migration as consumer (SchedulerReportClient.move_allocations, conductor's
replace_allocation_with_migration), a new allocation for the instance against the destination,
the instance in task_state migrating on its source host. Finishing it does what
post_live_migration does: the instance moves to the destination, the migration is completed and
its allocation on the source deleted.

A "down" host's last heartbeat is dated 2000-01-01; an "up" host stays up because nova.conf sets
a very long service_down_time.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import uuid

UPTIME = " 00:00:00 up 1 day,  0:00,  0 users,  load average: 0.00, 0.00, 0.00"
DOWN_SINCE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
# The flavor every registered instance has, the same sizes novasim gives its instances.
FLAVOR = {"vcpus": 16, "memory_mb": 131072, "root_gb": 100}
# The compute node of every registered host, the same sizes as novasim's.
NODE = {"vcpus": 128, "memory_mb": 1048576, "local_gb": 7000}
RESERVED_HOST_MEMORY_MB = 512  # nova's [DEFAULT] reserved_host_memory_mb
STATUS_TO_VM_STATE = {
    "ACTIVE": ("active", 1),
    "SHUTOFF": ("stopped", 4),
    "STOPPED": ("stopped", 4),
    "PAUSED": ("paused", 3),
    "SUSPENDED": ("suspended", 7),
    "ERROR": ("error", 0),
}


def main() -> None:
    """One request on stdin; or, with --serve, one JSON request per line, one answer per line
    (nova is imported and the Placement client authenticated once)."""
    from nova import config, objects

    conf_dir = os.environ["OS_NOVA_CONFIG_DIR"]
    config.parse_args(["register"], default_config_files=[os.path.join(conf_dir, "nova.conf")])
    objects.register_all()
    if "--serve" not in sys.argv[1:]:
        json.dump(register(json.load(sys.stdin)), sys.stdout)
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = {"ok": register(json.loads(line))}
        except Exception as exc:  # reported to the caller, the worker goes on
            import traceback

            answer = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


_placement = None
# The scheduler claims with the allocation-candidates microversion it asks for (>= 1.28: consumer
# generations, a new consumer has none).
ALLOCATION_REQUEST_VERSION = "1.36"


def register(request: dict) -> dict:
    global _placement
    from nova import context, objects
    from nova.scheduler.client import report

    ctxt = context.get_admin_context()
    cell = next(c for c in objects.CellMappingList.get_all(ctxt) if not c.is_cell0())
    if _placement is None:
        _placement = report.SchedulerReportClient()
    world = _World(ctxt, cell, _placement, objects, request)
    out: dict = {"hosts": {}, "instances": {}, "builds": {}, "migrations": []}
    for host in request.get("hosts", []):
        out["hosts"][host["name"]] = world.add_host(host)
    # Instances come after the hosts joined their aggregates (as in a real cloud, where the
    # scheduler puts them there): Nova refuses to move a host with instances into another
    # availability zone.
    for name, spec in (request.get("instances") or {}).items():
        out["instances"][name] = world.add_instances(name, spec, build=False)
    for name, spec in (request.get("builds") or {}).items():
        out["builds"][name] = world.add_instances(name, spec, build=True)
    for instance_uuid in request.get("claims") or []:
        world.claim(instance_uuid)
    for spec in request.get("migrations") or []:
        out["migrations"].append(world.start_migration(spec))
    for migration_uuid in request.get("finish_migrations") or []:
        world.finish_migration(migration_uuid)
    return out


def _resources() -> dict:
    """What the scheduler asks of Placement for FLAVOR (resources_from_flavor)."""
    return {"VCPU": FLAVOR["vcpus"], "MEMORY_MB": FLAVOR["memory_mb"], "DISK_GB": FLAVOR["root_gb"]}


def _inventory(node) -> dict:
    """The fake driver's update_provider_tree for this node (reserved_host_disk_mb 0)."""

    def one(total: int, ratio: float, reserved: int) -> dict:
        return {
            "total": total,
            "min_unit": 1,
            "max_unit": total,
            "step_size": 1,
            "allocation_ratio": ratio,
            "reserved": reserved,
        }

    return {
        "VCPU": one(node.vcpus, node.cpu_allocation_ratio, 0),
        "MEMORY_MB": one(node.memory_mb, node.ram_allocation_ratio, RESERVED_HOST_MEMORY_MB),
        "DISK_GB": one(node.local_gb, node.disk_allocation_ratio, 0),
    }


def _account(node, count: int) -> None:
    """The resource tracker's counts after `count` more (or fewer) instances of FLAVOR."""
    node.running_vms = (node.running_vms or 0) + count
    node.vcpus_used = (node.vcpus_used or 0) + count * FLAVOR["vcpus"]
    node.memory_mb_used = (node.memory_mb_used or 0) + count * FLAVOR["memory_mb"]
    node.local_gb_used = (node.local_gb_used or 0) + count * FLAVOR["root_gb"]
    node.free_ram_mb = node.memory_mb - node.memory_mb_used
    node.free_disk_gb = node.local_gb - node.local_gb_used
    node.disk_available_least = node.free_disk_gb
    node.save()


class _World:
    """One request's view of the cell database and Placement."""

    def __init__(self, ctxt, cell, placement, objects, request: dict):
        self.ctxt = ctxt
        self.cell = cell
        self.placement = placement
        self.objects = objects
        self.project_id = request.get("project_id") or uuid.uuid4().hex
        self.user_id = request.get("user_id") or uuid.uuid4().hex

    def cctxt(self):
        from nova import context

        return context.target_cell(self.ctxt, self.cell)

    def add_host(self, host: dict) -> dict:
        objects = self.objects
        name = host["name"]
        down = host.get("state", "up") == "down"
        with self.cctxt() as cctxt:
            service = objects.Service(
                cctxt, host=name, binary="nova-compute", topic="compute", report_count=1
            )
            service.disabled = host.get("status", "enabled") == "disabled"
            service.disabled_reason = host.get("disabled_reason")
            if down:
                service.last_seen_up = DOWN_SINCE
            service.create()
            if down:
                _backdate_service(cctxt, service.id)
            node = objects.ComputeNode(
                cctxt,
                uuid=str(uuid.uuid4()),
                service_id=service.id,
                host=name,
                hypervisor_hostname=name,
                hypervisor_type="fake",
                hypervisor_version=1000,
                vcpus=NODE["vcpus"],
                memory_mb=NODE["memory_mb"],
                local_gb=NODE["local_gb"],
                vcpus_used=0,
                memory_mb_used=RESERVED_HOST_MEMORY_MB,
                local_gb_used=0,
                free_ram_mb=NODE["memory_mb"] - RESERVED_HOST_MEMORY_MB,
                free_disk_gb=NODE["local_gb"],
                current_workload=0,
                running_vms=0,
                cpu_info="{}",
                disk_available_least=NODE["local_gb"],
                # Nova reads a host's uptime from here before asking it over RPC; a down host
                # has none (Nova reports null for it).
                stats={} if down else {"uptime": UPTIME},
                host_ip="127.0.0.1",
                supported_hv_specs=[],
                cpu_allocation_ratio=1.0,
                ram_allocation_ratio=1.0,
                disk_allocation_ratio=1.0,
                mapped=1,
            )
            node.create()
        objects.HostMapping(self.ctxt, host=name, cell_mapping=self.cell).create()
        # The resource tracker's first update: the provider (uuid = node uuid) and its inventory.
        self.placement.get_provider_tree_and_ensure_root(self.ctxt, node.uuid, name=name)
        self.placement.set_inventory_for_provider(self.ctxt, node.uuid, _inventory(node))
        return {"service_id": service.uuid, "compute_node": node.uuid}

    def _claim(self, consumer: str, node_uuid: str) -> None:
        """The scheduler's claim in Placement: consumer's resources against one provider."""
        request = {"allocations": {node_uuid: {"resources": _resources()}}}
        if not self.placement.claim_resources(
            self.ctxt, consumer, request, self.project_id, self.user_id, ALLOCATION_REQUEST_VERSION
        ):
            raise RuntimeError(f"Placement refused the allocation of {consumer} on provider {node_uuid}")

    def add_instances(self, host: str, spec, build: bool) -> list[str]:
        from nova import availability_zones

        objects = self.objects
        host_az = availability_zones.get_host_availability_zone(self.ctxt, host)
        created = []
        with self.cctxt() as cctxt:
            node = objects.ComputeNode.get_first_node_by_host_for_old_compat(cctxt, host)
            for item in _instances(spec, host):
                instance_uuid = str(uuid.uuid4())
                self._claim(instance_uuid, node.uuid)
                _create_instance(
                    cctxt, objects, item, node, host_az, self.project_id, self.user_id, instance_uuid, build
                )
                created.append(instance_uuid)
            if not build:
                _account(node, len(created))
        for instance_uuid in created:
            objects.InstanceMapping(
                self.ctxt,
                instance_uuid=instance_uuid,
                cell_mapping=self.cell,
                project_id=self.project_id,
                user_id=self.user_id,
                queued_for_delete=False,
            ).create()
        return created

    def claim(self, instance_uuid: str) -> None:
        """The compute's instance_claim: the build gets the host its allocation is on."""
        objects = self.objects
        allocations = self.placement.get_allocs_for_consumer(self.ctxt, instance_uuid)["allocations"]
        (node_uuid,) = allocations
        with self.cctxt() as cctxt:
            node = objects.ComputeNode.get_by_uuid(cctxt, node_uuid)
            instance = objects.Instance.get_by_uuid(cctxt, instance_uuid)
            instance.host = instance.launched_on = node.host
            instance.node = node.hypervisor_hostname
            instance.compute_id = node.id
            instance.vm_state, instance.power_state, instance.task_state = "active", 1, None
            instance.launched_at = datetime.datetime.now(datetime.UTC)
            instance.save()
            _account(node, 1)

    def start_migration(self, spec: dict) -> str:
        objects = self.objects
        kind = spec.get("type", "live-migration")
        if kind != "live-migration":
            raise ValueError(f"only live-migration is registered, not {kind!r}")
        with self.cctxt() as cctxt:
            instance = objects.Instance.get_by_uuid(cctxt, spec["instance"], expected_attrs=["flavor"])
            dest = objects.ComputeNode.get_first_node_by_host_for_old_compat(cctxt, spec["dest"])
            # what the conductor's _live_migrate creates, then LiveMigrationTask fills in
            migration = objects.Migration(
                cctxt,
                uuid=str(uuid.uuid4()),
                source_compute=instance.host,
                dest_compute=dest.host,
                old_instance_type_id=instance.flavor.id,
                new_instance_type_id=instance.flavor.id,
                instance_uuid=instance.uuid,
                status="accepted",
                migration_type=kind,
                user_id=self.user_id,
                project_id=self.project_id,
            )
            migration.create()
            migration.source_node = instance.node
            migration.dest_node = dest.hypervisor_hostname
            migration.status = spec.get("status", "running")
            migration.save()
            # conductor: the source allocation is held by the migration from now on ...
            if not self.placement.move_allocations(self.ctxt, instance.uuid, migration.uuid):
                raise RuntimeError(f"moving the allocation of {instance.uuid} to {migration.uuid} failed")
            # ... and the scheduler claims the instance's resources on the destination
            self._claim(instance.uuid, dest.uuid)
            instance.task_state = "migrating"
            instance.save()
        return migration.uuid

    def finish_migration(self, migration_uuid: str) -> None:
        """post_live_migration: the instance on its destination, the source allocation gone."""
        objects = self.objects
        with self.cctxt() as cctxt:
            migration = objects.Migration.get_by_uuid(cctxt, migration_uuid)
            instance = objects.Instance.get_by_uuid(cctxt, migration.instance_uuid)
            source = objects.ComputeNode.get_by_host_and_nodename(
                cctxt, migration.source_compute, migration.source_node
            )
            dest = objects.ComputeNode.get_by_host_and_nodename(
                cctxt, migration.dest_compute, migration.dest_node
            )
            instance.host = dest.host
            instance.node = dest.hypervisor_hostname
            instance.compute_id = dest.id
            instance.task_state = None
            instance.save()
            migration.status = "completed"
            migration.save()
            _account(source, -1)
            _account(dest, 1)
        self.placement.delete_allocation_for_instance(self.ctxt, migration_uuid, consumer_type="migration")


def _instances(spec, host: str) -> list[dict]:
    if isinstance(spec, int):
        return [{"name": f"{host}-vm-{i + 1}"} for i in range(spec)]
    return [dict(item) for item in spec]


def _backdate_service(cctxt, service_id: int) -> None:
    """A dead compute: its last heartbeat long ago (Service.create stamps created_at now)."""
    from nova.db.main import api as main_db
    from nova.db.main import models

    @main_db.pick_context_manager_writer
    def backdate(context):
        context.session.query(models.Service).filter_by(id=service_id).update(
            {
                "created_at": DOWN_SINCE.replace(tzinfo=None),
                "updated_at": DOWN_SINCE.replace(tzinfo=None),
                "last_seen_up": DOWN_SINCE.replace(tzinfo=None),
            }
        )

    backdate(cctxt)


def _create_instance(
    cctxt, objects, spec: dict, node, az: str, project_id: str, user_id: str, instance_uuid: str, build: bool
) -> str:
    """An instance on `node`; a build is on no host yet (only its allocation and zone say where)."""
    from nova.network import model as network_model

    host = None if build else node.host
    flavor_name = spec.get("flavor") or "gpu.small"
    flavor = objects.Flavor(
        id=1,
        flavorid=flavor_name,
        name=flavor_name,
        memory_mb=FLAVOR["memory_mb"],
        vcpus=FLAVOR["vcpus"],
        root_gb=FLAVOR["root_gb"],
        ephemeral_gb=0,
        swap=0,
        rxtx_factor=1.0,
        vcpu_weight=0,
        disabled=False,
        is_public=True,
        extra_specs=dict(spec.get("extra_specs") or {}),  # what GPU flavors carry (pci_passthrough:alias)
        description=None,
    )
    if build:
        vm_state, power_state, task_state = "building", 0, "scheduling"
    else:
        status = (spec.get("status") or "ACTIVE").upper()
        (vm_state, power_state), task_state = STATUS_TO_VM_STATE.get(status, ("active", 1)), None
    now = datetime.datetime.now(datetime.UTC)
    instance = objects.Instance(
        cctxt,
        uuid=instance_uuid,
        project_id=project_id,
        user_id=user_id,
        display_name=spec["name"],
        hostname=spec["name"],
        host=host,
        node=host,
        compute_id=None if build else node.id,
        launched_on=host,
        availability_zone=az,
        vm_state=vm_state,
        power_state=power_state,
        task_state=task_state,
        instance_type_id=flavor.id,
        memory_mb=flavor.memory_mb,
        vcpus=flavor.vcpus,
        root_gb=flavor.root_gb,
        ephemeral_gb=flavor.ephemeral_gb,
        flavor=flavor,
        old_flavor=None,
        new_flavor=None,
        image_ref="",
        launched_at=None if build else now,
        metadata={},
        system_metadata={},
        info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo()),
        security_groups=objects.SecurityGroupList(objects=[]),
    )
    instance.create()
    return instance.uuid


if __name__ == "__main__":
    main()
