"""`make demo` (`.venv/bin/python -m scripts.demo` from the repo root): the whole stack on
127.0.0.1, no cloud and no cluster needed.

1. novasim serves examples/fleet.yaml (a 200-host GPU cloud); the real `openstack` CLI shows it.
2. `gpupool plan` says what would move.
3. A local Kubernetes control plane (real etcd + kube-apiserver, testbed/localkube.py), the
   GpuHostPool CRD, and the operator (`gpupool run`) as a real process.
4. `kubectl apply -f examples/pools/`, `kubectl get ghp -o wide` before, wait for Ready, after,
   and the Events of one resource.
5. The aggregates after, through the `openstack` CLI again.

The kube-apiserver and kubectl binaries are built once per machine with Go (`make demo` does it
first); where that cannot work, steps 3-4 fall back to the standalone `gpupool reconcile`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from novasim.testing import SimProcess
from testbed import localkube

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOLS = ROOT / "examples" / "pools"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(args: list[str], env: dict[str, str], check: bool = False) -> int:
    shown = [Path(a).name if i == 0 else a for i, a in enumerate(args)]
    print("$ " + " ".join(shown), flush=True)
    return subprocess.run(args, env=env, cwd=ROOT, check=check).returncode


def show_pools(env: dict[str, str]) -> None:
    run(
        [
            str(BIN / "openstack"),
            "aggregate",
            "list",
            "--long",
            "-c",
            "Name",
            "-c",
            "Hosts",
            "--max-width",
            "150",
        ],
        env,
    )


def with_operator(sim: SimProcess, env: dict[str, str], workdir: Path) -> int:
    banner("Starting a local Kubernetes control plane (etcd + kube-apiserver) and the operator")
    cp = localkube.start()
    kenv = {**env, **cp.env()}
    kubectl = str(cp.kubectl)
    log = open(workdir / "operator.log", "w")  # noqa: SIM115 - the operator writes to it until it stops
    metrics_port = _free_port()
    operator = subprocess.Popen(
        [
            str(BIN / "gpupool"),
            "run",
            "--interval",
            "10",
            "--peering-lifetime",
            "5",
            "--metrics",
            f"127.0.0.1:{metrics_port}",
        ],
        env={**kenv, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        run([kubectl, "apply", "-f", "crds/"], kenv, check=True)
        run([kubectl, "apply", "-f", "crds/kopf/"], kenv, check=True)  # kopf's peering CRD
        localkube.wait_established(kubectl, kenv, "gpuhostpools.gpupool.io", "clusterkopfpeerings.kopf.dev")
        banner("kubectl apply -f examples/pools/")
        run([kubectl, "apply", "-f", "examples/pools/"], kenv, check=True)
        run([kubectl, "get", "ghp", "-o", "wide"], kenv)
        banner("Waiting for every GpuHostPool to be Ready")
        started = time.monotonic()
        code = run([kubectl, "wait", "--for=condition=Ready", "ghp", "--all", "--timeout=180s"], kenv)
        print(f"(Ready after {time.monotonic() - started:.1f}s)")
        run([kubectl, "get", "ghp", "-o", "wide"], kenv)
        banner("kubectl describe ghp l40 (conditions and events)")
        described = subprocess.run(
            [kubectl, "describe", "ghp", "l40"], env=kenv, capture_output=True, text=True
        ).stdout.splitlines()
        keep, shown = False, []
        for line in described:  # the conditions and the events; the host lists are in `get -o yaml`
            if line.strip().startswith(("Conditions:", "Events:")):
                keep = True
            elif line.strip().startswith(("In Flight:", "Last Moves:", "Pools:")):
                keep = False
            if keep:
                shown.append(line)
        print("\n".join(shown))
        banner(f"A few of the operator's metrics (curl http://127.0.0.1:{metrics_port}/metrics)")
        print(_metrics_excerpt(metrics_port))
        return code
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()
        cp.stop(remove=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _metrics_excerpt(port: int) -> str:
    """The pool and move series of the l40 resource, as Prometheus would scrape them."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return f"(could not read the metrics: {exc})"
    wanted = (
        "gpupool_pool_current_hosts{",
        "gpupool_pool_desired_hosts{",
        "gpupool_moves_total{",
        "gpupool_ready{",
        "gpupool_acting ",
    )
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(wanted) and ('gpuhostpool="l40"' in line or line.startswith("gpupool_acting"))
    ]
    return "\n".join(lines)


def standalone(env: dict[str, str]) -> int:
    banner("Moving hosts with the standalone CLI (gpupool reconcile)")
    return run([str(BIN / "gpupool"), "reconcile", "-f", "examples/pools/"], env)


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="gpupool-demo-") as tmp,
        SimProcess(ROOT / "examples" / "fleet.yaml", workdir=Path(tmp)) as sim,
    ):
        env = {**os.environ, **sim.env()}
        banner(f"novasim serves examples/fleet.yaml at {sim.auth_url} (OS_CLOUD=sim)")
        banner("The pools before, as the OpenStack CLI sees them")
        show_pools(env)
        banner("What gpupool would move (gpupool plan)")
        run([str(BIN / "gpupool"), "plan", "-f", "examples/pools/"], env)
        try:
            localkube.ensure_binaries()  # built once per machine (make demo builds them first)
        except Exception as exc:  # noqa: BLE001 - no Go, no network: the demo still shows moves
            print(f"(no local kube-apiserver: {exc}; using the standalone CLI instead)")
            code = standalone(env)
        else:
            code = with_operator(sim, env, Path(tmp))
        banner("The pools after")
        show_pools(env)
        stats = sim.stats()
        banner(f"Nova requests served: {stats['compute']} (Keystone included: {stats['total']})")
        return code


if __name__ == "__main__":
    sys.exit(main())
