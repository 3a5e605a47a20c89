"""What Flux and Argo CD make of the GpuHostPools the operator writes, on live objects.

`gpupool run` against the local kube-apiserver and novasim; each object is judged by the real
kstatus (what Flux's `wait: true` and `healthChecks` use) and by gpupool's Argo CD health check
run as Argo CD runs an argocd-cm customization (testbed.gitops_health: a Go harness with
sigs.k8s.io/cli-utils and gopher-lua). Two ways of looking, as the tools do:

- polling (Flux's poller reads the object every few seconds): `kubectl get` every 0.2 s, and after
  each read whether Nova has converged yet (read after the object: Nova not converged then means
  it was not converged when that status was written);
- every version of the object (Argo CD's cluster cache watches): a watch from the collection's
  resourceVersion taken before `kubectl apply`, replayed once the test is done.

The contract (docs/operator.md, "How Argo CD and Flux read a GpuHostPool"): no Current and no
Healthy before the pools converged; a missing aggregate or a conflict Failed/Degraded in the
first round; paused Suspended; converged Current/Healthy; `kubectl wait --for=condition=Ready`
returns when, and only when, the pools converged.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from novasim.testing import SimProcess
from testbed import gitops_health
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    disabled_by_gpupool,
    ghp,
    members,
    new_peering,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _gpu(kind: str, prefix: str, *, busy: int = 0, spot: bool = True) -> tuple[list[dict], list[dict]]:
    aggregates = [
        {
            "name": f"{kind}-n3",
            "metadata": {"availability_zone": "nova"},
            "hosts": [f"gpu-{prefix}-[001-006]"],
        }
    ]
    if spot:
        aggregates.append({"name": f"{kind}-n3-spot", "hosts": []})
    return aggregates, [{"name": f"gpu-{prefix}-[001-{busy:03d}]", "instances": 1}] if busy else []


def _fleet() -> dict:
    fleet: dict[str, list] = {"aggregates": [], "hosts": []}
    for kind, prefix, busy, spot in (
        ("L40", "l40", 0, True),  # converging, watched and polled
        ("A100", "a100", 0, True),  # kubectl wait on a converging pool
        ("H100", "h100", 2, True),  # blocked: 4 movable hosts
        ("T4", "t4", 0, True),  # conflict
        ("A40", "a40", 0, False),  # no spot aggregate: AggregateMissing
        ("V100", "v100", 0, True),  # paused
        ("L4", "l4", 0, True),  # a new resource, as created
    ):
        aggregates, hosts = _gpu(kind, prefix, busy=busy, spot=spot)
        fleet["aggregates"] += aggregates
        fleet["hosts"] += hosts
    return fleet


def install_crd(kube) -> None:
    """Apply the CRD and wait until it is served. (Not `kubectl wait --for=condition=Established`
    at once: on a CRD whose status the API server has not written yet it fails with "accessor
    error: <nil> is of the type <nil>", kubectl 1.34.)"""
    kube.kubectl("apply", "-f", str(REPO / "crds"))

    def established() -> bool:
        crd = kube.kubectl_json("get", "crd", "gpuhostpools.gpupool.io")
        found = (crd.get("status") or {}).get("conditions") or ()
        return any(c["type"] == "Established" and c["status"] == "True" for c in found)

    wait_for("the GpuHostPool CRD established", established, timeout=60)


@pytest.fixture(scope="module")
def cloud(kube, tmp_path_factory):
    """CRD, novasim (40 ms per request, so that moves take visible time) and one operator with a
    1 s round interval, shared by this module's tests."""
    gitops_health.ensure_binary()
    install_crd(kube)
    workdir = tmp_path_factory.mktemp("gitops-health")
    sim = SimProcess(_fleet(), workdir / "sim", latency_ms=40).start()
    op = OperatorProcess(kube, sim, workdir, interval=1, peering=new_peering(), identity="gitops")
    # Until its peering record has settled a replica writes no status: wait, so that the tests
    # see the operator at work rather than starting.
    wait_for("the operator to lead", lambda: "gitops leads" in op.log(), timeout=30)
    yield sim
    op.stop()
    delete_all_pools(kube)
    sim.stop()
    print("----- operator log (tail) -----\n" + "\n".join(op.log().splitlines()[-25:]))


@pytest.fixture(autouse=True)
def _clean(request, kube):
    """No GpuHostPool left behind by a test that made some."""
    yield
    if "cloud" in request.fixturenames:
        delete_all_pools(kube)


# -- reading ---------------------------------------------------------------------------------------


def read(kube, name: str) -> dict:
    return json.loads(kube.kubectl("get", "ghp", name, "-o", "json").stdout)


def _api(kube, query: dict[str, str]):
    """GET the GpuHostPool collection from the API server itself (kubectl's List has no
    resourceVersion of its own)."""
    request = urllib.request.Request(
        f"{kube.server}/apis/gpupool.io/v1alpha1/gpuhostpools?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Bearer {kube.token}"},
    )
    return urllib.request.urlopen(
        request, timeout=30, context=ssl.create_default_context(cafile=str(kube.ca_file))
    )


