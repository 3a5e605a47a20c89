import textwrap
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gpupool.api import (
    GpuHostPool,
    GpuHostPoolSpec,
    GpuHostPoolStatus,
    ManagedAggregate,
    SpecError,
    format_errors,
    load_pools,
    load_pools_file,
    parse_pool,
)


def problems(spec: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        GpuHostPoolSpec.model_validate(spec)
    return format_errors(caught.value, root="spec", model=GpuHostPoolSpec)


def doc(spec: dict, name: str = "l40") -> dict:
    return {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": name},
        "spec": spec,
    }


FULL = """
apiVersion: gpupool.io/v1alpha1
kind: GpuHostPool
metadata: {name: l40}
spec:
  gpuType: L40
  cloud: prod
  onDemand:
    aggregates: [L40-n3, L40-n3-NVLink]
  pools:
    spot:   {aggregate: L40-n3-spot,   hosts: 4}
    runpod: {aggregate: L40-n3-runpod, hosts: 2}
    contracts:
      - {aggregate: Contract-L40-Customer1, hosts: 3}
  policy:
    maxConcurrentMoves: 3
    moveHostsWithInstances: true
    excludeHosts: [gpu-l40-017]
  paused: true
  dryRun: true
  deletionPolicy: ReturnToOnDemand
"""


# ------------------------------------------------------------------------------------ defaults


def test_minimal_spec_gets_every_default():
    spec = GpuHostPoolSpec.model_validate({"gpuType": "L40"})
    assert spec.cloud == "default"
    assert spec.on_demand.aggregates == ["L40-n3"]
    assert spec.pools.spot is None and spec.pools.runpod is None and spec.pools.contracts == []
    assert spec.policy.max_concurrent_moves == 2
    assert spec.policy.move_hosts_with_instances is False
    assert spec.policy.exclude_hosts == []
    assert (spec.paused, spec.dry_run, spec.deletion_policy) == (False, False, "Retain")


def test_pool_aggregates_default_from_the_gpu_type():
    spec = GpuHostPoolSpec.model_validate(
        {"gpuType": "RTX-A6000", "pools": {"spot": {"hosts": 0}, "runpod": {"hosts": 2}}}
    )
    assert spec.pools.spot.aggregate == "RTX-A6000-n3-spot" and spec.pools.spot.hosts == 0
    assert spec.pools.runpod.aggregate == "RTX-A6000-n3-runpod" and spec.pools.runpod.hosts == 2


def test_full_document_loads():
    (pool,) = load_pools(FULL)
    assert pool.name == "l40"
    spec = pool.spec
    assert spec.cloud == "prod"
    assert spec.on_demand_aggregates() == ["L40-n3", "L40-n3-NVLink"]
    assert spec.pools.contracts[0].aggregate == "Contract-L40-Customer1"
    assert spec.policy.max_concurrent_moves == 3 and spec.policy.move_hosts_with_instances
    assert spec.policy.exclude_hosts == ["gpu-l40-017"]
    assert spec.paused and spec.dry_run and spec.deletion_policy == "ReturnToOnDemand"


def test_round_trip_by_alias_is_lossless():
    (pool,) = load_pools(FULL)
    wire = pool.to_wire()
    assert wire["spec"]["onDemand"] == {"aggregates": ["L40-n3", "L40-n3-NVLink"]}
    assert wire["spec"]["policy"]["maxConcurrentMoves"] == 3
    assert wire["spec"]["deletionPolicy"] == "ReturnToOnDemand"
    assert GpuHostPool.model_validate(wire) == pool
    assert GpuHostPool.model_validate(wire).to_wire() == wire


def test_python_names_are_accepted_too():
    spec = GpuHostPoolSpec(gpu_type="L40", dry_run=True)
    assert spec.dry_run and spec.to_wire()["dryRun"] is True


# ---------------------------------------------------------------------------------- validation


def test_negative_host_count_names_the_field_and_the_value():
    assert problems({"gpuType": "L40", "pools": {"spot": {"hosts": -1}}}) == [
        "spec.pools.spot.hosts: must be >= 0 (got -1)"
    ]


def test_negative_contract_count():
    assert problems({"gpuType": "L40", "pools": {"contracts": [{"aggregate": "C", "hosts": -3}]}}) == [
        "spec.pools.contracts[0].hosts: must be >= 0 (got -3)"
    ]


def test_host_count_must_be_a_whole_number():
    assert problems({"gpuType": "L40", "pools": {"runpod": {"hosts": "2"}}}) == [
        "spec.pools.runpod.hosts: must be a whole number (got '2')"
    ]


@pytest.mark.parametrize(("value", "message"), [(0, "must be >= 1 (got 0)"), (51, "must be <= 50 (got 51)")])
def test_concurrency_range(value, message):
    assert problems({"gpuType": "L40", "policy": {"maxConcurrentMoves": value}}) == [
        f"spec.policy.maxConcurrentMoves: {message}"
    ]


def test_contract_without_an_aggregate():
    assert problems({"gpuType": "L40", "pools": {"contracts": [{"hosts": 3}]}}) == [
        "spec.pools.contracts[0].aggregate: is required"
    ]


def test_missing_gpu_type():
    assert problems({}) == ["spec.gpuType: is required"]


def test_bad_gpu_type():
    (line,) = problems({"gpuType": "L 40"})
    assert line.startswith("spec.gpuType: must match") and "'L 40'" in line


def test_unknown_keys_are_refused_by_name():
    assert problems({"gpuType": "L40", "pool": {}, "policy": {"maxMoves": 1}}) == [
        "spec.policy.maxMoves: unknown field: remove it or fix its spelling (did you mean 'maxMovesPerChange'?)",
        "spec.pool: unknown field: remove it or fix its spelling (did you mean 'pools'?)",
    ]


def test_unknown_key_far_from_any_known_one_lists_them():
    assert problems({"gpuType": "L40", "policy": {"zzz": 1}}) == [
        "spec.policy.zzz: unknown field: remove it or fix its spelling "
        "(known fields: maxConcurrentMoves, moveHostsWithInstances, excludeHosts, minOnDemandHosts, "
        "maxMovesPerChange, allowPartial)"
    ]


def test_unknown_keys_inside_lists_and_optional_pools():
    assert problems(
        {"gpuType": "L40", "pools": {"spot": {"host": 1}, "contracts": [{"aggregate": "C", "hots": 1}]}}
    ) == [
        "spec.pools.spot.host: unknown field: remove it or fix its spelling (did you mean 'hosts'?)",
        "spec.pools.contracts[0].hots: unknown field: remove it or fix its spelling (did you mean 'hosts'?)",
    ]


def test_snake_case_keys_are_not_the_wire_format_but_python_names_work():
    # populate_by_name accepts python names; the wire format is camelCase.
    assert GpuHostPoolSpec.model_validate({"gpu_type": "L40"}).gpu_type == "L40"


def test_empty_on_demand_list():
    assert problems({"gpuType": "L40", "onDemand": {"aggregates": []}}) == [
        "spec.onDemand.aggregates: must not be empty: list at least one"
    ]


def test_empty_aggregate_name():
    assert problems({"gpuType": "L40", "pools": {"spot": {"aggregate": "", "hosts": 0}}}) == [
        "spec.pools.spot.aggregate: must not be empty"
    ]


def test_unknown_deletion_policy():
    assert problems({"gpuType": "L40", "deletionPolicy": "Delete"}) == [
        "spec.deletionPolicy: must be one of 'Retain' or 'ReturnToOnDemand' (got 'Delete')"
    ]


def test_flags_must_be_booleans():
    assert problems({"gpuType": "L40", "paused": "yes"}) == ["spec.paused: must be true or false (got 'yes')"]


@pytest.mark.parametrize(
    ("spec", "first", "second"),
    [
        (
            {"pools": {"spot": {"aggregate": "L40-n3", "hosts": 0}}},
            "onDemand.aggregates[0]",
            "pools.spot.aggregate",
        ),
        (
            {"pools": {"spot": {"hosts": 0}, "runpod": {"aggregate": "L40-n3-spot", "hosts": 0}}},
            "pools.spot.aggregate",
            "pools.runpod.aggregate",
        ),
        (
            {"pools": {"runpod": {"hosts": 0}, "contracts": [{"aggregate": "L40-n3-runpod", "hosts": 0}]}},
            "pools.runpod.aggregate",
            "pools.contracts[0].aggregate",
        ),
        ({"onDemand": {"aggregates": ["A", "B", "A"]}}, "onDemand.aggregates[0]", "onDemand.aggregates[2]"),
    ],
)
def test_an_aggregate_named_in_two_places(spec, first, second):
    (line,) = problems({"gpuType": "L40", **spec})
    assert line.startswith(f"spec.{second}: aggregate named twice: ")
    assert f"is {first} already" in line
    assert "each aggregate may appear once across onDemand, spot, runpod and contracts" in line


def test_duplicate_contracts():
    (line,) = problems(
        {
            "gpuType": "L40",
            "pools": {"contracts": [{"aggregate": "C", "hosts": 0}, {"aggregate": "C", "hosts": 1}]},
        }
    )
    assert line.startswith(
        "spec.pools.contracts[1].aggregate: duplicate contract: 'C' is pools.contracts[0].aggregate already"
    )


def test_every_duplicate_is_its_own_line():
    lines = problems(
        {
            "gpuType": "L40",
            "pools": {
                "spot": {"aggregate": "L40-n3", "hosts": 0},
                "contracts": [{"aggregate": "C", "hosts": 0}, {"aggregate": "C", "hosts": 0}],
            },
        }
    )
    assert len(lines) == 2 and all(line.startswith("spec.pools.") for line in lines)


def test_all_problems_are_reported_at_once():
    lines = problems(
        {"gpuType": "L40", "pools": {"spot": {"hosts": -1}, "runpod": {"hosts": -2}}, "dryrun": True}
    )
    assert lines == [
        "spec.pools.spot.hosts: must be >= 0 (got -1)",
        "spec.pools.runpod.hosts: must be >= 0 (got -2)",
        "spec.dryrun: unknown field: remove it or fix its spelling (did you mean 'dryRun'?)",
    ]


# ------------------------------------------------------------------------------ the views


def test_managed_aggregates_with_roles():
    (pool,) = load_pools(FULL)
    assert pool.spec.managed_aggregates() == [
        ManagedAggregate("L40-n3", "onDemand", "onDemand", "onDemand.aggregates[0]"),
        ManagedAggregate("L40-n3-NVLink", "onDemand", "onDemand", "onDemand.aggregates[1]"),
        ManagedAggregate("L40-n3-spot", "spot", "spot", "pools.spot.aggregate"),
        ManagedAggregate("L40-n3-runpod", "runpod", "runpod", "pools.runpod.aggregate"),
        ManagedAggregate(
            "Contract-L40-Customer1",
            "contract",
            "contract:Contract-L40-Customer1",
            "pools.contracts[0].aggregate",
        ),
    ]
    assert [(p.label, p.aggregate, p.desired) for p in pool.spec.target_pools()] == [
        ("spot", "L40-n3-spot", 4),
        ("runpod", "L40-n3-runpod", 2),
        ("contract:Contract-L40-Customer1", "Contract-L40-Customer1", 3),
    ]
    assert pool.spec.pool_label("L40-n3-NVLink") == "onDemand"
    assert pool.spec.pool_label("Contract-L40-Customer1") == "contract:Contract-L40-Customer1"
    assert pool.spec.pool_label("elsewhere") is None


def test_move_pool_is_the_side_that_is_not_on_demand():
    (pool,) = load_pools(FULL)
    assert pool.spec.move_pool("L40-n3", "L40-n3-spot") == "spot"
    assert pool.spec.move_pool("L40-n3-runpod", "L40-n3-NVLink") == "runpod"
    assert pool.spec.move_pool("L40-n3", "Contract-L40-Customer1") == "contract:Contract-L40-Customer1"
    # A resumed move whose other side left the spec is labelled with the side still managed.
    assert pool.spec.move_pool("L40-n3", "elsewhere") == "onDemand"
    assert pool.spec.move_pool("elsewhere", "L40-n3-spot") == "spot"
    assert pool.spec.move_pool("gone", "elsewhere") is None


def test_omitted_pools_are_not_managed():
    spec = GpuHostPoolSpec.model_validate({"gpuType": "L40", "pools": {"runpod": {"hosts": 1}}})
    assert [m.name for m in spec.managed_aggregates()] == ["L40-n3", "L40-n3-runpod"]


# ------------------------------------------------------------------------------------ loading


def test_several_documents_in_one_file(tmp_path):
    text = FULL + "---\n" + FULL.replace("name: l40", "name: a6000").replace("L40", "RTX-A6000") + "---\n"
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    pools = load_pools_file(path)
    assert [p.name for p in pools] == ["l40", "a6000"]
    assert pools[1].spec.pools.spot.aggregate == "RTX-A6000-n3-spot"


def _line_of(text: str, piece: str, after: int = 0) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if i > after and piece in line)


