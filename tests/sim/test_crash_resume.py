"""Crash at every step of the move protocol: SIGKILL `gpupool reconcile` right after a step's Nova
request has been applied, run it again, and check nothing was lost, doubled or moved twice.

novasim holds the step's answer (the change is made, the answer not yet sent), so the kill lands
exactly between that step and the next.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from reconcile_helpers import (
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

STEPS = {
    "disable-with-intent": ("PUT", SERVICE, '"disabled"'),
    "recheck-empty": ("GET", "/compute/v2.1/servers", None),
    "remove-from-source": ("POST", ACTION, "remove_host"),
    "add-to-target": ("POST", ACTION, "add_host"),
    "enable": ("PUT", SERVICE, '"enabled"'),
}


@pytest.mark.parametrize("direction", ["grow", "shrink"])
@pytest.mark.parametrize("step", list(STEPS))
def test_sigkill_right_after_each_step_then_resume(start_sim, tmp_path, step, direction):
    if direction == "grow":
        fleet, spec, moving = small_fleet(on_demand=5), pool_spec(spot=1), "gpu-l40-001"
    else:
        fleet, spec, moving = small_fleet(on_demand=3, spot=2), pool_spec(spot=1), "gpu-l40-004"
    hosts = {h for agg in fleet["aggregates"] for h in agg["hosts"]}
    spec["spec"]["policy"] = {"maxConcurrentMoves": 1}
    sim = start_sim(fleet)
    spec_file = write_spec(tmp_path / "pools.yaml", spec)
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
    intent = next(h for h in crashed["hosts"] if h["name"] == moving)
    if step != "enable":  # the durable intent is in Nova until the move is finished
        assert (intent["disabled_reason"] or "").startswith("gpupool: moving"), intent

    sim.reset_stats()
    second = run_gpupool(sim, "reconcile", "-f", str(spec_file), "-o", "json")
    assert second.returncode == 0, second.stderr
    state = sim.state()
    assert_fleet_rules(state, hosts)
    spot = membership(state)["L40-n3-spot"]
    if direction == "grow":
        assert spot == {moving}  # the interrupted move was finished, not a second one started
    else:
        assert len(spot) == 1 and moving not in spot
    # The rerun finished the one move: at most one add_host, and no move in the other direction.
    moves = json.loads(second.stdout)["status"]["lastMoves"]
    assert all(m["host"] == moving for m in moves), moves
    assert sim.stats()["by_route"].get(f"POST {ACTION}", 0) <= 2
