"""The alert rules (manifests/monitoring/gpupool-alerts.rules.yaml): promtool accepts them, their
unit tests pass (each alert fires when it should and stays quiet when it should not), they say what
to do, and the PrometheusRule carries exactly the same rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scripts import monitoring_manifests
from testbed import prometheus as testbed_prometheus
from tests.monitoring.queries import (
    MONITORING,
    REPO,
    RULES_FILE,
    rule_expressions,
    rules,
    unknown_labels,
    unknown_names,
)

UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
# What the PrometheusRule CRD (monitoring.coreos.com/v1) accepts in a group and in a rule.
CRD_GROUP_FIELDS = {
    "name",
    "interval",
    "limit",
    "rules",
    "partial_response_strategy",
    "query_offset",
    "labels",
}
CRD_RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
CRD_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def test_promtool_checks_the_rules_file_and_the_prometheusrule(prometheus_binaries, tmp_path):
    spec = tmp_path / "prometheusrule-spec.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]))
    result = testbed_prometheus.check_rules(RULES_FILE, spec, binaries=prometheus_binaries)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(prometheus_binaries):
    assert UNIT_TESTS
    result = testbed_prometheus.test_rules(*UNIT_TESTS, binaries=prometheus_binaries)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_promtool_unit_tests_can_fail(prometheus_binaries, tmp_path):
    """A unit test expecting an alert that does not fire fails: the suite above is not vacuous."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(RULES_FILE)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": 'gpupool_acting{instance="a"}', "values": "1x10"}],
                        "alert_rule_test": [
                            {
                                "eval_time": "9m",
                                "alertname": "GpupoolNoActingReplica",
                                "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = testbed_prometheus.test_rules(broken, binaries=prometheus_binaries)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def _unit_tests() -> list[dict]:
    return [yaml.safe_load(f.read_text()) for f in UNIT_TESTS]


def test_unit_tests_load_the_shipped_rules_file():
    for path, doc in zip(UNIT_TESTS, _unit_tests(), strict=True):
        assert [(path.parent / f).resolve() for f in doc["rule_files"]] == [RULES_FILE], path


@pytest.mark.parametrize("alert", [r["alert"] for r in rules() if "alert" in r])
def test_each_alert_is_tested_firing_and_quiet(alert):
    fires, quiet = 0, 0
    for doc in _unit_tests():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["alertname"] == alert:
                    if check.get("exp_alerts"):
                        fires += 1
                    else:
                        quiet += 1
    assert fires >= 1, f"{alert}: no unit test where it fires"
    assert quiet >= 1, f"{alert}: no unit test where it stays quiet"


def _runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    anchors = set()
    for line in (REPO / "docs" / "runbook.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", [r for r in rules() if "alert" in r], ids=lambda r: r["alert"])
def test_each_alert_says_how_bad_and_what_to_do(rule):
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description"}
    assert len(annotations["summary"]) < 100, "a summary is one line"
    description = annotations["description"]
    assert re.search(r"kubectl |gpupool |openstack ", description), "no command to run"
    for doc, anchor in re.findall(r"(docs/[\w-]+\.md)(?:#([\w-]+))?", description):
        assert (REPO / doc).is_file(), f"{doc} does not exist"
        if anchor:
            assert doc == "docs/runbook.md", f"{doc}#{anchor}: only the runbook's anchors are checked"
            assert anchor in _runbook_anchors(), f"{doc}#{anchor} is not a heading of the runbook"
    if "kubectl describe ghp" in description or "kubectl get ghp" in description:
        assert "{{ $labels.gpuhostpool }}" in description or "gpuhostpool" not in rule["expr"]


def test_rules_use_only_what_the_prometheusrule_crd_accepts():
    doc = yaml.safe_load(RULES_FILE.read_text())
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert set(group) <= CRD_GROUP_FIELDS, group["name"]
        for rule in group["rules"]:
            assert set(rule) <= CRD_RULE_FIELDS, rule
            assert ("alert" in rule) != ("record" in rule), rule
            if "for" in rule:
                assert CRD_DURATION.match(rule["for"]), rule["for"]
            assert all(
                isinstance(v, str) for v in {**rule.get("labels", {}), **rule.get("annotations", {})}.values()
            )


def test_the_prometheusrule_carries_exactly_the_rules_file():
    doc = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["namespace"] == "gpupool-system"
    assert doc["spec"] == yaml.safe_load(RULES_FILE.read_text())
    # and it is what `make monitoring-manifests` writes
    assert PROMETHEUS_RULE.read_text() == monitoring_manifests.generated()[PROMETHEUS_RULE], (
        "prometheusrule.yaml is out of date: run `make monitoring-manifests`"
    )


@pytest.mark.parametrize("expression", rule_expressions(), ids=str)
def test_rules_name_only_metrics_and_labels_of_the_contract(expression):
    assert unknown_names(expression.expr) == []
    assert unknown_labels(expression.expr) == []


def test_the_contract_check_catches_a_typo():
    assert unknown_names("max by (gpuhostpool) (gpupool_redy == 0)") == ["gpupool_redy"]
    assert unknown_labels('gpupool_ready{gpuhostpol="x"}') == ["gpupool_ready{gpuhostpol}"]
    assert unknown_labels("sum by (resutl) (gpupool_moves_total)") == ["by/on (resutl)"]


def test_unit_test_files_are_where_the_docs_say():
    assert all(isinstance(p, Path) and p.parent.name == "tests" for p in UNIT_TESTS)
    assert {p.name for p in UNIT_TESTS} >= {"pools.yaml", "nova.yaml", "replicas.yaml"}
