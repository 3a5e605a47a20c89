"""The operator end to end: `gpupool run` as a real process, a real kube-apiserver, real kubectl,
novasim over HTTP. Each test checks what a user would: kubectl output, Events, and Nova itself."""

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
    status,
    wait_for,
)

pytestmark = pytest.mark.e2e

L40_FLEET = {
    "aggregates": [
        {"name": "L40-n3", "metadata": {"availability_zone": "nova"}, "hosts": ["gpu-l40-[001-012]"]},
        {"name": "L40-n3-spot", "hosts": []},
        {"name": "L40-n3-runpod", "hosts": []},
        {"name": "Contract-L40-Acme", "hosts": []},
    ],
    "hosts": [{"name": "gpu-l40-[001-002]", "instances": 1}],
}
ALL_L40 = {f"gpu-l40-{i:03d}" for i in range(1, 13)}
MANAGED = ("L40-n3", "L40-n3-spot", "L40-n3-runpod", "Contract-L40-Acme")


def assert_rules(sim, hosts=ALL_L40, managed=MANAGED) -> None:
    state = sim.state()
    where: dict[str, list[str]] = {}
    for agg in state["aggregates"]:
        if agg["name"] in managed:
            for h in agg["hosts"]:
                where.setdefault(h, []).append(agg["name"])
    assert hosts <= set(where), f"hosts outside every pool: {sorted(hosts - set(where))}"
    assert all(len(a) == 1 for a in where.values()), {h: a for h, a in where.items() if len(a) > 1}
    ours = disabled_by_gpupool(sim, state)
    assert not ours, f"left disabled by gpupool: {ours}"


@pytest.fixture(scope="module")
def crd(kube):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established("gpuhostpools.gpupool.io")
    return kube


@pytest.fixture
def stack(crd, tmp_path):
    """start(fleet, replicas=1, interval=30, latency_ms=0) -> (sim, [operators])."""
    sims, operators = [], []
    peering = new_peering()

    def start(fleet, replicas: int = 1, interval: float = 30, latency_ms: float = 0):
        sim = SimProcess(fleet, tmp_path / f"sim-{len(sims)}", latency_ms=latency_ms).start()
        sims.append(sim)
        for i in range(replicas):
            operators.append(
                OperatorProcess(crd, sim, tmp_path, interval=interval, peering=peering, identity=f"op-{i}")
            )
        return sim, operators

    def restart(sim, identity: str, interval: float = 30):
        op = OperatorProcess(crd, sim, tmp_path, interval=interval, peering=peering, identity=identity)
        operators.append(op)
        return op

    start.restart = restart
    yield start
    for op in operators:
        op.stop()
    delete_all_pools(crd)
    for sim in sims:
        sim.stop()
    for op in operators:
        print(f"----- {op.log_file.name} (tail) -----\n" + "\n".join(op.log().splitlines()[-25:]))


def ready(kube, name):
    return condition(kube, name).get("status") == "True"


