"""The simulated cloud's state and Nova's rules for changing it.

Every method either changes the state or raises NovaError with the status code and message real
Nova 34 answers in the same case (nova/api/openstack/compute/aggregates.py, services.py and
nova/compute/api.py AggregateAPI). The HTTP layer runs on one asyncio loop and these methods never
await, so each request's check-and-change is atomic even under many concurrent clients.

Placement's view is kept here too, as Nova and Placement 16 keep it: one resource provider per
compute node (its uuid is the node's uuid), with a VCPU / MEMORY_MB / DISK_GB inventory, the
node's aggregates mirrored (Nova's aggregate add/remove host does that), and allocations by
consumer: an instance holds FLAVOR_RESOURCES on its host's provider; during a live migration the
migration (as consumer) holds the source's and the instance the destination's. A provider's
generation counts its writes as Placement does: 1 after the compute's first inventory report, +1
per aggregate membership change and per allocation write touching it.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .fleet import Fleet

DEFAULT_ZONE = "nova"  # Nova's default_availability_zone
INTERNAL_ZONE = "internal"  # Nova's internal_service_availability_zone
# novasim has no flavor sizes: every instance is this big, in its server body and in Placement.
FLAVOR_VCPUS, FLAVOR_RAM_MB, FLAVOR_DISK_GB = 16, 131_072, 100
FLAVOR_RESOURCES = {"VCPU": FLAVOR_VCPUS, "MEMORY_MB": FLAVOR_RAM_MB, "DISK_GB": FLAVOR_DISK_GB}
RESERVED_HOST_MEMORY_MB = 512  # nova's reserved_host_memory_mb: MEMORY_MB reserved, and used
# Live-migration states in which Nova links a migration to its server (os-migrations, 2.23+).
LIVE_MIGRATION_IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")


class NovaError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class Instance:
    id: str
    name: str
    flavor: str
    status: str
    host: str | None  # None while a build is scheduled but not yet claimed by its compute
    project_id: str
    created: str
    db_id: int = 0  # Nova's integer id: instance_name is instance-%08x of it
    task_state: str | None = None
    zone: str | None = None  # availability_zone, set when scheduled
    launched: bool = True  # launched_at is set (not for a build)
    extra_specs: dict[str, str] = field(default_factory=dict)  # its flavor's, as the server shows them

    @property
    def instance_name(self) -> str:
        return f"instance-{self.db_id:08x}"


@dataclass
class Consumer:
    """A Placement consumer (an instance or a migration) and its allocations."""

    uuid: str
    project_id: str
    user_id: str
    allocations: dict[str, dict[str, int]]  # provider uuid -> resource class -> amount
    generation: int = 1


@dataclass
class Migration:
    id: int
    uuid: str
    instance_uuid: str
    source_compute: str
    dest_compute: str
    status: str
    migration_type: str
    flavor_id: int
    project_id: str
    user_id: str
    created_at: str
    updated_at: str | None = None
    previous_status: str = "ACTIVE"  # the instance's status before, restored when it ends


@dataclass
class Service:
    id: int
    uuid: str
    host: str
    binary: str
    state: str = "up"  # heartbeat: up | down
    disabled: bool = False
    disabled_reason: str | None = None
    forced_down: bool = False
    updated_at: str = field(default_factory=now_iso)


@dataclass
class ComputeNode:
    id: int
    uuid: str  # also its resource provider's uuid
    host: str
    vcpus: int = 128
    memory_mb: int = 1_048_576
    local_gb: int = 7_000
    generation: int = 1  # the resource provider's generation

    def inventory(self) -> dict[str, dict]:
        """What nova-compute reports to Placement (the fake driver's update_provider_tree)."""

        def one(total: int, reserved: int) -> dict:
            return {
                "total": total,
                "reserved": reserved,
                "min_unit": 1,
                "max_unit": total,
                "step_size": 1,
                "allocation_ratio": 1.0,
            }

        return {
            "VCPU": one(self.vcpus, 0),
            "MEMORY_MB": one(self.memory_mb, RESERVED_HOST_MEMORY_MB),
            "DISK_GB": one(self.local_gb, 0),
        }


@dataclass
class Aggregate:
    id: int
    uuid: str
    name: str
    hosts: list[str]
    metadata: dict[str, str]
    created_at: str
    updated_at: str | None = None
    members: set[str] = field(default_factory=set)  # the same hosts, for O(1) membership tests

    def __post_init__(self) -> None:
        self.members = set(self.hosts)

    def has(self, host: str) -> bool:
        return host in self.members

    def add(self, host: str) -> None:
        if host not in self.members:
            self.hosts.append(host)
            self.members.add(host)

    def discard(self, host: str) -> None:
        if host in self.members:
            self.hosts.remove(host)
            self.members.discard(host)

    @property
    def availability_zone(self) -> str | None:
        return self.metadata.get("availability_zone")


class CloudState:
    """Aggregates, services, compute nodes and instances, with Nova's semantics."""

    def __init__(self, fleet: Fleet, customer_project_id: str):
        self.customer_project_id = customer_project_id
        self.version = 0  # bumped on every change: responses may be cached per version
        self.booted_at = datetime.now(UTC)
        self._ids = itertools.count(1)
        self.aggregates: dict[int, Aggregate] = {}
        self.services: dict[str, Service] = {}  # by uuid
        self.computes: dict[str, Service] = {}  # host -> its nova-compute service
        self.nodes: dict[str, ComputeNode] = {}  # host -> compute node
        self.instances: dict[str, Instance] = {}  # by id, builds included
        self.instances_by_host: dict[str, dict[str, Instance]] = {}  # only instances with a host
        self.nodes_by_uuid: dict[str, ComputeNode] = {}
        self.consumers: dict[str, Consumer] = {}  # Placement consumers by uuid
        self.provider_consumers: dict[str, dict[str, None]] = {}  # provider uuid -> consumers, in order
        self.migrations: dict[int, Migration] = {}
        self.flavor_ids: dict[str, int] = {}  # flavor name -> Nova's integer flavor id
        self._instance_ids = itertools.count(1)
        self._migration_ids = itertools.count(1)
        self.customer_user_id = uuid.uuid4().hex  # who booted the instances
        self.admin_user_id = uuid.uuid4().hex  # who started the migrations
        service_ids = itertools.count(1)
        for binary in ("nova-scheduler", "nova-conductor"):
            svc = Service(id=next(service_ids), uuid=str(uuid.uuid4()), host="controller-1", binary=binary)
            self.services[svc.uuid] = svc
        for n, spec in enumerate(fleet.hosts.values(), start=1):
            svc = Service(
                id=next(service_ids),
                uuid=str(uuid.uuid4()),
                host=spec.name,
                binary="nova-compute",
                state=spec.state,
                disabled=spec.status == "disabled",
                disabled_reason=spec.disabled_reason if spec.status == "disabled" else None,
            )
            self.services[svc.uuid] = svc
            self.computes[spec.name] = svc
            node = ComputeNode(id=n, uuid=str(uuid.uuid4()), host=spec.name)
            self.nodes[spec.name] = node
            self.nodes_by_uuid[node.uuid] = node
            self.provider_consumers[node.uuid] = {}
            self.instances_by_host[spec.name] = {}
        created = now_iso()
        for agg in fleet.aggregates:
            new = Aggregate(
                id=next(self._ids),
                uuid=str(uuid.uuid4()),
                name=agg.name,
                hosts=list(agg.hosts),
                metadata=dict(agg.metadata),
                created_at=created,
            )
            self.aggregates[new.id] = new
            for host in new.hosts:  # Nova mirrors membership into Placement
                self.nodes[host].generation += 1
        for spec in fleet.hosts.values():  # once the hosts are in their zones, as in a real cloud
            for inst in spec.instances:
                self.start_instance(spec.name, inst.name, inst.flavor, inst.status, inst.extra_specs)
        self.version = 1

    def _changed(self) -> None:
        self.version += 1

    # -- aggregates -------------------------------------------------------------------------

    def aggregate(self, aggregate_id: str | int) -> Aggregate:
        agg = self.aggregates.get(_int_id(aggregate_id))
        if agg is None:
            raise NovaError(404, f"Aggregate {aggregate_id} could not be found.")
        return agg

    def aggregate_by_name(self, name: str) -> Aggregate:
        for agg in self.aggregates.values():
            if agg.name == name:
                return agg
        raise NovaError(404, f"Aggregate {name} could not be found.")

    def create_aggregate(self, name: str, availability_zone: str | None) -> Aggregate:
        if any(a.name == name for a in self.aggregates.values()):
            raise NovaError(409, f"Aggregate {name} already exists.")
        metadata = {"availability_zone": availability_zone} if availability_zone else {}
        agg = Aggregate(
            id=next(self._ids),
            uuid=str(uuid.uuid4()),
            name=name,
            hosts=[],
            metadata=metadata,
            created_at=now_iso(),
        )
        self.aggregates[agg.id] = agg
        self._changed()
        return agg

    def update_aggregate(
        self, aggregate_id: str, name: str | None, availability_zone: str | None, set_az: bool
    ):
        agg = self.aggregate(aggregate_id)
        if name is not None and name != agg.name and any(a.name == name for a in self.aggregates.values()):
            raise NovaError(409, f"Aggregate {name} already exists.")
        if set_az and availability_zone:
            self._check_zone_change(agg, availability_zone, agg.hosts, f"Cannot update aggregate {agg.id}")
        if name is not None:
            agg.name = name
        if set_az:
            if availability_zone:
                agg.metadata["availability_zone"] = availability_zone
            else:
                agg.metadata.pop("availability_zone", None)
        agg.updated_at = now_iso()
        self._changed()
        return agg

    def delete_aggregate(self, aggregate_id: str) -> None:
        agg = self.aggregate(aggregate_id)
        if agg.hosts:
            raise NovaError(
                400, f"Cannot remove host from aggregate {agg.id}. Reason: Host aggregate is not empty."
            )
        del self.aggregates[agg.id]
        self._changed()

    def set_metadata(self, aggregate_id: str, metadata: dict[str, str | None]) -> Aggregate:
        agg = self.aggregate(aggregate_id)
        zone = metadata.get("availability_zone")
        if zone:
            self._check_zone_change(agg, zone, agg.hosts, f"Cannot update metadata of aggregate {agg.id}")
        for key, value in metadata.items():
            if value is None:
                agg.metadata.pop(key, None)
            else:
                agg.metadata[key] = value
        agg.updated_at = now_iso()
        self._changed()
        return agg

    def add_host(self, aggregate_id: str, host: str) -> Aggregate:
        # Nova's order: the host first, then the aggregate, then zones, then membership.
        if host not in self.computes:
            raise NovaError(404, f"Compute host {host} could not be found.")
        agg = self.aggregate(aggregate_id)
        prefix = f"Cannot add host to aggregate {agg.id}"
        zone = agg.availability_zone
        if zone:
            self._check_zone_change(agg, zone, [host], prefix)
            current = self.host_zone(host)
            count = len(self.instances_by_host.get(host, {}))
            if current != zone and count and not agg.has(host):
                raise NovaError(
                    409,
                    f"{prefix}. Reason: The host cannot be added to the aggregate as the availability zone of "
                    f"the host would change from '{current}' to '{zone}' but the host already has {count} "
                    "instance(s). Changing the AZ of an existing instance is not supported by this action. "
                    "Move the instances away from this host then try again. If you need to move the instances "
                    "between AZs then you can use shelve_offload and unshelve to achieve this..",
                )
        if agg.has(host):
            raise NovaError(409, f"Aggregate {agg.id} already has host {host}.")
        agg.add(host)
        self.nodes[host].generation += 1  # the provider joins the aggregate in Placement too
        self._changed()  # membership is not the aggregate's row: updated_at stays, as in Nova
        return agg

    def remove_host(self, aggregate_id: str, host: str) -> Aggregate:
        not_found = NovaError(404, f"Cannot remove host {host} in aggregate {aggregate_id}")
        try:
            agg = self.aggregate(aggregate_id)
        except NovaError:
            raise not_found from None
        if not agg.has(host):
            raise not_found
        agg.discard(host)
        if host in self.nodes:
            self.nodes[host].generation += 1
        self._changed()
        return agg

    def host_zone(self, host: str) -> str | None:
        """The zone a host's aggregates give it, None when none of them sets one."""
        for agg in self.aggregates.values():
            if agg.availability_zone and agg.has(host):
                return agg.availability_zone
        return None

    def _check_zone_change(self, agg: Aggregate, zone: str, hosts: list[str], prefix: str) -> None:
        conflicting = sorted(
            {
                other.availability_zone
                for other in self.aggregates.values()
                if other.id != agg.id
                and other.availability_zone
                and other.availability_zone != zone
                and any(other.has(h) for h in hosts)
            }
        )
        if conflicting:
            raise NovaError(
                409, f"{prefix}. Reason: One or more hosts already in availability zone(s) {conflicting}."
            )

    # -- services ---------------------------------------------------------------------------

    def service_zone(self, svc: Service) -> str:
        if svc.binary != "nova-compute":
            return INTERNAL_ZONE
        return self.host_zone(svc.host) or DEFAULT_ZONE

    def service(self, service_uuid: str) -> Service:
        svc = self.services.get(service_uuid)
        if svc is None:
            raise NovaError(404, f"Service {service_uuid} could not be found.")
        return svc

    def update_service(self, svc: Service, status: str | None, reason: str | None, forced_down: bool | None):
        if svc.binary != "nova-compute":
            raise NovaError(
                400,
                f"Updating a {svc.binary} service is not supported. Only nova-compute services can be updated.",
            )
        changed = False
        if status == "enabled":
            if reason:
                raise NovaError(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
            changed |= svc.disabled or svc.disabled_reason is not None
            svc.disabled, svc.disabled_reason = False, None
        elif status == "disabled":
            changed |= not svc.disabled or svc.disabled_reason != reason
            svc.disabled, svc.disabled_reason = True, reason
        if forced_down is not None:
            changed |= svc.forced_down != forced_down
            svc.forced_down = forced_down
        if status is None and forced_down is None:
            raise NovaError(
                400, "No updates were requested. Fields 'status' or 'forced_down' should be specified."
            )
        if changed:
            svc.updated_at = now_iso()
            self._changed()
        return svc

    def service_by_host_binary(self, host: str, binary: str) -> Service:
        if binary != "nova-compute":
            raise NovaError(
                400,
                f"Updating a {binary} service is not supported. Only nova-compute services can be updated.",
            )
        svc = self.computes.get(host)
        if svc is None:
            raise NovaError(404, f"Host {host} could not be found.")
        return svc

    def service_is_up(self, svc: Service) -> bool:
        return svc.state == "up" and not svc.forced_down

    # -- instances --------------------------------------------------------------------------

    def _new_instance(self, host: str, name: str, flavor: str, status: str) -> Instance:
        if host not in self.computes:
            raise NovaError(404, f"Compute host {host} could not be found.")
        self.flavor_ids.setdefault(flavor, len(self.flavor_ids) + 1)
        inst = Instance(
            id=str(uuid.uuid4()),
            name=name,
            flavor=flavor,
            status=status,
            host=host,
            project_id=self.customer_project_id,
            created=now_iso(),
            db_id=next(self._instance_ids),
            zone=self.host_zone(host) or DEFAULT_ZONE,
        )
        self.instances[inst.id] = inst
        # the scheduler's claim in Placement, before the compute claims the host
        self._allocate(inst.id, {self.nodes[host].uuid: dict(FLAVOR_RESOURCES)}, inst.project_id)
        return inst

    def start_instance(
        self,
        host: str,
        name: str,
        flavor: str = "gpu.standard",
        status: str = "ACTIVE",
        extra_specs: dict[str, str] | None = None,
    ) -> Instance:
        inst = self._new_instance(host, name, flavor, status)
        inst.extra_specs = dict(extra_specs or {})
        self.instances_by_host[host][inst.id] = inst
        self._changed()
        return inst

    def schedule_build(self, host: str, name: str, flavor: str = "gpu.standard") -> Instance:
        """A server the scheduler placed on `host` (its allocation is there) that the host's
        compute has not claimed yet: BUILD, no host, on no hypervisor."""
        inst = self._new_instance(host, name, flavor, "BUILD")
        inst.host, inst.task_state, inst.launched = None, "scheduling", False
        self._changed()
        return inst

    def claim_build(self, instance_id: str) -> Instance:
        """The compute claims a scheduled build: it gets the host its allocation is on, ACTIVE."""
        inst = self.instances.get(instance_id)
        if inst is None or inst.host is not None:
            raise NovaError(404, f"No unclaimed build {instance_id}.")
        (provider,) = self.consumers[inst.id].allocations
        host = self.nodes_by_uuid[provider].host
        inst.host, inst.status, inst.task_state, inst.launched = host, "ACTIVE", None, True
        self.instances_by_host[host][inst.id] = inst
        self._changed()
        return inst

    def delete_instances(self, host: str) -> int:
        gone = self.instances_by_host.get(host, {})
        for inst_id in list(gone):
            del self.instances[inst_id]
            self._deallocate(inst_id)
            for migration in self.migrations.values():
                if migration.instance_uuid == inst_id and migration.uuid in self.consumers:
                    self._deallocate(migration.uuid)
                    migration.status, migration.updated_at = "error", now_iso()
        count = len(gone)
        gone.clear()
        self._changed()
        return count

    # -- migrations -------------------------------------------------------------------------

    def start_migration(self, instance_id: str, dest: str) -> Migration:
        """A live migration in progress, as the conductor and scheduler leave it: the migration
        holds the source allocation, the instance a new one on the destination; the instance
        stays on its source host (MIGRATING) until the migration finishes."""
        inst = self.instances.get(instance_id)
        if inst is None or inst.host is None:
            raise NovaError(404, f"No instance {instance_id} on a host.")
        if inst.task_state is not None:
            raise NovaError(409, f"Instance {instance_id} is in task_state {inst.task_state}.")
        if dest not in self.computes:
            raise NovaError(404, f"Compute host {dest} could not be found.")
        if dest == inst.host:
            raise NovaError(400, f"The instance is already on {dest}.")
        created = now_iso()
        migration = Migration(
            id=next(self._migration_ids),
            uuid=str(uuid.uuid4()),
            instance_uuid=inst.id,
            source_compute=inst.host,
            dest_compute=dest,
            status="running",
            migration_type="live-migration",
            flavor_id=self.flavor_ids[inst.flavor],
            project_id=inst.project_id,
            user_id=self.admin_user_id,
            created_at=created,
            updated_at=created,
            previous_status=inst.status,
        )
        self.migrations[migration.id] = migration
        self._move_allocations(inst.id, migration.uuid)
        self._allocate(inst.id, {self.nodes[dest].uuid: dict(FLAVOR_RESOURCES)}, inst.project_id)
        inst.status, inst.task_state = "MIGRATING", "migrating"
        self._changed()
        return migration

    def migration_by_uuid(self, migration_uuid: str) -> Migration:
        for migration in self.migrations.values():
            if migration.uuid == migration_uuid:
                return migration
        raise NovaError(404, f"Migration {migration_uuid} could not be found.")

    def finish_migration(self, migration_uuid: str) -> Migration:
        """post_live_migration: the instance on its destination, the source allocation gone."""
        migration = self.migration_by_uuid(migration_uuid)
        if migration.status not in LIVE_MIGRATION_IN_PROGRESS:
            raise NovaError(409, f"Migration {migration_uuid} is {migration.status}.")
        inst = self.instances.get(migration.instance_uuid)
        if inst is not None:
            self.instances_by_host[migration.source_compute].pop(inst.id, None)
            inst.host, inst.status, inst.task_state = migration.dest_compute, migration.previous_status, None
            inst.zone = self.host_zone(inst.host) or DEFAULT_ZONE
            self.instances_by_host[inst.host][inst.id] = inst
        migration.status, migration.updated_at = "completed", now_iso()
        self._deallocate(migration.uuid)
        self._changed()
        return migration

    # -- Placement --------------------------------------------------------------------------

    def _touch(self, providers) -> None:
        for provider in set(providers):
            self.nodes_by_uuid[provider].generation += 1

    def _allocate(self, consumer_uuid: str, allocations: dict[str, dict[str, int]], project_id: str) -> None:
        """PUT /allocations/{consumer}: replaces the consumer's allocations (one write)."""
        consumer = self.consumers.get(consumer_uuid)
        old = set(consumer.allocations) if consumer else set()
        if consumer is None:
            consumer = self.consumers[consumer_uuid] = Consumer(
                consumer_uuid, project_id, self.customer_user_id, {}, generation=0
            )
        for provider in old - set(allocations):
            self.provider_consumers[provider].pop(consumer_uuid, None)
        consumer.allocations = allocations
        consumer.generation += 1
        for provider in allocations:
            self.provider_consumers[provider][consumer_uuid] = None
        self._touch(old | set(allocations))

    def _deallocate(self, consumer_uuid: str) -> None:
        """DELETE /allocations/{consumer}; Placement forgets a consumer without allocations."""
        consumer = self.consumers.pop(consumer_uuid, None)
        if consumer is None:
            return
        for provider in consumer.allocations:
            self.provider_consumers[provider].pop(consumer_uuid, None)
        self._touch(consumer.allocations)

    def _move_allocations(self, source: str, target: str) -> None:
        """POST /allocations moving source's allocations to target (one write)."""
        moved = self.consumers.pop(source)
        for provider in moved.allocations:
            self.provider_consumers[provider].pop(source, None)
            self.provider_consumers[provider][target] = None
        self.consumers[target] = Consumer(target, moved.project_id, moved.user_id, moved.allocations)
        self._touch(moved.allocations)

    def provider_usages(self, node: ComputeNode) -> dict[str, int]:
        usages = dict.fromkeys(node.inventory(), 0)
        for consumer in self.provider_consumers[node.uuid]:
            for rc, amount in self.consumers[consumer].allocations[node.uuid].items():
                usages[rc] = usages.get(rc, 0) + amount
        return usages

    def provider_aggregates(self, node: ComputeNode) -> list[str]:
        return [a.uuid for a in self.aggregates.values() if a.has(node.host)]

    # -- out of band ------------------------------------------------------------------------

    def move_host(self, host: str, source: str, target: str) -> None:
        """Someone else moves a host (by aggregate names), bypassing every check."""
        src, dst = self.aggregate_by_name(source), self.aggregate_by_name(target)
        node = self.nodes.get(host)
        if node is not None:
            node.generation += src.has(host) + (not dst.has(host))
        src.discard(host)
        dst.add(host)
        self._changed()

    def snapshot(self) -> dict:
        migrations = {m.uuid for m in self.migrations.values()}

        def allocations(node: ComputeNode) -> dict:
            return {
                c: {
                    "kind": "migration" if c in migrations else "instance",
                    "resources": dict(self.consumers[c].allocations[node.uuid]),
                }
                for c in self.provider_consumers[node.uuid]
            }

        return {
            "aggregates": [
                {"id": a.id, "name": a.name, "metadata": dict(a.metadata), "hosts": list(a.hosts)}
                for a in self.aggregates.values()
            ],
            "hosts": [
                {
                    "name": host,
                    "service_id": svc.uuid,
                    "state": "up" if self.service_is_up(svc) else "down",
                    "status": "disabled" if svc.disabled else "enabled",
                    "disabled_reason": svc.disabled_reason,
                    "instances": [
                        {"id": i.id, "name": i.name, "status": i.status, "flavor": i.flavor}
                        for i in self.instances_by_host[host].values()
                    ],
                    "aggregates": [a.name for a in self.aggregates.values() if a.has(host)],
                    "provider": {"uuid": self.nodes[host].uuid, "generation": self.nodes[host].generation},
                    "allocations": allocations(self.nodes[host]),
                }
                for host, svc in self.computes.items()
            ],
            "builds": [
                {
                    "id": i.id,
                    "name": i.name,
                    "status": i.status,
                    "scheduled_to": self.nodes_by_uuid[next(iter(self.consumers[i.id].allocations))].host,
                }
                for i in self.instances.values()
                if i.host is None
            ],
            "migrations": [
                {
                    "id": m.id,
                    "uuid": m.uuid,
                    "instance": m.instance_uuid,
                    "source": m.source_compute,
                    "dest": m.dest_compute,
                    "status": m.status,
                    "migration_type": m.migration_type,
                }
                for m in self.migrations.values()
            ],
        }


def _int_id(value: str | int) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
