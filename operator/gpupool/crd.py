"""The GpuHostPool CustomResourceDefinition, generated from the pydantic models in `api`.

The API server wants a structural schema: every `$ref` inlined, a `type` on every node, no
`anyOf` with null, no `additionalProperties: false`. Unknown fields: the API server itself prunes
them silently, but kubectl (1.27+) sends `fieldValidation=Strict` by default (`--validate=strict`),
so `kubectl apply` of `spec.pools.spoot` fails with `strict decoding error: unknown field
"spec.pools.spoot"` (verified against kube-apiserver and kubectl v1.34.4; with `--validate=false`,
or from API clients that do not ask for strict validation, the field is dropped without a word).
Cross-field rules live in CEL (`x-kubernetes-validations`) with messages that say what to fix. They
set no `reason`: with `reason: FieldValueDuplicate` the API server prints `Duplicate value: "object"`
and drops the message.

Regenerate the manifest with `python -m gpupool.crd crds/gpuhostpools.gpupool.io.yaml`; a unit test
fails when it is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from .api import (
    GROUP,
    KIND,
    NOVA_NAME_PATTERN,
    NOVA_NAME_RULE,
    PLURAL,
    SINGULAR,
    VERSION,
    GpuHostPoolSpec,
    GpuHostPoolStatus,
)
from .intent import LOCK_AGGREGATE, MAX_NAMES_LENGTH, SEPARATOR, STOP_AGGREGATE

NAME = f"{PLURAL}.{GROUP}"
MANIFEST = Path(__file__).resolve().parents[2] / "crds" / f"{NAME}.yaml"

_DROPPED = {"title", "additionalProperties"}
_KEY_ORDER = {
    key: i for i, key in enumerate(["type", "description", "required", "default", "nullable", "enum"])
}


def spec_schema() -> dict[str, Any]:
    schema = _structural(
        GpuHostPoolSpec.model_json_schema(by_alias=True, mode="validation"), keep_defaults=True
    )
    schema["description"] = "What the pools should hold, and how the operator may move hosts to get there."
    schema["x-kubernetes-validations"] = _spec_rules() + _length_rules()
    properties, pools = schema["properties"], schema["properties"]["pools"]["properties"]
    for name in (
        properties["onDemand"]["properties"]["aggregates"]["items"],
        pools["spot"]["properties"]["aggregate"],
        pools["runpod"]["properties"]["aggregate"],
        pools["contracts"]["items"]["properties"]["aggregate"],
    ):
        # CEL, not a pattern: a pattern's refusal shows the regular expression, a rule says what to fix.
        assert name.pop("pattern") == NOVA_NAME_PATTERN
        name["x-kubernetes-validations"] = _AGGREGATE_NAME_RULES
    on_demand = schema["properties"]["onDemand"]["properties"]["aggregates"]
    on_demand["x-kubernetes-validations"] = [
        {
            "rule": "self.all(a, self.exists_one(b, b == a))",
            "message": "each on-demand aggregate may be listed once: remove the duplicate from onDemand.aggregates",
            "messageExpression": "'the on-demand aggregate \"' + self.filter(a, !self.exists_one(b, b == a))[0] + "
            "'\" is listed more than once: remove the duplicate from onDemand.aggregates'",
        }
    ]
    contracts = schema["properties"]["pools"]["properties"]["contracts"]
    contracts["x-kubernetes-validations"] = [
        {
            "rule": "self.all(c, self.exists_one(d, d.aggregate == c.aggregate))",
            "message": "each contract aggregate may appear once in pools.contracts: merge or remove the duplicate",
        }
    ]
    return schema


def status_schema() -> dict[str, Any]:
    # The operator writes every status field; defaults there would only hide missing writes.
    schema = _structural(
        GpuHostPoolStatus.model_json_schema(by_alias=True, mode="serialization"), keep_defaults=False
    )
    schema["description"] = "What the operator observed and did, written by the operator."
    # A resource is never seen without a status: the API server gives a new one observedGeneration
    # 0, which kstatus (Flux) reads as "not observed yet" (InProgress), where no status at all reads
    # as Current before the operator has even looked.
    schema["default"] = {"observedGeneration": 0}
    return schema


def crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "description": (
            "GpuHostPool says how many hosts of a GPU type belong in the spot, RunPod and contract pools "
            "(Nova host aggregates); the operator moves hosts between them and on-demand to match."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "gpupool.io/v1alpha1"},
            "kind": {"type": "string", "description": "GpuHostPool"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["ghp"],
                "categories": ["gpupool"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated by gpupool.crd from the models in gpupool.api. Do not edit: regenerate.\n"
    return header + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-lists out in full: no YAML anchors in a manifest people read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _printer_columns() -> list[dict[str, Any]]:
    def column(
        name: str, path: str, description: str, priority: int = 0, kind: str = "string"
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path, "description": description}
        if priority:
            entry["priority"] = priority
        return entry

    return [
        column("GPU", ".spec.gpuType", "GPU type"),
        column("SPOT", ".status.summary.spot", "Spot hosts, current/desired"),
        column("RUNPOD", ".status.summary.runpod", "RunPod hosts, current/desired"),
        column("CONTRACTS", ".status.summary.contracts", "Contract hosts, current/desired"),
        column(
            "READY", '.status.conditions[?(@.type=="Ready")].status', "Every pool holds its desired hosts"
        ),
        column("REASON", '.status.conditions[?(@.type=="Ready")].reason', "Why Ready is what it is"),
        column("AGE", ".metadata.creationTimestamp", "Age", kind="date"),
        column("ON-DEMAND", ".status.summary.onDemand", "On-demand hosts, and how many may move", priority=1),
        column("MESSAGE", ".status.summary.message", "What the operator is doing or waiting for", priority=1),
    ]


# CEL names the aggregates as the operator resolves them: spot and runpod default from gpuType.
_ON_DEMAND = "(has(self.onDemand) && has(self.onDemand.aggregates) ? self.onDemand.aggregates : [self.gpuType + '-n3'])"
_SPOT = "(has(self.pools.spot.aggregate) ? self.pools.spot.aggregate : self.gpuType + '-n3-spot')"
_RUNPOD = "(has(self.pools.runpod.aggregate) ? self.pools.runpod.aggregate : self.gpuType + '-n3-runpod')"
_HAS_SPOT = "has(self.pools) && has(self.pools.spot)"
_HAS_RUNPOD = "has(self.pools) && has(self.pools.runpod)"
_HAS_CONTRACTS = "has(self.pools) && has(self.pools.contracts)"


_ONCE = "each aggregate may appear once across onDemand, spot, runpod and contracts"


def _spec_rules() -> list[dict[str, str]]:
    """Cross-field rules. `message` is the fallback; `messageExpression` names the aggregate."""

    def rule(condition: str, check: str, path: str, message: str, named: str | None = None) -> dict[str, str]:
        text = f"{message}; {_ONCE}"
        head, _, tail = text.partition(" {}")
        entry = {"rule": f"!({condition}) || {check}", "fieldPath": path, "message": head + tail}
        if named:
            entry["messageExpression"] = f"'{head} \"' + {named} + '\"{tail}'"
        return entry

    # Contract rules keep the fixed message: naming the contract (filter + map over the list) is beyond
    # the API server's messageExpression cost budget even for short lists.
    return [
        rule(
            _HAS_SPOT,
            f"!({_SPOT} in {_ON_DEMAND})",
            ".pools.spot.aggregate",
            "the spot aggregate {} is also an on-demand aggregate: give spot its own (pools.spot.aggregate, "
            "default <gpuType>-n3-spot)",
            _SPOT,
        ),
        rule(
            _HAS_RUNPOD,
            f"!({_RUNPOD} in {_ON_DEMAND})",
            ".pools.runpod.aggregate",
            "the runpod aggregate {} is also an on-demand aggregate: give runpod its own (pools.runpod.aggregate, "
            "default <gpuType>-n3-runpod)",
            _RUNPOD,
        ),
        rule(
            f"{_HAS_SPOT} && has(self.pools.runpod)",
            f"{_SPOT} != {_RUNPOD}",
            ".pools.runpod.aggregate",
            "spot and runpod both name the aggregate {}: give each pool its own",
            _SPOT,
        ),
        rule(
            _HAS_CONTRACTS,
            f"self.pools.contracts.all(c, !(c.aggregate in {_ON_DEMAND}))",
            ".pools.contracts",
            "a contract aggregate is also an on-demand aggregate: give the contract its own",
        ),
        rule(
            f"{_HAS_CONTRACTS} && has(self.pools.spot)",
            f"self.pools.contracts.all(c, c.aggregate != {_SPOT})",
            ".pools.contracts",
            "a contract aggregate is also the spot aggregate: give the contract its own",
        ),
        rule(
            f"{_HAS_CONTRACTS} && has(self.pools.runpod)",
            f"self.pools.contracts.all(c, c.aggregate != {_RUNPOD})",
            ".pools.contracts",
            "a contract aggregate is also the runpod aggregate: give the contract its own",
        ),
    ]


# What the operator refuses in one aggregate name (api._intents_that_do_not_fit), said the same way.
_AGGREGATE_NAME_RULES = [
    {"rule": f"self.matches(r'{NOVA_NAME_PATTERN}')", "message": f"the aggregate name {NOVA_NAME_RULE}"},
    {
        "rule": f"!self.contains('{SEPARATOR}')",
        "message": f"the aggregate name contains '{SEPARATOR}' (an arrow between spaces), which gpupool's "
        "record of a move in Nova uses as its separator: rename the aggregate",
    },
    {
        "rule": f"!(self in ['{LOCK_AGGREGATE}', '{STOP_AGGREGATE}'])",
        "message": f"{LOCK_AGGREGATE} and {STOP_AGGREGATE} are gpupool's own markers, not pools: "
        "name another aggregate",
    },
]


def _length_rules() -> list[dict[str, str]]:
    """A move between an on-demand aggregate and a pool must fit in Nova's disabled_reason."""

    def rule(condition: str, check: str, path: str, pool: str) -> dict[str, str]:
        return {
            "rule": f"!({condition}) || {check}",
            "fieldPath": path,
            "message": f"an on-demand aggregate and {pool} are more than {MAX_NAMES_LENGTH} characters "
            "together: a move between them must fit in Nova's 255-character disabled_reason; shorten one "
            "of the names",
        }

    def fits(name: str) -> str:
        return f"{_ON_DEMAND}.all(o, size(o) + size({name}) <= {MAX_NAMES_LENGTH})"

    return [
        rule(_HAS_SPOT, fits(_SPOT), ".pools.spot.aggregate", "the spot aggregate"),
        rule(_HAS_RUNPOD, fits(_RUNPOD), ".pools.runpod.aggregate", "the runpod aggregate"),
        rule(
            _HAS_CONTRACTS,
            f"self.pools.contracts.all(c, {fits('c.aggregate')})",
            ".pools.contracts",
            "a contract aggregate",
        ),
    ]


