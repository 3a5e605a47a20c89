"""Two GpuHostPools naming the same aggregate: the earlier one keeps it, the later one waits. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from .api import GpuHostPoolSpec
from .model import Neighbours


def find_conflicts(pools: Iterable[tuple[str, str, GpuHostPoolSpec]]) -> dict[str, str]:
    """(name, creationTimestamp, spec) of each resource -> {name of a later resource: why it waits}.

    Earlier means an older creationTimestamp, then the name; the order is the same in every replica
    and every round, so a conflict never flips between the two resources.
    """
    owner: dict[str, str] = {}
    waiting: dict[str, str] = {}
    for name, _, spec in sorted(pools, key=lambda p: (p[1], p[0])):
        clashes = []
        for aggregate in spec.managed_aggregates():
            first = owner.get(aggregate.name)
            if first is not None and first != name:
                clashes.append(
                    f"aggregate {aggregate.name!r} ({aggregate.field}) is managed by GpuHostPool {first!r}"
                )
        if clashes:
            waiting[name] = (
                "; ".join(clashes) + ": an aggregate belongs to one GpuHostPool; remove it from one of them. "
                "Nothing moves for this resource until then."
            )
            continue
        for aggregate in spec.managed_aggregates():
            owner[aggregate.name] = name
    return waiting


def find_conflicts_per_cloud(pools: Iterable[tuple[str, str, str, GpuHostPoolSpec]]) -> dict[str, str]:
    """(cloud, name, creationTimestamp, spec) of each resource -> find_conflicts on each cloud.

    An aggregate name is only unique within its cloud: `L40-n3-spot` on prod and on staging are
    two aggregates, and the resources managing them do not conflict."""
    by_cloud: dict[str, list[tuple[str, str, GpuHostPoolSpec]]] = {}
    for cloud, name, created, spec in pools:
        by_cloud.setdefault(cloud, []).append((name, created, spec))
    waiting: dict[str, str] = {}
    for entries in by_cloud.values():
        waiting.update(find_conflicts(entries))
    return waiting


def neighbours_of(name: str, pools: Iterable[tuple[str, GpuHostPoolSpec]]) -> Neighbours:
    """The aggregates the other GpuHostPools on the same cloud manage, for `name`'s planner."""
    others = {
        aggregate.name: other
        for other, spec in pools
        if other != name
        for aggregate in spec.managed_aggregates()
    }
    return Neighbours(me=name, others=others)