def collection_version(kube) -> str:
    """The GpuHostPool collection's resourceVersion now: a watch from it sees every later version."""
    with _api(kube, {"limit": "1"}) as listed:
        version = json.load(listed)["metadata"]["resourceVersion"]
    assert version, "the API server's list has no resourceVersion"
    return version


def versions(kube, name: str, since: str) -> list[dict]:
    """Every version of `name` written after `since`, in order (ADDED, MODIFIED...): a watch from
    that resourceVersion, closed by the API server after a second with nothing new."""
    query = {
        "watch": "1",
        "resourceVersion": since,
        "fieldSelector": f"metadata.name={name}",
        "timeoutSeconds": "1",
    }
    found = []
    with _api(kube, query) as stream:
        for line in stream:
            event = json.loads(line)
            assert event["type"] in ("ADDED", "MODIFIED", "DELETED"), event
            found.append(event["object"])
    assert found, f"the watch from {since} saw no version of {name}"
    return found


def judged(objects: list[dict]) -> list[dict]:
    """kstatus's and Argo CD's verdicts on each object (see testbed.gitops_health)."""
    return gitops_health.evaluate(objects)


def conditions_of(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


def nova_converged(sim, aggregate: str, hosts: int) -> bool:
    state = sim.state()
    spot = next(a for a in state["aggregates"] if a["name"] == aggregate)
    return len(spot["hosts"]) == hosts and not disabled_by_gpupool(sim, state)


def says_converged(obj: dict) -> bool:
    """The object's own status describes converged pools (counts met, nothing moving)."""
    st = obj.get("status") or {}
    total = st.get("total") or {}
    return (
        total.get("current") == total.get("desired")
        and total.get("moving") == 0
        and not st.get("inFlight")
        and st.get("observedGeneration") == obj["metadata"]["generation"]
    )


# -- tests -----------------------------------------------------------------------------------------


def test_from_apply_to_ready_neither_current_nor_healthy_before_nova_converged(kube, cloud):
    sim = cloud
    since = collection_version(kube)
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 5}}, policy={"maxConcurrentMoves": 1})
    )
    samples: list[tuple[dict, bool]] = []  # (the object, Nova converged when read just after it)
    deadline = time.monotonic() + 60
    while True:
        started = time.monotonic()
        obj = read(kube, "l40")
        converged = nova_converged(sim, "L40-n3-spot", 5)
        samples.append((obj, converged))
        if converged and conditions_of(obj).get("Ready", {}).get("status") == "True":
            break
        assert time.monotonic() < deadline, f"not Ready in 60 s; last status: {obj.get('status')}"
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    history = versions(kube, "l40", since)
    results = judged([obj for obj, _ in samples] + history)
    polled, watched = results[: len(samples)], results[len(samples) :]

    early = [(obj, r) for (obj, converged), r in zip(samples, polled, strict=True) if not converged]
    assert len(early) >= 3, f"too few reads before convergence to judge anything ({len(early)})"
    for obj, r in early:
        assert r["argocd"]["status"] != "Healthy", (obj.get("status"), r)
        assert conditions_of(obj).get("Ready", {}).get("status") != "True", obj.get("status")
        assert r["kstatus"]["status"] != "Current", (obj.get("status"), r)
    assert any(r["kstatus"]["status"] == "InProgress" for _, r in early)
    assert any(r["argocd"]["status"] == "Progressing" for _, r in early)
    assert polled[-1]["kstatus"]["status"] == "Current" and polled[-1]["argocd"]["status"] == "Healthy"

    # Every version Argo CD's watch would have seen: as created, and kopf's own writes (its
    # annotations) before the operator's first status; then the operator's.
    seen = list(zip(history, watched, strict=True))
    # Before the operator's first write the status is the CRD's default, observedGeneration 0.
    unobserved = [(obj, r) for obj, r in seen if not (obj.get("status") or {}).get("conditions")]
    written = [(obj, r) for obj, r in seen if (obj.get("status") or {}).get("conditions")]
    assert seen[0] == unobserved[0] and seen[: len(unobserved)] == unobserved, "a status went away"
    for obj, r in unobserved:
        assert obj["status"] == {"observedGeneration": 0}, obj["status"]
        assert r["kstatus"]["status"] == "InProgress", r
        assert r["argocd"] == {
            "status": "Progressing",
            "message": "Waiting for the operator to observe the GpuHostPool",
        }
    assert written, "the operator wrote no status"
    for obj, r in written:
        assert r["kstatus"]["status"] in ("InProgress", "Current"), (obj["status"], r)
        assert r["argocd"]["status"] in ("Progressing", "Healthy"), (obj["status"], r)
        if r["kstatus"]["status"] == "Current" or r["argocd"]["status"] == "Healthy":
            assert conditions_of(obj)["Ready"]["status"] == "True" and says_converged(obj), obj["status"]
    reasons = [conditions_of(obj)["Ready"]["reason"] for obj, _ in written]
    assert reasons[0] == "NewGeneration" and reasons[-1] == "Converged", reasons
    assert "Moving" in reasons, reasons
    print(
        f"\nversions: {len(unobserved)} before the operator's first status, {len(written)} written by it; "
        f"reads before convergence: {len(early)} ({sum(1 for obj, _ in early if not (obj.get('status') or {}).get('conditions'))} not observed yet)"
    )
    _, last = written[-1]
    assert last["kstatus"] == {"status": "Current", "message": "Resource is Ready"}
    assert last["argocd"] == {"status": "Healthy", "message": "every pool holds its desired hosts"}


