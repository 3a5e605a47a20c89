"""Guard rails: a floor of on-demand hosts, a limit on moves per change, no partial progress unless
the spec allows it. A typo (200 for 20 hosts) must not empty on-demand before anyone reads the status."""

from __future__ import annotations

from gpupool.api import GpuHostPoolSpec
from gpupool.model import NOT_ENOUGH_MOVABLE_HOSTS, ON_DEMAND_FLOOR, TOO_MANY_MOVES
from gpupool.planner import plan

from .fleet import cloud, names

OD, SPOT = "L40-n3", "L40-n3-spot"


def spec(spot: int, **policy) -> GpuHostPoolSpec:
    """A spec with the guard rails as users get them (only what `policy` says changes)."""
    return GpuHostPoolSpec.model_validate(
        {"gpuType": "L40", "pools": {"spot": {"hosts": spot}}, "policy": policy}
    )


def test_a_typo_that_cannot_be_served_moves_nothing_and_says_why():
    result = plan(spec(200, maxConcurrentMoves=10), cloud({OD: names("gpu-", 30), SPOT: []}), all_moves=True)
    assert result.moves == ()
    (blocker,) = result.blockers
    assert blocker.reason == NOT_ENOUGH_MOVABLE_HOSTS
    assert "spot wants 200 hosts and can reach 30" in blocker.message
    assert "Nothing moves until every count can be reached (policy.allowPartial: true" in blocker.message


def test_allow_partial_moves_what_can_be_moved():
    result = plan(
        spec(40, allowPartial=True, maxConcurrentMoves=50), cloud({OD: names("gpu-", 30), SPOT: []})
    )
    assert len(result.moves) == 30
    assert [b.reason for b in result.blockers] == [NOT_ENOUGH_MOVABLE_HOSTS]


def test_the_on_demand_floor_is_never_taken():
    snapshot = cloud({OD: names("gpu-", 10), SPOT: []})
    held = plan(spec(5, minOnDemandHosts=8, allowPartial=True, maxConcurrentMoves=50), snapshot)
    assert len(held.moves) == 2  # 10 hosts, 8 stay for on-demand customers
    (blocker,) = held.blockers
    assert blocker.reason == ON_DEMAND_FLOOR
    assert "policy.minOnDemandHosts keeps 8 hosts for on-demand" in blocker.message
    refused = plan(spec(5, minOnDemandHosts=8), snapshot)
    assert refused.moves == ()  # without allowPartial, a count the floor keeps out of reach moves nothing
    assert plan(spec(2, minOnDemandHosts=8), snapshot).moves  # within the room left: moves as usual


def test_a_change_needing_more_moves_than_the_limit_moves_nothing():
    snapshot = cloud({OD: names("gpu-", 80), SPOT: []})
    big = plan(spec(60, maxConcurrentMoves=10), snapshot)
    assert big.moves == ()
    (blocker,) = big.blockers
    assert blocker.reason == TOO_MANY_MOVES
    assert "this change needs 60 moves and policy.maxMovesPerChange is 50" in blocker.message
    allowed = plan(spec(60, maxConcurrentMoves=10, maxMovesPerChange=60), snapshot)
    assert len(allowed.moves) == 10 and allowed.blockers == ()
