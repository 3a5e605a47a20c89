"""A run dies between "remove from source" and "add to target": the host is in no aggregate, its
service disabled with gpupool's intent. The cloud or the spec then changes before the next run.

Whatever changed, the next run must not leave the host outside every aggregate or disabled:
- the spec no longer manages the target pool: the move is no longer needed, so it is rolled back
  (the host returns to the aggregate it left; the hosts already in the dropped pool stay there);
- the target aggregate was deleted: the host goes back to the aggregate it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import openstack
import openstack.config

from gpupool.intent import parse_reason
from novasim.testing import SimProcess
from tests.sim.reconcile_helpers import GPUPOOL, membership, pool_spec, run_gpupool, small_fleet, write_spec

ACTION = "/compute/v2.1/os-aggregates/{aggregate_id}/action"


def crash_before_add(sim: SimProcess, spec_file) -> None:
    """Start a run and SIGKILL it right after Nova removed the host from its source."""
    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    run = subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec_file)],
        env={**os.environ, **sim.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim.wait_held(hold, timeout=60)
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    sim.release_all()


def service(state: dict, host: str) -> tuple[str, str | None]:
    entry = next(h for h in state["hosts"] if h["name"] == host)
    return entry["status"], entry["disabled_reason"]


def aggregates_holding(state: dict, host: str) -> list[str]:
    return sorted(name for name, hosts in membership(state).items() if host in hosts)


def stranded(sim: SimProcess, tmp_path, spot: int) -> None:
    """gpu-l40-001 on its way from L40-n3 to L40-n3-spot (a spec asking for `spot` hosts), in no
    aggregate, disabled by gpupool."""
    spec = pool_spec(spot=spot, policy={"maxConcurrentMoves": 1})
    crash_before_add(sim, write_spec(tmp_path / "pools.yaml", spec))
    state = sim.state()
    assert aggregates_holding(state, "gpu-l40-001") == []
    status, reason = service(state, "gpu-l40-001")
    intent = parse_reason("gpu-l40-001", reason)
    assert status == "disabled" and intent is not None
    assert (intent.source, intent.target) == ("L40-n3", "L40-n3-spot")


def test_a_move_whose_pool_left_the_spec_is_rolled_back(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4, spot=1))
    stranded(sim, tmp_path, spot=2)

    # The operator of the cloud stops managing spot while the run is down.
    spec = pool_spec(runpod=0)
    del spec["spec"]["pools"]["spot"]
    rerun = run_gpupool(
        sim, "reconcile", "-f", str(write_spec(tmp_path / "no-spot.yaml", spec)), "-o", "json"
    )

    assert rerun.returncode == 0, rerun.stderr
    state = sim.state()
    assert aggregates_holding(state, "gpu-l40-001") == ["L40-n3"]
    assert service(state, "gpu-l40-001") == ("enabled", None)
    assert membership(state)["L40-n3-spot"] == {"gpu-l40-005"}  # the one already there stays
    moves = json.loads(rerun.stdout)[0]["status"]["lastMoves"]
    assert [(m["host"], m["from"], m["to"], m["result"]) for m in moves] == [
        ("gpu-l40-001", "L40-n3", "L40-n3-spot", "RolledBack")
    ]


def test_a_move_whose_target_aggregate_was_deleted_goes_back(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    stranded(sim, tmp_path, spot=1)

    # Someone deletes the (now empty) spot aggregate while the run is down.
    config = openstack.config.OpenStackConfig(config_files=[str(sim.clouds_yaml)], load_envvars=False)
    conn = openstack.connection.Connection(config=config.get_one(cloud=sim.cloud_name))
    conn.compute.delete_aggregate(conn.compute.find_aggregate("L40-n3-spot", ignore_missing=False))

    rerun = run_gpupool(
        sim, "reconcile", "-f", str(write_spec(tmp_path / "pools.yaml", pool_spec(spot=1))), "-o", "json"
    )

    state = sim.state()
    assert aggregates_holding(state, "gpu-l40-001") == ["L40-n3"]
    assert service(state, "gpu-l40-001") == ("enabled", None)
    assert "L40-n3-spot" not in membership(state)
    # The spot pool cannot be served without its aggregate: blocked (exit 2), and it says so.
    assert rerun.returncode == 2, rerun.stderr
    assert "L40-n3-spot" in rerun.stdout
    moves = json.loads(rerun.stdout)[0]["status"]["lastMoves"]
    assert [(m["host"], m["result"]) for m in moves] == [("gpu-l40-001", "RolledBack")]
    assert "back in L40-n3" in moves[0]["message"] and "L40-n3-spot no longer exists" in moves[0]["message"]
