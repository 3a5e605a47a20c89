"""The engine (reconciler + mover + planner) against people, other processes and Nova itself.

Each test arranges an in-memory cloud (fakecloud.FakeNova), lets an adversary act between two of
our steps, runs one or more passes, and checks what an operator of the cloud would check: where
each host is, which services are disabled and with which reason, what the pass reported.
The same cases run end to end against novasim in tests/sim/test_adversity.py.
"""

from __future__ import annotations

import pytest

from gpupool.api import GpuHostPoolSpec, SpecError, parse_pool
from gpupool.intent import MoveIntent, parse_reason
from gpupool.model import Neighbours, Outcome
from gpupool.reconciler import Reconciler
from gpupool.status import build_status

from .fakecloud import FakeNova, always_failing, failing_once


def spec(**wire) -> GpuHostPoolSpec:
    """Partial progress allowed, as these cases are about what others do mid-move (the guard rails
    that hold moves back altogether have tests of their own: test_guard_rails.py)."""
    policy = {"allowPartial": True, **wire.pop("policy", {})}
    return GpuHostPoolSpec.model_validate({"gpuType": "L40", "policy": policy, **wire})


def hosts(count: int, start: int = 1) -> list[str]:
    return [f"gpu-{i:02d}" for i in range(start, start + count)]


def fleet(on_demand: int = 10, spot: int = 0, **more: list[str]) -> FakeNova:
    return FakeNova({"L40-n3": hosts(on_demand), "L40-n3-spot": hosts(spot, on_demand + 1), **more})


def ours(nova: FakeNova) -> list[str]:
    """Hosts whose service carries a gpupool intent."""
    return sorted(h for h, s in nova.services.items() if parse_reason(h, s.reason) is not None)


def ready(report) -> tuple[str, str]:
    condition = next(c for c in build_status(report, now=0).conditions if c.type == "Ready")
    return condition.status, condition.reason


def run(nova: FakeNova, the_spec: GpuHostPoolSpec, **kwargs):
    return Reconciler(nova).reconcile(the_spec, **kwargs)


# -- 1. Nova keeps failing ---------------------------------------------------------------------------


def test_a_pass_stops_at_the_first_move_it_cannot_undo_and_the_next_round_finishes_the_job():
    nova = fleet(on_demand=10)
    wanted = spec(pools={"spot": {"hosts": 2}}, policy={"maxConcurrentMoves": 2})
    nova.fail = always_failing("remove", "add")

    report = run(nova, wanted)

    # Each move failed at remove and its undo failed too: the breaker opened at once, so no more
    # than the hosts already under way keep gpupool's intent, and they are reported in flight.
    assert report.breaker is not None and "could not be undone" in report.breaker
    assert len(ours(nova)) <= 2
    assert {f.move.host for f in report.in_flight} == set(ours(nova))
    assert not report.converged
    assert ready(report) == ("False", "CircuitBreakerOpen")

    nova.fail = lambda call, phase: False  # Nova recovers
    adds_before = nova.count("add")
    again = run(nova, wanted)
    assert again.converged, again.plan.blockers
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 2 and ours(nova) == []
    assert nova.count("add") - adds_before == 2  # two moves for two hosts, nothing moved back


def test_failures_in_a_row_open_the_breaker_even_when_every_undo_works():
    nova = fleet(on_demand=10)
    # Adding to spot answers 500 (after retries); the way back into L40-n3 works.
    nova.fail = lambda call, phase: call == "add" and phase == "before" and "L40-n3-spot" in nova.calls[-1][1]
    report = run(nova, spec(pools={"spot": {"hosts": 5}}, policy={"maxConcurrentMoves": 1}))
    assert report.breaker is not None and "3 moves failed in a row" in report.breaker
    assert [r.outcome for r in report.results] == [Outcome.FAILED] * 3
    assert ours(nova) == [] and all(s.status == "enabled" for s in nova.services.values())
    assert nova.aggregates["L40-n3-spot"].hosts == set()


def test_resumed_moves_count_against_max_concurrent_moves():
    nova = fleet(on_demand=10)
    for host in hosts(3):
        nova.services[host].status = "disabled"
        nova.services[host].reason = MoveIntent(host, "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    peak = []

    def adversary(call, phase, fake):
        if call == "claims_on" and phase == "before":
            peak.append(len([h for h in fake.services if fake.services[h].status == "disabled"]))

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 5}}, policy={"maxConcurrentMoves": 1}))
    assert report.converged
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 5
    # With one slot, the three resumed moves ran one after the other before any new one started.
    assert max(peak) <= 3


