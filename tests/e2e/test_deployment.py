"""What ships: the manifests apply to a real API server, the operator runs with exactly the RBAC
they grant (as its ServiceAccount, through a token the API server issued), and the package the
Dockerfile installs carries everything `gpupool` needs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from novasim.testing import SimProcess
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    events,
    ghp,
    members,
    peering_records,
    wait_for,
)

pytestmark = pytest.mark.e2e
FLEET = {
    "aggregates": [
        {"name": "L40-n3", "hosts": ["gpu-l40-[001-006]"]},
        {"name": "L40-n3-spot", "hosts": []},
    ]
}


def test_manifests_apply_and_their_rbac_is_enough_to_run(kube, tmp_path):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.kubectl("apply", "-f", str(REPO / "crds" / "kopf"))  # kopf's peering CRD: docs/install.md
    kube.wait_established()
    applied = kube.kubectl("apply", "-k", str(REPO / "manifests")).stdout
    assert "deployment.apps/gpupool-operator" in applied
    deployment = kube.kubectl_json("get", "deployment", "gpupool-operator", "-n", "gpupool-system")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The Deployment's arguments are ones `gpupool` accepts.
    from gpupool.cli import build_parser

    args = build_parser().parse_args(container["args"])
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    # Metrics on every replica, on the port the monitoring component's Service targets.
    assert args.metrics == "0.0.0.0:9464"
    assert {"name": "metrics", "containerPort": 9464} in [
        {k: p[k] for k in ("name", "containerPort")} for p in container["ports"]
    ]

    token = kube.kubectl("create", "token", "gpupool-operator", "-n", "gpupool-system").stdout.strip()
    config = tmp_path / "sa.kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": kube.server, "certificate-authority": str(kube.ca_file)},
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )

    class AsServiceAccount:
        env = {**kube.env, "KUBECONFIG": str(config), "POD_NAMESPACE": "gpupool-system"}

    with SimProcess(FLEET, tmp_path / "sim") as sim:
        operator = OperatorProcess(
            AsServiceAccount, sim, tmp_path, interval=30, peering="gpupool-operator", identity="sa-op"
        )
        try:
            kube.apply(ghp("rbac-check", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
            wait_for("Ready", lambda: condition(kube, "rbac-check").get("status") == "True", timeout=60)
            assert len(members(sim)["L40-n3-spot"]) == 2
            assert any(e["reason"] == "MoveFinished" for e in events(kube, "rbac-check"))
            # kopf keeps this replica's record in the peering object the manifests created.
            assert "sa-op" in peering_records(kube, "gpupool-operator")
            assert not refusals_in(operator.log()), operator.log()
        finally:
            operator.stop()
            delete_all_pools(kube)


def refusals_in(log: str) -> list[str]:
    """Lines where the API server refused the operator: `forbidden` or an HTTP 403.

    The log's timestamps are cut first: `08:56:15,403` is a millisecond, not a refusal."""
    lines = (re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line) for line in log.splitlines())
    return [line for line in lines if re.search(r"forbidden|\b403\b", line, re.IGNORECASE)]


def test_refusals_are_found_and_timestamps_are_not_refusals():
    log = (
        "2026-12-02 08:56:15,403 INFO gpupool.mover: gpu-l40-001 L40-n3 -> L40-n3-spot: Confirm\n"
        "2026-12-02 08:56:16,001 ERROR kopf: 403, message='Forbidden'\n"
        '2026-12-02 08:56:17,002 ERROR kopf: leases is forbidden: User "x" cannot list\n'
    )
    assert refusals_in(log) == [
        "ERROR kopf: 403, message='Forbidden'",
        'ERROR kopf: leases is forbidden: User "x" cannot list',
    ]


def test_the_package_the_dockerfile_installs_is_complete(tmp_path):
    """The Dockerfile's `pip install .`, checked outside a container: build the wheel, run from it."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    entry = re.search(r'ENTRYPOINT \["(\w+)"\]', dockerfile)[1]
    cmd = shlex.split(re.search(r"CMD \[(.*)\]", dockerfile)[1].replace(",", " "))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("gpupool/handlers.py", "gpupool/cli.py", "novasim/nova.py", "novasim/__main__.py"):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert f"{entry} = gpupool.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    crd = subprocess.run(
        [sys.executable, "-m", "gpupool.cli", "crd"], env=env, capture_output=True, text=True
    )
    assert crd.returncode == 0, crd.stderr
    assert crd.stdout == (REPO / "crds" / "gpuhostpools.gpupool.io.yaml").read_text()
    parsed = subprocess.run(
        [sys.executable, "-c", f"from gpupool.cli import build_parser; build_parser().parse_args({cmd!r})"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert parsed.returncode == 0, parsed.stderr
    assert Path(target / "gpupool" / "cli.py").exists()
