"""Every request gpupool makes to Nova and Placement is counted by route template and answer,
checked against novasim's own request counters."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpupool import metrics
from gpupool.cloud import Cloud, RetryPolicy
from tests.sim.reconcile_helpers import small_fleet


def counted() -> dict[tuple[str, str, str], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "gpupool_nova_requests_total":
                labels = sample.labels
                found[(labels["method"], labels["route"], labels["code"])] = sample.value
    return found


def test_requests_are_counted_by_route_template_and_code(start_sim, monkeypatch):
    sim = start_sim(small_fleet(on_demand=3))
    for key, value in sim.env().items():
        monkeypatch.setenv(key, value)
    before = counted()
    cloud = Cloud("sim", retry=RetryPolicy(attempts=2, base_delay=0.01))
    snapshot = cloud.snapshot()
    host = snapshot.hosts["gpu-l40-001"]
    cloud.host_now(host)
    cloud.claims_on(host)
    sim.faults(
        routes={"GET /compute/v2.1/os-aggregates": {"error_rate": 1.0, "error_status": 503, "count": 1}}
    )
    cloud.stop_reason()  # a 503, then the retry
    cloud.close()
    after = counted()
    grown = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert grown == {
        ("GET", "/os-aggregates", "200"): 2,
        ("GET", "/os-aggregates", "503"): 1,
        ("GET", "/os-services", "200"): 1,
        ("GET", "/os-hypervisors/detail", "200"): 1,
        ("GET", "/os-hypervisors/{uuid}", "200"): 1,
        ("GET", "/resource_providers/{uuid}/allocations", "200"): 1,
    }
    assert not any("gpu-l40" in route for _, route, _ in after)  # no host name in a label
