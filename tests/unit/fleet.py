"""Hand-built clouds for planner tests: hosts, aggregates, and moves applied to a snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from gpupool.api import GpuHostPoolSpec
from gpupool.intent import MoveIntent
from gpupool.model import Aggregate, Host, Move, Snapshot


def host(
    name: str, instances: int | None = 0, *, state: str = "up", status: str = "enabled", reason=None
) -> Host:
    return Host(
        name=name,
        service_id=f"svc-{name}",
        state=state,
        status=status,
        disabled_reason=reason,
        instances=instances,
    )


def ours(name: str, source: str, target: str, instances: int | None = 0) -> Host:
    """A host whose service we disabled to move it."""
    return host(
        name, instances, status="disabled", reason=MoveIntent(name, source, target, "0a0a0a").reason()
    )


def cloud(aggregates: Mapping[str, Iterable[str]], hosts: Iterable[Host] = ()) -> Snapshot:
    """A snapshot; every host named in an aggregate and not given explicitly is up, enabled and empty."""
    known = {h.name: h for h in hosts}
    for members in aggregates.values():
        for name in members:
            known.setdefault(name, host(name))
    return Snapshot(
        aggregates={
            name: Aggregate(i, name, frozenset(members))
            for i, (name, members) in enumerate(aggregates.items())
        },
        hosts=known,
    )


def spec(**wire) -> GpuHostPoolSpec:
    """A spec for the planner's own rules: the guard rails (test_guard_rails.py) are lifted, so a
    test sees every move the planner would make, partial progress included."""
    policy = {"allowPartial": True, "maxMovesPerChange": 100_000, **wire.pop("policy", {})}
    return GpuHostPoolSpec.model_validate({"gpuType": "L40", "policy": policy, **wire})


def apply(snapshot: Snapshot, moves: Iterable[Move]) -> Snapshot:
    """The cloud after `moves` finished: membership changed, services enabled again."""
    aggregates = dict(snapshot.aggregates)
    hosts = dict(snapshot.hosts)
    for move in moves:
        aggregates[move.source] = replace(
            aggregates[move.source], hosts=aggregates[move.source].hosts - {move.host}
        )
        aggregates[move.target] = replace(
            aggregates[move.target], hosts=aggregates[move.target].hosts | {move.host}
        )
        if move.host in hosts and hosts[move.host].disabled_reason:
            hosts[move.host] = replace(hosts[move.host], status="enabled", disabled_reason=None)
    return Snapshot(aggregates=aggregates, hosts=hosts)


def names(prefix: str, count: int, start: int = 1) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]
