from dataclasses import replace

from gpupool.model import (
    AGGREGATE_MISSING,
    CANNOT_SHRINK,
    HOST_IN_SEVERAL_POOLS,
    NOT_ENOUGH_MOVABLE_HOSTS,
    Blocker,
    Move,
    OnDemandState,
    OriginRecord,
    PoolState,
)
from gpupool.planner import natural_key, plan

from .fleet import apply, cloud, host, names, ours, spec

OD, SPOT, RUNPOD = "L40-n3", "L40-n3-spot", "L40-n3-runpod"


def grow(h, pool="spot", source=OD, target=None):
    return Move(
        h, source, target or {"spot": SPOT, "runpod": RUNPOD}.get(pool, pool.removeprefix("contract:")), pool
    )


def test_natural_order():
    assert sorted(["gpu-10", "gpu-2", "gpu-1", "gpu-b", "gpu-a"], key=natural_key) == [
        "gpu-1",
        "gpu-2",
        "gpu-10",
        "gpu-a",
        "gpu-b",
    ]


# ------------------------------------------------------------------------------------ growing


def test_grows_a_pool_from_on_demand_in_natural_host_order():
    result = plan(
        spec(pools={"spot": {"hosts": 2}}, policy={"maxConcurrentMoves": 5}),
        cloud({OD: ["gpu-10", "gpu-2", "gpu-3"], SPOT: []}),
    )
    assert result.moves == (grow("gpu-2"), grow("gpu-3"))
    assert result.blockers == ()


def test_nothing_to_do_when_counts_match():
    result = plan(spec(pools={"spot": {"hosts": 1}}), cloud({OD: ["a"], SPOT: ["b"]}))
    assert result.moves == () and result.blockers == ()


def test_concurrency_bounds_new_moves():
    result = plan(
        spec(pools={"spot": {"hosts": 5}}, policy={"maxConcurrentMoves": 2}),
        cloud({OD: names("h", 6), SPOT: []}),
    )
    assert result.moves == (grow("h1"), grow("h2"))
    assert result.blockers == ()  # held back by concurrency only, not blocked


def test_first_listed_on_demand_aggregate_is_drained_first():
    nvlink = "L40-n3-NVLink"
    result = plan(
        spec(
            onDemand={"aggregates": [nvlink, OD]},
            pools={"spot": {"hosts": 3}},
            policy={"maxConcurrentMoves": 5},
        ),
        cloud({OD: ["a1", "a2"], nvlink: ["n1", "n2"], SPOT: []}),
    )
    # a1 is the one that did not come from the first listed: its spot aggregate remembers where from.
    remember_a1 = OriginRecord(SPOT, "gpupool.origin.a1", OD)
    assert result.moves == (
        grow("n1", source=nvlink),
        grow("n2", source=nvlink),
        replace(grow("a1"), origin=remember_a1),
    )


# ---------------------------------------------------------------------- remembering the origin


def with_metadata(snapshot, aggregate, metadata):
    aggregates = dict(snapshot.aggregates)
    aggregates[aggregate] = replace(aggregates[aggregate], metadata=metadata)
    return replace(snapshot, aggregates=aggregates)


def test_a_host_from_the_second_on_demand_aggregate_is_remembered_in_its_pool_aggregate():
    nvlink = "L40-n3-NVLink"
    result = plan(
        spec(onDemand={"aggregates": [OD, nvlink]}, pools={"spot": {"hosts": 2}}),
        cloud({OD: ["a1"], nvlink: ["n1"], SPOT: []}),
    )
    assert result.moves == (
        grow("a1"),  # from the first listed: the default, nothing to record (no extra request)
        replace(grow("n1", source=nvlink), origin=OriginRecord(SPOT, "gpupool.origin.n1", nvlink)),
    )


def test_a_recorded_origin_is_where_the_host_returns_and_the_record_is_forgotten():
    nvlink = "L40-n3-NVLink"
    snapshot = with_metadata(
        cloud({OD: [], nvlink: [], SPOT: ["n1", "s2"]}),
        SPOT,
        {"gpupool.origin.n1": nvlink, "gpupool.origin.gone-host": nvlink},
    )
    result = plan(spec(onDemand={"aggregates": [OD, nvlink]}, pools={"spot": {"hosts": 0}}), snapshot)
    assert result.moves == (
        Move("n1", SPOT, nvlink, "spot", origin=OriginRecord(SPOT, "gpupool.origin.n1", None)),
        Move("s2", SPOT, OD, "spot"),
    )


def test_a_stale_record_is_cleared_when_the_host_joins_from_the_first_on_demand_aggregate():
    nvlink = "L40-n3-NVLink"
    snapshot = with_metadata(cloud({OD: ["a1"], nvlink: [], SPOT: []}), SPOT, {"gpupool.origin.a1": nvlink})
    result = plan(spec(onDemand={"aggregates": [OD, nvlink]}, pools={"spot": {"hosts": 1}}), snapshot)
    assert result.moves == (replace(grow("a1"), origin=OriginRecord(SPOT, "gpupool.origin.a1", None)),)


