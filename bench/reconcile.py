"""Reconcile benchmark: 200 moves on a 2,000-host fleet with 50 ms on every Nova request.

    .venv/bin/python -m bench.reconcile [--concurrency 10] [--baseline-moves 10]

Figures, all from one run:
  * requests per move (Nova and Placement), counted by novasim (target: <= 7 including the checks);
  * time to converge against the bound ceil(200 / maxConcurrentMoves) x requests-per-move x 50 ms
    (target: within 1.3x);
  * the baseline, measured in the same run on the same simulated cloud: the way people move hosts
    today, `openstack aggregate remove host` then `openstack aggregate add host` per host with the
    real OpenStack CLI. The CLI's start-up dominates, so it is timed on --baseline-moves hosts and
    extrapolated to 200 (said so in the output);
  * the planner's time on an in-memory 10,000-host snapshot (target: < 100 ms), and the peak memory
    of a process that snapshots a 10,000-host cloud through novasim and plans it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from novasim.testing import SimProcess

BIN = Path(sys.executable).parent
LATENCY_MS = 50
MOVES = 200
# The requests a move makes (check, disable, verify, remove, add, confirm, enable).
MOVE_ROUTES = {
    "GET /compute/v2.1/os-hypervisors/{hypervisor_id}",
    "PUT /compute/v2.1/os-services/{service_id}",
    "GET /placement/resource_providers/{uuid}/allocations",
    "POST /compute/v2.1/os-aggregates/{aggregate_id}/action",
}


def fleet(hosts: int, busy_every: int = 3) -> dict:
    """One GPU type: `hosts` hosts in L40-n3 (every third one busy), empty spot and runpod pools."""
    names = [f"gpu-l40-{i:05d}" for i in range(1, hosts + 1)]
    return {
        "aggregates": [
            {
                "name": "L40-n3",
                "metadata": {"availability_zone": "nova"},
                "hosts": [f"gpu-l40-[00001-{hosts:05d}]"],
            },
            {"name": "L40-n3-spot", "hosts": []},
            {"name": "L40-n3-runpod", "hosts": []},
        ],
        "hosts": [{"name": n, "instances": 1} for n in names[::busy_every]],
    }


def spec(spot: int, runpod: int, concurrency: int) -> dict:
    return {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "l40"},
        "spec": {
            "gpuType": "L40",
            "cloud": "sim",
            "pools": {"spot": {"hosts": spot}, "runpod": {"hosts": runpod}},
            "policy": {"maxConcurrentMoves": concurrency, "maxMovesPerChange": spot + runpod},
        },
    }


def lean_env(sim: SimProcess) -> dict[str, str]:
    """What the operator's container has: a few variables, not a developer's shell. (requests scans
    the whole environment for proxy settings on every request: ~1 ms per request at 150 variables.)"""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    return {k: v for k, v in os.environ.items() if k in keep} | sim.env()


def gpupool_reconcile(tmp: Path, concurrency: int) -> dict:
    """A fresh 2,000-host cloud, `gpupool reconcile` to 200 moves; times and Nova request counts."""
    with SimProcess(fleet(2_000), tmp / f"sim-c{concurrency}", latency_ms=LATENCY_MS) as sim:
        spec_file = tmp / f"pools-c{concurrency}.yaml"
        spec_file.write_text(yaml.safe_dump(spec(120, 80, concurrency)))
        sim.reset_stats()
        start = time.perf_counter()
        result = subprocess.run(
            [str(BIN / "gpupool"), "reconcile", "-f", str(spec_file), "-o", "json"],
            env=lean_env(sim),
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"gpupool reconcile failed ({result.returncode}):\n{result.stderr}")
        pools = json.loads(result.stdout)[0]["status"]["pools"]
        stats = sim.stats()
    by_route = stats["by_route"]
    steps = sum(n for route, n in by_route.items() if route in MOVE_ROUTES)
    # The move lock (one per run) is not a move: its create, its claim and renewals (both on the
    # aggregate action route) and its delete.
    lock = by_route.get("POST /compute/v2.1/os-aggregates", 0)
    renewals = max(0, math.ceil(stats["last_at"] - stats["first_at"]) // 20)
    moved = pools["spot"]["current"] + pools["runpod"]["current"]
    per_move = (steps - lock - renewals) / moved
    return {
        "concurrency": concurrency,
        "moved": moved,
        "requests_per_move": per_move,
        "nova_requests": sum(
            n for route, n in by_route.items() if "/compute/v2.1/" in route or "/placement/" in route
        ),
        "wall_s": wall,
        "nova_span_s": stats["last_at"] - stats["first_at"],
        "bound_s": math.ceil(MOVES / concurrency) * per_move * LATENCY_MS / 1000,
    }


def openstack_cli_loop(sim: SimProcess, moves: int) -> float:
    """Seconds for `moves` hosts moved by hand: remove from L40-n3, add to L40-n3-spot, per host."""
    state = sim.state()
    on_demand = next(a for a in state["aggregates"] if a["name"] == "L40-n3")
    busy = {h["name"] for h in state["hosts"] if h["instances"]}
    hosts = [h for h in sorted(on_demand["hosts"]) if h not in busy][-moves:]
    env = lean_env(sim)
    start = time.perf_counter()
    for host in hosts:
        for args in (["remove", "host", "L40-n3", host], ["add", "host", "L40-n3-spot", host]):
            subprocess.run(
                [str(BIN / "openstack"), "aggregate", *args], env=env, check=True, capture_output=True
            )
    return time.perf_counter() - start


PLANNER_PROBE = r"""
import json, resource, sys, time, os
from gpupool.api import load_pools
from gpupool.cloud import Cloud
from gpupool.planner import plan
pool = load_pools(open(sys.argv[1]).read())[0]
cloud = Cloud("sim")
t0 = time.perf_counter(); snapshot = cloud.snapshot(); snap_s = time.perf_counter() - t0
t0 = time.perf_counter(); plan(pool.spec, snapshot); cold_s = time.perf_counter() - t0
runs = []
for _ in range(20):
    t0 = time.perf_counter(); result = plan(pool.spec, snapshot); runs.append(time.perf_counter() - t0)
