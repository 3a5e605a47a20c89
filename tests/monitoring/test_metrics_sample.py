"""`promtool check metrics` on what the operator's /metrics should serve (sample.py, per the
contract), and the sample against the contract itself."""

from __future__ import annotations

import pytest

from testbed import prometheus as testbed_prometheus
from tests.monitoring.contract import contract_problems, parse
from tests.monitoring.sample import exposition


@pytest.mark.parametrize("acting", [True, False], ids=["acting", "standby"])
def test_promtool_check_metrics_accepts_the_sample(prometheus_binaries, acting):
    result = testbed_prometheus.check_metrics(exposition(acting), binaries=prometheus_binaries)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_metrics_rejects_a_bad_exposition(prometheus_binaries):
    bad = "# TYPE gpupool_moves counter\ngpupool_moves 1\n# TYPE gpupoolReady gauge\ngpupoolReady 1\n"
    result = testbed_prometheus.check_metrics(bad, binaries=prometheus_binaries)
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


def test_the_sample_follows_the_contract():
    assert contract_problems(exposition(acting=True), require_all=True) == []
    assert contract_problems(exposition(acting=False, stale=True), require_all=False) == []
    _, samples = parse(exposition(acting=True))
    pools = {labels["pool"] for name, labels, _ in samples if name == "gpupool_pool_current_hosts"}
    assert pools == {"spot", "runpod", "contract:Contract-L40-Acme", "onDemand"}
    assert not any(
        name == "gpupool_pool_desired_hosts" and lb["pool"] == "onDemand" for name, lb, _ in samples
    )


def test_the_contract_check_finds_a_wrong_label():
    text = '# TYPE gpupool_ready gauge\ngpupool_ready{gpuhostpool="a",pool="spot"} 1\n'
    assert contract_problems(text, require_all=False) == [
        "gpupool_ready: labels ['gpuhostpool', 'pool'], the contract says ['gpuhostpool']"
    ]