def test_a_resumed_move_the_plan_no_longer_needs_is_rolled_back_not_finished():
    nova = fleet(on_demand=4, spot=1)
    host = "gpu-01"
    nova.services[host].status = "disabled"
    nova.services[host].reason = MoveIntent(host, "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    nova.aggregates["L40-n3"].hosts.discard(host)  # killed between remove and add

    report = run(nova, spec(pools={"spot": {"hosts": 1}}))  # spot already holds its one host

    assert [r.outcome for r in report.results] == [Outcome.ROLLED_BACK]
    assert nova.where(host) == ["L40-n3"] and nova.services[host].status == "enabled"
    assert nova.count("add") == 1  # straight back, never into spot
    assert report.converged


# -- 2, 3, 4. Someone else's hands on the host -------------------------------------------------------


def test_a_host_disabled_by_someone_after_the_snapshot_is_not_touched():
    nova = fleet(on_demand=4)

    def adversary(call, phase, fake):
        if call == "snapshot" and phase == "after":
            fake.services["gpu-01"].status = "disabled"
            fake.services["gpu-01"].reason = "RMA 42"

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    nova.adversary = lambda *a: None
    assert nova.services["gpu-01"].reason == "RMA 42" and nova.where("gpu-01") == ["L40-n3"]
    assert [r.outcome for r in report.results] == [Outcome.SKIPPED, Outcome.MOVED]
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-02"}


def test_a_reason_edited_mid_move_is_left_as_the_person_set_it_and_reported():
    nova = fleet(on_demand=4)

    def adversary(call, phase, fake):
        if call == "add" and phase == "after":
            fake.services["gpu-01"].reason += " (do not touch, Bob)"

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert nova.services["gpu-01"].status == "disabled"
    assert nova.services["gpu-01"].reason.endswith("(do not touch, Bob)")
    assert [r.outcome for r in report.results] == [Outcome.INTERRUPTED]
    assert not report.converged and ready(report) == ("False", "MoveInterrupted")
    assert nova.count("enable") == 0


def test_an_undo_never_enables_a_service_someone_else_disabled_meanwhile():
    nova = fleet(on_demand=4)
    nova.fail = always_failing("remove")

    def adversary(call, phase, fake):
        if call == "remove" and phase == "before":
            fake.services["gpu-01"].reason = "RMA 42"

    nova.adversary = adversary
    run(nova, spec(pools={"spot": {"hosts": 1}}, policy={"maxConcurrentMoves": 1}))
    assert nova.services["gpu-01"].status == "disabled" and nova.services["gpu-01"].reason == "RMA 42"


@pytest.mark.parametrize(
    "reason",
    [
        "gpupool: moving nowhere -> ask ops",
        "gpupool: moving L40-n3 -> L40-n3-spot",  # shaped like ours, without our token
        MoveIntent("gpu-01", "L40-n3", "L40-n3-spot", "0a0a0a").reason() + " (note)",
        MoveIntent("gpu-09", "L40-n3", "L40-n3-spot", "0a0a0a").reason(),  # ours, but another host's
    ],
)
def test_only_exactly_our_intent_counts_as_ours(reason):
    nova = fleet(on_demand=4)
    nova.services["gpu-01"].status = "disabled"
    nova.services["gpu-01"].reason = reason
    run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert nova.services["gpu-01"].reason == reason and nova.where("gpu-01") == ["L40-n3"]
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-02"}


def test_names_that_would_make_an_intent_ambiguous_or_too_long_are_refused_at_load():
    def load(pools):
        return parse_pool(
            {
                "apiVersion": "gpupool.io/v1alpha1",
                "kind": "GpuHostPool",
                "metadata": {"name": "l40"},
                "spec": {"gpuType": "L40", "pools": pools},
            }
        )

    with pytest.raises(SpecError, match=r"spec.pools.spot.aggregate: 'L40-n3 -> legacy' contains '->'"):
        load({"spot": {"aggregate": "L40-n3 -> legacy", "hosts": 1}})
    with pytest.raises(
        SpecError, match=r"spec.onDemand.aggregates\[0\] and spec.pools.contracts\[0\].aggregate: "
    ):
        load({"contracts": [{"aggregate": "C" * 240, "hosts": 1}]})


# -- 5. Hosts two resources see ---------------------------------------------------------------------


def test_a_host_in_an_aggregate_another_resource_manages_is_never_moved_and_both_say_so():
    nova = FakeNova(
        {
            "L40-n3": ["gpu-01", "gpu-02", "gpu-03"],
            "L40-n3-spot": [],
            "L40-n3-NVLink": ["gpu-03", "gpu-04"],
            "L40-n3-NVLink-spot": [],
        }
    )
    generic = spec(pools={"spot": {"hosts": 3}})
    nvlink = spec(
        onDemand={"aggregates": ["L40-n3-NVLink"]},
        pools={"spot": {"aggregate": "L40-n3-NVLink-spot", "hosts": 2}},
    )
    a = run(
        nova,
        generic,
        neighbours=Neighbours("l40", {"L40-n3-NVLink": "l40-nvlink", "L40-n3-NVLink-spot": "l40-nvlink"}),
    )
    b = run(nova, nvlink, neighbours=Neighbours("l40-nvlink", {"L40-n3": "l40", "L40-n3-spot": "l40"}))
    assert nova.where("gpu-03") == ["L40-n3", "L40-n3-NVLink"]
    for report in (a, b):
        assert not report.converged
        shared = [x for x in report.plan.blockers if x.reason == "HostShared"]
        assert len(shared) == 1 and "gpu-03" in shared[0].message
        assert "'l40'" in shared[0].message and "'l40-nvlink'" in shared[0].message


# -- 6. Converged only when it is --------------------------------------------------------------------


def test_a_failed_enable_is_not_converged_and_no_spare_host_replaces_it():
    nova = fleet(on_demand=4)
    nova.fail = always_failing("enable")
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert not report.converged
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-01"}  # no second host moved in
    assert [f.move.host for f in report.in_flight] == ["gpu-01"] and report.in_flight[0].stuck
    assert ready(report)[0] == "False"


def test_a_failed_add_whose_undo_fails_is_not_converged():
    nova = fleet(on_demand=4)
    nova.fail = failing_once("add")
    calls = []

    def adversary(call, phase, fake):
        calls.append(call)
        if call == "add" and phase == "before" and calls.count("add") == 2:
            raise NovaRequestError("add: Nova is down", 503)

    from gpupool.errors import NovaRequestError

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert not report.converged
    assert ours(nova) == ["gpu-01"] and nova.where("gpu-01") == []
    nova.adversary = lambda *a: None
    assert run(nova, spec(pools={"spot": {"hosts": 1}})).converged
    assert ours(nova) == [] and nova.aggregates["L40-n3-spot"].hosts == {"gpu-01"}


# -- 7. Paused and dry-run resources still never strand a host ---------------------------------------


@pytest.mark.parametrize("mode", ["paused", "dryRun"])
def test_paused_and_dry_run_finish_or_roll_back_half_done_moves(mode):
    nova = fleet(on_demand=4)
    nova.services["gpu-01"].status = "disabled"
    nova.services["gpu-01"].reason = MoveIntent("gpu-01", "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    nova.aggregates["L40-n3"].hosts.discard("gpu-01")
    report = run(nova, spec(pools={"spot": {"hosts": 1}}, **{mode: True}))
    assert ours(nova) == [] and nova.where("gpu-01") == ["L40-n3-spot"]
    assert nova.services["gpu-01"].status == "enabled"
    assert [r.outcome for r in report.results] == [Outcome.MOVED]
    assert nova.count("disable") == 0  # nothing new started


def test_a_paused_resource_with_a_stuck_move_is_not_ready():
    nova = fleet(on_demand=4)
    nova.services["gpu-01"].status = "disabled"
    nova.services["gpu-01"].reason = MoveIntent("gpu-01", "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    nova.fail = always_failing("enable", "add")
    report = run(nova, spec(pools={"spot": {"hosts": 1}}, paused=True))
    assert [f.move.host for f in report.in_flight] == ["gpu-01"]
    assert ready(report)[0] == "False"


# -- 8. Something lands on the host mid-move ---------------------------------------------------------


def test_a_build_claimed_in_placement_before_the_verify_aborts_the_move():
    nova = fleet(on_demand=2)

    def adversary(call, phase, fake):
        if call == "disable" and phase == "before" and not fake.claims["gpu-01"]:
            fake.claims["gpu-01"].add("build-1")  # scheduled just before our disable

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert report.results[0].outcome is Outcome.ABORTED
    assert nova.where("gpu-01") == ["L40-n3"] and nova.services["gpu-01"].status == "enabled"
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-02"}


def test_an_instance_that_lands_after_the_verify_holds_the_host_in_its_target_disabled():
    nova = fleet(on_demand=2)

    def adversary(call, phase, fake):
        if call == "add" and phase == "after" and not fake.instances["gpu-01"]:
            fake.boot("gpu-01", "late")

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 1}}))
    assert report.results[0].outcome is Outcome.HELD
    assert nova.where("gpu-01") == ["L40-n3-spot"] and nova.services["gpu-01"].status == "disabled"
    assert not report.converged and ready(report) == ("False", "HostHeld")
    # Once the instance is gone, the next pass enables it.
    nova.instances["gpu-01"].clear()
    nova.adversary = lambda *a: None
    assert run(nova, spec(pools={"spot": {"hosts": 1}})).converged
    assert nova.services["gpu-01"].status == "enabled" and ours(nova) == []


