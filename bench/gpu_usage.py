"""What reading GPU usage costs, against the snapshot every round already takes (the baseline,
measured in the same run against the same novasim).

    .venv/bin/python -m bench.gpu_usage [--hosts 2000] [--per-host 4] [--repeat 5]

A fleet of HOSTS L40 hosts, each running PER-HOST instances whose flavors carry
`pci_passthrough:alias: l40:2`. `Cloud.gpus_in_use()` lists every server (all projects, 1,000 a
page, microversion 2.47) and counts their GPUs per host; `Cloud.snapshot()` is the three requests
of every round (aggregates, services, hypervisors). Reported: requests and wall time of each, and
the ratio. The operator reads GPU usage once per cloud every --gpu-usage-interval (300 s), so at
the default 60 s round its cost per round is the figure here divided by 5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gpupool.cloud import Cloud
from novasim.testing import SimProcess

GPU_FLAVOR = {"pci_passthrough:alias": "l40:2"}


def fleet(hosts: int, per_host: int) -> dict:
    names = [f"gpu-l40-{i:05d}" for i in range(1, hosts + 1)]
    return {
        "aggregates": [{"name": "L40-n3", "hosts": names}],
        "hosts": [
            {
                "name": n,
                "instances": [{"name": f"{n}-vm{j}", "extra_specs": GPU_FLAVOR} for j in range(per_host)],
            }
            for n in names
        ],
    }


def timed(sim: SimProcess, fn, repeat: int) -> tuple[float, float]:
    """(median seconds, Nova requests per call)."""
    times, requests = [], []
    for _ in range(repeat):
        sim.reset_stats()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        requests.append(sim.stats()["total"])
    return statistics.median(times), statistics.median(requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpupool-gpubench-") as tmp:
        with SimProcess(fleet(args.hosts, args.per_host), Path(tmp) / "sim") as sim:
            os.environ.update(sim.env())
            cloud = Cloud("sim")
            cloud.snapshot()  # token and connection warm
            base_s, base_n = timed(sim, cloud.snapshot, args.repeat)
            gpu_s, gpu_n = timed(sim, cloud.gpus_in_use, args.repeat)
            used = sum(cloud.gpus_in_use().values())
            cloud.close()
    servers = args.hosts * args.per_host
    print(f"GPU usage on {args.hosts} hosts, {servers} servers ({used} GPUs in use), median of {args.repeat}")
    print(f"  baseline: snapshot            {base_n:5.0f} requests  {base_s * 1000:8.0f} ms")
    print(
        f"  Cloud.gpus_in_use()           {gpu_n:5.0f} requests  {gpu_s * 1000:8.0f} ms  ({gpu_s / base_s:.2f}x the snapshot)"
    )
    print(
        f"  per 60 s round at the default 300 s interval: {gpu_n / 5:.1f} requests, {gpu_s / 5 * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
