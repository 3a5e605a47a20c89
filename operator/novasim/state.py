"""The simulated cloud's state and Nova's rules for changing it.

Every method either changes the state or raises NovaError with the status code and message real
Nova 34 answers in the same case (nova/api/openstack/compute/aggregates.py, services.py and
nova/compute/api.py AggregateAPI). The HTTP layer runs on one asyncio loop and these methods never
await, so each request's check-and-change is atomic even under many concurrent clients.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .fleet import Fleet

DEFAULT_ZONE = "nova"  # Nova's default_availability_zone
INTERNAL_ZONE = "internal"  # Nova's internal_service_availability_zone


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
    host: str
    project_id: str
    created: str


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
    uuid: str
    host: str
    vcpus: int = 128
    memory_mb: int = 1_048_576
    local_gb: int = 7_000


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
        self.instances: dict[str, Instance] = {}  # by id
        self.instances_by_host: dict[str, dict[str, Instance]] = {}
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
            self.nodes[spec.name] = ComputeNode(id=n, uuid=str(uuid.uuid4()), host=spec.name)
            self.instances_by_host[spec.name] = {}
            for inst in spec.instances:
                self.start_instance(spec.name, inst.name, inst.flavor, inst.status)
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
        agg.updated_at = now_iso()
        self._changed()
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
        agg.updated_at = now_iso()
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

    def start_instance(
        self, host: str, name: str, flavor: str = "gpu.standard", status: str = "ACTIVE"
    ) -> Instance:
        if host not in self.computes:
            raise NovaError(404, f"Compute host {host} could not be found.")
        inst = Instance(
            id=str(uuid.uuid4()),
            name=name,
            flavor=flavor,
            status=status,
            host=host,
            project_id=self.customer_project_id,
            created=now_iso(),
        )
        self.instances[inst.id] = inst
        self.instances_by_host[host][inst.id] = inst
        self._changed()
        return inst

    def delete_instances(self, host: str) -> int:
        gone = self.instances_by_host.get(host, {})
        for inst_id in list(gone):
            del self.instances[inst_id]
        count = len(gone)
        gone.clear()
        self._changed()
        return count

    # -- out of band ------------------------------------------------------------------------

    def move_host(self, host: str, source: str, target: str) -> None:
        """Someone else moves a host (by aggregate names), bypassing every check."""
        src, dst = self.aggregate_by_name(source), self.aggregate_by_name(target)
        src.discard(host)
        dst.add(host)
        self._changed()

    def snapshot(self) -> dict:
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
                }
                for host, svc in self.computes.items()
            ],
        }


def _int_id(value: str | int) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
