"""gpupool's Argo CD health check, tested the way Argo CD tests its own, and kstatus on the same
objects.

manifests/argocd/gpupool.io/GpuHostPool/ is laid out as a directory of Argo CD's
resource_customizations/: health.lua, health_test.yaml (each test: inputPath -> the expected
healthStatus) and testdata/ (`kubectl get -o yaml` of GpuHostPools the operator wrote, recorded by
tests/gitops/record_testdata.py). Argo CD's runner (util/lua/health_test.go) runs each test and
compares the whole HealthStatus; here the same happens through testbed.gitops_health, a Go
harness with gopher-lua and the libraries Argo CD opens: once as a built-in customization (every
library, as Argo CD's own test does) and once as an argocd-cm one (no string, no math...).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from testbed import gitops_health

HERE = gitops_health.HEALTH_LUA.parent
HEALTH_LUA = gitops_health.HEALTH_LUA
CM_PATCH = gitops_health.REPO / "manifests" / "argocd" / "argocd-cm-patch.yaml"
CM_KEY = "resource.customizations.health.gpupool.io_GpuHostPool"
TESTS = yaml.safe_load((HERE / "health_test.yaml").read_text())["tests"]
SCENARIOS = {
    "healthy",
    "moving",
    "blocked",
    "invalid_spec",
    "conflict",
    "paused",
    "dry_run",
    "stale_generation",
    "no_status",
    "deleting",
}


def recorded(name: str) -> dict:
    return yaml.safe_load((HERE / "testdata" / f"{name}.yaml").read_text())


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


@pytest.fixture(scope="session")
def judged() -> dict[str, dict]:
    """testdata file name -> the harness's verdicts on it (one run for the whole module)."""
    files = sorted((HERE / "testdata").glob("*.yaml"))
    return {f.stem: r for f, r in zip(files, gitops_health.evaluate(files, HEALTH_LUA), strict=True)}


# -- Argo CD: health_test.yaml ----------------------------------------------------------------------


@pytest.mark.parametrize("test", TESTS, ids=[t["inputPath"] for t in TESTS])
def test_health_test_yaml(test, judged):
    expected = {k: v for k, v in test["healthStatus"].items() if v}  # Argo's HealthStatus omits empties
    found = judged[Path(test["inputPath"]).stem]
    assert found["lua"]["builtin"] == expected, "as a built-in customization (every Lua library)"
    assert found["lua"]["argocd-cm"] == expected, "as an argocd-cm customization (no useOpenLibs)"


def test_every_scenario_is_recorded_and_tested():
    recorded = {p.stem for p in (HERE / "testdata").glob("*.yaml")}
    tested = {Path(t["inputPath"]).stem for t in TESTS}
    assert recorded == SCENARIOS and tested == SCENARIOS
    assert all(t["inputPath"].startswith("testdata/") for t in TESTS)


def test_argo_cd_shows_pending_deletion_before_any_script(judged):
    """gitops-engine answers for an object being deleted itself; the script's own answer (in
    health_test.yaml) is for other users of it."""
    assert judged["deleting"]["argocd"] == {"status": "Progressing", "message": "Pending deletion"}
    for name in SCENARIOS - {"deleting"}:
        assert judged[name]["argocd"] == judged[name]["lua"]["argocd-cm"], name


# -- kstatus (Flux) on the same objects -------------------------------------------------------------

# What kstatus (sigs.k8s.io/cli-utils v0.37.2, status.Compute) says of each, and why. Its order:
# deletionTimestamp -> Terminating; observedGeneration != generation -> InProgress; Reconciling
# True -> InProgress (its message); Stalled True -> Failed (its message); then, for a kind it does
# not know, the Ready condition (True -> Current, False -> InProgress with Ready's message); no
# Ready condition at all -> Current.
KSTATUS = {
    "healthy": ("Current", "Resource is Ready"),
    "moving": ("InProgress", "Reconciling"),
    "blocked": ("Failed", "Stalled"),
    "invalid_spec": ("Failed", "Stalled"),
    "conflict": ("Failed", "Stalled"),
    # Neither Reconciling nor Stalled: Ready False decides, InProgress (a Flux `wait` times out).
    "paused": ("InProgress", "Ready"),
    "dry_run": ("InProgress", "Ready"),
    "stale_generation": ("InProgress", "GpuHostPool generation is 2, but latest observed generation is 1"),
    # Not observed yet (before the operator's first write, or while none runs): the CRD's default
    # status, observedGeneration 0, keeps kstatus from calling it Current.
    "no_status": ("InProgress", "GpuHostPool generation is 1, but latest observed generation is 0"),
    "deleting": ("Terminating", "Resource scheduled for deletion"),
}


@pytest.mark.parametrize("name", sorted(KSTATUS))
def test_kstatus(name, judged):
    status, message = KSTATUS[name]
    obj = recorded(name)
    if message in ("Reconciling", "Stalled", "Ready"):  # that condition's message
        message = conditions(obj)[message]["message"]
        assert message
    assert judged[name]["kstatus"] == {"status": status, "message": message}


