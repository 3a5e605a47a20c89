"""kopf's liveness endpoint, which the Deployment probes: both the acting replica and the standby
answer, so Kubernetes never restarts a healthy standby."""

from __future__ import annotations

import json
import urllib.request

import pytest

from novasim.testing import SimProcess
from testbed.daemons import free_port
from tests.e2e.operator_helpers import REPO, OperatorProcess, new_peering, wait_for

pytestmark = pytest.mark.e2e


def healthz(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read() or b"{}")
    except OSError:
        return None


def test_liveness_endpoint_answers_on_the_leader_and_the_standby(kube, tmp_path):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established()
    peering = new_peering()
    urls = [f"http://127.0.0.1:{free_port()}/healthz" for _ in range(2)]
    with SimProcess({"aggregates": [{"name": "L40-n3", "hosts": ["gpu-l40-001"]}]}, tmp_path / "sim") as sim:
        replicas = [
            OperatorProcess(
                kube, sim, tmp_path, identity=f"live-{i}", peering=peering, extra_args=("--liveness", url)
            )
            for i, url in enumerate(urls)
        ]
        try:
            wait_for("one replica to lead", lambda: any("leads" in op.log() for op in replicas), timeout=30)
            for url in urls:
                status, _ = wait_for(f"{url} to answer", lambda u=url: healthz(u), timeout=30)
                assert status == 200
        finally:
            for op in replicas:
                op.stop()
    assert all(op.proc.returncode == 0 for op in replicas)
    assert healthz(urls[0]) is None  # the endpoint goes away with the process