def test_kstatus_does_not_call_a_new_resource_current(kube, cloud):
    since = collection_version(kube)
    kube.apply(ghp("l4", gpuType="L4", cloud="sim", pools={"spot": {"hosts": 1}}))
    created = versions(kube, "l4", since)[0]
    # The API server gives a new GpuHostPool the CRD's default status: not observed yet.
    assert created["status"] == {"observedGeneration": 0}
    (verdict,) = judged([created])
    assert verdict["argocd"]["status"] == "Progressing"
    assert verdict["kstatus"]["status"] == "InProgress", verdict["kstatus"]


def test_a_missing_aggregate_and_a_conflict_fail_in_the_first_round(kube, cloud):
    kube.apply(ghp("t4", gpuType="T4", cloud="sim", pools={"spot": {"hosts": 1}}))
    wait_for("t4 Ready", lambda: condition(kube, "t4").get("status") == "True", timeout=30)
    since = collection_version(kube)
    applied = time.monotonic()
    kube.apply(
        ghp("t4-team-b", gpuType="T4", cloud="sim", pools={"spot": {"hosts": 2}})
        + "---\n"
        + ghp("a40", gpuType="A40", cloud="sim", pools={"spot": {"hosts": 1}})
    )
    expected = {"t4-team-b": "Conflict", "a40": "AggregateMissing"}
    for name, reason in expected.items():
        wait_for(
            f"{name} {reason}",
            lambda n=name, r=reason: condition(kube, n, "Stalled").get("reason") == r,
            timeout=15,
        )
    took = time.monotonic() - applied
    for name, reason in expected.items():
        history = versions(kube, name, since)
        results = judged(history)
        written = [
            (obj, r)
            for obj, r in zip(history, results, strict=True)
            if (obj.get("status") or {}).get("conditions")
        ]
        # The first round's verdict is the first one after "new generation, planning".
        reasons = [conditions_of(obj)["Ready"]["reason"] for obj, _ in written]
        first = next(i for i, found in enumerate(reasons) if found != "NewGeneration")
        assert set(reasons[:first]) == {"NewGeneration"} and set(reasons[first:]) == {reason}, reasons
        for _, r in written:
            assert r["kstatus"]["status"] != "Current" and r["argocd"]["status"] != "Healthy", r
        obj, r = written[-1]
        stalled = conditions_of(obj)["Stalled"]
        assert stalled["status"] == "True" and stalled["reason"] == reason
        assert r["kstatus"] == {"status": "Failed", "message": stalled["message"]}
        assert r["argocd"] == {"status": "Degraded", "message": stalled["message"]}
    assert "'t4'" in conditions_of(read(kube, "t4-team-b"))["Stalled"]["message"]
    assert "A40-n3-spot" in conditions_of(read(kube, "a40"))["Stalled"]["message"]
    print(f"\nkubectl apply -> Failed (kstatus) / Degraded (Argo CD): {took:.1f}s")


