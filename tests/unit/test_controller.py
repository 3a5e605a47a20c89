"""The controller's rounds with in-memory fakes of both ports (Kubernetes and Nova): what a user
of the operator reads in `kubectl get/describe` after each round, in milliseconds. The same rounds
against a real kube-apiserver and novasim are in tests/e2e."""

from __future__ import annotations

import threading

import pytest

from gpupool.controller import CLOUD_RETRY_S, Controller
from gpupool.errors import CloudError

from .fakecloud import FakeNova, always_failing
from .fakekube import FakeKube


class Leading:
    def __init__(self, leading: bool = True):
        self.leading = threading.Event()
        if leading:
            self.leading.set()


def l40(spot: int = 0, **extra) -> dict:
    return {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": spot}}, **extra}


@pytest.fixture
def nova() -> FakeNova:
    return FakeNova({"L40-n3": [f"gpu-{i}" for i in range(1, 7)], "L40-n3-spot": []})


def controller(kube: FakeKube, nova: FakeNova, **options) -> Controller:
    options.setdefault("leadership", Leading())
    return Controller(kube, cloud_factory=lambda name: nova, interval_s=60.0, **options)


def test_a_new_resource_is_filled_reported_and_then_left_quiet(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    ctl = controller(kube, nova)

    assert ctl.round() == 0.0  # progress: another round at once
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 2
    assert kube.ready("l40") == ("True", "Converged")
    status = kube.status("l40")
    assert status["observedGeneration"] == 1
    assert [m["result"] for m in status["lastMoves"]] == ["Moved", "Moved"]
    assert kube.reasons() == [
        "MoveFinished",
        "MoveFinished",
        "MoveStarted",
        "MoveStarted",
    ]  # one per move and step

    writes, calls = kube.status_writes, len(nova.calls)
    assert ctl.round() == 60.0  # nothing to do: wait for the drift check
    assert kube.status_writes == writes  # steady state writes no status
    assert [c for c, _ in nova.calls[calls:]] == ["snapshot", "delete_aggregate"]  # the lock is let go
    calls = len(nova.calls)
    assert ctl.round() == 60.0
    assert kube.status_writes == writes
    assert [c for c, _ in nova.calls[calls:]] == ["snapshot"]  # from then on, one read per round


def test_a_spec_change_is_followed_and_its_generation_observed(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=3))
    ctl = controller(kube, nova)
    ctl.round()
    kube.apply("l40", l40(spot=1))
    ctl.round()
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 1
    assert kube.status("l40")["observedGeneration"] == 2
    assert kube.ready("l40") == ("True", "Converged")


def test_an_invalid_spec_is_reported_on_its_resource_and_nothing_touches_nova(nova):
    kube = FakeKube()
    kube.apply("bad", {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": -1}}})
    ctl = controller(kube, nova)
    ctl.round()
    assert kube.ready("bad") == ("False", "InvalidSpec")
    assert "spec.pools.spot.hosts" in kube.status("bad")["summary"]["message"]
    assert nova.calls == []


def test_two_resources_claiming_one_aggregate_the_younger_is_blocked(nova):
    kube = FakeKube()
    kube.apply("first", l40(spot=1))
    kube.apply("second", l40(spot=4))
    ctl = controller(kube, nova)
    ctl.round()
    assert kube.ready("first") == ("True", "Converged")
    assert kube.ready("second") == ("False", "Conflict")
    assert "first" in kube.status("second")["summary"]["message"]
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 1


def test_the_kill_switch_configmap_stops_every_move_and_says_so(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    kube.configmaps[("gpupool-system", "gpupool-stop")] = {"reason": "incident 42"}
    ctl = controller(kube, nova, kill_switch_ref=("gpupool-system", "gpupool-stop"))
    assert ctl.round() == 5.0  # look again soon
    assert nova.aggregates["L40-n3-spot"].hosts == set()
    assert nova.count("disable") == 0
    assert "incident 42" in str(kube.status("l40")["conditions"])

    del kube.configmaps[("gpupool-system", "gpupool-stop")]
    ctl._kill_switch_read = (float("-inf"), None)  # the 2 s cache of the switch, for the test's sake
    ctl.round()
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 2


def test_a_standby_writes_no_status(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=0))
    kube.apply("bad", {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": -1}}})
    ctl = controller(kube, nova, leadership=Leading(False))
    ctl.round()
    assert kube.status_writes == 0


def test_a_cloud_that_fails_is_reported_and_retried_soon(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    nova.fail = always_failing("snapshot")
    ctl = controller(kube, nova)
    assert ctl.round() == CLOUD_RETRY_S
    assert kube.ready("l40") == ("False", "CloudError")


def test_a_resource_deleted_with_return_to_on_demand_gives_its_hosts_back(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2, deletionPolicy="ReturnToOnDemand"))
    ctl = controller(kube, nova)
    ctl.round()
    kube.pools["l40"]["metadata"]["deletionTimestamp"] = "2026-12-02T01:00:00Z"
    while ctl.round() == 0.0:
        pass
    assert nova.aggregates["L40-n3-spot"].hosts == set()
    assert kube.status("l40")["returnedToOnDemand"] is True


def test_a_deleted_resource_returns_every_host_it_can_while_one_still_runs_instances(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=3, deletionPolicy="ReturnToOnDemand"))
    ctl = controller(kube, nova)
    ctl.round()
    busy = sorted(nova.aggregates["L40-n3-spot"].hosts)[0]
    nova.boot(busy)
    kube.pools["l40"]["metadata"]["deletionTimestamp"] = "2026-12-02T01:00:00Z"
    while ctl.round() == 0.0:
        pass
    assert nova.aggregates["L40-n3-spot"].hosts == {busy}  # the two idle ones are back
    assert kube.status("l40")["returnedToOnDemand"] is False  # the deletion waits for the busy one
    nova.instances[busy].clear()
    while ctl.round() == 0.0:
        pass
    assert nova.aggregates["L40-n3-spot"].hosts == set()
    assert kube.status("l40")["returnedToOnDemand"] is True


def test_an_api_server_outage_loses_no_event(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    ctl = controller(kube, nova)
    pools = kube.list_pools()
    kube.down = True
    kube.list_pools = lambda: pools  # the round had listed the resources just before the outage
    ctl.round()
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 2
    assert kube.reasons() == []
    kube.down = False
    del kube.list_pools
    ctl.round()
    assert kube.reasons() == ["MoveFinished", "MoveFinished", "MoveStarted", "MoveStarted"]
    assert [m["result"] for m in kube.status("l40")["lastMoves"]] == ["Moved", "Moved"]


def test_a_pass_that_breaks_is_reported_on_its_resource_and_the_round_goes_on(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=1))
    other = FakeNova({"H100-n3": ["h-1", "h-2"], "H100-n3-spot": []})
    kube.apply("h100", {"gpuType": "H100", "cloud": "other", "pools": {"spot": {"hosts": 1}}})

    def broken_cloud(name: str):
        if name == "sim":
            raise CloudError("clouds.yaml has no cloud 'sim'")
        return other

    ctl = Controller(kube, Leading(), cloud_factory=broken_cloud)
    ctl.round()
    assert kube.ready("l40") == ("False", "CloudError")
    assert kube.ready("h100") == ("True", "Converged")


def test_a_new_generation_is_announced_before_any_nova_work(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    ctl = controller(kube, nova)
    ctl.seen(kube.get_pool("l40"))  # what the kopf handler does on create
    status = kube.status("l40")
    assert status["observedGeneration"] == 1
    assert kube.ready("l40") == ("False", "NewGeneration")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Reconciling"] == "True"
    assert nova.calls == []
    ctl.round()
    kube.apply("l40", l40(spot=1))
    ctl.seen(kube.get_pool("l40"))
    assert kube.status("l40")["observedGeneration"] == 2
    assert kube.ready("l40") == ("False", "NewGeneration")
    assert len(kube.status("l40")["lastMoves"]) == 2  # the history stays


def test_a_standby_does_not_announce_generations(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2))
    controller(kube, nova, leadership=Leading(False)).seen(kube.get_pool("l40"))
    assert kube.status_writes == 0


def test_gpu_usage_per_pool_is_read_at_its_own_cadence_and_shown_with_the_totals(nova):
    kube = FakeKube()
    kube.apply("l40", l40(spot=2, gpusPerHost=8))
    nova.gpus = {"gpu-1": 8, "gpu-5": 3}  # what the instances' flavors say
    ctl = controller(kube, nova)
    ctl.round()
    pools = kube.status("l40")["pools"]
    spot = set(pools["spot"]["hosts"])
    assert pools["spot"]["gpus"] == {"used": sum(nova.gpus.get(h, 0) for h in spot), "total": 16}
    assert pools["onDemand"]["gpus"]["total"] == 8 * pools["onDemand"]["hosts"]
    assert pools["spot"]["gpus"]["used"] + pools["onDemand"]["gpus"]["used"] == 11
    ctl.round()
    ctl.round()
    assert nova.count("gpus_in_use") == 1  # every 300 s by default, not every round


def test_a_cloud_whose_connection_breaks_unexpectedly_does_not_stop_the_others(nova):
    """An exception that is not a CloudError (a clouds.yaml entry the SDK cannot load, say) is
    reported on that cloud's resources, without its text; the other clouds still converge."""
    kube = FakeKube()
    kube.apply("l40", l40(spot=1))
    kube.apply("h100", {"gpuType": "H100", "cloud": "other", "pools": {"spot": {"hosts": 1}}})
    other = FakeNova({"H100-n3": ["h-1", "h-2"], "H100-n3-spot": []})

    def factory(name: str):
        if name == "sim":
            raise AttributeError("'str' object has no attribute 'get' (password=hunter2)")
        return other

    ctl = Controller(kube, Leading(), cloud_factory=factory)
    ctl.round()
    assert kube.ready("l40") == ("False", "CloudError")
    message = kube.status("l40")["summary"]["message"]
    assert "AttributeError" in message and "clouds.yaml" in message and "hunter2" not in message
    assert kube.ready("h100") == ("True", "Converged")


def test_the_same_aggregate_names_on_two_clouds_do_not_conflict(nova):
    """prod and staging both have L40-n3-spot: two aggregates, two resources, no conflict."""
    kube = FakeKube()
    staging = FakeNova({"L40-n3": ["s-1", "s-2", "s-3"], "L40-n3-spot": []})
    kube.apply("prod", l40(spot=2))
    kube.apply("staging", {**l40(spot=1), "cloud": "staging"})
    kube.apply("prod-again", l40(spot=3))
    ctl = Controller(kube, Leading(), cloud_factory=lambda name: staging if name == "staging" else nova)
    ctl.round()
    assert kube.ready("prod") == ("True", "Converged")
    assert kube.ready("staging") == ("True", "Converged")
    assert kube.ready("prod-again") == ("False", "Conflict")
    assert "'prod'" in kube.status("prod-again")["summary"]["message"]
    assert len(nova.aggregates["L40-n3-spot"].hosts) == 2
    assert len(staging.aggregates["L40-n3-spot"].hosts) == 1
