"""`gpupool reconcile` and `gpupool plan` against novasim: the real CLI, openstacksdk over HTTP.

Every test checks what an operator of the cloud would check afterwards: which hosts sit in which
aggregate (through novasim's state, i.e. Nova's), the exit code, the status printed, and the
rules: no host outside every pool or in two, no host with instances moved, no service left
disabled by us.
"""

from __future__ import annotations

import json

from tests.sim.reconcile_helpers import (
    MANAGED,
    assert_fleet_rules,
    membership,
    pool_spec,
    run_gpupool,
    small_fleet,
    start_reconcile,
    write_spec,
)

ACTION = "POST /compute/v2.1/os-aggregates/{aggregate_id}/action"
SERVICE_PUT = "PUT /compute/v2.1/os-services/{service_id}"
ALLOCATIONS = "GET /placement/resource_providers/{uuid}/allocations"
LOCK_CREATE = "POST /compute/v2.1/os-aggregates"
LOCK_DELETE = "DELETE /compute/v2.1/os-aggregates/{aggregate_id}"


def all_hosts(fleet: dict) -> set[str]:
    return {h for agg in fleet["aggregates"] for h in agg["hosts"]}


def reconcile(sim, tmp_path, *docs, args=(), **kwargs):
    spec = write_spec(tmp_path / "pools.yaml", *docs)
    result = run_gpupool(sim, "reconcile", "-f", str(spec), "-o", "json", *args, **kwargs)
    status = json.loads(result.stdout)[0]["status"] if result.stdout.strip().startswith("[") else None
    return result, status


def counts(state: dict) -> dict[str, int]:
    return {name: len(hosts) for name, hosts in membership(state).items() if name in MANAGED}


def test_grows_every_pool_with_seven_requests_per_move(start_sim, tmp_path):
    fleet = small_fleet(on_demand=12)
    sim = start_sim(fleet)
    sim.reset_stats()
    result, status = reconcile(sim, tmp_path, pool_spec(spot=3, runpod=2, contract=1))
    assert result.returncode == 0, result.stderr
    state = sim.state()
    assert counts(state) == {"L40-n3": 6, "L40-n3-spot": 3, "L40-n3-runpod": 2, "Contract-L40-Customer1": 1}
    assert_fleet_rules(state, all_hosts(fleet))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Converged")
    assert {m["result"] for m in status["lastMoves"]} == {"Moved"}
    assert len(status["lastMoves"]) == 6
    by_route = sim.stats()["by_route"]
    # Per move: check, disable, verify (Placement), remove, add, confirm, enable.
    assert by_route["GET /compute/v2.1/os-hypervisors/{hypervisor_id}"] == 2 * 6  # check + confirm
    assert by_route[SERVICE_PUT] == 2 * 6  # disable with intent + enable
    assert by_route[ALLOCATIONS] == 6  # the verify on a disabled host
    # remove + add; plus the move lock: one claim (an action), one create, one delete per run.
    assert by_route[ACTION] == 2 * 6 + 1
    assert by_route[LOCK_CREATE] == 1 and by_route[LOCK_DELETE] == 1
    assert "gpupool-lock" not in membership(state)


def test_shrinks_back_to_on_demand_and_is_idempotent(start_sim, tmp_path):
    fleet = small_fleet(on_demand=6, spot=4, runpod=2)
    sim = start_sim(fleet)
    result, _ = reconcile(sim, tmp_path, pool_spec(spot=1, runpod=2))
    assert result.returncode == 0, result.stderr
    state = sim.state()
    assert counts(state)["L40-n3-spot"] == 1
    assert counts(state)["L40-n3"] == 9
    assert_fleet_rules(state, all_hosts(fleet))
    sim.reset_stats()
    again, status = reconcile(sim, tmp_path, pool_spec(spot=1, runpod=2))
    assert again.returncode == 0
    assert status["lastMoves"] == []
    assert ACTION not in sim.stats()["by_route"]  # converged: nothing to do, nothing done


