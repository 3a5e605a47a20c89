"""The status a user (and kstatus, Argo CD, `kubectl wait`) reads: conditions, pools, counts, moves."""

from __future__ import annotations

from gpupool.api import GpuHostPoolStatus, parse_pool
from gpupool.model import Aggregate, Host, InFlight, Move, MoveResult, Outcome, PassReport, Snapshot, Step
from gpupool.planner import plan
from gpupool.status import build_status, verdict, verdict_status, wire

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


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def status_of(report: PassReport, **kwargs) -> dict:
    document = wire(build_status(report, **kwargs))
    GpuHostPoolStatus.model_validate(document)  # what the CRD's schema describes
    return document


def test_converged_is_ready_and_nothing_else():
    s = spec(spot=1)
    report = PassReport(plan=plan(s, cloud(on_demand=("gpu-2",), spot=("gpu-1",))), finished=True)
    status = status_of(report, now=T0, generation=3)
    assert conditions(status) == {
        "Ready": ("True", "Converged"),
        "Reconciling": ("False", "Converged"),
        "Stalled": ("False", "Converged"),
        "Paused": ("False", "Converged"),
    }
    assert status["observedGeneration"] == 3
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}
    assert status["summary"]["spot"] == "1/1"
    assert status["pools"]["spot"] == {
        "aggregate": "L40-n3-spot",
        "desired": 1,
        "current": 1,
        "moving": 0,
        "hosts": ["gpu-1"],
    }
    assert status["total"] == {"desired": 1, "current": 1, "moving": 0}


def test_moves_in_flight_are_reconciling_with_their_counts():
    s = spec(spot=2)
    move = Move("gpu-1", "L40-n3", "L40-n3-spot", "spot")
    report = PassReport(plan=plan(s, cloud()), in_flight=[InFlight(move, Step.REMOVE, T0)])
    status = status_of(report, now=T0 + 5)
    assert conditions(status)["Reconciling"] == ("True", "Moving")
    assert conditions(status)["Ready"] == ("False", "Moving")
    assert conditions(status)["Stalled"][0] == "False"
    assert status["pools"]["spot"]["moving"] == 1
    assert status["total"] == {"desired": 2, "current": 0, "moving": 1}
    assert status["inFlight"] == [
        {
            "host": "gpu-1",
            "from": "L40-n3",
            "to": "L40-n3-spot",
            "step": "RemoveFromSource",
            "since": status["inFlight"][0]["since"],
        }
    ]


def test_a_blocked_pool_is_stalled_with_the_planner_reason_and_message():
    s = spec(spot=3)
    report = PassReport(
        plan=plan(s, cloud(on_demand=("gpu-1", "gpu-2"), busy=("gpu-1", "gpu-2"))), finished=True
    )
    status = status_of(report, now=T0)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == status["blockers"][0]["reason"]
    assert "instances" in stalled["message"]
    assert conditions(status)["Reconciling"][0] == "False"  # kstatus: Failed, not InProgress
    assert conditions(status)["Ready"][0] == "False"


def test_last_transition_time_moves_only_when_the_status_flips():
    s = spec(spot=0)
    converged = PassReport(plan=plan(s, cloud()), finished=True)
    first = status_of(converged, now=T0)
    again = status_of(converged, now=T0 + 60, previous=first)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [
        c["lastTransitionTime"] for c in first["conditions"]
    ]
    busy = PassReport(plan=plan(spec(spot=1), cloud()), finished=False)
    flipped = status_of(busy, now=T0 + 120, previous=again)
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "2027-01-15T08:02:00Z"
    stalled = next(c for c in flipped["conditions"] if c["type"] == "Stalled")
    assert stalled["lastTransitionTime"] == first["conditions"][2]["lastTransitionTime"]  # still False


def test_last_moves_are_a_bounded_history():
    s = spec(spot=0)
    status = None
    for i in range(30):
        move = Move(f"gpu-{i}", "L40-n3", "L40-n3-spot", "spot")
        report = PassReport(
            plan=plan(s, cloud()), results=[MoveResult(move, Outcome.MOVED, "moved")], finished=True
        )
        status = status_of(report, now=T0 + i, previous=status)
    assert len(status["lastMoves"]) == 20
    assert status["lastMoves"][-1]["host"] == "gpu-29"


