"""Every PromQL expression gpupool ships (alert rules, dashboard panels and variables), handed to a
real Prometheus: each parses, and against two scraped replicas serving the sample exposition (one
acting, one standby with stale alarming values) each panel shows data, each rule evaluates without
error, and no alert is pending or firing."""

from __future__ import annotations

import itertools
import time

import pytest

from testbed import prometheus as testbed_prometheus
from testbed.prometheus import PrometheusError
from tests.monitoring.queries import RULES_FILE, all_expressions, dashboard_expressions, rule_expressions
from tests.monitoring.sample import exposition, serve


@pytest.mark.parametrize("expression", all_expressions(), ids=str)
def test_each_expression_parses_and_evaluates(prometheus, expression):
    assert prometheus.format_query(expression.expr)
    answer = prometheus.api("query", query=expression.expr)
    assert answer["status"] == "success", answer


def test_a_broken_expression_is_refused(prometheus):
    with pytest.raises(PrometheusError, match="parse error"):
        prometheus.format_query("max by (gpuhostpool) (gpupool_ready and on(instance) (gpupool_acting == 1)")
    with pytest.raises(PrometheusError):
        prometheus.query('sum(rate(gpupool_moves_total{gpuhostpool=~"$gpuhostpool"}[$__rate_interval]))')


@pytest.fixture(scope="module")
def replicas_scraped(prometheus_binaries):
    """A Prometheus scraping two replicas serving the sample (acting, and a standby with stale
    alarming values) every second, with the alert rules loaded; after a few scrapes."""
    scrapes = itertools.count(1)  # a round finished between two scrapes, as the operator would
    with (
        serve(lambda: exposition(acting=True, rounds=next(scrapes))) as acting,
        serve(exposition(acting=False, stale=True)) as standby,
    ):
        server = testbed_prometheus.start(
            {"gpupool": [acting, standby]}, rule_files=[RULES_FILE], binaries=prometheus_binaries
        )
        try:
            server.wait_for_target(instance=acting)
            server.wait_for_target(instance=standby)
            time.sleep(3.5)  # a few more scrapes: rate() and increase() need two samples
            server.wait_for_rule_evaluations()
            yield server, acting, standby
        finally:
            server.stop()


@pytest.mark.parametrize("expression", dashboard_expressions(), ids=str)
def test_each_panel_shows_data_from_the_sample(replicas_scraped, expression):
    server, _, _ = replicas_scraped
    assert server.query(expression.expr), f"{expression}: no series for {expression.expr}"


def test_per_resource_panels_read_only_the_acting_replica(replicas_scraped):
    server, acting, _ = replicas_scraped
    current = [e for e in dashboard_expressions() if e.title == "Hosts per pool: current and desired"][0]
    series = server.query(current.expr)
    assert {s["metric"]["pool"]: float(s["value"][1]) for s in series} == {
        "spot": 4.0,
        "runpod": 2.0,
        "contract:Contract-L40-Acme": 1.0,
    }  # not the standby's stale 9s
    assert server.value('max(gpupool_pool_current_hosts{pool="spot"})') == 9.0  # they are there
    assert server.value("sum(gpupool_acting)") == 1.0
    assert server.value(f'gpupool_acting{{instance="{acting}"}}') == 1.0


def test_every_rule_evaluates_without_error_and_none_fires(replicas_scraped):
    server, _, _ = replicas_scraped
    groups = server.rules()
    loaded = {r["name"] for g in groups for r in g["rules"]}
    assert loaded == {e.title for e in rule_expressions()}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
            assert rule["state"] == "inactive", f"{rule['name']} is {rule['state']}: {rule.get('alerts')}"
    for expression in rule_expressions():
        assert server.query(expression.expr) == [], f"{expression} would fire on a healthy sample"
    # Read without the acting replica's filter, the standby's stale series would alert.
    unfiltered = [e.expr.replace(" and on(instance) (gpupool_acting == 1)", "") for e in rule_expressions()]
    assert sum(1 for expr in unfiltered if server.query(expr)) >= 2