def test_blocked_when_not_enough_movable_hosts_and_says_why(start_sim, tmp_path):
    fleet = small_fleet(
        on_demand=6,
        busy=("gpu-l40-001", "gpu-l40-002"),
        down=("gpu-l40-003",),
        foreign_disabled=("gpu-l40-004",),
    )
    sim = start_sim(fleet)
    spec = pool_spec(spot=4, policy={"excludeHosts": ["gpu-l40-005"], "allowPartial": True})
    result, status = reconcile(sim, tmp_path, spec)
    assert result.returncode == 2, result.stderr
    state = sim.state()
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-006"}  # the only movable host (partial allowed)
    assert_fleet_rules(state, all_hosts(fleet))
    (blocker,) = status["blockers"]
    assert blocker["reason"] == "NotEnoughMovableHosts"
    for words in ("spot", "4", "instances", "excluded"):
        assert words in blocker["message"], blocker["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


def test_dry_run_and_paused_move_nothing(start_sim, tmp_path):
    fleet = small_fleet(on_demand=6)
    sim = start_sim(fleet)
    before = membership(sim.state())
    dry, status = reconcile(sim, tmp_path, pool_spec(spot=2, dryRun=True))
    assert [m["to"] for m in status["plannedMoves"]] == ["L40-n3-spot", "L40-n3-spot"]
    paused, status_paused = reconcile(sim, tmp_path, pool_spec(spot=2, paused=True))
    assert membership(sim.state()) == before
    assert ACTION not in sim.stats()["by_route"]
    assert any(c["reason"] == "Paused" for c in status_paused["conditions"]), status_paused["conditions"]
    assert dry.returncode in (0, 2) and paused.returncode in (0, 2)


def test_plan_lists_moves_without_making_them(start_sim, tmp_path):
    fleet = small_fleet(on_demand=6)
    sim = start_sim(fleet)
    # Every move the spec needs is listed, not only the first maxConcurrentMoves.
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=2, runpod=1, policy={"maxConcurrentMoves": 1}))
    result = run_gpupool(sim, "plan", "-f", str(spec), "-o", "json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)[0]["status"]["plannedMoves"]
    assert sorted(m["to"] for m in planned) == ["L40-n3-runpod", "L40-n3-spot", "L40-n3-spot"]
    assert ACTION not in sim.stats()["by_route"]
    table = run_gpupool(sim, "plan", "-f", str(spec))
    assert "would move gpu-l40-001: L40-n3 -> L40-n3-spot" in table.stdout


def test_converges_through_server_errors_latency_and_token_expiry(start_sim, tmp_path):
    fleet = small_fleet(on_demand=10)
    sim = start_sim(fleet, latency_ms=5, token_lifetime_s=3)
    sim.faults(
        routes={
            ACTION: {"error_rate": 0.3, "error_status": 500},
            SERVICE_PUT: {"error_rate": 0.2, "error_status": 503},
            "GET /compute/v2.1/os-services": {"error_rate": 1.0, "error_status": 503, "count": 2},
        }
    )
    sim.expire_tokens()
    result, status = reconcile(sim, tmp_path, pool_spec(spot=3, runpod=2, policy={"maxConcurrentMoves": 2}))
    assert result.returncode == 0, result.stderr + result.stdout
    state = sim.state()
    assert counts(state)["L40-n3-spot"] == 3
    assert counts(state)["L40-n3-runpod"] == 2
    assert_fleet_rules(state, all_hosts(fleet))
    by_status = sim.stats()["by_status"]
    assert by_status.get("500", 0) + by_status.get("503", 0) >= 3  # the faults did happen


def test_a_host_that_gains_an_instance_mid_move_stays(start_sim, tmp_path):
    """The plan's snapshot is stale: a VM lands on gpu-l40-001 just as it is disabled."""
    fleet = small_fleet(on_demand=4)
    sim = start_sim(fleet)
    hold = sim.hold("PUT", "/compute/v2.1/os-services/{service_id}", body_contains='"disabled"')
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=1, policy={"maxConcurrentMoves": 1}))
    proc = start_reconcile(sim, spec)
    sim.wait_held(hold)
    sim.start_instance("gpu-l40-001", name="late-arrival")
    sim.release(hold)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    state = sim.state()
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-002"}
    assert "gpu-l40-001" in membership(state)["L40-n3"]
    host1 = next(h for h in state["hosts"] if h["name"] == "gpu-l40-001")
    assert (host1["status"], host1["disabled_reason"]) == ("enabled", None)
    assert_fleet_rules(state, all_hosts(fleet))
    moves = json.loads(out)[0]["status"]["lastMoves"]
    assert any(m["host"] == "gpu-l40-001" and m["result"] == "Aborted" for m in moves), moves


def test_someone_else_moving_a_host_mid_run(start_sim, tmp_path):
    """While our first move is under way, someone puts another host into spot by hand.

    Nova's answer to our add_host carries the aggregate's whole membership: the pass sees the
    hand-moved host there and plans no second move (no overshoot, no move back afterwards).
    """
    fleet = small_fleet(on_demand=8)
    sim = start_sim(fleet)
    hold = sim.hold("POST", "/compute/v2.1/os-aggregates/{aggregate_id}/action", body_contains="remove_host")
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=2, policy={"maxConcurrentMoves": 1}))
    proc = start_reconcile(sim, spec)
    sim.wait_held(hold)
    sim.move_host("gpu-l40-008", "L40-n3", "L40-n3-spot")
    sim.release(hold)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    state = sim.state()
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-001", "gpu-l40-008"}
    assert_fleet_rules(state, all_hosts(fleet))
    moves = [(m["host"], m["to"]) for m in json.loads(out)[0]["status"]["lastMoves"]]
    assert moves == [("gpu-l40-001", "L40-n3-spot")]