def test_paused_and_dry_run_are_paused_and_never_ready_while_moves_are_needed():
    s = spec(spot=2)
    paused = status_of(PassReport(plan=plan(s, cloud()), paused=True, finished=True), now=T0)
    assert conditions(paused)["Paused"] == ("True", "Paused")
    assert conditions(paused)["Ready"] == ("False", "Paused")
    assert conditions(paused)["Reconciling"][0] == "False"  # nothing will happen until it is unpaused
    dry = status_of(PassReport(plan=plan(s, cloud()), dry_run=True, finished=True), now=T0)
    assert conditions(dry)["Paused"] == ("True", "DryRun")
    assert [m["host"] for m in dry["plannedMoves"]] == ["gpu-1", "gpu-2"]


def test_a_dry_run_that_cannot_be_filled_is_stalled_not_ready():
    s = spec(spot=5)
    report = PassReport(plan=plan(s, cloud(busy=("gpu-1",))), dry_run=True, finished=True)
    status = status_of(report, now=T0)
    assert conditions(status)["Ready"] == ("False", "NotEnoughMovableHosts")
    assert conditions(status)["Stalled"] == ("True", "NotEnoughMovableHosts")
    assert conditions(status)["Paused"] == ("True", "DryRun")


def test_a_paused_converged_pool_is_ready():
    s = spec(spot=1)
    report = PassReport(
        plan=plan(s, cloud(on_demand=("gpu-2",), spot=("gpu-1",))), paused=True, finished=True
    )
    status = status_of(report, now=T0)
    assert conditions(status)["Ready"] == ("True", "Converged")
    assert conditions(status)["Paused"] == ("True", "Paused")


def test_reconciling_and_stalled_are_never_true_together():
    s = spec(spot=3)
    move = Move("gpu-3", "L40-n3", "L40-n3-spot", "spot")
    blocked = plan(s, cloud(on_demand=("gpu-1", "gpu-2", "gpu-3"), busy=("gpu-1", "gpu-2")))
    reports = [
        PassReport(plan=blocked, in_flight=[InFlight(move, Step.ADD, T0)]),
        PassReport(plan=blocked, finished=True),
        PassReport(plan=blocked, paused=True, finished=True),
        PassReport(plan=blocked, breaker="3 moves failed in a row", finished=True),
    ]
    for report in reports:
        found = conditions(status_of(report, now=T0))
        assert not (found["Reconciling"][0] == "True" and found["Stalled"][0] == "True"), found


def test_verdicts_without_a_pass_keep_pools_and_history_and_say_whether_a_person_is_needed():
    s = spec(spot=1)
    move = Move("gpu-1", "L40-n3", "L40-n3-spot", "spot")
    report = PassReport(
        plan=plan(s, cloud(on_demand=("gpu-2",), spot=("gpu-1",))),
        results=[MoveResult(move, Outcome.MOVED, "moved")],
        finished=True,
    )
    before = status_of(report, now=T0, generation=1)
    seen = wire(
        verdict_status(verdict("NewGeneration", "spec changed"), now=T0 + 1, previous=before, generation=2)
    )
    assert seen["observedGeneration"] == 2
    assert conditions(seen)["Reconciling"] == ("True", "NewGeneration")
    assert conditions(seen)["Ready"] == ("False", "NewGeneration")
    assert seen["pools"] == before["pools"] and seen["lastMoves"] == before["lastMoves"]
    invalid = wire(verdict_status(verdict("InvalidSpec", "spec.pools.spot.hosts: must be >= 0"), now=T0))
    assert conditions(invalid)["Stalled"] == ("True", "InvalidSpec")
    assert conditions(invalid)["Reconciling"][0] == "False"
    cloud_down = wire(verdict_status(verdict("CloudError", "Keystone did not answer"), now=T0))
    assert conditions(cloud_down)["Reconciling"] == ("True", "CloudError")  # retried on its own


def test_a_key_the_new_status_leaves_out_is_removed():
    report = PassReport(plan=plan(spec(spot=0), cloud()), finished=True)
    assert (
        wire(build_status(report, now=T0), previous={"returnedToOnDemand": True})["returnedToOnDemand"]
        is None
    )


def test_a_pass_still_running_is_never_ready_even_between_two_moves():
    """Seen in an e2e takeover: the plan, made when no slot was free, had no move; the two resumed
    moves had just ended; Ready said Converged while the pass still had a host to move."""
    s = spec(spot=3)
    between = PassReport(plan=plan(s, cloud(on_demand=("gpu-3",), spot=("gpu-1", "gpu-2")), all_moves=False))
    between = PassReport(plan=between.plan.__class__(moves=(), blockers=(), pools=between.plan.pools))
    assert conditions(status_of(between, now=T0))["Ready"] == ("False", "Moving")
    assert conditions(status_of(between, now=T0))["Reconciling"][0] == "True"
    between.finished = True
    assert conditions(status_of(between, now=T0))["Ready"][0] == "True"
