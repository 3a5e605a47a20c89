"""The metrics a round leaves behind, read back as Prometheus would (the text exposition, parsed by
prometheus_client's own parser), against what the status and the fake Nova say."""

from __future__ import annotations

import threading

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpupool import metrics
from gpupool.controller import Controller

from .fakecloud import FakeNova
from .fakekube import FakeKube


class Leading:
    def __init__(self):
        self.leading = threading.Event()
        self.leading.set()


def samples(name: str) -> dict[tuple, float]:
    text = generate_latest(metrics.REGISTRY).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(name: str, **labels) -> float | None:
    return samples(name).get(tuple(sorted(labels.items())))


def test_route_templates_carry_no_ids_and_no_host_names():
    assert metrics.route_of("/os-aggregates/12/action") == "/os-aggregates/{id}/action"
    assert metrics.route_of("/os-services/5d2c1e0a-1b2c-4d5e-8f90-123456789abc") == "/os-services/{uuid}"
    assert metrics.route_of("/os-services?binary=nova-compute&host=gpu-l40-001") == "/os-services"
    assert (
        metrics.route_of("/resource_providers/8a5f0a47-5cd4-4f3e-9d3c-2a4b8c1d0e11/allocations")
        == "/resource_providers/{uuid}/allocations"
    )
    assert metrics.route_of("/os-hypervisors/detail?marker=x&limit=2") == "/os-hypervisors/detail"


def test_a_round_leaves_pools_moves_and_conditions_as_the_status_says():
    nova = FakeNova({"L40-n3": [f"m-{i}" for i in range(1, 7)], "L40-n3-spot": [], "Contract-M": []})
    kube = FakeKube()
    kube.apply(
        "metered",
        {
            "gpuType": "L40",
            "cloud": "sim",
            "pools": {"spot": {"hosts": 2}, "contracts": [{"aggregate": "Contract-M", "hosts": 1}]},
        },
    )
    moved_before = value("gpupool_moves_total", gpuhostpool="metered", result="Moved") or 0.0
    ctl = Controller(kube, Leading(), cloud_factory=lambda name: nova)
    ctl.round()
    status = kube.status("metered")
    assert (
        value("gpupool_pool_desired_hosts", gpuhostpool="metered", pool="spot", aggregate="L40-n3-spot") == 2
    )
    assert value(
        "gpupool_pool_current_hosts", gpuhostpool="metered", pool="spot", aggregate="L40-n3-spot"
    ) == len(nova.aggregates["L40-n3-spot"].hosts)
    contract = dict(gpuhostpool="metered", pool="contract:Contract-M", aggregate="Contract-M")
    assert value("gpupool_pool_current_hosts", **contract) == status["pools"]["contracts"][0]["current"] == 1
    assert (
        value("gpupool_pool_current_hosts", gpuhostpool="metered", pool="onDemand", aggregate="L40-n3") == 3
    )
    assert value("gpupool_moves_total", gpuhostpool="metered", result="Moved") == moved_before + 3
    assert value("gpupool_move_duration_seconds_count", gpuhostpool="metered", result="Moved") >= 3
    assert value("gpupool_ready", gpuhostpool="metered") == 1
    assert value("gpupool_stalled", gpuhostpool="metered") == 0
    assert value("gpupool_moves_in_flight", gpuhostpool="metered") == 0
    assert value("gpupool_round_duration_seconds_count") >= 1


def test_blockers_are_counted_by_reason_and_go_away_with_them():
    nova = FakeNova({"L40-n3": ["b-1"], "L40-n3-spot": []})
    kube = FakeKube()
    spec = {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": 3}}}
    kube.apply("short", spec)
    ctl = Controller(kube, Leading(), cloud_factory=lambda name: nova)
    ctl.round()
    assert value("gpupool_blockers", gpuhostpool="short", reason="NotEnoughMovableHosts") == 1
    assert value("gpupool_stalled", gpuhostpool="short") == 1
    kube.apply("short", {**spec, "pools": {"spot": {"hosts": 0}}})
    ctl.round()
    assert value("gpupool_blockers", gpuhostpool="short", reason="NotEnoughMovableHosts") is None
    del kube.pools["short"]
    ctl.round()
    assert value("gpupool_ready", gpuhostpool="short") is None


def test_an_invalid_spec_is_not_ready_and_stalled():
    kube = FakeKube()
    kube.apply("broken", {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": -2}}})
    Controller(kube, Leading(), cloud_factory=lambda name: FakeNova({})).round()
    assert value("gpupool_ready", gpuhostpool="broken") == 0
    assert value("gpupool_stalled", gpuhostpool="broken") == 1


def test_gpu_usage_per_pool_is_exported_with_its_total():
    nova = FakeNova({"L40-n3": ["g-1", "g-2", "g-3"], "L40-n3-spot": []})
    nova.gpus = {"g-1": 8, "g-2": 2}
    kube = FakeKube()
    kube.apply("gpus", {"gpuType": "L40", "cloud": "sim", "gpusPerHost": 8, "pools": {"spot": {"hosts": 1}}})
    Controller(kube, Leading(), cloud_factory=lambda name: nova).round()
    spot = kube.status("gpus")["pools"]["spot"]
    assert value("gpupool_pool_gpus", gpuhostpool="gpus", pool="spot", state="used") == spot["gpus"]["used"]
    assert value("gpupool_pool_gpus", gpuhostpool="gpus", pool="spot", state="total") == 8
    assert value("gpupool_pool_gpus", gpuhostpool="gpus", pool="onDemand", state="total") == 16
