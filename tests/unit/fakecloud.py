"""An in-memory Nova + Placement behind the same calls as gpupool.cloud.Cloud, for fast engine tests.

Only our own interface is faked: the wire is checked against novasim and a real Nova elsewhere
(tests/sim, tests/conformance). The rules it keeps are Nova's where the engine depends on them:
"already has host" and "not in aggregate" are answered as done, a missing aggregate is a 404, an
aggregate with an availability zone refuses a host that another aggregate puts in another zone,
and enabling a service clears its reason.

`adversary(call, phase, fake)` runs before ("before") and after ("after") every call: a test makes
people, other processes and Nova itself act between any two steps of ours. `fail(call, phase)`
answers whether that call fails there ("before": not applied; "after": applied, answer lost).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from gpupool.errors import CloudError, HostNotInAggregate, NovaRequestError
from gpupool.intent import stop_reason
from gpupool.model import Aggregate, Host, HostNow, Snapshot
from gpupool.ports import ClosableCloud


@dataclass
class FakeService:
    status: str = "enabled"
    state: str = "up"
    reason: str | None = None


@dataclass
class FakeAggregate:
    id: int
    name: str
    hosts: set[str] = field(default_factory=set)
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: str = "2026-01-01T00:00:00.000000"


class FakeNova:
    cloud_name = "fake"

    def __init__(self, aggregates: dict[str, list[str]], zones: dict[str, str] | None = None):
        self._ids = itertools.count(1)
        self.aggregates: dict[str, FakeAggregate] = {}
        self.services: dict[str, FakeService] = {}
        self.instances: dict[str, set[str]] = {}  # host -> instances whose host it is
        self.claims: dict[str, set[str]] = {}  # host -> Placement consumers not (yet) on it
        self.gpus: dict[str, int] = {}  # host -> GPUs its instances use
        self.calls: list[tuple[str, str]] = []
        self.adversary: Callable[[str, str, FakeNova], None] = lambda call, phase, fake: None
        self.fail: Callable[[str, str], bool] = lambda call, phase: False
        for name, hosts in aggregates.items():
            agg = self.create(name)
            agg.hosts.update(hosts)
            if zones and name in zones:
                agg.metadata["availability_zone"] = zones[name]
            for host in hosts:
                self.services.setdefault(host, FakeService())
                self.instances.setdefault(host, set())
                self.claims.setdefault(host, set())

    # -- what tests use to arrange and inspect ------------------------------------------------------

    def create(self, name: str) -> FakeAggregate:
        agg = FakeAggregate(next(self._ids), name)
        self.aggregates[name] = agg
        return agg

    def boot(self, host: str, name: str = "vm") -> None:
        self.instances[host].add(f"{name}-{len(self.instances[host]) + 1}")

    def where(self, host: str) -> list[str]:
        return sorted(a.name for a in self.aggregates.values() if host in a.hosts)

    def count(self, call: str) -> int:
        return sum(1 for name, _ in self.calls if name == call)

    # -- the Cloud interface ------------------------------------------------------------------------

    def _enter(self, call: str, what: str) -> None:
        self.calls.append((call, what))
        self.adversary(call, "before", self)
        if self.fail(call, "before"):
            raise NovaRequestError(f"{what}: still failing after 5 attempts: Internal Server Error", 500)

    def _leave(self, call: str, what: str) -> None:
        if self.fail(call, "after"):
            raise NovaRequestError(f"{what}: still failing after 5 attempts: Internal Server Error", 500)
        self.adversary(call, "after", self)

    def snapshot(self) -> Snapshot:
        self._enter("snapshot", "snapshot")
        snap = Snapshot(
            aggregates={
                a.name: Aggregate(a.id, a.name, frozenset(a.hosts), dict(a.metadata), a.created_at)
                for a in self.aggregates.values()
            },
            hosts={
                name: Host(
                    name,
                    f"svc-{name}",
                    state=svc.state,
                    status=svc.status,
                    disabled_reason=svc.reason,
                    instances=len(self.instances[name]),
                    hypervisor_id=f"node-{name}",
                )
                for name, svc in self.services.items()
            },
        )
        self._leave("snapshot", "snapshot")
        return snap

    def host_now(self, host: Host) -> HostNow:
        self._enter("host_now", host.name)
        svc = self.services[host.name]
        now = HostNow(host.name, svc.status, svc.state, svc.reason, tuple(sorted(self.instances[host.name])))
        self._leave("host_now", host.name)
        return now

    def claims_on(self, host: Host) -> tuple[str, ...]:
        self._enter("claims_on", host.name)
        claims = tuple(sorted(self.instances[host.name] | self.claims[host.name]))
        self._leave("claims_on", host.name)
        return claims

    def disable_service(self, host: Host, reason: str) -> None:
        self._enter("disable", host.name)
        svc = self.services[host.name]
        svc.status, svc.reason = "disabled", reason
        self._leave("disable", host.name)

    def enable_service(self, host: Host) -> None:
        self._enter("enable", host.name)
        svc = self.services[host.name]
        svc.status, svc.reason = "enabled", None
        self._leave("enable", host.name)

    def _aggregate(self, aggregate: Aggregate, what: str) -> FakeAggregate:
        found = next((a for a in self.aggregates.values() if a.id == aggregate.id), None)
        if found is None:
            raise NovaRequestError(f"{what}: Aggregate {aggregate.id} could not be found.", 404)
        return found

    def remove_host(
        self, aggregate: Aggregate, host: str, *, expect_member: bool = False
    ) -> frozenset[str] | None:
        what = f"remove {host} from {aggregate.name}"
        self._enter("remove", what)
        agg = self._aggregate(aggregate, what)
        if host not in agg.hosts:
            if expect_member:
                raise HostNotInAggregate(f"{host} is not in {aggregate.name} any more")
            self._leave("remove", what)
            return None
        agg.hosts.discard(host)
        answer = frozenset(agg.hosts)
        self._leave("remove", what)
        return answer

    def add_host(self, aggregate: Aggregate, host: str) -> frozenset[str] | None:
        what = f"add {host} to {aggregate.name}"
        self._enter("add", what)
        agg = self._aggregate(aggregate, what)
        if host in agg.hosts:
            self._leave("add", what)
            return None
        zone = agg.metadata.get("availability_zone")
        if zone:
            others = [
                a.metadata["availability_zone"]
                for a in self.aggregates.values()
                if host in a.hosts and a.metadata.get("availability_zone") not in (None, zone)
            ]
            if others:
                raise NovaRequestError(
                    f"{what}: Cannot add host to aggregate {agg.id}. Reason: One or more hosts already in "
                    f"availability zone(s) {others}.",
                    409,
                )
        agg.hosts.add(host)
        answer = frozenset(agg.hosts)
        self._leave("add", what)
        return answer

    def set_aggregate_metadata(self, aggregate: Aggregate, metadata: dict[str, str | None]) -> None:
        what = f"set metadata on {aggregate.name}"
        self._enter("set_metadata", what)
        agg = self._aggregate(aggregate, what)
        for key, value in metadata.items():
            if value is None:
                agg.metadata.pop(key, None)
            else:
                agg.metadata[key] = value
        self._leave("set_metadata", what)

    def stop_reason(self) -> str | None:
        self._enter("stop_reason", "list aggregates")
        found = {
            a.name: Aggregate(a.id, a.name, frozenset(a.hosts), dict(a.metadata))
            for a in self.aggregates.values()
        }
        self._leave("stop_reason", "list aggregates")
        return stop_reason(found)

    def gpus_in_use(self) -> dict[str, int]:
        self._enter("gpus_in_use", "list servers")
        used = {host: count for host, count in self.gpus.items() if count}
        self._leave("gpus_in_use", "list servers")
        return used

    def aggregates_holding(self, host: str) -> frozenset[str]:
        self._enter("aggregates_holding", host)
        names = frozenset(a.name for a in self.aggregates.values() if host in a.hosts)
        self._leave("aggregates_holding", host)
        return names

    def get_aggregate(self, aggregate: Aggregate) -> Aggregate | None:
        self._enter("get_aggregate", aggregate.name)
        found = next((a for a in self.aggregates.values() if a.id == aggregate.id), None)
        self._leave("get_aggregate", aggregate.name)
        if found is None:
            return None
        return Aggregate(found.id, found.name, frozenset(found.hosts), dict(found.metadata), found.created_at)

    def create_aggregate(self, name: str) -> Aggregate | None:
        self._enter("create_aggregate", name)
        if name in self.aggregates:
            return None
        agg = self.create(name)
        self._leave("create_aggregate", name)
        return Aggregate(agg.id, agg.name, frozenset(), {}, agg.created_at)

    def delete_aggregate(self, aggregate: Aggregate) -> bool:
        self._enter("delete_aggregate", aggregate.name)
        found = next((a for a in self.aggregates.values() if a.id == aggregate.id), None)
        if found is None:
            return False
        del self.aggregates[found.name]
        self._leave("delete_aggregate", aggregate.name)
        return True

    def close(self) -> None:
        pass


def failing_once(call: str, phase: str = "before") -> Callable[[str, str], bool]:
    """A `fail` that fails the first `call` at `phase`, then never again."""
    spent: list[bool] = []

    def fail(name: str, when: str) -> bool:
        if name == call and when == phase and not spent:
            spent.append(True)
            return True
        return False

    return fail


def always_failing(*calls: str) -> Callable[[str, str], bool]:
    return lambda name, when: name in calls and when == "before"


__all__ = ["CloudError", "FakeNova", "always_failing", "failing_once"]


def _keeps_the_ports_shape(fake: FakeNova) -> ClosableCloud:
    return fake  # mypy (make lint) checks the fake against the Protocol the engine depends on