# -------------------------------------------------------------------------------- who may move


def test_only_empty_up_enabled_unexcluded_hosts_leave_on_demand():
    hosts = [
        host("busy", 2),
        host("down", state="down"),
        host("theirs", status="disabled", reason="hardware check"),
        host("unknown", None),
        host("free"),
        ours("resumed", OD, SPOT),  # disabled by a gpupool intent: a move under way, never planned again
    ]
    snapshot = cloud(
        {OD: ["busy", "down", "theirs", "unknown", "free", "resumed", "excluded", "ghost"], SPOT: []}, hosts
    )
    del snapshot.hosts["ghost"]  # in the aggregate, no compute service
    result = plan(
        spec(pools={"spot": {"hosts": 8}}, policy={"maxConcurrentMoves": 50, "excludeHosts": ["excluded"]}),
        snapshot,
    )
    assert [m.host for m in result.moves] == ["free"]
    assert result.pools.on_demand == OnDemandState((OD,), hosts=8, movable=1)
    (blocker,) = result.blockers
    assert blocker == Blocker(
        "spot",
        NOT_ENOUGH_MOVABLE_HOSTS,
        "spot wants 8 hosts and can reach 1: no movable host left in L40-n3: 1 is excluded (excluded), 1 has "
        "no compute service (ghost), 1 is down (down), 1 is disabled by someone else (theirs), 1 has an "
        "unknown instance count (unknown), 1 has instances (busy), 1 is moving (resumed)",
    )


def test_blocker_message_counts_the_reasons_most_common_first():
    hosts = [host(f"b{i}", 1) for i in range(3)]
    result = plan(
        spec(pools={"spot": {"hosts": 4}}, policy={"maxConcurrentMoves": 5, "excludeHosts": ["x"]}),
        cloud({OD: ["b0", "b1", "b2", "x", "free"], SPOT: []}, hosts),
    )
    assert result.blockers == (
        Blocker(
            "spot",
            NOT_ENOUGH_MOVABLE_HOSTS,
            "spot wants 4 hosts and can reach 1: no movable host left in L40-n3: 3 have instances (b0, b1, b2), 1 is excluded (x)",
        ),
    )


def test_hosts_with_instances_move_only_when_policy_allows_and_empty_ones_go_first():
    hosts = [host("a", 3), host("b", 1), host("c", 0)]
    snapshot = cloud({OD: ["a", "b", "c"], SPOT: []}, hosts)
    assert plan(spec(pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 5}), snapshot).moves == (
        grow("c"),
    )
    allowed = spec(
        pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 5, "moveHostsWithInstances": True}
    )
    assert plan(allowed, snapshot).moves == (grow("c"), grow("b"), grow("a"))


def test_host_in_two_managed_aggregates_is_reported_and_never_moved():
    result = plan(
        spec(pools={"spot": {"hosts": 0}, "runpod": {"hosts": 2}}, policy={"maxConcurrentMoves": 5}),
        cloud({OD: ["both", "free"], SPOT: ["both"], RUNPOD: []}),
    )
    assert result.moves == (grow("free", "runpod"),)
    assert result.blockers[0] == Blocker(
        "onDemand",
        HOST_IN_SEVERAL_POOLS,
        "host both is in L40-n3, L40-n3-spot: remove it from all but one; it is not moved until then",
    )
    assert {b.reason for b in result.blockers[1:]} == {NOT_ENOUGH_MOVABLE_HOSTS, CANNOT_SHRINK}


def test_foreign_aggregates_do_not_matter():
    result = plan(
        spec(pools={"spot": {"hosts": 1}}), cloud({OD: ["a"], SPOT: [], "az-1": ["a"], "L40-n3-other": ["a"]})
    )
    assert result.moves == (grow("a"),)


# ---------------------------------------------------------------------------------- shrinking


def test_shrinks_back_to_the_remembered_origin():
    nvlink = "L40-n3-NVLink"
    result = plan(
        spec(
            onDemand={"aggregates": [OD, nvlink]},
            pools={"spot": {"hosts": 0}},
            policy={"maxConcurrentMoves": 5},
        ),
        cloud({OD: [], nvlink: [], SPOT: ["s1", "s2", "s3"]}),
        origins={"s1": nvlink, "s2": "Gone-aggregate", "s3": OD},
    )
    assert result.moves == (
        Move("s1", SPOT, nvlink, "spot"),
        Move("s2", SPOT, OD, "spot"),
        Move("s3", SPOT, OD, "spot"),
    )


