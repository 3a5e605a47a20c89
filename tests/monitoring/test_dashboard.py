"""The Grafana dashboard (manifests/monitoring/gpupool-dashboard.json): generated, complete, laid out,
and every query names only metrics and labels of the contract (test_promql.py has Prometheus parse
and evaluate them)."""

from __future__ import annotations

import itertools

import pytest

from scripts import monitoring_manifests
from tests.monitoring.contract import METRICS
from tests.monitoring.queries import (
    DASHBOARD_FILE,
    dashboard,
    dashboard_expressions,
    panels,
    substitute,
    unknown_labels,
    unknown_names,
)


def test_the_dashboard_is_what_the_generator_writes():
    assert DASHBOARD_FILE.read_text() == monitoring_manifests.dashboard_text(), (
        "gpupool-dashboard.json is out of date: run `make monitoring-manifests`"
    )


def test_variables_datasource_and_gpuhostpool():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    pool = variables["gpuhostpool"]
    assert pool["type"] == "query" and pool["multi"] and pool["includeAll"] and pool["allValue"] == ".*"
    assert pool["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_per_resource_panels_follow_the_gpuhostpool_variable():
    per_resource = {name for name, m in METRICS.items() if "gpuhostpool" in m.labels}
    for panel in panels():
        for t in panel.get("targets", []):
            names = {n for n in per_resource if n in t["expr"]}
            if names:
                assert 'gpuhostpool=~"$gpuhostpool"' in t["expr"], f"{panel['title']}: {t['expr']}"


def test_every_metric_of_the_contract_is_on_the_dashboard():
    exprs = " ".join(e.expr for e in dashboard_expressions())
    missing = [name for name in METRICS if name not in exprs]
    assert missing == []


@pytest.mark.parametrize(
    "title",
    [
        "Hosts per pool: current and desired",
        "GPUs per pool: used and total",
        "GPU usage per pool",
        "Moves per minute by result",
        "Move duration",
        "Nova requests by route",
        "Nova errors by route and code",
        "Nova latency by route",
        "Blockers",
        "Acting replica",
        "Round duration",
    ],
)
def test_the_panels_asked_for_are_there(title):
    assert title in {p["title"] for p in panels()}


def test_move_and_nova_latency_are_percentiles_of_the_histograms():
    by_title = {p["title"]: p for p in panels()}
    for title, histogram in (
        ("Move duration", "gpupool_move_duration_seconds_bucket"),
        ("Nova latency by route", "gpupool_nova_request_duration_seconds_bucket"),
        ("Round duration", "gpupool_round_duration_seconds_bucket"),
    ):
        exprs = [t["expr"] for t in by_title[title]["targets"]]
        assert all(e.startswith("histogram_quantile(") and histogram in e for e in exprs), exprs
        assert all("sum by (le" in e for e in exprs), exprs


def test_layout_ids_unique_and_no_overlap():
    ps = panels()
    assert len({p["id"] for p in ps}) == len(ps)
    cells: dict[tuple[int, int], str] = {}
    for p in ps:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x, y in itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
            assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
            cells[(x, y)] = p["title"]


@pytest.mark.parametrize("expression", dashboard_expressions(), ids=str)
def test_queries_name_only_metrics_and_labels_of_the_contract(expression):
    assert unknown_names(expression.expr) == []
    assert unknown_labels(expression.expr) == []


def test_only_known_grafana_variables_are_used():
    with pytest.raises(KeyError):
        substitute("rate(x[$__unknown])")
    for panel in panels():
        for t in panel.get("targets", []):
            assert "$" not in substitute(t["expr"]), t["expr"]