runs.sort()
every = []
for _ in range(5):  # what a reconcile pass does: every move the spec needs, at once
    t0 = time.perf_counter(); all_result = plan(pool.spec, snapshot, all_moves=True); every.append(time.perf_counter() - t0)
every.sort()
print(json.dumps({"plan_all_median_s": every[len(every) // 2], "all_moves": len(all_result.moves),"hosts": len(snapshot.hosts), "snapshot_s": snap_s, "plan_cold_s": cold_s, "plan_median_s": runs[len(runs) // 2],
                  "plan_max_s": runs[-1], "moves": len(result.moves),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def planner_at_scale(tmp: Path) -> dict:
    with SimProcess(fleet(10_000), tmp / "sim-10k") as sim:
        spec_file = tmp / "pools-10k.yaml"
        spec_file.write_text(yaml.safe_dump(spec(1_000, 500, 50)))
        out = subprocess.run(
            [sys.executable, "-c", PLANNER_PROBE, str(spec_file)],
            env=lean_env(sim),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[2, 5, 10, 20], help="maxConcurrentMoves values to run"
    )
    parser.add_argument("--baseline-moves", type=int, default=10, help="hosts moved with the openstack CLI")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpupool-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        runs = [gpupool_reconcile(tmp, c) for c in args.concurrency]
        with SimProcess(fleet(2_000), tmp / "sim-baseline", latency_ms=LATENCY_MS) as sim:
            baseline_s = openstack_cli_loop(sim, args.baseline_moves)
        scale = planner_at_scale(tmp)
    baseline_200 = baseline_s / args.baseline_moves * MOVES

    print(f"gpupool reconcile: 2,000 hosts, {MOVES} moves, {LATENCY_MS} ms on every Nova request")
    print(
        f"baseline (same run): openstack CLI remove+add per host, {baseline_s:.1f} s for {args.baseline_moves} "
        f"moves -> {baseline_200:.0f} s for {MOVES} (extrapolated)"
    )
    print("  c = maxConcurrentMoves; span = first to last Nova request; wall = the whole command")
    print("   c  moved  req/move  bound s  span s  span/bound  wall s  wall/bound  baseline/wall")
    for r in runs:
        print(
            f"  {r['concurrency']:2d}  {r['moved']:5d}  {r['requests_per_move']:8.2f}  {r['bound_s']:7.2f}  "
            f"{r['nova_span_s']:6.2f}  {r['nova_span_s'] / r['bound_s']:9.2f}x  {r['wall_s']:6.2f}  "
            f"{r['wall_s'] / r['bound_s']:9.2f}x  {baseline_200 / r['wall_s']:12.0f}x"
        )
    print(f"planner at {scale['hosts']:,} hosts ({scale['moves']} moves planned, maxConcurrentMoves 50)")
    print(
        f"  first plan() in the process   {scale['plan_cold_s'] * 1000:.1f} ms (host-name sort keys not yet cached)"
    )
    print(
        f"  plan() median / max of 20     {scale['plan_median_s'] * 1000:.1f} ms / "
        f"{scale['plan_max_s'] * 1000:.1f} ms (target < 100 ms)"
    )
    print(
        f"  plan(all_moves) median of 5   {scale['plan_all_median_s'] * 1000:.1f} ms "
        f"({scale['all_moves']} moves: what a reconcile pass plans at its start)"
    )
    print(f"  snapshot (3 Nova requests)    {scale['snapshot_s'] * 1000:.0f} ms")
    print(f"  peak memory (snapshot + plan) {scale['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
