"""The kustomize component manifests/monitoring: built on top of manifests/ by the real kubectl's
kustomize, its Service reaches the operator's pods, its ServiceMonitor the Service, the Grafana
ConfigMap holds the dashboard and the PrometheusRule the rules, field names as the
prometheus-operator's CRDs (monitoring.coreos.com/v1) spell them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.monitoring.queries import DASHBOARD_FILE, MONITORING, REPO, RULES_FILE

METRICS_PORT = 9464
# The fields of the ServiceMonitor CRD's spec and endpoints this component may use.
SERVICEMONITOR_SPEC_FIELDS = {
    "selector",
    "namespaceSelector",
    "endpoints",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
}
ENDPOINT_FIELDS = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "scheme",
    "relabelings",
    "metricRelabelings",
    "honorLabels",
}


@pytest.fixture(scope="module")
def built(kubectl_path, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """`kubectl kustomize` of an overlay: manifests/ plus the monitoring component."""
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(REPO / "manifests", overlay)],
                "components": [os.path.relpath(MONITORING, overlay)],
            }
        )
    )
    out = subprocess.run(
        [str(kubectl_path), "kustomize", str(overlay)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def test_the_component_builds_alone_too(kubectl_path):
    out = subprocess.run(
        [str(kubectl_path), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out) if d)
    assert kinds == ["ConfigMap", "PrometheusRule", "Service", "ServiceMonitor"]


def test_the_service_selects_the_operators_pods_on_the_metrics_port(built):
    deployment = built[("Deployment", "gpupool-operator")]
    service = built[("Service", "gpupool-operator-metrics")]
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "gpupool-system"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"}
    ]


def test_the_servicemonitor_scrapes_that_service(built):
    service = built[("Service", "gpupool-operator-metrics")]
    monitor = built[("ServiceMonitor", "gpupool-operator")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= SERVICEMONITOR_SPEC_FIELDS
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_the_grafana_configmap_holds_the_dashboard(built):
    cm = built[("ConfigMap", "gpupool-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "gpupool-system"
    assert cm["data"] == {"gpupool-dashboard.json": DASHBOARD_FILE.read_text()}
    assert json.loads(cm["data"]["gpupool-dashboard.json"])["uid"] == "gpupool-operator"


def test_the_prometheusrule_holds_the_rules(built):
    rule = built[("PrometheusRule", "gpupool-operator")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_the_base_is_unchanged_by_the_component(built, kubectl_path):
    out = subprocess.run(
        [str(kubectl_path), "kustomize", str(REPO / "manifests")], capture_output=True, text=True, check=True
    ).stdout
    base = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    assert {k: built[k] for k in base} == base
