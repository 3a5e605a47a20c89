"""No secret leaves the operator: with a clouds.yaml whose auth_url carries a user:password and a
query-string password, and a password of its own, nothing of them reaches the operator's JSON log,
a GpuHostPool's status, an Event or a metric, while Keystone cannot be reached and after it can.
Real `gpupool run --log-format json`, a real kube-apiserver, novasim."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml

from novasim.testing import SimProcess
from testbed.daemons import free_port
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    ghp,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLEET = {
    "aggregates": [{"name": "L40-n3", "hosts": ["gpu-l40-[001-004]"]}, {"name": "L40-n3-spot", "hosts": []}]
}
SECRETS = ("S3cretInUrl", "QuerySecret", "Pw-Unique-4711")


def _with_secrets(clouds_yaml, auth_port: int | None = None) -> str:
    """The sim's clouds.yaml with secrets in the auth_url; with `auth_port`, Keystone elsewhere
    and a password of the test's own (else the sim's Keystone and its real password)."""
    clouds = yaml.safe_load(clouds_yaml.read_text())
    for entry in clouds["clouds"].values():
        auth = entry["auth"]
        netloc, path = auth["auth_url"].split("/", 3)[2:]
        netloc = f"127.0.0.1:{auth_port}" if auth_port else netloc
        auth["auth_url"] = f"http://admin:{SECRETS[0]}@{netloc}/{path}?password={SECRETS[1]}"
        if auth_port:
            auth["password"] = SECRETS[2]
    return yaml.safe_dump(clouds)


def everything_a_user_sees(kube, operator: OperatorProcess) -> str:
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10).read()
    return "\n".join(
        [
            operator.log(),
            kube.kubectl("get", "ghp", "-o", "json").stdout,
            kube.kubectl("get", "events", "-A", "-o", "json").stdout,
            metrics.decode(),
        ]
    )


def test_no_secret_of_clouds_yaml_reaches_a_log_a_status_an_event_or_a_metric(kube, tmp_path):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established("gpuhostpools.gpupool.io")
    sim = SimProcess(FLEET, tmp_path / "sim").start()
    leaky = tmp_path / "clouds.yaml"
    leaky.write_text(_with_secrets(sim.clouds_yaml, auth_port=1))  # nothing listens on port 1
    operator = OperatorProcess(
        kube,
        sim,
        tmp_path,
        interval=5,
        identity="secrets",
        extra_args=("--log-format", "json", "-v"),
        env_extra={"OS_CLIENT_CONFIG_FILE": str(leaky)},
        metrics_port=free_port(),
    )
    try:
        kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}))
        wait_for("CloudError", lambda: condition(kube, "l40").get("reason") == "CloudError", timeout=90)
        message = condition(kube, "l40")["message"]
        assert "127.0.0.1:1/identity/v3" in message  # where it tried, for the person who reads it
        seen = everything_a_user_sees(kube, operator)
        assert [s for s in SECRETS if s in seen] == []
        assert any(
            json.loads(line).get("message") for line in operator.log().splitlines() if line.startswith("{")
        )

        leaky.write_text(_with_secrets(sim.clouds_yaml))  # the right Keystone, the URL still leaky
        wait_for("Ready", lambda: condition(kube, "l40").get("reason") == "Converged", timeout=90)
        seen = everything_a_user_sees(kube, operator)
        assert [s for s in SECRETS if s in seen] == []
    finally:
        operator.stop()
        delete_all_pools(kube)
        sim.stop()
