"""Two GpuHostPools naming one aggregate: the earlier keeps it, the later waits, in every replica."""

from __future__ import annotations

import itertools

import yaml

from gpupool.api import load_pools
from gpupool.conflicts import find_conflicts, find_conflicts_per_cloud


def spec(gpu: str, **pools):
    doc = {"apiVersion": "gpupool.io/v1alpha1", "kind": "GpuHostPool", "metadata": {"name": "x"}}
    doc["spec"] = {"gpuType": gpu, "pools": pools}
    return load_pools(yaml.safe_dump(doc))[0].spec


def test_the_later_resource_waits_and_is_told_why():
    first = ("first", "2026-11-01T00:00:00Z", spec("L40", spot={"hosts": 2}))
    second = ("second", "2026-11-02T00:00:00Z", spec("L40", runpod={"hosts": 1}))
    waiting = find_conflicts([second, first])
    assert set(waiting) == {"second"}
    assert "'L40-n3'" in waiting["second"] and "GpuHostPool 'first'" in waiting["second"]
    assert "remove it from one of them" in waiting["second"]


def test_no_conflict_between_gpu_types_and_order_never_matters():
    pools = [
        ("a", "2026-11-01T00:00:00Z", spec("L40", spot={"hosts": 2})),
        ("b", "2026-11-01T00:00:00Z", spec("H100", spot={"hosts": 2})),
        ("c", "2026-11-03T00:00:00Z", spec("H100", contracts=[{"aggregate": "Contract-X", "hosts": 1}])),
        ("d", "2026-11-01T00:00:00Z", spec("A100", contracts=[{"aggregate": "Contract-X", "hosts": 1}])),
    ]
    results = {tuple(sorted(find_conflicts(list(p)).items())) for p in itertools.permutations(pools)}
    assert len(results) == 1
    (result,) = results
    assert [name for name, _ in result] == ["c"]  # H100-n3 taken by b, Contract-X by d


def test_same_timestamp_breaks_ties_by_name():
    a = ("alpha", "2026-11-01T00:00:00Z", spec("L40"))
    b = ("beta", "2026-11-01T00:00:00Z", spec("L40"))
    assert set(find_conflicts([b, a])) == {"beta"}


def test_the_same_aggregate_names_on_two_clouds_are_two_aggregates():
    l40 = spec("L40", spot={"hosts": 1})
    waiting = find_conflicts_per_cloud(
        [("prod", "a", "1", l40), ("staging", "b", "2", l40), ("prod", "c", "3", l40)]
    )
    assert set(waiting) == {"c"}
    assert "'a'" in waiting["c"]