def test_examples_converge_and_read_well_in_kubectl(stack, kube):
    sim, _ = stack(REPO / "examples" / "fleet.yaml")
    sim.reset_stats()
    applied = time.time()
    kube.kubectl("apply", "-f", str(REPO / "examples" / "pools"))
    first = wait_for("the first Nova request", lambda: sim.stats()["first_at"], timeout=60)
    print(f"\nkubectl apply -> first Nova request: {first - applied:.2f}s")
    kube.kubectl("wait", "--for=condition=Ready", "ghp", "--all", "--timeout=120s")

    table = kube.kubectl("get", "ghp").stdout
    assert re.search(r"^NAME\s+GPU\s+SPOT\s+RUNPOD\s+CONTRACTS\s+READY\s+REASON\s+AGE", table, re.M), table
    assert re.search(r"^l40\s+L40\s+8/8\s+4/4\s+6/6\s+True\s+Converged\s", table, re.M), table
    assert re.search(r"^rtx-a6000\s+RTX-A6000\s+4/4\s+1/1\s+16/16\s+True\s+Converged\s", table, re.M), table
    wide = kube.kubectl("get", "ghp", "-o", "wide").stdout
    assert "ON-DEMAND" in wide and "MESSAGE" in wide and "every pool holds its desired hosts" in wide
    assert re.search(r"^l40\s.*\s\d+ \(\d+ movable\)\s", wide, re.M), wide

    nova = members(sim)
    assert len(nova["L40-n3-spot"]) == 8 and len(nova["L40-n3-runpod"]) == 4
    assert len(nova["A100-n3-runpod"]) == 3 and len(nova["H100-n3-spot"]) == 2
    assert len(nova["Contract-FLA-4145-0522-Flawless-16xRTX-A6000"]) == 4
    assert "gpu-l40-038" in nova["L40-n3"]  # excluded in the spec

    described = kube.kubectl("describe", "ghp", "l40").stdout
    assert re.search(r"Type:\s+Ready", described) and "Converged" in described, described
    assert "MoveFinished" in described and "gpu-l40-024" in described, described
    st = status(kube, "l40")
    assert st["observedGeneration"] == 1
    assert {c["type"] for c in st["conditions"]} == {"Ready", "Reconciling", "Stalled", "Paused"}
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])
    assert all(c["lastTransitionTime"] for c in st["conditions"])


@pytest.mark.parametrize(
    ("mistake", "spec", "expected"),
    [
        ("negative count", {"gpuType": "L40", "pools": {"spot": {"hosts": -1}}}, r"spec.pools.spot.hosts"),
        ("unknown field", {"gpuType": "L40", "polcy": {}}, r"polcy"),
        (
            "concurrency out of range",
            {"gpuType": "L40", "policy": {"maxConcurrentMoves": 0}},
            r"maxConcurrentMoves",
        ),
        (
            "contract without aggregate",
            {"gpuType": "L40", "pools": {"contracts": [{"hosts": 1}]}},
            r"aggregate",
        ),
        (
            "aggregate named twice",
            {"gpuType": "L40", "pools": {"spot": {"aggregate": "L40-n3", "hosts": 1}}},
            r"L40-n3",
        ),
        (
            "duplicate contracts",
            {
                "gpuType": "L40",
                "pools": {
                    "contracts": [
                        {"aggregate": "Contract-A", "hosts": 1},
                        {"aggregate": "Contract-A", "hosts": 2},
                    ]
                },
            },
            r"spec.pools.contracts.*each contract aggregate may appear once",
        ),
        ("missing gpuType", {"pools": {"spot": {"hosts": 1}}}, r"gpuType"),
        ("bad deletion policy", {"gpuType": "L40", "deletionPolicy": "Delete"}, r"deletionPolicy"),
    ],
)
def test_invalid_specs_are_refused_by_kubectl_apply(crd, mistake, spec, expected):
    result = crd.kubectl(
        "apply", "-f", "-", input=ghp(f"bad-{abs(hash(mistake)) % 10000}", **spec), check=False
    )
    assert result.returncode != 0, f"{mistake}: accepted"
    assert re.search(expected, result.stderr), f"{mistake}: {result.stderr}"


def test_spec_changes_mid_progress_are_followed(stack, kube):
    sim, _ = stack(L40_FLEET, latency_ms=40)
    spec = {
        "gpuType": "L40",
        "cloud": "sim",
        "pools": {"spot": {"hosts": 8}},
        "policy": {"maxConcurrentMoves": 1},
    }
    kube.apply(ghp("l40", **spec))
    wait_for("two hosts in spot", lambda: len(members(sim)["L40-n3-spot"]) >= 2, timeout=60)
    spec["pools"]["spot"]["hosts"] = 3  # shrink while growing
    kube.apply(ghp("l40", **spec))
    wait_for("spot at 3 and Ready", lambda: ready(kube, "l40") and len(members(sim)["L40-n3-spot"]) == 3, 90)
    assert status(kube, "l40")["observedGeneration"] == 2

    spec["pools"]["spot"]["hosts"] = 5
    spec["dryRun"] = True
    kube.apply(ghp("l40", **spec))
    wait_for("planned moves", lambda: status(kube, "l40").get("plannedMoves"), timeout=60)
    assert len(members(sim)["L40-n3-spot"]) == 3

    spec["dryRun"] = False
    spec["paused"] = True
    kube.apply(ghp("l40", **spec))
    wait_for("Paused", lambda: condition(kube, "l40", "Paused").get("reason") == "Paused", timeout=60)
    assert condition(kube, "l40", "Paused")["status"] == "True"
    time.sleep(1)
    assert len(members(sim)["L40-n3-spot"]) == 3

    spec["paused"] = False
    kube.apply(ghp("l40", **spec))
    wait_for("spot at 5", lambda: ready(kube, "l40") and len(members(sim)["L40-n3-spot"]) == 5, timeout=90)
    assert_rules(sim)