def test_a_folder_of_pools_for_two_gpu_types_converges_in_one_run(start_sim, tmp_path):
    fleet = {
        "aggregates": [
            {"name": "L40-n3", "hosts": ["gpu-l40-[001-006]"]},
            {"name": "L40-n3-spot", "hosts": []},
            {"name": "A100-n3", "hosts": ["gpu-a100-[001-004]"]},
            {"name": "A100-n3-runpod", "hosts": ["gpu-a100-[005-006]"]},
        ]
    }
    sim = start_sim(fleet)
    folder = tmp_path / "pools"
    folder.mkdir()
    a100 = pool_spec("a100")
    a100["spec"] = {"gpuType": "A100", "cloud": "sim", "pools": {"runpod": {"hosts": 0}}}
    write_spec(folder / "a100.yaml", a100)
    l40 = pool_spec("l40")
    l40["spec"]["pools"] = {"spot": {"hosts": 2}}
    write_spec(folder / "l40.yaml", l40)
    result = run_gpupool(sim, "reconcile", "-f", str(folder), "-o", "json")
    assert result.returncode == 0, result.stderr
    groups = membership(sim.state())
    assert groups["L40-n3-spot"] == {"gpu-l40-001", "gpu-l40-002"}
    assert groups["A100-n3-runpod"] == set()
    assert groups["A100-n3"] == {f"gpu-a100-{i:03d}" for i in range(1, 7)}
    assert [doc["name"] for doc in json.loads(result.stdout)] == ["a100", "l40"]


def test_two_pools_managing_one_aggregate_the_later_one_moves_nothing(start_sim, tmp_path):
    """Rule 3: two GpuHostPools never manage the same aggregate (they would undo each other)."""
    sim = start_sim(small_fleet(on_demand=6))
    owner = pool_spec("l40", spot=2)
    rival = pool_spec("l40-shadow")
    rival["spec"]["pools"] = {"runpod": {"hosts": 3}}  # also manages L40-n3, its on-demand default
    spec = write_spec(tmp_path / "pools.yaml", owner, rival)
    result = run_gpupool(sim, "reconcile", "-f", str(spec), "-o", "json")
    assert result.returncode == 2, result.stderr
    groups = membership(sim.state())
    assert len(groups["L40-n3-spot"]) == 2
    assert groups["L40-n3-runpod"] == set()
    owner_status, rival_status = (doc["status"] for doc in json.loads(result.stdout))
    assert next(c for c in owner_status["conditions"] if c["type"] == "Ready")["status"] == "True"
    ready = next(c for c in rival_status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert "'L40-n3'" in ready["message"] and "'l40'" in ready["message"]
    assert "l40-shadow: Conflict" in result.stderr
    plan = run_gpupool(sim, "plan", "-f", str(spec))
    assert plan.returncode == 2 and "blocked (Conflict)" in plan.stdout


def test_a_token_that_expires_mid_run_is_renewed_and_the_run_finishes(start_sim, tmp_path):
    fleet = small_fleet(on_demand=6)
    sim = start_sim(fleet)
    hold = sim.hold("POST", ACTION.split(" ", 1)[1], body_contains="add_host")
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=3, policy={"maxConcurrentMoves": 1}))
    proc = start_reconcile(sim, spec)
    sim.wait_held(hold)
    assert sim.expire_tokens() >= 1  # the token the run is using answers 401 from now on
    sim.release(hold)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(membership(sim.state())["L40-n3-spot"]) == 3
    assert_fleet_rules(sim.state(), all_hosts(fleet))
    stats = sim.stats()
    assert stats["by_status"].get("401", 0) >= 1
    assert stats["by_route"]["POST /identity/v3/auth/tokens"] == 2  # signed in once more, not per request
    assert "Traceback" not in err