# -- 9. Exclusions that protect nothing --------------------------------------------------------------


def test_excluded_hosts_that_match_nothing_are_reported_with_a_did_you_mean_and_nothing_moves():
    nova = FakeNova({"L40-n3": ["gpu-l40-001", "gpu-l40-002", "GPU-L40-003"], "L40-n3-spot": []})
    report = run(
        nova, spec(pools={"spot": {"hosts": 1}}, policy={"excludeHosts": ["gpu-l40-1", "gpu-l40-003"]})
    )
    (blocker,) = [b for b in report.plan.blockers if b.reason == "ExcludedHostUnknown"]
    assert "'gpu-l40-1'" in blocker.message and "did you mean" in blocker.message
    assert "did you mean 'GPU-L40-003'" in blocker.message
    assert nova.count("disable") == 0


# -- 10, 11. No traceback, no futile calls -----------------------------------------------------------


def test_a_resumed_move_whose_source_was_deleted_is_finished():
    nova = fleet(on_demand=2)
    nova.services["gpu-01"].status = "disabled"
    nova.services["gpu-01"].reason = MoveIntent("gpu-01", "L40-n3-old", "L40-n3-spot", "0a0a0a").reason()
    nova.aggregates["L40-n3"].hosts.discard("gpu-01")
    report = run(nova, spec(onDemand={"aggregates": ["L40-n3", "L40-n3-old"]}, pools={"spot": {"hosts": 1}}))
    assert nova.where("gpu-01") == ["L40-n3-spot"] and ours(nova) == []
    assert report.results[0].outcome is Outcome.MOVED
    assert [b.reason for b in report.plan.blockers] == ["AggregateMissing"]  # the spec still names it


