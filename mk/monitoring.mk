# Monitoring: alert rules, Grafana dashboard and the kustomize component in manifests/monitoring/,
# their tests in tests/monitoring/ (docs/operator.md, "Monitoring").
# A real Prometheus and promtool come from Debian's `prometheus` package (testbed/prometheus.py):
# `apt-get install` as root, otherwise unpacked into $(CACHE_DIR)/prometheus/ without root. The
# package's own service is not used (the tests start Prometheus on a free port of their own).
# testbed.prometheus imports only the standard library: the system $(PYTHON) runs it before the venv.

.PHONY: prometheus monitoring-manifests monitoring

# Find or install prometheus and promtool (once per machine: ~15 s with apt).
prometheus:
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PYTHON) -m testbed.prometheus install

# Write the generated files: prometheusrule.yaml (from gpupool-alerts.rules.yaml) and
# gpupool-dashboard.json (from scripts/monitoring_manifests.py). Tests fail while they are stale.
monitoring-manifests:
	$(PYTHON) -m scripts.monitoring_manifests

# Only the monitoring tier (promtool, a real Prometheus, kubectl's kustomize).
monitoring: venv prometheus kube-binaries
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(VENV)/bin/pytest tests/monitoring

# The monitoring tests and the metrics e2e test need promtool and Prometheus: install them before
# pytest starts, outside any per-test timeout.
test: prometheus
