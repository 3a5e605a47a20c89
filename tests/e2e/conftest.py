"""The `kube` fixture: a real local Kubernetes control plane for e2e tests.

etcd + kube-apiserver are started once per test session on free 127.0.0.1 ports by
testbed/localkube.py and stopped at the end; kubectl is the real kubectl built at the
same Kubernetes version. Nothing is mocked. There is no scheduler, kubelet or
controller-manager (as with controller-runtime's envtest): pods are never scheduled,
deleted namespaces stay Terminating, garbage collection does not run.

Environment knobs:
  LOCALKUBE_KEEP=1  keep the state dir (etcd data, logs, kubeconfig) after the session
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import localkube


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; str() includes its stderr and stdout."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}\nstdout:\n{self.stdout}"


@dataclasses.dataclass(frozen=True)
class Kube:
    """A running control plane, as seen by tests."""

    kubeconfig: Path
    kubectl_path: Path
    env: dict[str, str]  # os.environ + KUBECONFIG, matching kubectl first on PATH
    server: str  # https://127.0.0.1:<port>
    token: str  # bearer token of an admin (system:masters) user
    ca_file: Path  # the API server's serving certificate (its own CA)
    version: str  # e.g. v1.34.4, for both kube-apiserver and kubectl
    state_dir: Path  # etcd data, logs (etcd.log, kube-apiserver.log), kubeconfig

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane; text output captured."""
        cmd = [str(self.kubectl_path), *args]
        proc = subprocess.run(cmd, input=input, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl_json(self, *args: str) -> dict:
        """`kubectl <args> -o json`, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD (all when none is named) is Established (localkube.wait_established)."""
        localkube.wait_established(self.kubectl_path, self.env, *crds, timeout=timeout)

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` with the given YAML/JSON text."""
        return self.kubectl("apply", "-f", "-", *args, input=manifest)


def pytest_collection_modifyitems(session, config, items):
    # Build the binaries (first run on a machine: ~10-20 min) before any test starts,
    # so the build is not cut by the per-test timeout.
    if not any("kube" in getattr(item, "fixturenames", ()) for item in items):
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        localkube.ensure_binaries()  # shows the build's progress on the terminal


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    cp = localkube.start()  # temporary state dir, free ports, waits for /readyz
    try:
        yield Kube(
            kubeconfig=cp.kubeconfig,
            kubectl_path=cp.kubectl,
            env=cp.env(),
            server=cp.server,
            token=cp.token,
            ca_file=cp.ca_file,
            version=cp.version,
            state_dir=cp.state_dir,
        )
    finally:
        keep = os.environ.get("LOCALKUBE_KEEP", "") not in ("", "0")
        cp.stop(remove=not keep)
        if keep:
            print(f"\nlocalkube state kept in {cp.state_dir}", file=sys.stderr)
