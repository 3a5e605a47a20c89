"""The operator under adversity: what it adds to the engine's rules (tests/sim/test_adversity.py).

A bad resource never cuts a round short for the others; paused resources still finish what was
half-done; a Retain resource deleted mid-move leaves no host stranded; two resources that share a
host both say so; the CLI and the operator never move hosts on one cloud at the same time.
Real `gpupool run`, a real kube-apiserver driven with kubectl, novasim over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import yaml

from novasim.testing import SimProcess
from tests.e2e.operator_helpers import (
    GPUPOOL,
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    disabled_by_gpupool,
    events,
    ghp,
    members,
    wait_for,
)

pytestmark = pytest.mark.e2e

ACTION = "/compute/v2.1/os-aggregates/{aggregate_id}/action"
FLEET = {
    "aggregates": [
        {"name": "L40-n3", "hosts": ["gpu-l40-[001-008]"]},
        {"name": "L40-n3-NVLink", "hosts": ["gpu-l40-008", "gpu-l40-009", "gpu-l40-010"]},
        {"name": "L40-n3-spot", "hosts": []},
        {"name": "L40-n3-NVLink-spot", "hosts": []},
    ]
}


@pytest.fixture
def cloud(kube, tmp_path):
    """(sim, operator): novasim and one `gpupool run` on it; everything cleaned up after."""
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established("gpuhostpools.gpupool.io")
    sim = SimProcess(FLEET, tmp_path / "sim").start()
    operators = [OperatorProcess(kube, sim, tmp_path, interval=30, identity="op")]

    def successor() -> OperatorProcess:
        """Another replica in the same peering: it takes over once the first is gone."""
        operators.append(
            OperatorProcess(
                kube,
                sim,
                tmp_path,
                interval=30,
                identity=f"op-{len(operators) + 1}",
                peering=operators[0].peering,
            )
        )
        return operators[-1]

    sim.successor = successor
    yield sim, operators[0]
    for operator in operators:
        operator.stop()
    delete_all_pools(kube)
    sim.stop()
    for operator in operators:
        print(f"----- {operator.identity} log (tail) -----\n" + "\n".join(operator.log().splitlines()[-30:]))


def ready(kube, name: str) -> tuple[str, str]:
    found = condition(kube, name)
    return found.get("status", ""), found.get("reason", "")


def test_one_bad_resource_never_holds_up_the_others(cloud, kube):
    sim, _ = cloud
    # Valid for the API server (dryRun may be null, so that it is not read as false), not for the
    # operator. `kubectl create` keeps the null; `kubectl apply` would drop it.
    bad = ghp("bad-null", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}, dryRun=None)
    kube.kubectl("create", "-f", "-", input=bad)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
    wait_for("l40 Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    status, reason = wait_for(
        "bad-null refused", lambda: ready(kube, "bad-null")[1] and ready(kube, "bad-null")
    )
    assert (status, reason) == ("False", "InvalidSpec")
    assert "spec.dryRun: must be true or false (got null)" in condition(kube, "bad-null")["message"]
    assert len(members(sim)["L40-n3-spot"]) == 2


def test_hosts_two_resources_share_are_never_moved_and_both_say_so(cloud, kube):
    sim, _ = cloud
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 8}})
        + "---\n"
        + ghp(
            "l40-nvlink",
            gpuType="L40",
            cloud="sim",
            onDemand={"aggregates": ["L40-n3-NVLink"]},
            pools={"spot": {"aggregate": "L40-n3-NVLink-spot", "hosts": 3}},
        )
    )
    for name in ("l40", "l40-nvlink"):
        wait_for(
            f"{name} blocked",
            lambda n=name: any(b["reason"] == "HostShared" for b in (_status(kube, n).get("blockers") or ())),
            timeout=60,
        )
        (shared,) = [b for b in _status(kube, name)["blockers"] if b["reason"] == "HostShared"]
        assert "gpu-l40-008" in shared["message"]
        assert "'l40'" in shared["message"] and "'l40-nvlink'" in shared["message"]
        assert ready(kube, name)[0] == "False"
    nova = members(sim)
    assert "gpu-l40-008" in nova["L40-n3"] and "gpu-l40-008" in nova["L40-n3-NVLink"]
    assert "gpu-l40-008" not in nova["L40-n3-spot"] | nova["L40-n3-NVLink-spot"]


def test_a_paused_resource_finishes_a_half_done_move_and_starts_none(cloud, kube, tmp_path):
    sim, operator = cloud
    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)
    operator.kill()  # killed right after the host left L40-n3
    sim.release_all()
    assert disabled_by_gpupool(sim) == ["gpu-l40-001"]
    kube.kubectl("patch", "ghp", "l40", "--type=merge", "-p", '{"spec":{"paused":true}}')
    sim.successor()
    wait_for("the half-done move finished", lambda: not disabled_by_gpupool(sim), timeout=60)
    nova = members(sim)
    assert nova["L40-n3-spot"] == {"gpu-l40-001"}  # finished, and nothing new started
    status, reason = wait_for(
        "Ready settled", lambda: ready(kube, "l40")[1] == "Paused" and ready(kube, "l40")
    )
    assert status == "False"  # spot wants 3 and holds 1: paused, not done
    assert "2 move(s) needed, none made" in condition(kube, "l40")["message"]
    assert not (_status(kube, "l40").get("inFlight") or [])


def test_a_retain_resource_deleted_mid_move_strands_no_host(cloud, kube, tmp_path):
    sim, operator = cloud
    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)
    operator.kill()
    sim.release_all()
    assert disabled_by_gpupool(sim) == ["gpu-l40-001"]  # in no aggregate, disabled with our intent
    kube.kubectl("delete", "ghp", "l40", "--wait=true", "--timeout=30s")  # Retain: no finalizer
    # A resource on the same cloud keeps the operator visiting it.
    kube.apply(ghp("nvlink", gpuType="L40", cloud="sim", onDemand={"aggregates": ["L40-n3-NVLink"]}))
    sim.successor()
    wait_for("the orphaned move rolled back", lambda: not disabled_by_gpupool(sim), timeout=60)
    assert "gpu-l40-001" in members(sim)["L40-n3"]
    host = next(h for h in sim.state()["hosts"] if h["name"] == "gpu-l40-001")
    assert (host["status"], host["disabled_reason"]) == ("enabled", None)


def test_the_cli_waits_while_the_operator_moves_hosts(cloud, kube, tmp_path):
    sim, operator = cloud
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)  # the operator holds the lock and is mid-move
    spec = tmp_path / "pools.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "gpupool.io/v1alpha1",
                "kind": "GpuHostPool",
                "metadata": {"name": "l40-cli"},
                "spec": {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": 2}}},
            }
        )
    )
    cli = subprocess.run(
        [GPUPOOL, "reconcile", "-f", str(spec), "-o", "json", "--wait", "2"],
        env={**os.environ, **sim.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    sim.release_all()
    assert cli.returncode == 2, cli.stderr
    assert "another gpupool process is moving hosts on this cloud: gpupool operator op" in cli.stderr
    status = json.loads(cli.stdout)[0]["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["reason"] == "OtherProcessMoving"
    assert status["lastMoves"] == []  # it moved nothing, and claims nothing
    wait_for("l40 Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    assert len(finished) == 2
    assert "gpupool-lock" not in members(sim)  # released once the operator had nothing left to do


def _status(kube, name: str) -> dict:
    proc = kube.kubectl("get", "ghp", name, "-o", "json", check=False)
    return (json.loads(proc.stdout).get("status") or {}) if proc.returncode == 0 else {}


def test_the_operators_kill_switch_stops_a_change_mid_way_and_strands_nothing(cloud, kube):
    sim, _ = cloud
    kube.kubectl("create", "namespace", "gpupool-system", check=False)
    hold = sim.hold("POST", ACTION, body_contains="add_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 4}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)  # mid-change: the first host is on its way into spot
    kube.kubectl(
        "-n", "gpupool-system", "create", "configmap", "gpupool-stop", "--from-literal=reason=INC-42"
    )
    time.sleep(2.5)  # the operator reads its switch at most every 2 s, before each move it starts
    sim.release_all()
    status, reason = wait_for(
        "Stopped", lambda: ready(kube, "l40")[1] == "Stopped" and ready(kube, "l40"), timeout=60
    )
    assert status == "False" and "INC-42" in condition(kube, "l40")["message"]
    time.sleep(3)
    assert members(sim)["L40-n3-spot"] == {"gpu-l40-001"}  # the move under way finished, no other started
    assert disabled_by_gpupool(sim) == []
    time.sleep(11)  # rounds go on every 5 s while the switch is on: the news is told once
    assert [e["reason"] for e in events(kube, "l40")].count("Stopped") == 1

    kube.kubectl("-n", "gpupool-system", "delete", "configmap", "gpupool-stop")
    wait_for("Ready after the switch is off", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    assert len(members(sim)["L40-n3-spot"]) == 4


def test_rotated_credentials_are_picked_up_without_a_restart(cloud, kube):
    sim, _ = cloud
    good = sim.clouds_yaml.read_text()
    clouds = yaml.safe_load(good)
    entry = clouds["clouds"][sim.cloud_name]
    entry["auth"]["password"] = "expired-password"
    sim.clouds_yaml.write_text(yaml.safe_dump(clouds))  # the old Secret: credentials Keystone refuses
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}))
    wait_for("CloudError", lambda: ready(kube, "l40")[1] == "CloudError", timeout=60)
    assert "expired-password" not in json.dumps(_status(kube, "l40"))
    sim.clouds_yaml.write_text(good)  # the rotated Secret, as the kubelet swaps it in
    wait_for(
        "Ready with the new credentials", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60
    )