def test_kstatus_and_argo_cd_agree_where_both_can_say(judged):
    """Failed is Degraded, InProgress Progressing (or Suspended when paused), Current Healthy,
    except for an object without status, which only Argo CD's check waits on."""
    same = {"Failed": {"Degraded"}, "InProgress": {"Progressing", "Suspended"}, "Current": {"Healthy"}}
    for name, found in judged.items():
        kstatus, argo = found["kstatus"]["status"], found["lua"]["argocd-cm"]["status"]
        if name in ("no_status", "deleting"):
            continue
        assert argo in same[kstatus], (name, kstatus, argo)


# -- the recorded objects are the operator's, as kubectl printed them -------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_testdata_is_a_recorded_object(name):
    text = (HERE / "testdata" / f"{name}.yaml").read_text()
    assert "# Recorded by tests/gitops/record_testdata.py" in text.splitlines()[1]
    obj = yaml.safe_load(text)
    assert (obj["apiVersion"], obj["kind"]) == ("gpupool.io/v1alpha1", "GpuHostPool")
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"] and meta["generation"] >= 1
    assert "managedFields" not in meta  # kubectl get hides them
    if name == "no_status":
        assert obj["status"] == {"observedGeneration": 0}  # the CRD's default: not observed yet
        return
    st = obj["status"]
    found = conditions(obj)
    assert set(found) == {"Ready", "Reconciling", "Stalled", "Paused"}
    ready = found["Ready"]
    assert not (found["Reconciling"]["status"] == "True" and found["Stalled"]["status"] == "True")
    for c in found.values():
        assert c["observedGeneration"] == st["observedGeneration"] and c["lastTransitionTime"]
        assert re.fullmatch(r"[A-Z][A-Za-z]+", c["reason"]), c
        if c["status"] == "False":
            assert c["reason"] == ready["reason"] and (c["type"] == "Ready" or c["message"] == "")
    assert st["summary"]["message"] == ready["message"][:200]


def test_each_scenario_shows_what_its_name_says():
    def ready(name: str) -> tuple[str, str]:
        c = conditions(recorded(name))["Ready"]
        return c["status"], c["reason"]

    def true(name: str) -> set[str]:
        return {t for t, c in conditions(recorded(name)).items() if c["status"] == "True"}

    assert ready("healthy") == ("True", "Converged") and true("healthy") == {"Ready"}
    assert ready("moving") == ("False", "Moving") and true("moving") == {"Reconciling"}
    assert recorded("moving")["status"]["inFlight"]
    assert ready("blocked") == ("False", "NotEnoughMovableHosts") and true("blocked") == {"Stalled"}
    assert ready("invalid_spec") == ("False", "InvalidSpec") and true("invalid_spec") == {"Stalled"}
    assert ready("conflict") == ("False", "Conflict") and true("conflict") == {"Stalled"}
    assert ready("paused") == ("False", "Paused") and true("paused") == {"Paused"}
    assert ready("dry_run") == ("False", "DryRun") and true("dry_run") == {"Paused"}
    stale = recorded("stale_generation")
    assert stale["metadata"]["generation"] == stale["status"]["observedGeneration"] + 1
    deleting = recorded("deleting")
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["finalizers"] == ["gpupool.io/return-to-on-demand"]
    assert deleting["spec"]["deletionPolicy"] == "ReturnToOnDemand" and not deleting["status"].get(
        "returnedToOnDemand"
    )


# -- the script, as users install it ----------------------------------------------------------------


def test_the_argocd_cm_patch_carries_exactly_health_lua():
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert (patch["apiVersion"], patch["kind"]) == ("v1", "ConfigMap")
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"] == {CM_KEY: HEALTH_LUA.read_text()}


def test_the_script_uses_no_library_an_argocd_cm_script_lacks():
    """argocd-cm scripts run with the base and table libraries (and a safe os) only, unless
    resource.customizations.useOpenLibs is set: no string.*, no ("..."):method(), no math.*."""
    code = "\n".join(line.split("--", 1)[0] for line in HEALTH_LUA.read_text().splitlines())
    assert not re.search(r"\b(string|math|io|debug|coroutine|utf8|channel)\s*\.", code), "a library call"
    assert not re.search(r"[\w)\]\"']\s*:\s*[A-Za-z_]\w*\s*\(", code), "a method call (the string library's)"


def test_the_harness_opens_the_libraries_argo_cd_opens(tmp_path):
    """The harness itself: a script that needs the string library fails as an argocd-cm
    customization and works as a built-in one; os.time is Argo CD's safe os."""
    script = tmp_path / "health.lua"
    script.write_text(
        'local hs = {}\nhs.status = "Healthy"\nhs.message = string.upper("ok") .. (os.time() > 0 and "" or "?")\n'
        "return hs\n"
    )
    (found,) = gitops_health.evaluate([recorded("healthy")], script)
    assert found["lua"]["builtin"] == {"status": "Healthy", "message": "OK"}
    assert "attempt to index a non-table object(nil) with key 'upper'" in found["lua"]["argocd-cm"]["error"]
    assert found["argocd"]["status"] == "Unknown"  # what Argo CD shows for a failing script
    script.write_text('return {status = "Fine"}\n')
    (found,) = gitops_health.evaluate([recorded("healthy")], script)
    assert found["lua"]["argocd-cm"] == {
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }
