"""Measure the operator by hand: how soon it reacts and what it costs Nova.

    .venv/bin/python -m bench.measure_operator [--short-interval 2] [--window 30] [--default-window 125]

Starts what the e2e tests start: a local kube-apiserver + etcd (testbed/localkube.py), novasim and
`gpupool run` as a real process (one replica, peered), and applies GpuHostPools with kubectl.
Reports:
  * the time from `kubectl apply` to the first Nova request (median of 5 applies, operator idle);
  * Nova requests per minute in steady state with 1 and with 20 GpuHostPools on one cloud, at a
    short drift interval (scaled to per minute) and at the default 60 s interval (counted over
    --default-window seconds; 0 skips it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from novasim.testing import SimProcess
from testbed import localkube
from tests.e2e.operator_helpers import OperatorProcess, new_peering, wait_for

ROOT = Path(__file__).resolve().parents[1]
HOSTS_PER_TYPE = 10


def start_control_plane():
    localkube.ensure_binaries()
    return localkube.start()


class Kubectl:
    """The subset of the e2e `kube` fixture that operator_helpers uses."""

    def __init__(self, control_plane):
        self.env = control_plane.env()
        self.kubectl_path = str(control_plane.kubectl)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return subprocess.run(
            [self.kubectl_path, *args], input=input, env=self.env, capture_output=True, text=True, check=check
        )


def fleet(types: int) -> dict:
    aggregates = []
    for t in range(types):
        gpu = f"G{t:02d}"
        aggregates.append({"name": f"{gpu}-n3", "hosts": [f"gpu-{gpu.lower()}-[001-{HOSTS_PER_TYPE:03d}]"]})
        aggregates.append({"name": f"{gpu}-n3-spot", "hosts": []})
    return {"aggregates": aggregates}


def pools(types: int, spot_hosts: int = 2, prefix: str = "g") -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": "gpupool.io/v1alpha1",
            "kind": "GpuHostPool",
            "metadata": {"name": f"{prefix}{t:02d}"},
            "spec": {"gpuType": f"G{t:02d}", "cloud": "sim", "pools": {"spot": {"hosts": spot_hosts}}},
        }
        for t in range(types)
    )


def nova_requests(stats: dict) -> dict[str, int]:
    return {route: n for route, n in stats["by_route"].items() if "/compute/v2.1/" in route}


class Run:
    """One cloud, one operator replica, the GpuHostPools of one measurement."""

    def __init__(self, kube: Kubectl, workdir: Path, types: int, interval: float):
        self.kube = kube
        self.sim = SimProcess(fleet(types), workdir / f"sim-{types}-{interval:g}").start()
        self.operator = OperatorProcess(
            kube,
            self.sim,
            workdir,
            interval=interval,
            identity=f"measure-{types}-{interval:g}",
            peering=new_peering(),
        )
        wait_for("the operator to lead", lambda: f"{self.operator.identity} leads" in self.operator.log(), 60)

    def close(self) -> None:
        self.operator.stop()
        self.kube.kubectl("delete", "ghp", "--all", "--wait=true", "--timeout=60s", check=False)
        self.sim.stop()


def apply_to_first_nova_request(kube: Kubectl, workdir: Path, repeats: int = 5) -> list[float]:
    run = Run(kube, workdir, types=repeats, interval=60)
    try:
        delays = []
        for t in range(repeats):
            time.sleep(2)  # idle: the previous resource's rounds are over
            run.sim.reset_stats()
            doc = list(yaml.safe_load_all(pools(repeats)))[t]
            applied = time.time()
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            first = wait_for("a Nova request", lambda: run.sim.stats()["first_at"], timeout=60, every=0.01)
            delays.append(first - applied)
            kube.kubectl("wait", "--for=condition=Ready", "ghp", doc["metadata"]["name"], "--timeout=60s")
        return delays
    finally:
        run.close()


def steady_state(kube: Kubectl, workdir: Path, types: int, interval: float, window: float) -> dict:
    run = Run(kube, workdir, types=types, interval=interval)
    try:
        kube.kubectl("apply", "-f", "-", input=pools(types))
        kube.kubectl("wait", "--for=condition=Ready", "ghp", "--all", "--timeout=180s")
        time.sleep(min(interval, 5) + 1)  # the round that confirms convergence
        run.sim.reset_stats()
        time.sleep(window)
        nova = nova_requests(run.sim.stats())
    finally:
        run.close()
    total = sum(nova.values())
    return {
        "types": types,
        "interval": interval,
        "window": window,
        "total": total,
        "per_minute": total / window * 60,
        "rounds": nova.get("GET /compute/v2.1/os-aggregates", 0),
        "routes": nova,
    }


def report(r: dict) -> str:
    per_round = r["total"] / r["rounds"] if r["rounds"] else float("nan")
    return (
        f"  {r['types']:2d} GpuHostPool(s), interval {r['interval']:>4g} s: {r['total']} Nova requests in "
        f"{r['window']:.0f} s = {r['per_minute']:.1f}/min ({r['rounds']} rounds, {per_round:.1f} per round)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-interval", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted at the short interval")
    parser.add_argument(
        "--default-window", type=float, default=125.0, help="seconds counted at 60 s (0: skip)"
    )
    args = parser.parse_args()
    control_plane = start_control_plane()
    try:
        kube = Kubectl(control_plane)
        kube.kubectl("apply", "-f", str(ROOT / "crds"))
        localkube.wait_established(
            kube.kubectl_path, kube.env, "gpuhostpools.gpupool.io", "clusterkopfpeerings.kopf.dev"
        )
        with tempfile.TemporaryDirectory(prefix="gpupool-measure-") as tmp:
            workdir = Path(tmp)
            delays = apply_to_first_nova_request(kube, workdir)
            print(
                f"kubectl apply -> first Nova request: median {statistics.median(delays):.2f} s "
                f"(min {min(delays):.2f}, max {max(delays):.2f}, {len(delays)} applies)",
                flush=True,
            )
            print("Nova requests in steady state (one cloud):", flush=True)
            results = []
            for interval, window in ((args.short_interval, args.window), (60.0, args.default_window)):
                if window <= 0:
                    continue
                for types in (1, 20):
                    results.append(steady_state(kube, workdir, types, interval, window))
                    print(report(results[-1]), flush=True)
                    print(f"      {results[-1]['routes']}", flush=True)
            short = [r for r in results if r["interval"] == args.short_interval]
            if len(short) == 2 and short[0]["total"]:
                print(f"20 GpuHostPools cost {short[1]['total'] / short[0]['total']:.2f}x the requests of 1")
    finally:
        control_plane.stop(remove=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