def test_paused_is_suspended_and_converged_is_current_and_healthy(kube, cloud):
    sim = cloud
    spec = {"gpuType": "V100", "cloud": "sim", "pools": {"spot": {"hosts": 2}}, "paused": True}
    kube.apply(ghp("v100", **spec))
    wait_for("v100 Paused", lambda: condition(kube, "v100", "Paused").get("reason") == "Paused", timeout=30)
    (paused,) = judged([read(kube, "v100")])
    message = "paused: 2 move(s) needed, none made"
    assert paused["argocd"] == {"status": "Suspended", "message": message}
    # kstatus has no "suspended": with Ready False and neither Reconciling nor Stalled True it falls
    # back to the Ready condition, InProgress (so a Flux `wait` on a paused pool times out).
    assert paused["kstatus"] == {"status": "InProgress", "message": message}
    assert members(sim)["V100-n3-spot"] == set()

    kube.apply(ghp("v100", **{**spec, "paused": False}))
    wait_for("v100 Ready", lambda: condition(kube, "v100").get("status") == "True", timeout=30)
    (converged,) = judged([read(kube, "v100")])
    assert converged["kstatus"] == {"status": "Current", "message": "Resource is Ready"}
    assert converged["argocd"] == {"status": "Healthy", "message": "every pool holds its desired hosts"}
    assert nova_converged(sim, "V100-n3-spot", 2)


def test_kubectl_wait_for_ready_returns_when_and_only_when_converged(kube, cloud):
    sim = cloud
    kube.apply(
        ghp(
            "a100",
            gpuType="A100",
            cloud="sim",
            pools={"spot": {"hosts": 3}},
            policy={"maxConcurrentMoves": 1},
        )
        + "---\n"
        + ghp("h100", gpuType="H100", cloud="sim", pools={"spot": {"hosts": 5}})
    )
    waiting = subprocess.Popen(
        [str(kube.kubectl_path), "wait", "--for=condition=Ready", "ghp/a100", "--timeout=60s"],
        env=kube.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = waiting.communicate(timeout=90)
    converged_when_returned = nova_converged(sim, "A100-n3-spot", 3)
    assert waiting.returncode == 0, err
    assert converged_when_returned, f"kubectl wait returned before Nova converged: {out}"

    blocked = kube.kubectl("wait", "--for=condition=Ready", "ghp/h100", "--timeout=3s", check=False)
    assert blocked.returncode != 0 and "timed out" in blocked.stderr, blocked
    assert condition(kube, "h100", "Stalled").get("reason") == "NotEnoughMovableHosts"
    assert kube.kubectl("wait", "--for=condition=Ready", "ghp/a100", "--timeout=5s").returncode == 0


def test_the_argocd_cm_patch_installs_as_documented(kube, tmp_path):
    """docs/operator.md's two ways to add the health check to an Argo CD: `kubectl patch` of a live
    argocd-cm, and a kustomize patch of Argo CD's install (here a stand-in argocd-cm)."""
    patch = REPO / "manifests" / "argocd" / "argocd-cm-patch.yaml"
    script = gitops_health.HEALTH_LUA.read_text()
    key = "resource.customizations.health.gpupool.io_GpuHostPool"
    argocd_cm = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n"
        "  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}\n"
        "data:\n  url: https://argocd.example.com\n"
    )
    if kube.kubectl("get", "namespace", "argocd", check=False).returncode != 0:
        kube.kubectl("create", "namespace", "argocd")
    kube.apply(argocd_cm)
    try:
        kube.kubectl("-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", str(patch))
        data = kube.kubectl_json("-n", "argocd", "get", "configmap", "argocd-cm")["data"]
        assert data == {"url": "https://argocd.example.com", key: script}
    finally:
        kube.kubectl("-n", "argocd", "delete", "configmap", "argocd-cm", check=False)

    (tmp_path / "argocd-cm.yaml").write_text(argocd_cm)
    (tmp_path / "argocd-cm-patch.yaml").write_text(patch.read_text())
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [argocd-cm.yaml]\npatches:\n  - path: argocd-cm-patch.yaml\n"
    )
    (built,) = yaml.safe_load_all(kube.kubectl("kustomize", str(tmp_path)).stdout)
    assert built["data"] == {"url": "https://argocd.example.com", key: script}
    assert built["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
