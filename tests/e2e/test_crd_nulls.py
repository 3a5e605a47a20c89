"""What the real API server does with nulls and with names the operator refuses, through the CRD of
crds/: a null must reach the operator (which refuses it, as the CLI does) instead of turning into a
default it acts on, and names the operator refuses are refused at `kubectl apply` in words."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from gpupool.api import SpecError, parse_pool
from tests.e2e.operator_helpers import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crd(kube):
    kube.kubectl("apply", "-f", str(REPO / "crds" / "gpuhostpools.gpupool.io.yaml"))
    kube.wait_established("gpuhostpools.gpupool.io")
    yield kube
    kube.kubectl("delete", "ghp", "--all", "--wait=false", check=False)


def manifest(name: str, spec: dict) -> str:
    return yaml.safe_dump(
        {"apiVersion": "gpupool.io/v1alpha1", "kind": "GpuHostPool", "metadata": {"name": name}, "spec": spec}
    )


NULLS = [
    (
        "dry-run",
        {"gpuType": "L40", "pools": {"spot": {"hosts": 5}}, "dryRun": None},
        ("dryRun",),
        "spec.dryRun",
    ),
    ("paused", {"gpuType": "L40", "paused": None}, ("paused",), "spec.paused"),
    (
        "concurrency",
        {"gpuType": "L40", "policy": {"maxConcurrentMoves": None}},
        ("policy", "maxConcurrentMoves"),
        "spec.policy.maxConcurrentMoves",
    ),
    (
        "exclude",
        {"gpuType": "L40", "policy": {"excludeHosts": None}},
        ("policy", "excludeHosts"),
        "spec.policy.excludeHosts",
    ),
    ("policy", {"gpuType": "L40", "policy": None}, ("policy",), "spec.policy"),
    ("pools", {"gpuType": "L40", "pools": None}, ("pools",), "spec.pools"),
    ("cloud", {"gpuType": "L40", "cloud": None}, ("cloud",), "spec.cloud"),
]


def at(spec: dict, path: tuple) -> object:
    for part in path:
        spec = spec[part]
    return spec


@pytest.mark.parametrize("how", ["create", "server-side-apply"])
@pytest.mark.parametrize(("case", "spec", "path", "field"), NULLS, ids=[n[0] for n in NULLS])
def test_a_null_is_stored_as_null_and_the_operator_refuses_it(crd, how, case, spec, path, field):
    name = f"null-{case}-{how}"
    args = ["create", "-f", "-"] if how == "create" else ["apply", "--server-side", "-f", "-"]
    crd.kubectl(*args, input=manifest(name, spec))
    stored = crd.kubectl_json("get", "ghp", name)
    assert at(stored["spec"], path) is None, f"{case}: the API server stored {json.dumps(stored['spec'])}"
    with pytest.raises(SpecError) as caught:
        parse_pool(stored)  # what the operator does with it (controller.py), and the CLI with a file
    assert any(f"{field}: must be" in line and "(got null)" in line for line in caught.value.problems), (
        caught.value.problems
    )


COUNTS = [
    ("spot", {"spot": {"hosts": None}}, "spec.pools.spot.hosts"),
    ("spot-left-out", {"spot": {}}, "spec.pools.spot.hosts"),
    ("contract", {"contracts": [{"aggregate": "C-A", "hosts": None}]}, "spec.pools.contracts[0].hosts"),
]


@pytest.mark.parametrize("how", ["create", "apply", "server-side-apply"])
@pytest.mark.parametrize(("case", "pools", "field"), COUNTS, ids=[c[0] for c in COUNTS])
def test_a_null_or_missing_count_is_refused_by_every_kind_of_apply(crd, how, case, pools, field):
    """A host count is required: null (an unset Helm value; plain `kubectl apply` drops it before
    the API server sees it) or left out is refused, never read as "empty the pool"."""
    name = f"count-{case}-{how}"
    args = {"create": ["create"], "apply": ["apply"], "server-side-apply": ["apply", "--server-side"]}[how]
    spec = {"gpuType": "L40", "pools": pools}
    result = crd.kubectl(*args, "-f", "-", input=manifest(name, spec), check=False)
    assert result.returncode != 0
    assert f"{field}: " in result.stderr, result.stderr
    assert crd.kubectl("get", "ghp", name, check=False).returncode != 0


def test_the_examples_are_still_accepted(crd):
    out = crd.kubectl("apply", "--dry-run=server", "-f", str(REPO / "examples" / "pools")).stdout
    assert out.count("created (server dry run)") == len(list((REPO / "examples" / "pools").glob("*.yaml")))


LONG = "x" * 200
REFUSED = [
    (
        "arrow",
        {"pools": {"contracts": [{"aggregate": "Contract A -> B", "hosts": 1}]}},
        r"spec\.pools\.contracts\[0\]\.aggregate: .*contains ' -> '.*rename the aggregate",
    ),
    (
        "stop",
        {"pools": {"spot": {"aggregate": "gpupool-stop", "hosts": 1}}},
        r"spec\.pools\.spot\.aggregate: .*gpupool's own markers, not pools",
    ),
    (
        "lock",
        {"onDemand": {"aggregates": ["gpupool-lock"]}},
        r"spec\.onDemand\.aggregates\[0\]: .*gpupool's own markers",
    ),
    (
        "length",
        {"onDemand": {"aggregates": [LONG]}, "pools": {"runpod": {"aggregate": "r" * 200, "hosts": 1}}},
        r"spec\.pools\.runpod\.aggregate: .*more than 218 characters together.*shorten one of the names",
    ),
    (
        "contract-length",
        {"onDemand": {"aggregates": [LONG]}, "pools": {"contracts": [{"aggregate": "c" * 30, "hosts": 1}]}},
        r"spec\.pools\.contracts: .*more than 218 characters together",
    ),
    (
        "newline",
        {"pools": {"contracts": [{"aggregate": "a\nb", "hosts": 1}]}},
        r"spec\.pools\.contracts\[0\]\.aggregate: .*must not be blank, start or end with a space, or contain control",
    ),
    (
        "nul",
        {"pools": {"runpod": {"aggregate": "run\x00pod", "hosts": 1}}},
        r"spec\.pools\.runpod\.aggregate: .*NUL",
    ),
    ("blank", {"onDemand": {"aggregates": ["  "]}}, r"spec\.onDemand\.aggregates\[0\]: .*must not be blank"),
    (
        "trailing-space",
        {"pools": {"spot": {"aggregate": "L40-n3-spot ", "hosts": 1}}},
        r"spec\.pools\.spot\.aggregate",
    ),
    ("host", {"policy": {"excludeHosts": ["gpu-l40-001\n"]}}, r"spec\.policy\.excludeHosts\[0\]"),
]


@pytest.mark.parametrize(("case", "spec", "expected"), REFUSED, ids=[r[0] for r in REFUSED])
def test_names_the_operator_refuses_are_refused_at_apply(crd, case, spec, expected):
    document = {"gpuType": "L40"} | spec
    result = crd.kubectl("apply", "-f", "-", input=manifest(f"bad-{case}", document), check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert re.search(expected, result.stderr), f"{case}: {result.stderr}"
    with pytest.raises(SpecError):  # the operator and the CLI refuse it too
        parse_pool(yaml.safe_load(manifest(f"bad-{case}", document)))