def test_problems_name_the_file_and_the_line():
    text = FULL + "---\n" + FULL.replace("name: l40", "name: bad").replace("hosts: 4", "hosts: -4")
    with pytest.raises(SpecError) as caught:
        load_pools(text, source="pools.yaml")
    line = _line_of(text, "hosts: -4")
    assert caught.value.problems == [f"pools.yaml:{line}: spec.pools.spot.hosts: must be >= 0 (got -4)"]


def test_a_missing_field_points_at_its_parent():
    text = FULL.replace("gpuType: L40", "gpuTyp: L40")
    with pytest.raises(SpecError) as caught:
        load_pools(text, source="f.yaml")
    typo = _line_of(text, "gpuTyp:")
    # One mistake, one line: the did-you-mean says what "gpuType: is required" would.
    assert caught.value.problems == [
        f"f.yaml:{typo}: spec.gpuTyp: unknown field: remove it or fix its spelling (did you mean 'gpuType'?)"
    ]
    text = FULL.replace("  gpuType: L40\n", "")
    with pytest.raises(SpecError) as caught:
        load_pools(text, source="f.yaml")
    assert caught.value.problems == [f"f.yaml:{_line_of(text, 'spec:')}: spec.gpuType: is required"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"apiVersion": "gpupool.io/v1"}, "apiVersion: must be gpupool.io/v1alpha1 (got 'gpupool.io/v1')"),
        ({"kind": "ConfigMap"}, "kind: must be GpuHostPool (got 'ConfigMap')"),
    ],
)
def test_wrong_api_version_or_kind(change, message):
    with pytest.raises(SpecError) as caught:
        parse_pool({**doc({"gpuType": "L40"}), **change})
    assert caught.value.problems == [message]


