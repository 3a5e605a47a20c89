"""docs/operator.md's spec table names every field of the CRD, with the CRD's default: a field
added to the API without a line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def leaf_fields(node: dict, path: str = "") -> dict[str, object]:
    fields: dict[str, object] = {}
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if sub.get("type") == "object" and sub.get("properties"):
            fields |= leaf_fields(sub, here)
        elif sub.get("type") == "array" and (sub.get("items") or {}).get("properties"):
            fields |= leaf_fields(sub["items"], here + "[]")
        else:
            fields[here] = sub.get("default")
    return fields


def test_every_spec_field_is_in_the_operator_docs_table():
    crd = yaml.safe_load((ROOT / "crds" / "gpuhostpools.gpupool.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    docs = (ROOT / "docs" / "operator.md").read_text()
    table = docs[docs.index("## The spec, field by field") :].split("\n## ")[0]
    rows = {
        cells[0]: cells[1] for cells in (line.split(" | ") for line in table.splitlines()) if len(cells) > 2
    }
    documented = {
        name: default for row, default in rows.items() for name in re.findall(r"`([\w.\[\]]+)`", row)
    }
    fields = leaf_fields(spec)
    assert set(fields) <= set(documented), f"not in docs/operator.md: {sorted(set(fields) - set(documented))}"
    for name, default in fields.items():
        if isinstance(default, bool | int) or (isinstance(default, str) and default):
            assert str(default).lower() in documented[name].lower(), (name, default, documented[name])