def test_sigkill_mid_move_and_restart(stack, kube):
    sim, (op,) = stack(L40_FLEET)
    hold = sim.hold("POST", "/compute/v2.1/os-aggregates/{aggregate_id}/action", body_contains="remove_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 2})
    )
    sim.wait_held(hold, timeout=60)
    in_flight = wait_for(
        "in-flight moves in the status", lambda: status(kube, "l40").get("inFlight"), timeout=30
    )
    assert in_flight[0]["step"] in ("RemoveFromSource", "VerifyEmpty", "Disable")
    op.kill()
    sim.release_all()
    stack.restart(sim, identity="op-restarted")
    wait_for("Ready after restart", lambda: ready(kube, "l40"), timeout=90)
    assert len(members(sim)["L40-n3-spot"]) == 3
    assert_rules(sim)


def test_two_replicas_move_each_host_once(stack, kube):
    sim, ops = stack(L40_FLEET, replicas=2)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 4}, "runpod": {"hosts": 2}}))
    wait_for("Ready", lambda: ready(kube, "l40"), timeout=90)
    assert_rules(sim)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    hosts = [re.match(r"(\S+) moved", e["message"])[1] for e in finished]
    assert sorted(hosts) == sorted(set(hosts)) and len(hosts) == 6, hosts  # each host once, each event once
    assert len({e["reportingInstance"] for e in finished}) == 1  # one replica acted
    assert all(e["count"] == 1 for e in finished)


def test_drift_is_put_back_on_the_next_timer_round(stack, kube):
    sim, _ = stack(L40_FLEET, interval=2)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}))
    wait_for("Ready", lambda: ready(kube, "l40") and len(members(sim)["L40-n3-spot"]) == 3, timeout=60)
    taken = sorted(members(sim)["L40-n3-spot"])[0]
    sim.move_host(taken, "L40-n3-spot", "L40-n3")  # someone moves a host back by hand
    wait_for(
        "the timer round restores spot and re-enables the host",
        lambda: len(members(sim)["L40-n3-spot"]) == 3 and not disabled_by_gpupool(sim),
        timeout=30,
    )
    assert_rules(sim)


def test_conflicting_pools_the_later_waits(stack, kube):
    sim, _ = stack(L40_FLEET)
    kube.apply(ghp("first", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
    wait_for("first Ready", lambda: ready(kube, "first"), timeout=60)
    kube.apply(ghp("second", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 5}}))
    wait_for("Conflict", lambda: condition(kube, "second").get("reason") == "Conflict", timeout=60)
    assert "managed by GpuHostPool 'first'" in condition(kube, "second")["message"]
    assert len(members(sim)["L40-n3-spot"]) == 2
    assert any(e["reason"] == "Conflict" for e in events(kube, "second"))
    kube.kubectl("delete", "ghp", "first")
    wait_for("second takes over", lambda: ready(kube, "second") and len(members(sim)["L40-n3-spot"]) == 5, 60)


