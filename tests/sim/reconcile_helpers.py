"""Shared helpers for the reconcile tests: small fleets, pool specs, and the rules to check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

GPUPOOL = str(Path(sys.executable).parent / "gpupool")


def small_fleet(on_demand=12, spot=0, runpod=0, contract=0, busy=(), down=(), foreign_disabled=()):
    """An L40 fleet: hosts gpu-l40-001.. spread over the on-demand and pool aggregates."""
    names = [f"gpu-l40-{i:03d}" for i in range(1, on_demand + spot + runpod + contract + 1)]
    cut = [on_demand, on_demand + spot, on_demand + spot + runpod]
    members = {
        "L40-n3": names[: cut[0]],
        "L40-n3-spot": names[cut[0] : cut[1]],
        "L40-n3-runpod": names[cut[1] : cut[2]],
        "Contract-L40-Customer1": names[cut[2] :],
    }
    hosts = []
    for name in names:
        entry = {"name": name}
        if name in busy:
            entry["instances"] = 1
        if name in down:
            entry["state"] = "down"
        if name in foreign_disabled:
            entry["status"] = "disabled"
            entry["disabled_reason"] = "RMA ticket 4711"
        if len(entry) > 1:
            hosts.append(entry)
    return {
        "aggregates": [{"name": agg, "metadata": {}, "hosts": hosts_} for agg, hosts_ in members.items()],
        "hosts": hosts,
    }


def pool_spec(name="l40", spot=0, runpod=0, contract=0, **spec_extra):
    spec = {
        "gpuType": "L40",
        "cloud": "sim",
        "pools": {
            "spot": {"hosts": spot},
            "runpod": {"hosts": runpod},
            "contracts": [{"aggregate": "Contract-L40-Customer1", "hosts": contract}],
        },
    }
    for key, value in spec_extra.items():
        spec[key] = value
    return {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def write_spec(path: Path, *docs) -> Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def run_gpupool(sim, *args, timeout=120, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **sim.env(), **(env_extra or {})}
    return subprocess.run([GPUPOOL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start_reconcile(sim, spec: Path) -> subprocess.Popen:
    """`gpupool reconcile -o json` in the background, for tests that act while it runs."""
    return subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec), "-o", "json"],
        env={**os.environ, **sim.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def membership(state: dict) -> dict[str, set[str]]:
    return {agg["name"]: set(agg["hosts"]) for agg in state["aggregates"]}


MANAGED = ("L40-n3", "L40-n3-spot", "L40-n3-runpod", "Contract-L40-Customer1")


def assert_fleet_rules(state: dict, all_hosts: set[str], managed=MANAGED) -> None:
    """No host outside every managed aggregate, none in two, every service we disabled enabled again."""
    groups = membership(state)
    where: dict[str, list[str]] = {}
    for agg in managed:
        for host in groups.get(agg, ()):
            where.setdefault(host, []).append(agg)
    lost = sorted(all_hosts - set(where))
    doubled = {h: a for h, a in where.items() if len(a) > 1}
    assert not lost, f"hosts outside every pool: {lost}"
    assert not doubled, f"hosts in two pools: {doubled}"
    ours = [h for h in state["hosts"] if (h.get("disabled_reason") or "").startswith("gpupool:")]
    assert not ours, f"services left disabled by gpupool: {[h['name'] for h in ours]}"