def test_shrink_blocked_by_busy_pool_hosts_missing_aggregate_and_host_in_two_pools(start_sim, tmp_path):
    """Each problem is a blocker with a stable reason; everything else still converges."""
    fleet = small_fleet(on_demand=6, spot=3, busy=("gpu-l40-007", "gpu-l40-008"))
    fleet["aggregates"][0]["hosts"].append("gpu-l40-009")  # in L40-n3 and L40-n3-spot
    fleet["aggregates"] = [a for a in fleet["aggregates"] if a["name"] != "L40-n3-runpod"]
    sim = start_sim(fleet)
    spec = pool_spec(spot=0, runpod=1, contract=1, policy={"allowPartial": True})
    result, status = reconcile(sim, tmp_path, spec)
    assert result.returncode == 2, result.stderr
    reasons = {b["reason"]: b for b in status["blockers"]}
    assert set(reasons) == {"AggregateMissing", "HostInSeveralPools", "CannotShrink"}
    assert "L40-n3-runpod" in reasons["AggregateMissing"]["message"]
    assert "gpu-l40-009" in reasons["HostInSeveralPools"]["message"]
    assert "2 have instances" in reasons["CannotShrink"]["message"]
    groups = membership(sim.state())
    assert groups["L40-n3-spot"] == {"gpu-l40-007", "gpu-l40-008", "gpu-l40-009"}  # nothing could leave
    assert groups["Contract-L40-Customer1"] == {"gpu-l40-001"}  # the contract still got its host
    assert "gpu-l40-009" in groups["L40-n3"]  # the doubled host is reported, not guessed at
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


def test_hosts_with_instances_move_only_when_the_policy_allows_it(start_sim, tmp_path):
    fleet = small_fleet(on_demand=3, busy=("gpu-l40-001", "gpu-l40-002", "gpu-l40-003"))
    sim = start_sim(fleet)
    refused, _ = reconcile(sim, tmp_path, pool_spec(spot=1))
    assert refused.returncode == 2
    assert membership(sim.state())["L40-n3-spot"] == set()
    allowed, _ = reconcile(sim, tmp_path, pool_spec(spot=1, policy={"moveHostsWithInstances": True}))
    assert allowed.returncode == 0, allowed.stderr
    assert membership(sim.state())["L40-n3-spot"] == {"gpu-l40-001"}
    moved = next(h for h in sim.state()["hosts"] if h["name"] == "gpu-l40-001")
    assert len(moved["instances"]) == 1 and moved["status"] == "enabled"


def test_hosts_return_to_the_on_demand_aggregate_they_came_from(start_sim, tmp_path):
    """NVLink hosts lent to spot go back to L40-n3-NVLink, not to the first aggregate listed.

    Where a host came from is kept in Nova (a key on the pool aggregate), so a later run, or
    another tool reading `openstack aggregate show`, knows it too. It costs one request, and only
    for hosts that did not come from the first on-demand aggregate.
    """
    fleet = {
        "aggregates": [
            {"name": "L40-n3", "hosts": ["gpu-l40-001", "gpu-l40-002"]},
            {"name": "L40-n3-NVLink", "hosts": ["gpu-l40-003", "gpu-l40-004"]},
            {"name": "L40-n3-spot", "hosts": []},
        ]
    }
    sim = start_sim(fleet)
    on_demand = {"aggregates": ["L40-n3", "L40-n3-NVLink"]}
    grow = pool_spec(spot=4, onDemand=on_demand)
    grow["spec"]["pools"] = {"spot": {"hosts": 4}}
    result, _ = reconcile(sim, tmp_path, grow)
    assert result.returncode == 0, result.stderr
    spot = next(a for a in sim.state()["aggregates"] if a["name"] == "L40-n3-spot")
    assert len(spot["hosts"]) == 4
    assert {k: v for k, v in spot["metadata"].items() if k.startswith("gpupool.")} == {
        "gpupool.origin.gpu-l40-003": "L40-n3-NVLink",
        "gpupool.origin.gpu-l40-004": "L40-n3-NVLink",
    }
    # remove + add per move, 2 origin records, and the move lock's claim
    assert sim.stats()["by_route"][ACTION] == 4 * 2 + 2 + 1

    shrink = pool_spec(onDemand=on_demand)
    shrink["spec"]["pools"] = {"spot": {"hosts": 0}}
    result, _ = reconcile(sim, tmp_path, shrink)  # a new process: nothing remembered but Nova
    assert result.returncode == 0, result.stderr
    state = sim.state()
    assert membership(state) == {
        "L40-n3": {"gpu-l40-001", "gpu-l40-002"},
        "L40-n3-NVLink": {"gpu-l40-003", "gpu-l40-004"},
        "L40-n3-spot": set(),
    }
    spot = next(a for a in state["aggregates"] if a["name"] == "L40-n3-spot")
    assert not [k for k in spot["metadata"] if k.startswith("gpupool.")]  # records forgotten
    assert_fleet_rules(state, all_hosts(fleet), managed=("L40-n3", "L40-n3-NVLink", "L40-n3-spot"))
