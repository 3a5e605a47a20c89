"""Crash at every step of the move protocol: SIGKILL `gpupool reconcile` right after a step's Nova
request has been applied, run it again, and check nothing was lost, doubled or moved twice.

novasim holds the step's answer (the change is made, the answer not yet sent), so the kill lands
exactly between that step and the next. What a crashed-and-resumed run must end with is what an
uninterrupted run of the same spec on the same fleet ends with (measured, not assumed): the same
membership, and the same number of aggregate changes, so no host moved twice or back and forth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass

import pytest

from novasim.testing import SimProcess
from tests.sim.reconcile_helpers import (
    GPUPOOL,
    assert_fleet_rules,
    membership,
    pool_spec,
    run_gpupool,
    small_fleet,
    write_spec,
)

ACTION = "/compute/v2.1/os-aggregates/{aggregate_id}/action"
SERVICE = "/compute/v2.1/os-services/{service_id}"

# Each protocol step: the Nova request that carries it out (method, route, a piece of its body).
STEPS = {
    # The check right before the disable (the confirm before the enable reads the same route later).
    "check": ("GET", "/compute/v2.1/os-hypervisors/{hypervisor_id}", None),
    "disable-with-intent": ("PUT", SERVICE, '"disabled"'),
    "verify-empty": ("GET", "/placement/resource_providers/{uuid}/allocations", None),
    "remove-from-source": ("POST", ACTION, "remove_host"),
    "add-to-target": ("POST", ACTION, "add_host"),
    "enable": ("PUT", SERVICE, '"enabled"'),
    # Only for hosts that did not come from the first on-demand aggregate: the pool aggregate
    # remembers (grow) or forgets (shrink) where the host came from, before it leaves its source.
    "record-origin": ("POST", ACTION, "gpupool.origin."),
}
MANAGED = ("L40-n3", "L40-n3-NVLink", "L40-n3-spot", "L40-n3-runpod", "Contract-L40-Customer1")


@dataclass(frozen=True)
class Scenario:
    fleet: dict
    spec: dict
    moving: str | None  # the one host that moves, when only one does


def scenario(name: str) -> Scenario:
    if name == "grow":  # one host from on-demand into spot
        spec = pool_spec(spot=1, policy={"maxConcurrentMoves": 1})
        return Scenario(small_fleet(on_demand=5), spec, "gpu-l40-001")
    if name == "shrink":  # one host from spot back to on-demand
        spec = pool_spec(spot=1, policy={"maxConcurrentMoves": 1})
        return Scenario(small_fleet(on_demand=3, spot=2), spec, "gpu-l40-004")
    if name in ("grow-from-nvlink", "shrink-to-nvlink"):  # the move also changes an origin record
        on_demand = {"aggregates": ["L40-n3", "L40-n3-NVLink"]}
        spec = pool_spec(onDemand=on_demand, policy={"maxConcurrentMoves": 1})
        grow = name == "grow-from-nvlink"
        spec["spec"]["pools"] = {"spot": {"hosts": 1 if grow else 0}}
        record = {} if grow else {"gpupool.origin.gpu-l40-003": "L40-n3-NVLink"}
        fleet = {
            "aggregates": [
                {"name": "L40-n3", "hosts": ["gpu-l40-001", "gpu-l40-002"], "metadata": {}},
                {"name": "L40-n3-NVLink", "hosts": [] if grow else ["gpu-l40-004"], "metadata": {}},
                {"name": "L40-n3-spot", "hosts": [] if grow else ["gpu-l40-003"], "metadata": record},
            ],
            # The only movable host of a grow is an NVLink one.
            "hosts": [{"name": h, "instances": 1} for h in ("gpu-l40-001", "gpu-l40-002")],
        }
        if grow:
            fleet["aggregates"][1]["hosts"] = ["gpu-l40-003"]
        return Scenario(fleet, spec, "gpu-l40-003")
    # Seven moves, three at a time: two shrinks and five grows into runpod and a contract. While
    # one move is held at the step, the others run on, so the kill finds them at other steps too.
    spec = pool_spec(spot=1, runpod=3, contract=2, policy={"maxConcurrentMoves": 3})
    return Scenario(small_fleet(on_demand=8, spot=3), spec, None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Membership and aggregate requests after one uninterrupted run, per scenario (cached)."""
    cache: dict[str, tuple[dict, int, dict]] = {}

    def outcome(name: str) -> tuple[dict, int, dict]:
        if name not in cache:
            case = scenario(name)
            workdir = tmp_path_factory.mktemp(f"fresh-{name}")
            with SimProcess(case.fleet, workdir / "sim") as sim:
                spec_file = write_spec(workdir / "pools.yaml", case.spec)
                result = run_gpupool(sim, "reconcile", "-f", str(spec_file))
                assert result.returncode == 0, result.stderr
                cache[name] = (membership(sim.state()), aggregate_requests(sim), origin_records(sim.state()))
        return cache[name]

    return outcome