def test_origin_that_no_longer_exists_falls_back_to_the_first_existing_on_demand():
    nvlink = "L40-n3-NVLink"
    result = plan(
        spec(onDemand={"aggregates": [OD, nvlink]}, pools={"spot": {"hosts": 0}}),
        cloud({nvlink: [], SPOT: ["s1"]}),
        origins={"s1": OD},
    )
    assert result.moves == (Move("s1", SPOT, nvlink, "spot"),)
    assert result.blockers[0].reason == AGGREGATE_MISSING


def test_shrinking_never_moves_busy_hosts_and_says_so():
    hosts = [host("s1", 1), host("s2", 4), host("s3")]
    result = plan(
        spec(pools={"spot": {"hosts": 1}}, policy={"maxConcurrentMoves": 5}),
        cloud({OD: [], SPOT: ["s1", "s2", "s3"]}, hosts),
    )
    assert result.moves == (Move("s3", SPOT, OD, "spot"),)
    assert result.blockers == (
        Blocker(
            "spot",
            CANNOT_SHRINK,
            "spot wants 1 hosts and would still hold 2: hosts that cannot leave L40-n3-spot: 2 have instances (s1, s2)",
        ),
    )


def test_shrinking_with_instances_allowed_prefers_the_emptiest():
    hosts = [host("s1", 5), host("s2", 1), host("s3")]
    result = plan(
        spec(pools={"spot": {"hosts": 1}}, policy={"maxConcurrentMoves": 5, "moveHostsWithInstances": True}),
        cloud({OD: [], SPOT: ["s1", "s2", "s3"]}, hosts),
    )
    assert [m.host for m in result.moves] == ["s3", "s2"]


def test_pool_to_pool_goes_through_on_demand():
    snapshot = cloud({OD: [], SPOT: ["s1", "s2"], RUNPOD: []})
    wanted = spec(pools={"spot": {"hosts": 0}, "runpod": {"hosts": 2}}, policy={"maxConcurrentMoves": 5})
    first = plan(wanted, snapshot)
    assert first.moves == (Move("s1", SPOT, OD, "spot"), Move("s2", SPOT, OD, "spot"))
    assert first.blockers == ()  # runpod waits for the returning hosts; it is not blocked
    second = plan(wanted, apply(snapshot, first.moves))
    assert second.moves == (grow("s1", "runpod"), grow("s2", "runpod"))
    assert plan(wanted, apply(apply(snapshot, first.moves), second.moves)).moves == ()


# ------------------------------------------------------------------------------------ in flight


def test_moves_in_flight_count_toward_their_target_and_use_up_concurrency():
    snapshot = cloud({OD: ["m1", "a", "b", "c"], SPOT: []}, [ours("m1", OD, SPOT)])
    in_flight = [grow("m1")]
    wanted = spec(pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 2})
    assert plan(wanted, snapshot, in_flight).moves == (grow("a"),)
    assert plan(
        wanted.model_copy(update={"policy": wanted.policy.model_copy(update={"max_concurrent_moves": 5})}),
        snapshot,
        in_flight,
    ).moves == (
        grow("a"),
        grow("b"),
    )


def test_no_new_moves_when_in_flight_fills_the_budget():
    snapshot = cloud({OD: ["a", "b"], SPOT: ["m1", "m2", "m3"]})
    in_flight = [Move(h, OD, SPOT, "spot") for h in ["m1", "m2", "m3"]]
    assert (
        plan(spec(pools={"spot": {"hosts": 6}}, policy={"maxConcurrentMoves": 2}), snapshot, in_flight).moves
        == ()
    )


def test_a_host_in_flight_is_never_planned_even_if_its_move_overshoots():
    # The snapshot shows the host in both aggregates (mid-move); it is not "in several pools".
    snapshot = cloud({OD: ["m1"], SPOT: ["m1"]}, [ours("m1", OD, SPOT)])
    result = plan(spec(pools={"spot": {"hosts": 0}}), snapshot, [grow("m1")])
    assert result.moves == ()
    assert all(b.reason != HOST_IN_SEVERAL_POOLS for b in result.blockers)


def test_hosts_returning_in_flight_count_as_future_supply():
    snapshot = cloud({OD: [], SPOT: ["s1"], RUNPOD: []}, [ours("s1", SPOT, OD)])
    result = plan(
        spec(pools={"spot": {"hosts": 0}, "runpod": {"hosts": 1}}), snapshot, [Move("s1", SPOT, OD, "spot")]
    )
    assert result.moves == () and result.blockers == ()


# ------------------------------------------------------------------------------ missing aggregates


