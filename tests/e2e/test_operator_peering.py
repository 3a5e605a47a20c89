"""High availability through kopf peering: two `gpupool run` replicas share a ClusterKopfPeering;
the one that started first acts, the other stands by and takes over when the first dies (its record
expires) or stops (its record is dropped at once). Checked on the peering records kopf writes, the
operators' logs, the Events and Nova itself."""

from __future__ import annotations

import re
import time

import pytest

from novasim.testing import SimProcess
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    disabled_by_gpupool,
    events,
    ghp,
    members,
    new_peering,
    peering_records,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLEET = {
    "aggregates": [
        {"name": "L40-n3", "hosts": ["gpu-l40-[001-010]"]},
        {"name": "L40-n3-spot", "hosts": []},
    ]
}
ALL_HOSTS = {f"gpu-l40-{i:03d}" for i in range(1, 11)}
ADD_OR_REMOVE = "/compute/v2.1/os-aggregates/{aggregate_id}/action"


@pytest.fixture
def peers(kube, tmp_path):
    """A novasim cloud and a factory of replicas that all share one peering."""
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established()
    sim = SimProcess(FLEET, tmp_path / "sim").start()
    peering = new_peering()
    started: list[OperatorProcess] = []

    def replica(identity: str) -> OperatorProcess:
        op = OperatorProcess(kube, sim, tmp_path, interval=30, identity=identity, peering=peering)
        started.append(op)
        return op

    replica.sim = sim
    replica.peering = peering
    yield replica
    for op in started:
        op.stop()
    delete_all_pools(kube)
    sim.stop()
    for op in started:
        print(f"----- {op.log_file.name} (tail) -----\n" + "\n".join(op.log().splitlines()[-15:]))


def acting(op: OperatorProcess) -> bool:
    return f"{op.identity} leads" in op.log()


def ready(kube, name: str) -> bool:
    return condition(kube, name).get("status") == "True"


def assert_each_host_in_one_place(sim) -> None:
    nova = members(sim)
    assert nova["L40-n3"] | nova["L40-n3-spot"] == ALL_HOSTS, "a host was lost"
    assert not nova["L40-n3"] & nova["L40-n3-spot"], "a host sits in two aggregates"
    assert not disabled_by_gpupool(sim), "a move was left unfinished"


def test_the_first_replica_acts_and_the_second_stands_by(peers, kube):
    first = peers("first")
    wait_for("the first replica to lead", lambda: acting(first), timeout=30)
    second = peers("second")
    wait_for("both peering records", lambda: {"first", "second"} <= set(peering_records(kube, peers.peering)))
    records = peering_records(kube, peers.peering)
    assert records["first"]["priority"] > records["second"]["priority"]  # seniority, never equal
    wait_for(
        "the second to stand by", lambda: "second does not act" in second.log() and "outrank" in second.log()
    )

    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 4}}))
    wait_for("Ready", lambda: ready(kube, "l40") and len(members(peers.sim)["L40-n3-spot"]) == 4, timeout=60)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    assert len(finished) == 4 and {e["reportingInstance"] for e in finished} == {"first"}
    assert not acting(second), second.log()


def test_the_standby_takes_over_when_the_leader_is_killed_mid_move(peers, kube):
    sim = peers.sim
    leader = peers("leader")
    wait_for("the leader to act", lambda: acting(leader), timeout=30)
    standby = peers("standby")
    wait_for("the standby's record", lambda: "standby" in peering_records(kube, peers.peering))

    hold = sim.hold("POST", ADD_OR_REMOVE, body_contains="add_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 5}}, policy={"maxConcurrentMoves": 2})
    )
    sim.wait_held(hold, timeout=60)  # the host has left L40-n3 and is being added to L40-n3-spot
    leader.kill()
    killed_at = time.monotonic()
    sim.release_all()
    assert not acting(standby)

    wait_for("the standby to take over", lambda: acting(standby), timeout=30)
    took_over = time.monotonic() - killed_at
    print(f"\nleader SIGKILLed -> standby leads: {took_over:.1f}s (peering lifetime 4s)")
    wait_for("Ready under the new leader", lambda: ready(kube, "l40"), timeout=60)
    assert len(members(sim)["L40-n3-spot"]) == 5
    assert_each_host_in_one_place(sim)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    hosts = [re.match(r"(\S+) moved", e["message"])[1] for e in finished]
    assert len(hosts) == len(set(hosts)), f"a host reported moved twice: {hosts}"
    assert {e["reportingInstance"] for e in finished} <= {"leader", "standby"}
    # The moves the leader died in are reported resumed by the standby, not started a second time.
    started = {}
    for e in events(kube, "l40"):
        if e["reason"] == "MoveStarted":
            host = re.match(r"moving (\S+) ", e["message"])[1]
            assert host not in started, f"{host}: move reported started twice"
            started[host] = e["reportingInstance"]
    resumed = [e for e in events(kube, "l40") if e["reason"] == "MoveResumed"]
    assert resumed, "the standby did not report resuming the leader's move"
    for e in resumed:
        host = re.match(r"resuming the move of (\S+) ", e["message"])[1]
        assert (started.get(host), e["reportingInstance"]) == ("leader", "standby"), e


def test_a_clean_stop_hands_over_at_once(peers, kube):
    leader = peers("leader")
    wait_for("the leader to act", lambda: acting(leader), timeout=30)
    standby = peers("standby")
    wait_for("the standby to stand by", lambda: "outrank" in standby.log(), timeout=30)
    time.sleep(2)  # past the standby's settle period: a standby of some standing
    leader.stop()  # SIGTERM: the controller stops, then kopf drops the record
    assert leader.proc.returncode == 0, leader.log()
    assert "leader" not in peering_records(kube, peers.peering)
    stopped_at = time.monotonic()
    wait_for("the standby to take over", lambda: acting(standby), timeout=30, every=0.05)
    handover = time.monotonic() - stopped_at
    print(f"\nleader SIGTERMed -> standby leads: {handover:.1f}s (peering lifetime 4s)")
    assert handover < 3, "the standby waited for the record to expire"
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
    wait_for("Ready under the new leader", lambda: ready(kube, "l40"), timeout=60)
    assert_each_host_in_one_place(peers.sim)


def test_a_missing_peering_object_is_created_by_the_operator(kube, tmp_path):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established()
    peering = new_peering()
    with SimProcess(FLEET, tmp_path / "sim") as sim:
        op = OperatorProcess(kube, sim, tmp_path, identity="alone", peering=peering, create_peering=False)
        try:
            wait_for("the operator to act", lambda: acting(op), timeout=30)
            assert "alone" in peering_records(kube, peering)
        finally:
            op.stop()
