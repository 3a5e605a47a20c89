"""The operator's cost: time from `kubectl apply` to the first Nova request, and Nova requests
and Kubernetes writes (status patches, Events) per round in steady state with 1 and with 20
GpuHostPools on one cloud.

    .venv/bin/python -m bench.operator_steady_state [--interval 5] [--seconds 30]

Runs what the e2e tests run: a local kube-apiserver (testbed/localkube.py), novasim, and
`gpupool run` as a real process. Steady state is measured with a short drift interval and scaled
to the default 60 s interval (requests per round x rounds per minute); both are printed. The
baseline is the one-resource case measured in the same run.
"""

from __future__ import annotations

import argparse
import json
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


class Kube:
    def __init__(self, cp):
        self.env = cp.env()
        self.kubectl_path = str(cp.kubectl)

    def kubectl(self, *args, input=None, check=True):
        return subprocess.run(
            [self.kubectl_path, *args], input=input, env=self.env, capture_output=True, text=True, check=check
        )


def fleet(types: int) -> dict:
    aggregates = []
    for t in range(types):
        gpu = f"G{t:02d}"
        aggregates += [
            {"name": f"{gpu}-n3", "hosts": [f"gpu-{gpu.lower()}-[001-010]"]},
            {"name": f"{gpu}-n3-spot", "hosts": []},
        ]
    return {"aggregates": aggregates}


def pools(types: int) -> str:
    docs = [
        {
            "apiVersion": "gpupool.io/v1alpha1",
            "kind": "GpuHostPool",
            "metadata": {"name": f"g{t:02d}"},
            "spec": {"gpuType": f"G{t:02d}", "cloud": "sim", "pools": {"spot": {"hosts": 2}}},
        }
        for t in range(types)
    ]
    return yaml.safe_dump_all(docs)


def kube_writes(kube: Kube) -> dict[str, float]:
    """Writes the API server has served so far, from its own request counter
    (`apiserver_request_total`): GpuHostPool status patches and Events created."""
    text = kube.kubectl("get", "--raw", "/metrics").stdout
    counted = {"status": 0.0, "events": 0.0}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        if 'resource="gpuhostpools"' in labels and 'subresource="status"' in labels:
            if 'verb="PATCH"' in labels or 'verb="UPDATE"' in labels:
                counted["status"] += float(value)
        elif 'resource="events"' in labels and 'verb="POST"' in labels:
            counted["events"] += float(value)
    return counted


def measure(kube: Kube, tmp: Path, types: int, interval: float, seconds: float) -> dict:
    with SimProcess(fleet(types), tmp / f"sim-{types}") as sim:
        op = OperatorProcess(
            kube, sim, tmp, interval=interval, peering=new_peering(), identity=f"bench-{types}"
        )
        try:
            time.sleep(3)  # the operator is up and leading
            sim.reset_stats()
            applied = time.time()
            kube.kubectl("apply", "-f", "-", input=pools(types))
            first = wait_for("a Nova request", lambda: sim.stats()["first_at"], timeout=60, every=0.02)
            kube.kubectl("wait", "--for=condition=Ready", "ghp", "--all", "--timeout=120s")
            time.sleep(interval + 1)  # let the round that follows convergence pass
            sim.reset_stats()
            writes_before = kube_writes(kube)
            time.sleep(seconds)
            steady = sim.stats()
            writes_after = kube_writes(kube)
        finally:
            op.stop()
            kube.kubectl("delete", "ghp", "--all", "--wait=true")
    nova = {k: v for k, v in steady["by_route"].items() if "/compute/v2.1/" in k}
    per_minute = sum(nova.values()) / seconds * 60
    rounds = nova.get("GET /compute/v2.1/os-aggregates", 0) or 1  # one aggregate list per round
    return {
        "pools": types,
        "apply_to_first_nova_s": first - applied,
        "nova_per_minute": per_minute,
        "rounds": rounds,
        "per_round": sum(nova.values()) / rounds,
        "per_minute_at_60s": sum(nova.values()) / rounds,  # one round a minute
        "status_writes_per_round": (writes_after["status"] - writes_before["status"]) / rounds,
        "events_per_round": (writes_after["events"] - writes_before["events"]) / rounds,
        "routes": nova,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    localkube.ensure_binaries()
    cp = localkube.start()
    try:
        kube = Kube(cp)
        kube.kubectl("apply", "-f", str(ROOT / "crds"))
        localkube.wait_established(kube.kubectl_path, kube.env, "gpuhostpools.gpupool.io")
        with tempfile.TemporaryDirectory(prefix="gpupool-opbench-") as tmp:
            one = measure(kube, Path(tmp), 1, args.interval, args.seconds)
            twenty = measure(kube, Path(tmp), 20, args.interval, args.seconds)
    finally:
        cp.stop(remove=True)
    print(f"operator steady state (drift interval {args.interval:.0f} s, measured over {args.seconds:.0f} s)")
    for r in (one, twenty):
        print(
            f"  {r['pools']:2d} GpuHostPool(s): kubectl apply -> first Nova request {r['apply_to_first_nova_s']:.2f} s; "
            f"{r['nova_per_minute']:.0f} Nova req/min at this interval ({r['rounds']} rounds) = "
            f"{r['per_round']:.1f} per round "
            f"-> {r['per_minute_at_60s']:.1f} req/min at the default 60 s"
        )
        print(
            f"      status writes per round {r['status_writes_per_round']:.1f}, "
            f"Events per round {r['events_per_round']:.1f}"
        )
        print(f"      {json.dumps(r['routes'])}")
    print(f"  20 resources cost {twenty['per_round'] / one['per_round']:.2f}x the requests of 1 (baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