def test_missing_name():
    document = doc({"gpuType": "L40"})
    document["metadata"] = {}
    with pytest.raises(SpecError) as caught:
        parse_pool(document)
    assert caught.value.problems == ["metadata.name: is required"]


def test_metadata_keeps_labels_and_annotations():
    document = doc({"gpuType": "L40"})
    document["metadata"]["labels"] = {"team": "infra"}
    assert parse_pool(document).metadata.labels == {"team": "infra"}


def test_duplicate_names_in_one_file():
    text = FULL + "---\n" + FULL
    with pytest.raises(SpecError) as caught:
        load_pools(text, source="f.yaml")
    second = _line_of(text, "name: l40", after=_line_of(text, "name: l40"))
    assert caught.value.problems == [f"f.yaml:{second}: metadata.name: 'l40' appears twice in this file"]


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pools("spec: [unclosed")
    with pytest.raises(SpecError, match="expected a GpuHostPool mapping, got list"):
        load_pools("- 1\n- 2\n")


def test_empty_documents_are_skipped():
    assert [p.name for p in load_pools("---\n" + FULL + "---\n---\n")] == ["l40"]


# ------------------------------------------------------------------------------------- status


def test_status_round_trips_by_alias():
    wire = {
        "observedGeneration": 4,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Moving",
                "message": "2 moves",
                "lastTransitionTime": "2026-11-23T00:00:00Z",
                "observedGeneration": 4,
            }
        ],
        "pools": {
            "spot": {
                "aggregate": "L40-n3-spot",
                "desired": 4,
                "current": 3,
                "moving": 1,
                "hosts": ["a", "b", "c"],
            },
            "contracts": [{"aggregate": "C", "desired": 1, "current": 1, "moving": 0, "hosts": ["d"]}],
            "onDemand": {"aggregates": ["L40-n3"], "hosts": 12, "movable": 5},
        },
        "total": {"desired": 5, "current": 4, "moving": 1},
        "inFlight": [
            {
                "host": "e",
                "from": "L40-n3",
                "to": "L40-n3-spot",
                "step": "Disable",
                "since": "2026-11-23T00:00:00Z",
            }
        ],
        "plannedMoves": [],
        "lastMoves": [
            {
                "host": "f",
                "from": "L40-n3",
                "to": "C",
                "finishedAt": "2026-11-23T00:00:00Z",
                "result": "Moved",
                "message": "",
            }
        ],
        "blockers": [{"pool": "spot", "reason": "NotEnoughMovableHosts", "message": "..."}],
        "summary": {
            "spot": "3/4",
            "runpod": "-",
            "contracts": "1/1",
            "onDemand": "12/5",
            "message": "2 moves",
        },
    }
    status = GpuHostPoolStatus.model_validate(wire)
    assert status.in_flight[0].source == "L40-n3"
    assert status.pools.on_demand.movable == 5
    assert status.to_wire() == wire


