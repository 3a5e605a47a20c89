"""Property-based tests of the planner on random fleets and specs: the rules it never breaks."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpupool.api import GpuHostPoolSpec
from gpupool.model import CANNOT_SHRINK, NOT_ENOUGH_MOVABLE_HOSTS, Aggregate, Host, Move, Plan, Snapshot
from gpupool.planner import plan

from .fleet import apply, host, ours

ON_DEMAND_CHOICES = [["L40-n3"], ["L40-n3", "L40-n3-NVLink"], ["L40-n3-NVLink", "L40-n3"]]


@dataclass
class Scenario:
    spec: GpuHostPoolSpec
    snapshot: Snapshot
    in_flight: list[Move]
    origins: dict[str, str]

    def present(self) -> list[str]:
        return [m.name for m in self.spec.managed_aggregates() if m.name in self.snapshot.aggregates]


@st.composite
def scenarios(draw) -> Scenario:
    pools: dict = {}
    if draw(st.booleans()):
        pools["spot"] = {"hosts": draw(st.integers(0, 8))}
    if draw(st.booleans()):
        pools["runpod"] = {"hosts": draw(st.integers(0, 6))}
    pools["contracts"] = [
        {"aggregate": f"Contract-C{i}", "hosts": draw(st.integers(0, 5))}
        for i in range(draw(st.integers(0, 2)))
    ]
    hosts = [f"gpu-{i}" for i in range(1, draw(st.integers(0, 24)) + 1)]
    policy = {
        "maxConcurrentMoves": draw(st.integers(1, 6)),
        "moveHostsWithInstances": draw(st.booleans()),
        "excludeHosts": draw(st.lists(st.sampled_from(hosts), unique=True, max_size=3)) if hosts else [],
        # The guard rails have tests of their own (test_guard_rails.py); these rounds need partial progress.
        "allowPartial": True,
        "maxMovesPerChange": 100_000,
    }
    spec = GpuHostPoolSpec.model_validate(
        {
            "gpuType": "L40",
            "onDemand": {"aggregates": draw(st.sampled_from(ON_DEMAND_CHOICES))},
            "pools": pools,
            "policy": policy,
        }
    )
    managed = [m.name for m in spec.managed_aggregates()]
    present = [name for name in managed if draw(st.integers(0, 9)) > 0] + ["az-1"]

    members: dict[str, set[str]] = {name: set() for name in present}
    services: dict[str, Host] = {}
    # One number per host, decoded into its aggregates, service and instances (0: an ordinary host).
    n = len(present)
    codes = st.lists(st.integers(0, 20 * n * n * 20 * 7 * 10 - 1), min_size=len(hosts), max_size=len(hosts))
    for name, code in zip(hosts, draw(codes), strict=True):
        code, shape = divmod(code, 20)
        code, first = divmod(code, n)
        code, second = divmod(code, n)
        code, service = divmod(code, 20)
        condition, instances = divmod(code, 7)
        if shape == 19:
            places = []  # in no aggregate at all
        elif shape == 18:
            places = [present[first], present[second]]  # in two aggregates (when they differ)
        else:
            places = [present[first]]
        for place in places:
            members[place].add(name)
        if service == 19:
            continue  # no compute service
        count = [0, 0, 0, 0, 1, 3, None][instances]
        # condition: 0-6 ordinary, 7 down, 8 disabled by someone else, 9 disabled by our intent
        if condition == 7:
            services[name] = host(name, count, state="down")
        elif condition == 8:
            services[name] = host(name, count, status="disabled", reason="RMA ticket 42")
        elif condition == 9:
            services[name] = ours(name, "L40-n3", "L40-n3-spot", count)
        else:
            services[name] = host(name, count)

    snapshot = Snapshot(
        aggregates={name: Aggregate(i, name, frozenset(members[name])) for i, name in enumerate(present)},
        hosts=services,
    )
    # Exclusions name hosts of the cloud (one that names none holds every move back: test_planner).
    known = set(services).union(*members.values())
    policy = spec.policy.model_copy(
        update={"exclude_hosts": [h for h in spec.policy.exclude_hosts if h in known]}
    )
    spec = spec.model_copy(update={"policy": policy})
    on_demand = [a for a in spec.on_demand_aggregates() if a in snapshot.aggregates]
    targets = [p.aggregate for p in spec.target_pools() if p.aggregate in snapshot.aggregates]
    in_flight = []
    if on_demand and targets:
        # Moves a previous pass began: grows and shrinks of hosts sitting in exactly one aggregate.
        singles = sorted(
            h
            for h in services
            if len(snapshot.aggregates_of(h)) == 1 and snapshot.aggregates_of(h)[0] in on_demand + targets
        )
        for name in draw(st.lists(st.sampled_from(singles), unique=True, max_size=3)) if singles else []:
            source = snapshot.aggregates_of(name)[0]
            target = (
                draw(st.sampled_from(targets)) if source in on_demand else draw(st.sampled_from(on_demand))
            )
            label = spec.pool_label(target) if source in on_demand else spec.pool_label(source)
            in_flight.append(Move(name, source, target, label))
            services[name] = ours(name, source, target, services[name].instances)
    origins = {
        h: draw(st.sampled_from(["L40-n3", "L40-n3-NVLink", "Gone"])) for h in hosts if draw(st.booleans())
    }
    return Scenario(spec, snapshot, in_flight, origins)


def may_leave(scenario: Scenario, name: str, snapshot: Snapshot | None = None) -> bool:
    """The rules, written out independently of the planner."""
    snapshot = snapshot or scenario.snapshot
    spec = scenario.spec
    service = snapshot.hosts.get(name)
    managed_homes = [a for a in scenario.present() if name in snapshot.aggregates[a].hosts]
    return (
        service is not None
        and name not in spec.policy.exclude_hosts
        and service.is_up
        and service.is_enabled
        and service.instances is not None
        and (service.instances == 0 or spec.policy.move_hosts_with_instances)
        and len(managed_homes) == 1
    )


def check_rules(scenario: Scenario, result: Plan) -> None:
    spec, snapshot = scenario.spec, scenario.snapshot
    on_demand = set(spec.on_demand_aggregates())
    present = set(scenario.present())
    moving = {m.host for m in scenario.in_flight}
    planned = [m.host for m in result.moves]

    assert len(planned) == len(set(planned)), "a host is planned twice"
    assert not moving & set(planned), "a host in flight is planned again"
    assert len(result.moves) <= max(0, spec.policy.max_concurrent_moves - len(scenario.in_flight))
    for move in result.moves:
        assert move.host not in moving
        assert may_leave(scenario, move.host), f"{move.host} may not move: {snapshot.hosts.get(move.host)}"
        assert move.source in present and move.target in present
        assert move.host in snapshot.aggregates[move.source].hosts
        assert (move.source in on_demand) != (move.target in on_demand), (
            "pool to pool, or on-demand to on-demand"
        )
        pool_side = move.target if move.source in on_demand else move.source
        assert move.pool == spec.pool_label(pool_side)

    # No overshoot: counting moves in flight as done, a pool's planned moves all go one way and stop
    # at its count.
    for pool in spec.target_pools():
        if pool.aggregate not in present:
            continue
        members = set(snapshot.aggregates[pool.aggregate].hosts)
        members -= {m.host for m in scenario.in_flight if m.source == pool.aggregate}
        members |= {m.host for m in scenario.in_flight if m.target == pool.aggregate}
        grows = sum(1 for m in result.moves if m.target == pool.aggregate)
        shrinks = sum(1 for m in result.moves if m.source == pool.aggregate)
        assert not (grows and shrinks)
        assert len(members) + grows <= max(pool.desired, len(members))
        assert len(members) - shrinks >= min(pool.desired, len(members))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_a_plan_never_breaks_the_rules_and_is_deterministic(scenario):
    result = plan(scenario.spec, scenario.snapshot, scenario.in_flight, scenario.origins)
    check_rules(scenario, result)

    listed = [a for a in scenario.spec.on_demand_aggregates() if a in scenario.snapshot.aggregates]
    for move in result.moves:
        if move.target in listed:  # a shrink: home to the remembered origin if the spec lists it
            origin = scenario.origins.get(move.host)
            assert move.target == (origin if origin in listed else listed[0])

    assert plan(scenario.spec, scenario.snapshot, scenario.in_flight, scenario.origins) == result
    shuffled = Snapshot(
        aggregates=dict(reversed(list(scenario.snapshot.aggregates.items()))),
        hosts=dict(reversed(list(scenario.snapshot.hosts.items()))),
    )
    origins = dict(reversed(list(scenario.origins.items())))
    assert plan(scenario.spec, shuffled, list(reversed(scenario.in_flight)), origins) == result


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_rounds_of_plans_reach_the_counts_or_explain_why(scenario):
    spec = scenario.spec
    snapshot = apply(scenario.snapshot, scenario.in_flight)  # what was under way finishes first
    settled = Scenario(spec, snapshot, [], scenario.origins)
    targets = [p for p in spec.target_pools() if p.aggregate in snapshot.aggregates]
    on_demand = [a for a in spec.on_demand_aggregates() if a in snapshot.aggregates]

    for _ in range(200):
        result = plan(spec, snapshot, (), scenario.origins)
        settled.snapshot = snapshot
        check_rules(settled, result)
        if not result.moves:
            break
        before = {p.label: len(snapshot.aggregates[p.aggregate].hosts) for p in targets}
        snapshot = apply(snapshot, result.moves)
        for pool in targets:
            # Every move brings its pool closer to its count: nothing is moved twice for nothing.
            after = len(snapshot.aggregates[pool.aggregate].hosts)
            assert abs(after - pool.desired) <= abs(before[pool.label] - pool.desired)
    else:
        raise AssertionError("no convergence in 200 rounds")

    settled.snapshot = snapshot
    reasons = {(b.pool, b.reason) for b in result.blockers}
    for pool in targets if on_demand else []:
        current = len(snapshot.aggregates[pool.aggregate].hosts)
        if current < pool.desired:
            left = [
                h for a in on_demand for h in snapshot.aggregates[a].hosts if may_leave(settled, h, snapshot)
            ]
            assert left == [], f"{pool.label} is short while {left} could move"
            assert (pool.label, NOT_ENOUGH_MOVABLE_HOSTS) in reasons
        elif current > pool.desired:
            stuck = [h for h in snapshot.aggregates[pool.aggregate].hosts if may_leave(settled, h, snapshot)]
            assert stuck == [], f"{pool.label} is oversized while {stuck} could leave"
            assert (pool.label, CANNOT_SHRINK) in reasons
        else:
            assert (pool.label, NOT_ENOUGH_MOVABLE_HOSTS) not in reasons
            assert (pool.label, CANNOT_SHRINK) not in reasons