def _structural(schema: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """The pydantic JSON schema as a Kubernetes structural schema."""
    definitions = schema.get("$defs", {})

    def convert(node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        if "$ref" in node:
            target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**target, **node}  # the field's own description wins over the model's docstring
        if "anyOf" in node:
            variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
            if len(variants) != 1:
                raise ValueError(f"cannot express a union of {variants} in a structural schema")
            if node.get("default", ...) is None:
                node.pop("default")
            # Converted once, as a whole: its properties must still show whether they take null.
            return convert({**variants[0], **node})
        if "const" in node:
            node["enum"] = [node.pop("const")]
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key == "$defs" or (key == "default" and not keep_defaults):
                continue
            if key == "properties":
                required = set(node.get("required", ()))
                out[key] = {name: convert_property(child, name in required) for name, child in value.items()}
            elif key == "items":
                out[key] = convert(value)
            else:
                out[key] = value
        # type and description first: the manifest reads like `kubectl explain`.
        return {key: out[key] for key in sorted(out, key=lambda k: _KEY_ORDER.get(k, len(_KEY_ORDER)))}

    def convert_property(node: dict[str, Any], required: bool) -> dict[str, Any]:
        out = convert(node)
        may_be_absent = any(v.get("type") == "null" for v in node.get("anyOf", ()))
        if keep_defaults and not may_be_absent and out.get("type") == "object" and not out.get("required"):
            # `default: {}` makes the API server fill the nested defaults (policy.maxConcurrentMoves...)
            # when the user leaves the whole object out. Optional pools stay absent: absent is "unmanaged".
            out.setdefault("default", {})
        if keep_defaults and not may_be_absent and not required:
            # The API server drops an explicit null of a field that is not nullable (`dryRun:` in a Helm
            # template whose value is unset) and puts the default in its place: dryRun false, hosts 0,
            # excludeHosts empty. Kept, the null reaches the operator, which refuses the spec
            # (InvalidSpec) as the CLI does. A field the models take None for stays non-nullable: its
            # null is dropped, and absent means what None means.
            out["nullable"] = True
        return out

    return convert(schema)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render_crd_yaml()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
