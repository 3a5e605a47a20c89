"""Spec files that are hostile or sloppy: each gets one `FILE:LINE: field: what to fix` line, fast."""

from __future__ import annotations

import time

import pytest

from gpupool.api import SHOWN_LENGTH, SpecError, load_pools, parse_pool

HEAD = "apiVersion: gpupool.io/v1alpha1\nkind: GpuHostPool\nmetadata: {name: x}\n"


def refused(text: str, source: str = "f.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_pools(text, source=source)
    return caught.value.problems


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + f"\n{HEAD}spec: {{gpuType: L40, policy: {{excludeHosts: *a{levels - 1}}}}}\n"


@pytest.mark.parametrize("levels", [8, 9, 30])
def test_billion_laughs_fails_fast_in_one_line(levels):
    text = billion_laughs(levels)
    assert len(text) < 2000
    started = time.monotonic()
    (line,) = refused(text, "bomb.yaml")
    assert time.monotonic() - started < 2
    assert line.startswith(f"bomb.yaml:{levels + 4}: the alias *a{levels - 1} stands for "), line
    assert "at most 10,000" in line and "write the values out" in line
    assert len(line) < 300


def test_an_alias_inside_its_own_anchor_is_refused():
    (line,) = refused(f"{HEAD}spec: &s {{gpuType: L40, policy: {{excludeHosts: [*s]}}}}\n")
    assert line == "f.yaml:4: the alias *s is used inside its own anchor &s: remove the loop"


def test_a_few_aliases_and_merge_keys_are_fine():
    (pool,) = load_pools(
        f"{HEAD}spec:\n  gpuType: L40\n  pools:\n    spot: &s {{hosts: 2}}\n    runpod: {{<<: *s, hosts: 3}}\n"
        "    contracts: [{aggregate: C-A, <<: *s}]\n"
    )
    assert [(p.label, p.desired) for p in pool.spec.target_pools()] == [
        ("spot", 2),
        ("runpod", 3),
        ("contract:C-A", 2),
    ]


def test_deep_nesting_is_one_line_not_a_traceback():
    (line,) = refused(f"{HEAD}spec: {{gpuType: L40, policy: {{excludeHosts: {'[' * 5000}{']' * 5000}}}}}\n")
    assert line.startswith("f.yaml:1: nested too deeply")


def test_a_key_given_twice_names_both_lines():
    text = f"{HEAD}spec:\n  gpuType: L40\n  cloud: sim\n  cloud: other\n"
    assert refused(text) == ["f.yaml:7: spec.cloud: given twice (also line 6); keep one"]
    text = "apiVersion: gpupool.io/v1alpha1\nkind: GpuHostPool\nmetadata: {name: a}\nmetadata: {name: b}\n"
    assert refused(text) == ["f.yaml:4: metadata: given twice (also line 3); keep one"]
    text = f"{HEAD}spec:\n  gpuType: L40\n  pools:\n    contracts:\n    - {{aggregate: C-A, hosts: 1, hosts: 2}}\n"
    assert refused(text) == ["f.yaml:8: spec.pools.contracts[0].hosts: given twice (also line 8); keep one"]


def test_a_key_given_twice_in_a_later_document_names_its_line():
    text = (
        f"{HEAD}spec: {{gpuType: L40}}\n---\n{HEAD}spec:\n  gpuType: L40\n  paused: true\n  paused: false\n"
    )
    assert refused(text) == ["f.yaml:12: spec.paused: given twice (also line 11); keep one"]


def test_a_list_as_a_key_is_refused_in_words():
    assert refused(f"{HEAD}spec: {{gpuType: L40, [a]: 1}}\n") == [
        "f.yaml:4: spec: a key here is a list; keys must be field names"
    ]


def test_a_number_as_a_key_names_the_mapping():
    assert refused(f"{HEAD}spec: {{gpuType: L40, 1: 2}}\n") == [
        "f.yaml:4: spec: the key 1 is not a field name: field names are text, e.g. gpuType"
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("true", "true"), ("2018-01-01", "2018-01-01"), ("null", "null"), ("'7'", "'7'"), ("[1, 2]", "[1, 2]")],
)
def test_values_are_shown_as_yaml_not_python(value, shown):
    (line,) = refused(f"{HEAD}spec: {{gpuType: L40, pools: {{spot: {{hosts: {value}}}}}}}\n")
    assert line == f"f.yaml:4: spec.pools.spot.hosts: must be a whole number (got {shown})"