def test_an_availability_zone_conflict_is_a_blocker_and_nothing_is_tried():
    nova = FakeNova(
        {"L40-n3": hosts(4), "L40-n3-spot": [], "az2-hosts": hosts(4)},
        zones={"L40-n3-spot": "nova", "az2-hosts": "az2"},
    )
    report = run(nova, spec(pools={"spot": {"hosts": 2}}))
    assert nova.count("disable") == 0 and nova.count("add") == 0
    (blocker,) = report.plan.blockers
    assert blocker.reason == "AvailabilityZoneConflict"
    assert "'az2'" in blocker.message and "az2-hosts" in blocker.message and "'nova'" in blocker.message
    assert "excluded" not in blocker.message


def test_a_target_that_refuses_is_not_tried_again_in_the_same_pass():
    nova = fleet(on_demand=6)
    refused = []

    def adversary(call, phase, fake):
        if call == "add" and phase == "before" and "L40-n3-spot" in fake.calls[-1][1]:
            refused.append(1)
            raise NovaRequestError("add: Policy doesn't allow os_compute_api:os-aggregates:add_host", 403)

    from gpupool.errors import NovaRequestError

    nova.adversary = adversary
    report = run(nova, spec(pools={"spot": {"hosts": 4}}, policy={"maxConcurrentMoves": 1}))
    assert len(refused) == 1
    assert any(b.reason == "AggregateRefused" for b in report.plan.blockers)
    assert ours(nova) == [] and all(s.status == "enabled" for s in nova.services.values())


def test_a_host_that_failed_is_named_with_novas_answer_not_called_excluded():
    nova = fleet(on_demand=4)
    nova.fail = lambda call, phase: call == "remove" and phase == "before" and "gpu-01" in nova.calls[-1][1]
    report = run(nova, spec(pools={"spot": {"hosts": 4}}, policy={"maxConcurrentMoves": 1}))
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-02", "gpu-03", "gpu-04"}
    (blocker,) = report.plan.blockers
    assert blocker.reason == "NotEnoughMovableHosts"
    assert (
        "1 failed to move this pass (remove gpu-01 from L40-n3: still failing after 5 attempts"
        in blocker.message
    )
    assert "excluded" not in blocker.message


def test_a_host_someone_put_in_another_pool_mid_move_stays_there_and_is_reported():
    nova = FakeNova({"L40-n3": hosts(4), "L40-n3-spot": [], "L40-n3-runpod": []})
    nova.services["gpu-01"].status = "disabled"
    nova.services["gpu-01"].reason = MoveIntent("gpu-01", "L40-n3", "L40-n3-spot", "0a0a0a").reason()
    nova.aggregates["L40-n3"].hosts.discard("gpu-01")
    nova.aggregates["L40-n3-runpod"].hosts.add("gpu-01")  # a person, while the move was half-done
    report = run(nova, spec(pools={"spot": {"hosts": 1}, "runpod": {"hosts": 1}}))
    assert nova.where("gpu-01") == ["L40-n3-runpod"] and nova.services["gpu-01"].status == "enabled"
    assert report.results[0].outcome is Outcome.INTERRUPTED
    assert "put into L40-n3-runpod by someone else" in report.results[0].message
    assert nova.aggregates["L40-n3-spot"].hosts == {"gpu-02"}
