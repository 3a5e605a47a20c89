"""`gpupool reconcile` against novasim while people, other processes and Nova itself work against it.

Each test is one of the cases the safety issue lists: it makes the adversary act at an exact point
of the protocol (novasim holds the answer to one of our requests while the test changes the cloud),
runs the real CLI, and checks what an operator of the cloud would check: where each host is, which
services are disabled and why, the exit code and the status printed. The engine-level variants, with
more interleavings, are in tests/unit/test_engine_adversity.py; randomized runs in test_random_adversity.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

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
HYPERVISORS = "/compute/v2.1/os-hypervisors/detail"


def all_hosts(fleet: dict) -> set[str]:
    return {h for agg in fleet["aggregates"] for h in agg["hosts"]}


def service(state: dict, host: str) -> tuple[str, str | None]:
    entry = next(h for h in state["hosts"] if h["name"] == host)
    return entry["status"], entry["disabled_reason"]


def held_by_gpupool(state: dict) -> list[str]:
    return sorted(
        h["name"] for h in state["hosts"] if (h.get("disabled_reason") or "").startswith("gpupool:")
    )


def where(state: dict, host: str) -> list[str]:
    return sorted(name for name, hosts in membership(state).items() if host in hosts)


def reconcile(sim, tmp_path, *docs, name="pools.yaml", timeout=180):
    spec = write_spec(tmp_path / name, *docs)
    result = run_gpupool(sim, "reconcile", "-f", str(spec), "-o", "json", timeout=timeout)
    return result, _statuses(result)


def _statuses(result) -> dict[str, dict]:
    if not result.stdout.strip().startswith(("{", "[")):
        return {}
    docs = json.loads(result.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    return {d["name"]: d["status"] for d in docs}


def background(sim, tmp_path, *docs, name="pools.yaml") -> subprocess.Popen:
    spec = write_spec(tmp_path / name, *docs)
    return subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec), "-o", "json"],
        env={**os.environ, **sim.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready(status: dict) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


# -- 1. Nova keeps failing ---------------------------------------------------------------------------


def test_nova_failing_for_minutes_costs_no_more_than_the_moves_under_way(start_sim, tmp_path):
    fleet = small_fleet(on_demand=10)
    sim = start_sim(fleet)
    sim.faults(routes={f"POST {ACTION}": {"error_rate": 1.0, "error_status": 500}})
    spec = pool_spec(spot=2, policy={"maxConcurrentMoves": 2})

    result, statuses = reconcile(sim, tmp_path, spec)

    assert result.returncode == 2, result.stderr
    status = statuses["l40"]
    assert ready(status) == ("False", "CircuitBreakerOpen")
    stuck = held_by_gpupool(sim.state())
    assert 1 <= len(stuck) <= 2  # only the moves under way, never the rest of on-demand
    assert sorted(m["host"] for m in status["inFlight"]) == stuck

    sim.clear_faults()
    again, statuses = reconcile(sim, tmp_path, spec)
    assert again.returncode == 0, again.stderr
    state = sim.state()
    assert len(membership(state)["L40-n3-spot"]) == 2
    assert_fleet_rules(state, all_hosts(fleet))
    moves = statuses["l40"]["lastMoves"]
    assert [m["result"] for m in moves] == ["Moved", "Moved"]  # 2 moves for 2 hosts, nothing moved back
    assert set(stuck) <= {m["host"] for m in moves}  # the half-done moves were finished, not redone


# -- 2, 3, 4. Someone else's hands on the host -------------------------------------------------------


def test_a_host_disabled_by_hand_after_the_snapshot_is_not_touched(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    # The last request of a snapshot is the hypervisor list. The run's first snapshot finds work,
    # it takes the move lock, then a fresh snapshot: the plan is made from that one.
    first = sim.hold("GET", HYPERVISORS)
    run = background(sim, tmp_path, pool_spec(spot=1, policy={"maxConcurrentMoves": 1}))
    sim.wait_held(first)
    fresh = sim.hold("GET", HYPERVISORS)
    sim.release(first)
    sim.wait_held(fresh)
    sim.set_service("gpu-l40-001", status="disabled", disabled_reason="RMA 42")
    sim.release_all()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    state = sim.state()
    assert service(state, "gpu-l40-001") == ("disabled", "RMA 42")
    assert where(state, "gpu-l40-001") == ["L40-n3"]
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-002"}
    results = [(m["host"], m["result"]) for m in json.loads(out)[0]["status"]["lastMoves"]]
    assert results == [("gpu-l40-001", "Skipped"), ("gpu-l40-002", "Moved")]


def test_a_reason_edited_mid_move_is_left_as_the_person_set_it(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    run = background(sim, tmp_path, pool_spec(spot=1, policy={"maxConcurrentMoves": 1}))
    sim.wait_held(hold)
    _, ours = service(sim.state(), "gpu-l40-001")
    sim.set_service("gpu-l40-001", status="disabled", disabled_reason=f"{ours} (do not touch, Bob)")
    sim.release_all()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 2, err
    state = sim.state()
    assert service(state, "gpu-l40-001") == ("disabled", f"{ours} (do not touch, Bob)")
    assert where(state, "gpu-l40-001") == ["L40-n3-spot"]
    status = json.loads(out)[0]["status"]
    assert ready(status) == ("False", "MoveInterrupted")
    assert "do not touch, Bob" in status["lastMoves"][-1]["message"]


def test_reasons_that_only_look_like_gpupools_are_someone_elses(start_sim, tmp_path):
    fleet = small_fleet(on_demand=4)
    fleet["hosts"] = [
        {
            "name": "gpu-l40-001",
            "status": "disabled",
            "disabled_reason": "gpupool: moving nowhere -> ask ops",
        },
        {
            "name": "gpu-l40-002",
            "status": "disabled",
            "disabled_reason": "gpupool: moving L40-n3 -> L40-n3-spot",
        },
    ]
    sim = start_sim(fleet)
    result, _ = reconcile(sim, tmp_path, pool_spec(spot=1))
    assert result.returncode == 0, result.stderr
    state = sim.state()
    assert service(state, "gpu-l40-001") == ("disabled", "gpupool: moving nowhere -> ask ops")
    assert service(state, "gpu-l40-002") == ("disabled", "gpupool: moving L40-n3 -> L40-n3-spot")
    assert where(state, "gpu-l40-001") == where(state, "gpu-l40-002") == ["L40-n3"]
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-003"}


def test_names_that_would_make_the_intent_ambiguous_are_refused_with_file_and_line(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    spec = pool_spec(spot=1)
    spec["spec"]["pools"]["spot"]["aggregate"] = "L40-n3 -> legacy"
    result, _ = reconcile(sim, tmp_path, spec)
    assert result.returncode == 1
    line = next(
        i for i, text in enumerate((tmp_path / "pools.yaml").read_text().splitlines(), 1) if "->" in text
    )
    assert f"{tmp_path / 'pools.yaml'}:{line}: spec.pools.spot.aggregate: 'L40-n3 -> legacy'" in result.stderr
    assert "Traceback" not in result.stderr


# -- 5. Two resources that share hosts ---------------------------------------------------------------


def test_specs_sharing_a_host_but_no_aggregate_never_move_it_and_both_say_so(start_sim, tmp_path):
    fleet = {
        "aggregates": [
            {"name": "L40-n3", "hosts": ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"]},
            {"name": "L40-n3-NVLink", "hosts": ["gpu-l40-003", "gpu-l40-004"]},
            {"name": "L40-n3-spot", "hosts": []},
            {"name": "L40-n3-NVLink-spot", "hosts": []},
        ]
    }
    sim = start_sim(fleet)
    generic = pool_spec(name="l40", spot=3)
    del generic["spec"]["pools"]["runpod"], generic["spec"]["pools"]["contracts"]
    nvlink = pool_spec(name="l40-nvlink", spot=2)
    nvlink["spec"]["onDemand"] = {"aggregates": ["L40-n3-NVLink"]}
    nvlink["spec"]["pools"] = {"spot": {"aggregate": "L40-n3-NVLink-spot", "hosts": 2}}

    result, statuses = reconcile(sim, tmp_path, generic, nvlink)

    assert result.returncode == 2, result.stderr
    assert where(sim.state(), "gpu-l40-003") == ["L40-n3", "L40-n3-NVLink"]
    for name in ("l40", "l40-nvlink"):
        shared = [b for b in statuses[name]["blockers"] if b["reason"] == "HostShared"]
        assert len(shared) == 1, statuses[name]["blockers"]
        assert "gpu-l40-003" in shared[0]["message"]
        assert "'l40'" in shared[0]["message"] and "'l40-nvlink'" in shared[0]["message"]


# -- 6. Converged only when it is --------------------------------------------------------------------


def test_a_failed_final_enable_is_not_converged_and_not_replaced(start_sim, tmp_path):
    fleet = small_fleet(on_demand=4)
    sim = start_sim(fleet)
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    run = background(sim, tmp_path, pool_spec(spot=1))
    sim.wait_held(hold)
    sim.faults(routes={f"PUT {SERVICE}": {"error_rate": 1.0, "error_status": 500}})
    sim.release_all()
    out, err = run.communicate(timeout=180)

    assert run.returncode == 2, err
    state = sim.state()
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-001"}  # no spare host moved in
    assert held_by_gpupool(state) == ["gpu-l40-001"]
    status = json.loads(out)[0]["status"]
    assert [m["host"] for m in status["inFlight"]] == ["gpu-l40-001"]
    assert ready(status)[0] == "False"

    sim.clear_faults()
    again, _ = reconcile(sim, tmp_path, pool_spec(spot=1))
    assert again.returncode == 0, again.stderr
    assert_fleet_rules(sim.state(), all_hosts(fleet))


def test_a_failed_add_whose_undo_fails_is_not_converged(start_sim, tmp_path):
    fleet = small_fleet(on_demand=4)
    sim = start_sim(fleet)
    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    run = background(sim, tmp_path, pool_spec(spot=1))
    sim.wait_held(hold)
    sim.faults(routes={f"POST {ACTION}": {"error_rate": 1.0, "error_status": 500}})
    sim.release_all()
    out, err = run.communicate(timeout=180)

    assert run.returncode == 2, err
    state = sim.state()
    assert held_by_gpupool(state) == ["gpu-l40-001"] and where(state, "gpu-l40-001") == []
    sim.clear_faults()
    again, _ = reconcile(sim, tmp_path, pool_spec(spot=1))
    assert again.returncode == 0, again.stderr
    assert_fleet_rules(sim.state(), all_hosts(fleet))


# -- 7. Paused and dry-run specs still finish what was half-done -------------------------------------


def _killed_between_remove_and_add(sim, tmp_path) -> None:
    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    run = background(sim, tmp_path, pool_spec(spot=1, policy={"maxConcurrentMoves": 1}), name="first.yaml")
    sim.wait_held(hold)
    run.kill()
    run.wait(10)
    sim.release_all()
    state = sim.state()
    assert where(state, "gpu-l40-001") == [] and held_by_gpupool(state) == ["gpu-l40-001"]


def test_paused_and_dry_run_finish_a_half_done_move_and_start_nothing(start_sim, tmp_path):
    for mode in ("paused", "dryRun"):
        fleet = small_fleet(on_demand=4)
        sim = start_sim(fleet)
        _killed_between_remove_and_add(sim, tmp_path)
        sim.reset_stats()
        result, statuses = reconcile(sim, tmp_path, pool_spec(spot=2, **{mode: True}))
        state = sim.state()
        assert held_by_gpupool(state) == [], mode
        assert membership(state)["L40-n3-spot"] == {"gpu-l40-001"}, mode  # finished, nothing new
        assert_fleet_rules(state, all_hosts(fleet))
        assert [m["result"] for m in statuses["l40"]["lastMoves"]] == ["Moved"], mode
        assert ready(statuses["l40"])[0] == "False", mode  # spot wants 2: not done, and it says so


# -- 8. Something lands on the host mid-move ---------------------------------------------------------


def test_an_instance_landing_before_the_enable_holds_the_host_disabled_in_its_target(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    run = background(sim, tmp_path, pool_spec(spot=1, policy={"maxConcurrentMoves": 1}))
    sim.wait_held(hold)
    sim.start_instance("gpu-l40-001", name="late-build")
    sim.release_all()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 2, err
    state = sim.state()
    assert where(state, "gpu-l40-001") == ["L40-n3-spot"]
    assert held_by_gpupool(state) == ["gpu-l40-001"]
    status = json.loads(out)[0]["status"]
    assert ready(status) == ("False", "HostHeld")
    assert (
        "late-build" in status["lastMoves"][-1]["message"] or "instance" in status["lastMoves"][-1]["message"]
    )


def test_a_host_moved_by_hand_while_our_remove_is_retried_stays_where_the_person_put_it(start_sim, tmp_path):
    """Nova's "not in the aggregate" after a retried remove is ambiguous: our first try may have
    removed the host (its answer lost) or someone moved it. Here someone did: it must not be added
    to the target as well (a host in two pools)."""
    sim = start_sim(small_fleet(on_demand=2, runpod=1))
    first = sim.hold("GET", HYPERVISORS)
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=1, runpod=1, policy={"maxConcurrentMoves": 1}))
    # One pass: the next would rightly move the extra runpod host back out.
    run = subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec), "-o", "json", "--max-passes", "1"],
        env={**os.environ, **sim.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sim.wait_held(first)
    fresh = sim.hold("GET", HYPERVISORS)
    sim.release(first)
    sim.wait_held(fresh)
    # After the plan's snapshot: a person moves the host into the runpod pool, and the first
    # aggregate action gpupool sends next (its remove) fails with a 500 that Nova never applied.
    sim.move_host("gpu-l40-001", "L40-n3", "L40-n3-runpod")
    sim.faults(routes={f"POST {ACTION}": {"error_rate": 1.0, "error_status": 500, "count": 1}})
    sim.release_all()
    out, err = run.communicate(timeout=120)

    state = sim.state()
    assert where(state, "gpu-l40-001") == ["L40-n3-runpod"], err
    assert service(state, "gpu-l40-001") == ("enabled", None)
    results = {m["host"]: m for m in json.loads(out)[0]["status"]["lastMoves"]}
    assert results["gpu-l40-001"]["result"] == "Skipped"
    assert "now in L40-n3-runpod" in results["gpu-l40-001"]["message"]
    assert_fleet_rules(state, {"gpu-l40-001", "gpu-l40-002", "gpu-l40-003"})


def _disable_held(sim, tmp_path):
    """Start a run for one spot host and hold the answer to its disable of gpu-l40-001."""
    hold = sim.hold("PUT", SERVICE, body_contains='"disabled"')
    run = background(sim, tmp_path, pool_spec(spot=1, policy={"maxConcurrentMoves": 1}))
    sim.wait_held(hold)
    return run


def test_a_build_scheduled_before_the_disable_and_claimed_late_aborts_the_move(start_sim, tmp_path):
    """The scheduler placed a server on the host just before the disable; its compute has not
    claimed it yet (no host on the instance), but Placement already holds its allocation."""
    sim = start_sim(small_fleet(on_demand=4))
    run = _disable_held(sim, tmp_path)
    build = sim.schedule_build("gpu-l40-001", name="late-train")
    sim.release_all()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    state = sim.state()
    assert where(state, "gpu-l40-001") == ["L40-n3"] and service(state, "gpu-l40-001") == ("enabled", None)
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-002"}
    results = [(m["host"], m["result"]) for m in json.loads(out)[0]["status"]["lastMoves"]]
    assert results == [("gpu-l40-001", "Aborted"), ("gpu-l40-002", "Moved")]
    assert build in json.loads(out)[0]["status"]["lastMoves"][0]["message"]
    sim.claim_build(build)  # it lands where it was scheduled: in on-demand, as its customer expects
    assert where(sim.state(), "gpu-l40-001") == ["L40-n3"]


def test_an_incoming_migration_aborts_the_move(start_sim, tmp_path):
    fleet = small_fleet(on_demand=4, busy=("gpu-l40-004",))
    sim = start_sim(fleet)
    instance = next(h for h in sim.state()["hosts"] if h["name"] == "gpu-l40-004")["instances"][0]["id"]
    run = _disable_held(sim, tmp_path)
    migration = sim.start_migration(instance, "gpu-l40-001")  # a live migration onto the host
    sim.release_all()
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    state = sim.state()
    assert where(state, "gpu-l40-001") == ["L40-n3"] and service(state, "gpu-l40-001") == ("enabled", None)
    results = [(m["host"], m["result"]) for m in json.loads(out)[0]["status"]["lastMoves"]]
    assert results[0] == ("gpu-l40-001", "Aborted")
    sim.finish_migration(migration)
    assert where(sim.state(), "gpu-l40-001") == ["L40-n3"]


# -- 9. Exclusions that protect nothing --------------------------------------------------------------


def test_exclusions_that_match_no_host_are_reported_with_a_did_you_mean(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    result, statuses = reconcile(
        sim, tmp_path, pool_spec(spot=1, policy={"excludeHosts": ["gpu-l40-1", "GPU-L40-002"]})
    )
    assert result.returncode == 2
    (blocker,) = [b for b in statuses["l40"]["blockers"] if b["reason"] == "ExcludedHostUnknown"]
    assert "'gpu-l40-1'" in blocker["message"] and "did you mean 'gpu-l40-001'" in blocker["message"]
    assert "did you mean 'gpu-l40-002'" in blocker["message"]
    assert ACTION not in str(sim.stats()["by_route"])


# -- 10, 11. No traceback, no futile calls -----------------------------------------------------------


def test_aggregate_names_too_long_together_are_refused_naming_them(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    spec = pool_spec(spot=1)
    spec["spec"]["pools"]["contracts"] = [{"aggregate": "Contract-" + "x" * 230, "hosts": 1}]
    result, _ = reconcile(sim, tmp_path, spec)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "spec.onDemand.aggregates[0] and spec.pools.contracts[0].aggregate: " in result.stderr
    assert "shorten one of the names" in result.stderr


def test_an_availability_zone_conflict_is_reported_without_trying_a_host(start_sim, tmp_path):
    fleet = {
        "aggregates": [
            {"name": "L40-n3", "hosts": ["gpu-l40-[001-004]"]},
            {"name": "L40-n3-spot", "metadata": {"availability_zone": "nova"}, "hosts": []},
            {"name": "rack-b", "metadata": {"availability_zone": "az-b"}, "hosts": ["gpu-l40-[001-004]"]},
        ]
    }
    sim = start_sim(fleet)
    sim.reset_stats()
    result, statuses = reconcile(sim, tmp_path, pool_spec(spot=2))
    assert result.returncode == 2
    (blocker,) = [b for b in statuses["l40"]["blockers"] if b["pool"] == "spot"]
    assert blocker["reason"] == "AvailabilityZoneConflict"
    assert (
        "'az-b'" in blocker["message"] and "rack-b" in blocker["message"] and "'nova'" in blocker["message"]
    )
    assert f"POST {ACTION}" not in sim.stats()["by_route"]
    assert f"PUT {SERVICE}" not in sim.stats()["by_route"]


# -- 12. Bad files -----------------------------------------------------------------------------------


def test_bad_files_end_in_one_line_with_file_and_line(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    cases = {
        "empty.yaml": ("", ":1: no GpuHostPool in this file"),
        "dashes.yaml": ("---\n", ":1: no GpuHostPool in this file"),
        "huge.yaml": (
            "apiVersion: gpupool.io/v1alpha1\nkind: GpuHostPool\nmetadata: {name: l40}\n"
            "spec:\n  gpuType: L40\n  pools:\n    spot: {hosts: 1000000000000000000000000000000}\n",
            ":7: spec.pools.spot.hosts: must be <= 100000",
        ),
        "broken.yaml": (
            "apiVersion: gpupool.io/v1alpha1\nkind: [GpuHostPool\nspec: {}\n",
            ":3: not valid YAML",
        ),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = run_gpupool(sim, "reconcile", "-f", str(path))
        assert result.returncode == 1, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"gpupool reconcile: error: {path}{expected}"), lines
    assert f"POST {ACTION}" not in sim.stats()["by_route"]


# -- 13. Two processes on one cloud ------------------------------------------------------------------


def test_two_runs_on_one_cloud_never_claim_the_same_move(start_sim, tmp_path):
    fleet = small_fleet(on_demand=8)
    sim = start_sim(fleet, latency_ms=30)
    spec = pool_spec(spot=4, policy={"maxConcurrentMoves": 2})
    first = background(sim, tmp_path, spec, name="a.yaml")
    time.sleep(0.3)
    second = background(sim, tmp_path, spec, name="b.yaml")
    out_a, err_a = first.communicate(timeout=180)
    out_b, err_b = second.communicate(timeout=180)

    assert first.returncode == 0 and second.returncode == 0, (err_a, err_b)
    moved_a = [m["host"] for m in json.loads(out_a)[0]["status"]["lastMoves"] if m["result"] == "Moved"]
    moved_b = [m["host"] for m in json.loads(out_b)[0]["status"]["lastMoves"] if m["result"] == "Moved"]
    assert sorted(moved_a + moved_b) == sorted(set(moved_a + moved_b))  # no move reported twice
    assert len(moved_a) + len(moved_b) == 4
    assert "another gpupool process is moving hosts" in err_a + err_b
    state = sim.state()
    assert len(membership(state)["L40-n3-spot"]) == 4
    assert "gpupool-lock" not in membership(state)  # released
    assert_fleet_rules(state, all_hosts(fleet))


def test_a_killed_run_leaves_a_lock_the_next_run_takes_over_at_once(start_sim, tmp_path):
    fleet = small_fleet(on_demand=4)
    sim = start_sim(fleet)
    _killed_between_remove_and_add(sim, tmp_path)
    assert "gpupool-lock" in membership(sim.state())
    started = time.monotonic()
    result, _ = reconcile(sim, tmp_path, pool_spec(spot=1))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30  # the holder's process is gone: no waiting for its claim
    assert "gpupool-lock" not in membership(sim.state())
    assert_fleet_rules(sim.state(), all_hosts(fleet))


# -- The kill switch (issue 9) -------------------------------------------------------------------


def test_the_kill_switch_stops_the_cli_before_and_during_a_run(start_sim, tmp_path):
    fleet = small_fleet(on_demand=6)
    sim = start_sim(fleet)
    stop = run_gpupool(sim, "stop", "--os-cloud", "sim", "--reason", "INC-42: Nova upgrade")
    assert stop.returncode == 0, stop.stderr
    assert f"from {sim.clouds_yaml}" in stop.stderr  # which clouds.yaml it acted on
    assert "gpupool-stop" in membership(sim.state())

    # plan says the switch is on (and exits 2: reconcile would move nothing), still showing the plan.
    planned = run_gpupool(sim, "plan", "-f", str(write_spec(tmp_path / "plan.yaml", pool_spec(spot=3))))
    assert planned.returncode == 2, planned.stderr
    assert "the kill switch is on" in planned.stderr and "INC-42: Nova upgrade" in planned.stderr
    assert planned.stdout.count("would move") == 3

    result, statuses = reconcile(sim, tmp_path, pool_spec(spot=3))
    assert result.returncode == 2
    assert "INC-42: Nova upgrade" in result.stderr
    assert ready(statuses["l40"]) == ("False", "Stopped")
    assert membership(sim.state())["L40-n3-spot"] == set()

    assert run_gpupool(sim, "resume", "--os-cloud", "sim").returncode == 0
    assert "gpupool-stop" not in membership(sim.state())

    # Turned on mid-run: the move under way finishes, no other starts, nothing is left half-done.
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    run = background(sim, tmp_path, pool_spec(spot=3, policy={"maxConcurrentMoves": 1}))
    sim.wait_held(hold)
    assert run_gpupool(sim, "stop", "--os-cloud", "sim", "--reason", "INC-43").returncode == 0
    time.sleep(2.2)  # the pass reads the switch again at most every 2 s while it has moves to start
    sim.release_all()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    state = sim.state()
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-001"}
    assert held_by_gpupool(state) == []
    assert_fleet_rules(state, all_hosts(fleet))
    assert ready(json.loads(out)[0]["status"]) == ("False", "Stopped")