def test_missing_pool_aggregate_is_reported_and_left_alone():
    result = plan(
        spec(pools={"spot": {"hosts": 1}, "contracts": [{"aggregate": "Contract-X", "hosts": 1}]}),
        cloud({OD: ["a", "b"], SPOT: []}),
    )
    assert result.moves == (grow("a"),)
    assert result.blockers == (
        Blocker(
            "contract:Contract-X",
            AGGREGATE_MISSING,
            "aggregate 'Contract-X' (pools.contracts[0].aggregate) does not exist in the cloud: create it or fix "
            "the spec; nothing moves into or out of it",
        ),
    )
    assert result.pools.contracts == (PoolState("contract:Contract-X", "Contract-X", 1, 0, (), exists=False),)


def test_without_any_on_demand_aggregate_nothing_moves():
    result = plan(
        spec(pools={"spot": {"hosts": 0}, "runpod": {"hosts": 3}}), cloud({SPOT: ["s1"], RUNPOD: []})
    )
    assert result.moves == ()
    assert [(b.pool, b.reason) for b in result.blockers] == [("onDemand", AGGREGATE_MISSING)]


# ------------------------------------------------------------------------------------- fairness


def test_concurrency_is_shared_by_the_pools_furthest_behind():
    wanted = spec(
        pools={"spot": {"hosts": 10}, "runpod": {"hosts": 2}, "contracts": [{"aggregate": "C", "hosts": 1}]},
        policy={"maxConcurrentMoves": 3},
    )
    result = plan(wanted, cloud({OD: names("h", 20), SPOT: [], RUNPOD: [], "C": []}))
    assert sorted(m.pool for m in result.moves) == ["contract:C", "runpod", "spot"]


def test_one_move_at_a_time_still_alternates_between_pools():
    wanted = spec(pools={"spot": {"hosts": 4}, "runpod": {"hosts": 4}}, policy={"maxConcurrentMoves": 1})
    snapshot = cloud({OD: names("h", 8), SPOT: [], RUNPOD: []})
    order = []
    for _ in range(8):
        (move,) = plan(wanted, snapshot).moves
        order.append(move.pool)
        snapshot = apply(snapshot, [move])
    assert order == ["spot", "runpod"] * 4
    assert plan(wanted, snapshot).moves == ()


def test_scarce_hosts_are_split_fairly_and_every_short_pool_is_told():
    wanted = spec(pools={"spot": {"hosts": 4}, "runpod": {"hosts": 4}}, policy={"maxConcurrentMoves": 10})
    result = plan(wanted, cloud({OD: names("h", 4), SPOT: [], RUNPOD: []}))
    assert sorted(m.pool for m in result.moves) == ["runpod", "runpod", "spot", "spot"]
    assert [(b.pool, b.message) for b in result.blockers] == [
        (
            "spot",
            "spot wants 4 hosts and can reach 2: no movable host left in L40-n3 (also wanted by runpod)",
        ),
        (
            "runpod",
            "runpod wants 4 hosts and can reach 2: no movable host left in L40-n3 (also wanted by spot)",
        ),
    ]


def test_shrinks_and_grows_share_the_budget():
    wanted = spec(pools={"spot": {"hosts": 0}, "runpod": {"hosts": 3}}, policy={"maxConcurrentMoves": 2})
    result = plan(wanted, cloud({OD: names("h", 3), SPOT: ["s1", "s2", "s3"], RUNPOD: []}))
    assert sorted(m.pool for m in result.moves) == ["runpod", "spot"]


# ------------------------------------------------------------------------------------ the report


def test_pools_report_the_snapshot():
    snapshot = cloud({OD: ["b", "a", "x"], SPOT: ["s10", "s9"], RUNPOD: []}, [host("x", 1)])
    result = plan(spec(pools={"spot": {"hosts": 3}, "runpod": {"hosts": 0}}), snapshot)
    assert result.pools.spot == PoolState("spot", SPOT, 3, 2, ("s9", "s10"))
    assert result.pools.runpod == PoolState("runpod", RUNPOD, 0, 0, ())
    assert result.pools.contracts == ()
    assert result.pools.on_demand == OnDemandState((OD,), hosts=3, movable=2)
    assert [p.label for p in result.pools.targets()] == ["spot", "runpod"]


def test_omitted_pools_are_absent_from_the_report():
    result = plan(spec(), cloud({OD: ["a"]}))
    assert result.pools.spot is None and result.pools.runpod is None and result.moves == ()


def test_same_input_same_plan_whatever_the_order():
    wanted = spec(pools={"spot": {"hosts": 3}, "runpod": {"hosts": 1}}, policy={"maxConcurrentMoves": 3})
    in_flight = [grow("m1"), grow("m2", "runpod")]
    forward = cloud({OD: ["a", "b", "c", "m1", "m2"], SPOT: [], RUNPOD: []})
    backward = cloud({RUNPOD: [], SPOT: [], OD: ["m2", "m1", "c", "b", "a"]})
    assert plan(wanted, forward, in_flight) == plan(wanted, backward, list(reversed(in_flight)))