def test_deletion_with_each_policy(stack, kube):
    sim, _ = stack(L40_FLEET)
    kube.apply(ghp("keep", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}, deletionPolicy="Retain"))
    wait_for("keep Ready", lambda: ready(kube, "keep"), timeout=60)
    kube.kubectl("delete", "ghp", "keep", "--timeout=30s")
    assert len(members(sim)["L40-n3-spot"]) == 2  # Retain: the hosts stay where they are

    spec = {
        "gpuType": "L40",
        "cloud": "sim",
        "pools": {"runpod": {"hosts": 3}},
        "deletionPolicy": "ReturnToOnDemand",
    }
    spec["onDemand"] = {"aggregates": ["L40-n3"]}
    kube.apply(ghp("give-back", **spec))
    wait_for("give-back Ready", lambda: ready(kube, "give-back"), timeout=60)
    assert len(members(sim)["L40-n3-runpod"]) == 3
    kube.kubectl("delete", "ghp", "give-back", "--timeout=60s")
    assert members(sim)["L40-n3-runpod"] == set()
    assert kube.kubectl("get", "ghp", "give-back", check=False).returncode != 0


def test_blockers_are_reported_once_and_explained(stack, kube):
    sim, _ = stack(L40_FLEET, interval=2)
    # 10 movable hosts; partial progress allowed (the default moves nothing at all: test_cli_conventions)
    spec = {
        "gpuType": "L40",
        "cloud": "sim",
        "pools": {"spot": {"hosts": 11}},
        "policy": {"allowPartial": True},
    }
    kube.apply(ghp("greedy", **spec))
    wait_for("Stalled", lambda: condition(kube, "greedy", "Stalled").get("status") == "True", timeout=60)
    degraded = condition(kube, "greedy", "Stalled")
    assert degraded["reason"] == "NotEnoughMovableHosts"
    assert "instances" in degraded["message"], degraded["message"]
    assert condition(kube, "greedy")["status"] == "False"
    time.sleep(5)  # two more timer rounds: the same blocker is not posted again
    blocked = [e for e in events(kube, "greedy") if e["reason"] == "NotEnoughMovableHosts"]
    assert len(blocked) == 1, blocked
    assert len(members(sim)["L40-n3-spot"]) == 10
    assert_rules(sim)


def test_credentials_never_leak(stack, kube, tmp_path):
    """A wrong password: the status and Events say what is wrong; no secret anywhere a user reads."""
    fleet = {**L40_FLEET, "cloud": {"password": "right-pw-5521"}}
    sim, (op,) = stack(fleet)
    import yaml

    clouds = yaml.safe_load(sim.clouds_yaml.read_text())
    clouds["clouds"]["wrongpw"] = {
        **clouds["clouds"]["sim"],
        "auth": {**clouds["clouds"]["sim"]["auth"], "password": "wrong-pw-8812"},
    }
    sim.clouds_yaml.write_text(yaml.safe_dump(clouds))
    kube.apply(ghp("leaky", gpuType="L40", cloud="wrongpw", pools={"spot": {"hosts": 1}}))
    wait_for(
        "CloudError", lambda: condition(kube, "leaky", "Ready").get("reason") == "CloudError", timeout=60
    )
    message = condition(kube, "leaky", "Ready")["message"]
    assert "wrongpw" in message and ("credential" in message.lower() or "401" in message), message
    seen = kube.kubectl("get", "ghp", "leaky", "-o", "yaml").stdout
    seen += kube.kubectl("get", "events", "-n", "default", "-o", "yaml").stdout
    seen += op.log()
    for secret in ("right-pw-5521", "wrong-pw-8812"):
        assert secret not in seen
    assert len(members(sim)["L40-n3-spot"]) == 0


def test_kubectl_explain_reads_well(crd):
    explained = crd.kubectl("explain", "gpuhostpool.spec.pools").stdout
    for field in ("spot", "runpod", "contracts"):
        assert re.search(rf"^\s+{field}\s+<", explained, re.M), explained
    assert "DESCRIPTION" in explained
    policy = crd.kubectl("explain", "gpuhostpool.spec.policy.maxConcurrentMoves").stdout
    assert "at the same time" in policy
