"""Where a half-done move stands, judged from the cloud alone, and the in-memory bookkeeping of a pass."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpupool.api import parse_pool
from gpupool.intent import MoveIntent, parse_reason
from gpupool.model import Aggregate, Host, Move, MoveResult, Outcome, Snapshot, Step
from gpupool.mover import resume_step
from gpupool.reconciler import apply_result, recover_in_flight

MOVE = Move(host="gpu-1", source="L40-n3", target="L40-n3-spot", pool="spot")
OUR_REASON = MoveIntent("gpu-1", "L40-n3", "L40-n3-spot", "0a0a0a").reason()


def spec(**pools):
    return parse_pool(
        {
            "apiVersion": "gpupool.io/v1alpha1",
            "kind": "GpuHostPool",
            "metadata": {"name": "l40"},
            "spec": {"gpuType": "L40", "pools": pools or {"spot": {"hosts": 1}}},
        }
    ).spec


def snapshot(source_hosts=(), target_hosts=(), status="disabled", reason=OUR_REASON, instances=0):
    return Snapshot(
        aggregates={
            "L40-n3": Aggregate(1, "L40-n3", frozenset(source_hosts)),
            "L40-n3-spot": Aggregate(2, "L40-n3-spot", frozenset(target_hosts)),
        },
        hosts={"gpu-1": Host("gpu-1", "svc-1", status=status, disabled_reason=reason, instances=instances)},
    )


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (["gpu-1"], [], Step.VERIFY_EMPTY),  # disabled, nothing else done yet
        ([], [], Step.ADD),  # removed, crash before add: it was verified empty before removal
        ([], ["gpu-1"], Step.CONFIRM),  # added, crash before enable: confirm, then enable
        (["gpu-1"], ["gpu-1"], Step.REMOVE),  # someone re-added it to the source meanwhile
    ],
)
def test_a_move_resumes_from_the_first_missing_effect(source, target, expected):
    assert resume_step(MOVE, snapshot(source, target).hosts["gpu-1"], snapshot(source, target)) is expected


def test_a_fresh_move_starts_by_checking_the_host():
    snap = snapshot(["gpu-1"], [], status="enabled", reason=None)
    assert resume_step(MOVE, snap.hosts["gpu-1"], snap) is Step.CHECK


def test_a_service_disabled_by_someone_else_is_not_our_move():
    snap = snapshot(["gpu-1"], [], reason="RMA ticket 4711")
    assert resume_step(MOVE, snap.hosts["gpu-1"], snap) is Step.CHECK
    assert recover_in_flight(spec(), snap) == []


def test_intents_of_managed_aggregates_are_recovered_as_moves_in_flight():
    assert recover_in_flight(spec(), snapshot([], [])) == [replace(MOVE, move_id="0a0a0a")]


def test_a_resumed_shrink_is_labelled_with_the_pool_it_leaves():
    """The status and the planner's counts see an interrupted spot -> on-demand move as spot's."""
    shrinking = MoveIntent("gpu-1", "L40-n3-spot", "L40-n3", "0a0a0a").reason()
    (move,) = recover_in_flight(spec(), snapshot([], ["gpu-1"], reason=shrinking))
    assert move == Move("gpu-1", "L40-n3-spot", "L40-n3", "spot", move_id="0a0a0a")


def test_intents_naming_aggregates_of_another_pool_spec_are_left_alone():
    foreign = MoveIntent("gpu-1", "A100-n3", "A100-n3-spot", "0a0a0a").reason()
    assert recover_in_flight(spec(), snapshot(["gpu-1"], [], reason=foreign)) == []


def test_a_move_with_one_side_still_managed_is_this_specs_to_deal_with():
    """The spot pool left the spec while its move was half-done: still this spec's (the pass rolls it back)."""
    (move,) = recover_in_flight(spec(runpod={"hosts": 0}), snapshot([], []))
    assert move == Move("gpu-1", "L40-n3", "L40-n3-spot", "onDemand", move_id="0a0a0a")
    into_old_pool = MoveIntent("gpu-1", "L40-n3-spot-old", "L40-n3-spot", "0a0a0a").reason()
    (move,) = recover_in_flight(spec(), snapshot([], [], reason=into_old_pool))
    assert (move.source, move.target, move.pool) == ("L40-n3-spot-old", "L40-n3-spot", "spot")


def test_intent_round_trip_and_length_limit():
    assert parse_reason("gpu-1", OUR_REASON) == MoveIntent("gpu-1", "L40-n3", "L40-n3-spot", "0a0a0a")
    spaced = MoveIntent("gpu-1", "Contract-A B", "L40-n3", "0a0a0a").reason()
    assert parse_reason("gpu-1", spaced) == MoveIntent("gpu-1", "Contract-A B", "L40-n3", "0a0a0a")
    assert parse_reason("gpu-1", None) is None and parse_reason("gpu-1", "maintenance") is None
    # Only exactly what gpupool writes, for this host, is gpupool's.
    assert parse_reason("gpu-2", OUR_REASON) is None
    assert parse_reason("gpu-1", OUR_REASON + " ") is None
    assert parse_reason("gpu-1", "gpupool: moving L40-n3 -> L40-n3-spot") is None
    assert len(MoveIntent("h", "x" * 109, "y" * 109, "0a0a0a").reason()) == 255
    with pytest.raises(ValueError, match="too long"):
        MoveIntent("h", "x" * 200, "y" * 200, "0a0a0a").reason()


def test_a_finished_move_is_applied_to_the_snapshot_without_asking_nova():
    before = snapshot(["gpu-1"], [], status="enabled", reason=None)
    after = apply_result(before, MoveResult(MOVE, Outcome.MOVED, "moved", location="target"))
    assert "gpu-1" not in after.aggregates["L40-n3"].hosts
    assert "gpu-1" in after.aggregates["L40-n3-spot"].hosts
    assert after.hosts["gpu-1"].is_enabled


def test_an_aborted_move_marks_the_host_busy_so_it_is_not_picked_again():
    before = snapshot(["gpu-1"], [], status="enabled", reason=None, instances=0)
    after = apply_result(before, MoveResult(MOVE, Outcome.ABORTED, "has instances now", location="source"))
    assert after.aggregates["L40-n3"].hosts == {"gpu-1"}
    assert after.hosts["gpu-1"].instances >= 1