def test_status_refuses_unknown_condition_types():
    with pytest.raises(ValidationError) as caught:
        GpuHostPoolStatus.model_validate({"conditions": [{"type": "Happy", "status": "True"}]})
    assert format_errors(caught.value, "status") == [
        "status.conditions[0].type: must be one of 'Ready', 'Reconciling', 'Stalled' or 'Paused' (got 'Happy')"
    ]


def test_every_field_has_a_description():
    def walk(model, seen):
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            for arg in _model_args(info.annotation):
                walk(arg, seen)

    walk(GpuHostPool, set())


def _model_args(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _model_args(arg)]


def test_example_in_design_loads():
    text = textwrap.dedent(FULL)
    assert load_pools(text)[0].spec.gpu_type == "L40"


# ------------------------------------------------------------------------- round trip, at random

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-", min_size=1, max_size=12)


@st.composite
def wire_specs(draw) -> dict:
    names = draw(st.lists(_names, min_size=6, max_size=6, unique=True))
    spec: dict = {"gpuType": draw(st.sampled_from(["L40", "RTX-A6000", "H100"]))}
    if draw(st.booleans()):
        spec["onDemand"] = {"aggregates": names[:2]}
    pools: dict = {}
    for role, name in (("spot", names[2]), ("runpod", names[3])):
        if draw(st.booleans()):
            pools[role] = {"hosts": draw(st.integers(0, 50))}
            if draw(st.booleans()):
                pools[role]["aggregate"] = name
    pools["contracts"] = [
        {"aggregate": n, "hosts": draw(st.integers(0, 9))} for n in names[4 : 4 + draw(st.integers(0, 2))]
    ]
    spec["pools"] = pools
    spec["policy"] = {
        "maxConcurrentMoves": draw(st.integers(1, 50)),
        "moveHostsWithInstances": draw(st.booleans()),
        "excludeHosts": draw(st.lists(_names, max_size=3)),
    }
    spec["paused"], spec["dryRun"] = draw(st.booleans()), draw(st.booleans())
    spec["deletionPolicy"] = draw(st.sampled_from(["Retain", "ReturnToOnDemand"]))
    return spec


@settings(max_examples=100, deadline=None)
@given(wire_specs())
def test_any_valid_spec_round_trips_through_the_wire_format(wire):
    spec = GpuHostPoolSpec.model_validate(wire)
    again = GpuHostPoolSpec.model_validate(spec.to_wire())
    assert again == spec and again.to_wire() == spec.to_wire()
    names = [m.name for m in spec.managed_aggregates()]
    assert len(names) == len(set(names))