def aggregate_requests(sim: SimProcess) -> int:
    """add_host and remove_host requests Nova has received so far (novasim's counters).

    The action route also carries each run's claim on the move lock (one set_metadata per lock
    taken, and a lock is one aggregate created): those are not moves, and are left out."""
    by_route = sim.stats()["by_route"]
    return by_route.get(f"POST {ACTION}", 0) - by_route.get("POST /compute/v2.1/os-aggregates", 0)


def origin_records(state: dict) -> dict[str, dict[str, str]]:
    return {
        agg["name"]: {k: v for k, v in agg["metadata"].items() if k.startswith("gpupool.")}
        for agg in state["aggregates"]
    }


def changed_hosts(before: dict[str, set[str]], after: dict[str, set[str]]) -> set[str]:
    where_before = {h: agg for agg, hosts in before.items() for h in hosts}
    where_after = {h: agg for agg, hosts in after.items() for h in hosts}
    return {h for h in where_before.keys() | where_after.keys() if where_before.get(h) != where_after.get(h)}


@pytest.mark.parametrize(
    ("case", "step"),
    [(case, step) for case in ("grow", "shrink") for step in STEPS if step != "record-origin"]
    + [("several", step) for step in ("disable-with-intent", "remove-from-source", "add-to-target")]
    + [(case, "record-origin") for case in ("grow-from-nvlink", "shrink-to-nvlink")],
)
def test_sigkill_right_after_a_step_then_rerun_finishes_the_same_moves(
    start_sim, tmp_path, uninterrupted, case, step
):
    expected_membership, expected_requests, expected_records = uninterrupted(case)
    setup = scenario(case)
    hosts = {h for agg in setup.fleet["aggregates"] for h in agg["hosts"]}
    sim = start_sim(setup.fleet)
    before = membership(sim.state())
    spec_file = write_spec(tmp_path / "pools.yaml", setup.spec)
    method, route, body = STEPS[step]
    hold = sim.hold(method, route, body_contains=body)

    first = subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec_file)],
        env={**os.environ, **sim.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim.wait_held(hold, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    sim.release_all()

    crashed = sim.state()
    # The durable intent is in Nova from the disable until the move is finished.
    if setup.moving and step not in ("check", "enable"):
        service = next(h for h in crashed["hosts"] if h["name"] == setup.moving)
        assert (service["disabled_reason"] or "").startswith("gpupool: moving"), service

    second = run_gpupool(sim, "reconcile", "-f", str(spec_file), "-o", "json")
    assert second.returncode == 0, second.stderr
    state = sim.state()
    assert_fleet_rules(state, hosts, managed=MANAGED)
    after = membership(state)
    assert after == expected_membership
    # No host moved twice: as many add/remove requests in both runs together as in one clean run
    # (a move resumed after the crash does not repeat the steps Nova had already applied).
    assert aggregate_requests(sim) == expected_requests
    assert changed_hosts(before, after) == changed_hosts(before, expected_membership)
    assert origin_records(state) == expected_records
    if setup.moving:
        moves = json.loads(second.stdout)[0]["status"]["lastMoves"]
        assert all(m["host"] == setup.moving for m in moves), moves
