"""Running the operator for e2e tests: `gpupool run` as a real process, novasim, and waiting."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from testbed import localkube

REPO = Path(__file__).resolve().parents[2]
GPUPOOL = str(Path(sys.executable).parent / "gpupool")
_peerings = itertools.count(1)


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 60, every: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class OperatorProcess:
    """One replica of `gpupool run` against the test control plane and a novasim cloud.

    Replicas given the same `peering` name share one ClusterKopfPeering object (created here if
    missing) and are peers: exactly one of them acts.
    """

    def __init__(
        self,
        kube,
        sim,
        workdir: Path,
        *,
        interval: float = 30,
        identity: str,
        peering: str | None = None,
        peering_lifetime: int = 4,
        extra_args: tuple[str, ...] = (),
        create_peering: bool = True,
        env_extra: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ):
        self.identity = identity
        self.metrics_port = metrics_port  # serves /metrics on 127.0.0.1:<port> when given
        self.peering = peering or new_peering()
        # An admin's kube; a ServiceAccount's relies on the manifests (or on the operator creating it).
        if create_peering and hasattr(kube, "kubectl"):
            ensure_peering(kube, self.peering)
        self.log_file = workdir / f"operator-{identity}.log"
        env = {**kube.env, **sim.env(), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
        args = [GPUPOOL, "run", "--interval", str(interval), "--identity", identity]
        args += ["--peering", self.peering, "--peering-lifetime", str(peering_lifetime), *extra_args]
        if metrics_port is not None:
            args += ["--metrics", f"127.0.0.1:{metrics_port}"]
        with open(self.log_file, "a") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def new_peering() -> str:
    return f"gpupool-e2e-{os.getpid()}-{next(_peerings)}"


PEERING_CRD = REPO / "crds" / "kopf" / "clusterkopfpeerings.kopf.dev.yaml"


def ensure_peering(kube, name: str) -> None:
    """The ClusterKopfPeering the replicas share (kopf does not create it; manifests/peering.yaml does)."""
    kube.kubectl("apply", "-f", str(PEERING_CRD))
    localkube.wait_established(kube.kubectl_path, kube.env, "clusterkopfpeerings.kopf.dev")
    doc = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def peering_records(kube, name: str) -> dict:
    """identity -> {priority, lifetime, lastseen}: what kopf wrote for each replica."""
    proc = kube.kubectl("get", "clusterkopfpeering", name, "-o", "json", check=False)
    return (json.loads(proc.stdout).get("status") or {}) if proc.returncode == 0 else {}


def ghp(name: str, **spec) -> str:
    return yaml.safe_dump(
        {"apiVersion": "gpupool.io/v1alpha1", "kind": "GpuHostPool", "metadata": {"name": name}, "spec": spec}
    )


def status(kube, name: str) -> dict:
    proc = kube.kubectl("get", "ghp", name, "-o", "json", check=False)
    return json.loads(proc.stdout).get("status") or {} if proc.returncode == 0 else {}


def condition(kube, name: str, kind: str = "Ready") -> dict:
    return next((c for c in status(kube, name).get("conditions") or () if c["type"] == kind), {})


def members(sim) -> dict[str, set[str]]:
    return {a["name"]: set(a["hosts"]) for a in sim.state()["aggregates"]}


def disabled_by_gpupool(sim, state: dict | None = None) -> list[str]:
    """Hosts whose compute service still carries a move's intent (a move not finished)."""
    state = state or sim.state()
    return [h["name"] for h in state["hosts"] if (h["disabled_reason"] or "").startswith("gpupool:")]


def events(kube, name: str) -> list[dict]:
    items = kube.kubectl_json(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
    )
    return items["items"]


def delete_all_pools(kube) -> None:
    """Leave the cluster clean for the next test: no GpuHostPools, none stuck on a finalizer."""
    names = [i["metadata"]["name"] for i in kube.kubectl_json("get", "ghp")["items"]]
    for n in names:
        kube.kubectl("patch", "ghp", n, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    if names:
        kube.kubectl("delete", "ghp", "--all", "--wait=true", "--timeout=30s", check=False)
    kube.kubectl("delete", "events", "-n", "default", "--all", check=False)
