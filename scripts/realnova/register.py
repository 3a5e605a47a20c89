"""Register compute hosts and their instances in the real Nova, through nova's own objects.

Runs inside the real-Nova venv (realnova.py starts it with OS_NOVA_CONFIG_DIR set). Reads JSON
on stdin and writes JSON on stdout:

    {"project_id": "...",
     "hosts": [{"name": "gpu-l40-001", "state": "up", "status": "enabled", "disabled_reason": null}],
     "instances": {"gpu-l40-001": 2}}          # a count, or a list of {name, flavor, status}

For each host it writes what a booting nova-compute writes: the nova-compute Service record, the
ComputeNode (with its uptime in the stats, so the hypervisor list at microversion >= 2.88 does not
ask the missing compute over RPC, and running_vms as the resource tracker would count it), the
HostMapping (what `nova-manage cell_v2 discover_hosts` creates) and the Placement resource
provider. Instances get an Instance record on the host plus their InstanceMapping (what the
conductor and scheduler write when a server boots). A "down" host's last heartbeat is dated
2000-01-01; an "up" host stays up because nova.conf sets a very long service_down_time.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import uuid

UPTIME = " 00:00:00 up 1 day,  0:00,  0 users,  load average: 0.00, 0.00, 0.00"
DOWN_SINCE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
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


def register(request: dict) -> dict:
    global _placement
    from nova import availability_zones, context, objects
    from nova.scheduler.client import report

    ctxt = context.get_admin_context()
    cell = next(c for c in objects.CellMappingList.get_all(ctxt) if not c.is_cell0())
    if _placement is None:
        _placement = report.SchedulerReportClient()
    placement = _placement
    project_id = request.get("project_id") or uuid.uuid4().hex
    user_id = request.get("user_id") or uuid.uuid4().hex
    out: dict = {"hosts": {}, "instances": {}}

    for host in request.get("hosts", []):
        name = host["name"]
        with context.target_cell(ctxt, cell) as cctxt:
            service = objects.Service(
                cctxt, host=name, binary="nova-compute", topic="compute", report_count=1
            )
            service.disabled = host.get("status", "enabled") == "disabled"
            service.disabled_reason = host.get("disabled_reason")
            if host.get("state", "up") == "down":
                service.last_seen_up = DOWN_SINCE
            service.create()
            if host.get("state", "up") == "down":
                _backdate_service(cctxt, service.id)
            node = objects.ComputeNode(
                cctxt,
                uuid=str(uuid.uuid4()),
                service_id=service.id,
                host=name,
                hypervisor_hostname=name,
                hypervisor_type="fake",
                hypervisor_version=1000,
                vcpus=64,
                memory_mb=524288,
                local_gb=2048,
                vcpus_used=0,
                memory_mb_used=0,
                local_gb_used=0,
                free_ram_mb=524288,
                free_disk_gb=2048,
                current_workload=0,
                running_vms=0,
                cpu_info="{}",
                disk_available_least=2048,
                # Nova reads a host's uptime from here before asking it over RPC; a down host
                # has none (Nova reports null for it).
                stats={} if host.get("state", "up") == "down" else {"uptime": UPTIME},
                host_ip="127.0.0.1",
                supported_hv_specs=[],
                cpu_allocation_ratio=1.0,
                ram_allocation_ratio=1.0,
                disk_allocation_ratio=1.0,
                mapped=1,
            )
            node.create()
        objects.HostMapping(ctxt, host=name, cell_mapping=cell).create()
        placement.get_provider_tree_and_ensure_root(ctxt, node.uuid, name=name)
        out["hosts"][name] = {"service_id": service.uuid, "compute_node": node.uuid}

    # Instances come after the hosts joined their aggregates (as in a real cloud, where the
    # scheduler puts them there): Nova refuses to move a host with instances into another
    # availability zone.
    for name, spec in (request.get("instances") or {}).items():
        host_az = availability_zones.get_host_availability_zone(ctxt, name)
        created = []
        with context.target_cell(ctxt, cell) as cctxt:
            node = objects.ComputeNode.get_first_node_by_host_for_old_compat(cctxt, name)
            for item in _instances(spec, name):
                created.append(_create_instance(cctxt, objects, item, node, host_az, project_id, user_id))
            node.running_vms = (node.running_vms or 0) + len(created)
            node.save()
        for instance_uuid in created:
            objects.InstanceMapping(
                ctxt,
                instance_uuid=instance_uuid,
                cell_mapping=cell,
                project_id=project_id,
                user_id=user_id,
                queued_for_delete=False,
            ).create()
        out["instances"][name] = created
    return out


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


def _create_instance(cctxt, objects, spec: dict, node, az: str, project_id: str, user_id: str) -> str:
    from nova.network import model as network_model

    host = node.host
    flavor_name = spec.get("flavor") or "gpu.small"
    flavor = objects.Flavor(
        id=1,
        flavorid=flavor_name,
        name=flavor_name,
        memory_mb=4096,
        vcpus=2,
        root_gb=20,
        ephemeral_gb=0,
        swap=0,
        rxtx_factor=1.0,
        vcpu_weight=0,
        disabled=False,
        is_public=True,
        extra_specs={},
        description=None,
    )
    vm_state, power_state = STATUS_TO_VM_STATE.get((spec.get("status") or "ACTIVE").upper(), ("active", 1))
    now = datetime.datetime.now(datetime.UTC)
    instance = objects.Instance(
        cctxt,
        uuid=str(uuid.uuid4()),
        project_id=project_id,
        user_id=user_id,
        display_name=spec["name"],
        hostname=spec["name"],
        host=host,
        node=host,
        compute_id=node.id,
        launched_on=host,
        availability_zone=az,
        vm_state=vm_state,
        power_state=power_state,
        task_state=None,
        instance_type_id=flavor.id,
        memory_mb=flavor.memory_mb,
        vcpus=flavor.vcpus,
        root_gb=flavor.root_gb,
        ephemeral_gb=flavor.ephemeral_gb,
        flavor=flavor,
        old_flavor=None,
        new_flavor=None,
        image_ref="",
        launched_at=now,
        metadata={},
        system_metadata={},
        info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo()),
        security_groups=objects.SecurityGroupList(objects=[]),
    )
    instance.create()
    return instance.uuid


if __name__ == "__main__":
    main()
