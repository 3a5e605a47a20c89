from typing import Any

import yaml

from gpupool.crd import MANIFEST, crd, render_crd_yaml

REGENERATE = "python -m gpupool.crd crds/gpuhostpools.gpupool.io.yaml"


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[]")


def test_manifest_in_crds_is_up_to_date_with_the_models():
    assert MANIFEST.read_text() == render_crd_yaml(), (
        f"crds/ is out of date with gpupool.api: run `{REGENERATE}`"
    )


def test_manifest_is_plain_yaml_that_parses_back():
    text = render_crd_yaml()
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    assert yaml.safe_load(text) == crd()


def test_names_scope_and_subresources():
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "gpuhostpools.gpupool.io"
    assert spec["group"] == "gpupool.io" and spec["scope"] == "Cluster"
    assert spec["names"] == {
        "kind": "GpuHostPool",
        "listKind": "GpuHostPoolList",
        "plural": "gpuhostpools",
        "singular": "gpuhostpool",
        "shortNames": ["ghp"],
        "categories": ["gpupool"],
    }
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural():
    for path, node in nodes(schema()):
        assert "type" in node, f"{path or '<root>'} has no type"
        for forbidden in (
            "$ref",
            "$defs",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "const",
            "title",
            "additionalProperties",
        ):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert node.get("default", "") is not None, f"{path} defaults to null"


def test_every_field_has_a_description():
    for path, node in nodes(schema()):
        if path.endswith("[]") or path in ("", ".metadata"):
            continue  # list items and object metadata are described by their parents / by Kubernetes
        assert node.get("description"), f"{path} has no description"


def test_defaults_and_bounds_come_from_the_models():
    spec = schema()["properties"]["spec"]
    policy = spec["properties"]["policy"]
    assert spec["required"] == ["gpuType"]
    assert policy["default"] == {}  # so its own defaults apply when policy is left out
    assert policy["properties"]["maxConcurrentMoves"] | {} == {
        "type": "integer",
        "description": policy["properties"]["maxConcurrentMoves"]["description"],
        "default": 2,
        "nullable": True,  # an explicit null reaches the operator (InvalidSpec), not the default
        "maximum": 50,
        "minimum": 1,
    }
    assert spec["properties"]["deletionPolicy"]["enum"] == ["Retain", "ReturnToOnDemand"]
    assert spec["properties"]["deletionPolicy"]["default"] == "Retain"
    pools = spec["properties"]["pools"]["properties"]
    assert "default" not in pools["spot"] and "default" not in pools["runpod"]  # absent means unmanaged
    assert pools["spot"]["properties"]["hosts"]["minimum"] == 0
    assert (
        "default" not in pools["spot"]["properties"]["aggregate"]
    )  # depends on gpuType: filled by the operator
    assert pools["contracts"]["items"]["required"] == ["aggregate", "hosts"]
    assert pools["spot"]["required"] == ["hosts"]  # a count left out never reads as "empty it"
    assert spec["properties"]["onDemand"]["properties"]["aggregates"]["minItems"] == 1


def test_status_defaults_only_to_not_observed_yet():
    """The operator writes every status field; the one default is the whole status of a new
    resource, observedGeneration 0, so that kstatus never reads a resource without status as done."""
    status = schema()["properties"]["status"]
    assert status["default"] == {"observedGeneration": 0}
    for path, node in nodes(status):
        if path:
            assert "default" not in node, f"status{path} has a default"


def test_cel_rules_cover_every_pair_of_roles():
    spec = schema()["properties"]["spec"]
    rules = [r for r in spec["x-kubernetes-validations"] if "disabled_reason" not in r["message"]]
    assert {r["fieldPath"] for r in rules} == {
        ".pools.spot.aggregate",
        ".pools.runpod.aggregate",
        ".pools.contracts",
    }
    assert len(rules) == 6  # spot/onDemand, runpod/onDemand, spot/runpod, contracts vs each of the three
    for rule in rules:
        assert "each aggregate may appear once" in rule["message"]
        assert (
            "reason" not in rule
        )  # a reason such as FieldValueDuplicate makes the API server drop the message
    contracts = spec["properties"]["pools"]["properties"]["contracts"]
    assert "merge or remove the duplicate" in contracts["x-kubernetes-validations"][0]["message"]
    aggregates = spec["properties"]["onDemand"]["properties"]["aggregates"]
    assert aggregates["maxItems"] and aggregates["items"]["maxLength"]  # bounded: CEL cost budget
    assert contracts["maxItems"] and contracts["items"]["properties"]["aggregate"]["maxLength"]


def test_printer_columns():
    columns = crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns] == [
        ("GPU", ".spec.gpuType", 0),
        ("SPOT", ".status.summary.spot", 0),
        ("RUNPOD", ".status.summary.runpod", 0),
        ("CONTRACTS", ".status.summary.contracts", 0),
        ("READY", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("REASON", '.status.conditions[?(@.type=="Ready")].reason', 0),
        ("AGE", ".metadata.creationTimestamp", 0),
        ("ON-DEMAND", ".status.summary.onDemand", 1),
        ("MESSAGE", ".status.summary.message", 1),
    ]
    assert columns[6]["type"] == "date"


def test_printer_columns_point_at_fields_of_the_schema():
    for column in crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].strip(".").split(".")
        if path[0] == "metadata":
            continue
        node = schema()
        for part in path:
            node = node.get("items", node)["properties"][part]
        assert node["type"] in ("string", "array"), column