def test_a_huge_value_is_cut_in_the_message():
    hosts = "[" + ", ".join(["[gpu-l40-001, gpu-l40-002]"] * 2000) + "]"
    problems = refused(f"{HEAD}spec: {{gpuType: L40, policy: {{excludeHosts: {hosts}}}}}\n")
    assert (
        problems[0]
        == "f.yaml:4: spec.policy.excludeHosts[0]: must be a string (got [gpu-l40-001, gpu-l40-002])"
    )
    problems = refused(f"{HEAD}spec: {{gpuType: L40, pools: {{spot: {{hosts: {hosts}}}}}}}\n")
    assert len(problems) == 1 and problems[0].endswith("...)")
    assert (
        len(problems[0])
        < len("f.yaml:4: spec.pools.spot.hosts: must be a whole number (got )") + SHOWN_LENGTH + 1
    )


@pytest.mark.parametrize(
    "name",
    ["a\nb", "Contract-\x00x", "  ", " L40-n3-spot", "L40-n3-spot ", "tab\there", "del\x7f", "c1\x85"],
)
def test_aggregate_and_host_names_nova_cannot_hold_are_refused(name):
    spec = {"gpuType": "L40", "pools": {"contracts": [{"aggregate": name, "hosts": 1}]}}
    with pytest.raises(SpecError) as caught:
        parse_pool(_document(spec))
    (line,) = caught.value.problems
    assert line.startswith(
        "x: spec.pools.contracts[0].aggregate: must not be blank, start or end with a space"
    )
    assert "\n" not in line and "\x00" not in line and repr(name) in line
    with pytest.raises(SpecError) as caught:
        parse_pool(_document({"gpuType": "L40", "policy": {"excludeHosts": [name]}}))
    assert caught.value.problems[0].startswith("x: spec.policy.excludeHosts[0]: must not be blank")


@pytest.mark.parametrize("name", ["Contract FLA 16x A6000", "x", "Überseeische-Pool", "a-b_c.d"])
def test_names_nova_takes_are_accepted(name):
    pool = parse_pool(
        _document({"gpuType": "L40", "pools": {"contracts": [{"aggregate": name, "hosts": 1}]}})
    )
    assert pool.spec.pools.contracts[0].aggregate == name


@pytest.mark.parametrize("name", ["Bad_Name!", "L40", "-l40", "l40-", "a..b", "x" * 254])
def test_metadata_name_must_be_a_kubernetes_name(name):
    document = _document({"gpuType": "L40"}) | {"metadata": {"name": name}}
    with pytest.raises(SpecError) as caught:
        parse_pool(document)
    (line,) = caught.value.problems
    assert line.startswith(f"{name}: metadata.name: must "), line
    assert "Kubernetes name" in line or "at most 253 characters" in line


@pytest.mark.parametrize("name", ["l40", "l40-prod.eu-1", "x" * 253, "0"])
def test_kubernetes_names_are_accepted(name):
    assert parse_pool(_document({"gpuType": "L40"}) | {"metadata": {"name": name}}).name == name


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"dryRun": None}, "spec.dryRun: must be true or false (got null)"),
        ({"paused": None}, "spec.paused: must be true or false (got null)"),
        ({"pools": {"spot": {"hosts": None}}}, "spec.pools.spot.hosts: must be a whole number (got null)"),
        ({"policy": {"maxConcurrentMoves": None}}, "spec.policy.maxConcurrentMoves: must be a whole number"),
        ({"policy": {"excludeHosts": None}}, "spec.policy.excludeHosts: must be a list (got null)"),
        ({"policy": None}, "spec.policy: must be a mapping (got null)"),
        ({"pools": None}, "spec.pools: must be a mapping (got null)"),
        ({"cloud": None}, "spec.cloud: must be a string (got null)"),
    ],
)
def test_a_null_the_api_server_keeps_is_refused_by_the_operator(spec, expected):
    """The CRD marks these fields nullable, so a null reaches the operator: it must refuse it."""
    with pytest.raises(SpecError) as caught:
        parse_pool(_document({"gpuType": "L40"} | spec))
    assert any(line.startswith(f"x: {expected}") for line in caught.value.problems), caught.value.problems


def _document(spec: dict) -> dict:
    return {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "x"},
        "spec": spec,
    }
