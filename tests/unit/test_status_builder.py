"""The status a user reads in `kubectl get/describe`: conditions, pools, moves, printer strings."""

from __future__ import annotations

from gpupool.api import GpuHostPoolStatus, parse_pool
from gpupool.model import Aggregate, Host, InFlight, Move, MoveResult, Outcome, PassReport, Snapshot, Step
from gpupool.planner import plan
from gpupool.status import build_status

T0 = 1_800_000_000.0


def spec(spot=2, **extra):
    return parse_pool(
        {
            "apiVersion": "gpupool.io/v1alpha1",
            "kind": "GpuHostPool",
            "metadata": {"name": "l40"},
            "spec": {"gpuType": "L40", "pools": {"spot": {"hosts": spot}}, **extra},
        }
    ).spec


def cloud(on_demand=("gpu-1", "gpu-2", "gpu-3"), spot=(), busy=()):
    hosts = {h: Host(h, f"svc-{h}", instances=1 if h in busy else 0) for h in (*on_demand, *spot)}
    return Snapshot(
        aggregates={
            "L40-n3": Aggregate(1, "L40-n3", frozenset(on_demand)),
            "L40-n3-spot": Aggregate(2, "L40-n3-spot", frozenset(spot)),
        },
        hosts=hosts,
    )


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_converged_status_is_ready_and_valid_for_the_crd_model():
    s = spec(spot=1)
    report = PassReport(plan=plan(s, cloud(on_demand=("gpu-2",), spot=("gpu-1",))), finished=True)
    status = build_status(report, now=T0, generation=3)
    GpuHostPoolStatus.model_validate(status)
    assert conditions(status) == {
        "Ready": ("True", "Converged"),
        "Progressing": ("False", "Converged"),
        "Degraded": ("False", "AsPlanned"),
    }
    assert status["observedGeneration"] == 3
    assert status["summary"]["spot"] == "1/1"
    assert status["pools"]["spot"]["hosts"] == ["gpu-1"]


def test_moves_in_flight_show_with_their_step_and_progressing_is_true():
    s = spec(spot=2)
    move = Move("gpu-1", "L40-n3", "L40-n3-spot", "spot")
    report = PassReport(plan=plan(s, cloud()), in_flight=[InFlight(move, Step.REMOVE, T0)])
    status = build_status(report, now=T0 + 5)
    GpuHostPoolStatus.model_validate(status)
    assert conditions(status)["Progressing"] == ("True", "MovingHosts")
    assert conditions(status)["Ready"][0] == "False"
    assert status["inFlight"] == [
        {
            "host": "gpu-1",
            "from": "L40-n3",
            "to": "L40-n3-spot",
            "step": "RemoveFromSource",
            "since": status["inFlight"][0]["since"],
        }
    ]


def test_a_blocked_pool_is_degraded_with_the_planner_reason_and_message():
    s = spec(spot=3)
    report = PassReport(
        plan=plan(s, cloud(on_demand=("gpu-1", "gpu-2"), busy=("gpu-1", "gpu-2"))), finished=True
    )
    status = build_status(report, now=T0)
    ready, degraded = conditions(status)["Ready"], conditions(status)["Degraded"]
    assert ready[0] == "False" and degraded[0] == "True"
    assert degraded[1] == status["blockers"][0]["reason"]
    assert "instances" in status["blockers"][0]["message"]


def test_last_transition_time_moves_only_when_the_status_flips():
    s = spec(spot=0)
    converged = PassReport(plan=plan(s, cloud()), finished=True)
    first = build_status(converged, now=T0)
    again = build_status(converged, now=T0 + 60, previous=first)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [
        c["lastTransitionTime"] for c in first["conditions"]
    ]
    busy = PassReport(plan=plan(spec(spot=1), cloud()), finished=False)
    flipped = build_status(busy, now=T0 + 120, previous=again)
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert (
        ready["status"] == "False"
        and ready["lastTransitionTime"] != first["conditions"][0]["lastTransitionTime"]
    )


def test_last_moves_are_a_bounded_history():
    s = spec(spot=0)
    status = None
    for i in range(30):
        move = Move(f"gpu-{i}", "L40-n3", "L40-n3-spot", "spot")
        report = PassReport(
            plan=plan(s, cloud()), results=[MoveResult(move, Outcome.MOVED, "moved")], finished=True
        )
        status = build_status(report, now=T0 + i, previous=status)
    assert len(status["lastMoves"]) == 20
    assert status["lastMoves"][-1]["host"] == "gpu-29"


def test_paused_and_dry_run_say_so():
    s = spec(spot=2)
    paused = build_status(PassReport(plan=plan(s, cloud()), paused=True, finished=True), now=T0)
    assert conditions(paused)["Progressing"] == ("False", "Paused")
    dry = build_status(PassReport(plan=plan(s, cloud()), dry_run=True, finished=True), now=T0)
    assert conditions(dry)["Progressing"] == ("False", "DryRun")
    assert [m["host"] for m in dry["plannedMoves"]] == ["gpu-1", "gpu-2"]
