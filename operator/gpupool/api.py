"""The GpuHostPool resource: pydantic models of its spec and status.

camelCase on the wire, snake_case in Python. Unknown keys are refused. Every field carries a
description: the CRD schema (and so `kubectl explain`) is generated from these models.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from . import naming
from .model import ON_DEMAND, RUNPOD, SPOT, contract_label

GROUP = "gpupool.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "GpuHostPool"
PLURAL = "gpuhostpools"
SINGULAR = "gpuhostpool"

DeletionPolicy = Literal["Retain", "ReturnToOnDemand"]
Role = naming.Role

# Nova stores aggregate and host names in String(255) columns, and its API refuses names that are
# blank, start or end with a space, or hold control characters (newline, NUL...). The pattern says
# the same without lookarounds, so that Go (the API server) and Rust (pydantic) read it alike. The
# list bounds keep the CRD's CEL rules within the API server's cost budget.
NOVA_NAME_PATTERN = r"^[^\x00-\x20\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f])?$"
NOVA_NAME_RULE = (
    "must not be blank, start or end with a space, or contain control characters such as a newline or "
    "NUL: Nova refuses such a name"
)
AggregateName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NOVA_NAME_PATTERN)]
HostName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NOVA_NAME_PATTERN)]
# metadata.name: a DNS-1123 subdomain, as the API server demands of a GpuHostPool's name.
KUBE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KUBE_NAME_RULE = (
    "must be a Kubernetes name: lowercase letters, digits, '-' and '.', starting and ending with a "
    "letter or digit, e.g. l40-prod"
)
MAX_ON_DEMAND_AGGREGATES = 20
MAX_CONTRACTS = 100
# More hosts than any one GPU type of a real cloud has; the CRD carries the same bound.
MAX_HOSTS = 100_000
# Moves one change may need unless its spec says more (policy.maxMovesPerChange).
DEFAULT_MAX_MOVES = 50


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase document, as stored in Kubernetes."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------------------------------- spec


class OnDemandSpec(_Model):
    aggregates: list[AggregateName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ON_DEMAND_AGGREGATES,
        description=(
            "On-demand aggregates: the reservoir that pools grow from and shrink back to. "
            'Defaults to ["<gpuType>-n3"]. Listed first is drained first and receives hosts '
            "whose origin is unknown."
        ),
    )


class PoolSpec(_Model):
    aggregate: AggregateName | None = Field(default=None, description="Nova host aggregate of this pool.")
    hosts: int = Field(
        ge=0,
        le=MAX_HOSTS,
        strict=True,
        # Required, not 0 by default: a count left out (or a Helm value left unset, which
        # `kubectl apply` drops) must not read as "empty this pool".
        description="Number of hosts the pool should hold (0 empties it).",
    )


class SpotPoolSpec(PoolSpec):
    aggregate: AggregateName | None = Field(
        default=None,
        description='Nova host aggregate of the spot pool. Defaults to "<gpuType>-n3-spot".',
    )


class RunPodPoolSpec(PoolSpec):
    aggregate: AggregateName | None = Field(
        default=None,
        description='Nova host aggregate of the RunPod pool. Defaults to "<gpuType>-n3-runpod".',
    )


class ContractSpec(_Model):
    aggregate: AggregateName = Field(
        description='Nova host aggregate of this contract, e.g. "Contract-FLA-4145-0522-Flawless-16xRTX-A6000".',
    )
    hosts: int = Field(
        ge=0,
        le=MAX_HOSTS,
        strict=True,
        description="Number of hosts the contract should hold (0 empties it).",
    )


class PoolsSpec(_Model):
    spot: SpotPoolSpec | None = Field(
        default=None, description="The spot pool. Omit it to leave spot unmanaged."
    )
    runpod: RunPodPoolSpec | None = Field(
        default=None, description="The RunPod pool. Omit it to leave RunPod unmanaged."
    )
    contracts: list[ContractSpec] = Field(
        default_factory=list,
        max_length=MAX_CONTRACTS,
        description="Contract pools, each with its own aggregate.",
    )


class PolicySpec(_Model):
    max_concurrent_moves: int = Field(
        default=2,
        ge=1,
        le=50,
        strict=True,
        description="Most hosts moving at the same time, in-flight moves included.",
    )
    move_hosts_with_instances: bool = Field(
        default=False,
        strict=True,
        description="Also move hosts that run instances. Off by default: a host with instances is never moved.",
    )
    exclude_hosts: list[HostName] = Field(
        default_factory=list, description="Hosts never moved (maintenance, investigation)."
    )
    min_on_demand_hosts: int = Field(
        default=0,
        ge=0,
        le=MAX_HOSTS,
        strict=True,
        description="Hosts the on-demand aggregates keep for on-demand customers: pools never take "
        "the last ones.",
    )
    max_moves_per_change: int = Field(
        default=DEFAULT_MAX_MOVES,
        ge=1,
        le=MAX_HOSTS,
        strict=True,
        description="Most moves one change may need: a spec that needs more moves nothing and says so "
        "(a typo such as 200 for 20 hosts). Raise it for a change that big.",
    )
    allow_partial: bool = Field(
        default=False,
        strict=True,
        description="Move what can be moved when some pool cannot reach its count. Off by default: "
        "nothing moves until every count can be reached.",
    )


class GpuHostPoolSpec(_Model):
    gpu_type: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description='GPU type, as in the aggregate names, e.g. "L40" or "RTX-A6000".',
    )
    cloud: str = Field(
        default="default", min_length=1, description="Entry of the clouds.yaml the operator mounts."
    )
    gpus_per_host: int | None = Field(
        default=None,
        ge=1,
        le=64,
        strict=True,
        description="GPUs each host of this type carries (e.g. 8): each pool's GPU total is its hosts times "
        "this. Without it the status shows GPUs in use only (counted from the instances' flavors).",
    )
    on_demand: OnDemandSpec = Field(
        default_factory=OnDemandSpec, description="The on-demand reservoir of hosts not in any other pool."
    )
    pools: PoolsSpec = Field(default_factory=PoolsSpec, description="How many hosts each pool should hold.")
    policy: PolicySpec = Field(default_factory=PolicySpec, description="How the operator may move hosts.")
    paused: bool = Field(default=False, strict=True, description="Observe and report only; move nothing.")
    dry_run: bool = Field(default=False, strict=True, description="Plan and report the moves; move nothing.")
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description=(
            "What happens to pool hosts when the resource is deleted: Retain leaves them where they are, "
            "ReturnToOnDemand moves them back to on-demand."
        ),
    )

    @model_validator(mode="after")
    def _fill_defaults_and_check_names(self) -> GpuHostPoolSpec:
        # Defaults that depend on gpuType are filled here, so the rest of the operator sees names only.
        if self.on_demand.aggregates is None:
            self.on_demand.aggregates = [naming.on_demand_aggregate(self.gpu_type)]
        if self.pools.spot is not None and self.pools.spot.aggregate is None:
            self.pools.spot.aggregate = naming.spot_aggregate(self.gpu_type)
        if self.pools.runpod is not None and self.pools.runpod.aggregate is None:
            self.pools.runpod.aggregate = naming.runpod_aggregate(self.gpu_type)
        managed = self.managed_aggregates()
        problems = _named_more_than_once(managed) + _intents_that_do_not_fit(managed)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # The views below are what the planner, reconciler and status read.

    def on_demand_aggregates(self) -> list[str]:
        return list(self.on_demand.aggregates or ())

    def target_pools(self) -> list[TargetPool]:
        """Pools that hold hosts taken from on-demand: spot, runpod, then contracts in spec order."""
        pools = []
        if self.pools.spot is not None:
            pools.append(TargetPool(SPOT, "spot", self.pools.spot.aggregate or "", self.pools.spot.hosts))
        if self.pools.runpod is not None:
            pools.append(
                TargetPool(RUNPOD, "runpod", self.pools.runpod.aggregate or "", self.pools.runpod.hosts)
            )
        for contract in self.pools.contracts:
            pools.append(
                TargetPool(contract_label(contract.aggregate), "contract", contract.aggregate, contract.hosts)
            )
        return pools

    def managed_aggregates(self) -> list[ManagedAggregate]:
        """Every aggregate this spec manages, with its role and where the spec names it."""
        managed = [
            ManagedAggregate(name, "onDemand", ON_DEMAND, f"onDemand.aggregates[{i}]")
            for i, name in enumerate(self.on_demand_aggregates())
        ]
        if self.pools.spot is not None:
            managed.append(
                ManagedAggregate(self.pools.spot.aggregate or "", "spot", SPOT, "pools.spot.aggregate")
            )
        if self.pools.runpod is not None:
            managed.append(
                ManagedAggregate(
                    self.pools.runpod.aggregate or "", "runpod", RUNPOD, "pools.runpod.aggregate"
                )
            )
        for i, contract in enumerate(self.pools.contracts):
            managed.append(
                ManagedAggregate(
                    contract.aggregate,
                    "contract",
                    contract_label(contract.aggregate),
                    f"pools.contracts[{i}].aggregate",
                )
            )
        return managed

    def managed_names(self) -> set[str]:
        """The names of every aggregate this spec manages."""
        return {m.name for m in self.managed_aggregates()}

    def move_pool(self, source: str, target: str) -> str | None:
        """The pool a move serves: the side that is not on-demand (or the side still managed)."""
        on_demand = self.on_demand_aggregates()
        served = self.pool_label(source if target in on_demand else target)
        return served or self.pool_label(target) or self.pool_label(source)

    def pool_label(self, aggregate: str) -> str | None:
        """The pool label ("spot", "contract:X", "onDemand") of a managed aggregate, None if unmanaged."""
        return next((m.pool for m in self.managed_aggregates() if m.name == aggregate), None)


@dataclass(frozen=True)
class TargetPool:
    """A pool other than on-demand, as the planner sees it."""

    label: str  # "spot", "runpod" or "contract:<aggregate>"
    role: Role
    aggregate: str
    desired: int


@dataclass(frozen=True)
class ManagedAggregate:
    name: str
    role: Role
    pool: str  # the pool label: "onDemand", "spot", "runpod" or "contract:<aggregate>"
    field: str  # where the spec names it, e.g. "pools.contracts[1].aggregate"


def _named_more_than_once(managed: Iterable[ManagedAggregate]) -> list[str]:
    seen: dict[str, ManagedAggregate] = {}
    problems = []
    for aggregate in managed:
        first = seen.setdefault(aggregate.name, aggregate)
        if first is aggregate:
            continue
        if first.role == aggregate.role == "contract":
            what = "duplicate contract"
        else:
            what = "aggregate named twice"
        problems.append(
            f"{aggregate.field}: {what}: {aggregate.name!r} is {first.field} already; "
            "each aggregate may appear once across onDemand, spot, runpod and contracts"
        )
    return problems


def _intents_that_do_not_fit(managed: list[ManagedAggregate]) -> list[str]:
    """Every move the spec can make must be recordable, unambiguously, in Nova's disabled_reason."""
    from .intent import LOCK_AGGREGATE, MAX_NAMES_LENGTH, SEPARATOR, STOP_AGGREGATE

    problems = []
    for aggregate in managed:
        if SEPARATOR in aggregate.name:
            problems.append(
                f"{aggregate.field}: {aggregate.name!r} contains {SEPARATOR.strip()!r} between spaces, which "
                "gpupool's record of a move in Nova uses as its separator; rename the aggregate"
            )
        if aggregate.name in (LOCK_AGGREGATE, STOP_AGGREGATE):
            problems.append(f"{aggregate.field}: {aggregate.name!r} is gpupool's own marker, not a pool")
    on_demand = [a for a in managed if a.role == "onDemand"]
    pools = [a for a in managed if a.role != "onDemand"]
    for source in on_demand:
        for target in pools:
            if len(source.name) + len(target.name) > MAX_NAMES_LENGTH:
                problems.append(
                    f"{source.field} and {target.field}: {source.name!r} and {target.name!r} are "
                    f"{len(source.name) + len(target.name)} characters together; a move between them must "
                    f"fit in Nova's 255-character disabled_reason, which leaves {MAX_NAMES_LENGTH}: "
                    "shorten one of the names"
                )
    return problems


# -------------------------------------------------------------------------------------- status

ConditionType = Literal["Ready", "Reconciling", "Stalled", "Paused"]
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    type: ConditionType = Field(
        description="Ready (Nova matches the spec), Reconciling (working towards it), Stalled (waiting "
        "for a person or a change in the cloud) or Paused (spec.paused, spec.dryRun or a kill switch)."
    )
    status: ConditionStatus = Field(description='"True", "False" or "Unknown".')
    reason: str = Field(default="", description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable explanation.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339, UTC)."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation the condition was set for."
    )


class PoolStatus(_Model):
    aggregate: str = Field(description="Nova host aggregate of the pool.")
    desired: int = Field(description="Hosts the spec asks for.")
    current: int = Field(description="Hosts in the aggregate now.")
    moving: int = Field(default=0, description="Moves into or out of the pool under way.")
    gpus: GpuCounts | None = Field(default=None, description="GPU usage of the pool's hosts, when known.")
    hosts: list[str] = Field(default_factory=list, description="Hosts in the aggregate now, sorted.")


class OnDemandStatus(_Model):
    aggregates: list[str] = Field(default_factory=list, description="The on-demand aggregates.")
    hosts: int = Field(default=0, description="Hosts in the on-demand aggregates.")
    movable: int = Field(
        default=0, description="On-demand hosts that may move: up, enabled, empty, not excluded."
    )
    gpus: GpuCounts | None = Field(default=None, description="GPU usage of the on-demand hosts, when known.")


class PoolsStatus(_Model):
    spot: PoolStatus | None = Field(default=None, description="The spot pool.")
    runpod: PoolStatus | None = Field(default=None, description="The RunPod pool.")
    contracts: list[PoolStatus] = Field(
        default_factory=list, description="The contract pools, in spec order."
    )
    on_demand: OnDemandStatus = Field(default_factory=OnDemandStatus, description="The on-demand reservoir.")


class GpuCounts(_Model):
    used: int = Field(default=0, description="GPUs the pool's instances use (from their flavors).")
    total: int | None = Field(default=None, description="GPUs the pool's hosts carry (spec.gpusPerHost).")


class HostCounts(_Model):
    desired: int = Field(default=0, description="Hosts the spec asks for, over spot, runpod and contracts.")
    current: int = Field(default=0, description="Hosts those pools hold now.")
    moving: int = Field(default=0, description="Moves into or out of those pools under way.")


class InFlightMove(_Model):
    host: str = Field(description="Host being moved.")
    source: str = Field(alias="from", description="Aggregate the host leaves.")
    to: str = Field(description="Aggregate the host joins.")
    step: str = Field(description="Protocol step under way.")
    since: str = Field(description="When the move began (RFC 3339, UTC).")


class PlannedMove(_Model):
    host: str = Field(description="Host the plan would move.")
    source: str = Field(alias="from", description="Aggregate the host would leave.")
    to: str = Field(description="Aggregate the host would join.")


class MoveRecord(_Model):
    host: str = Field(description="Host that moved.")
    source: str = Field(alias="from", description="Aggregate the host left.")
    to: str = Field(description="Aggregate the host joined.")
    finished_at: str = Field(description="When the move ended (RFC 3339, UTC).")
    result: str = Field(
        description="Moved; RolledBack (a half-done move no longer needed, undone); Skipped (the host "
        "changed since the plan, untouched); Aborted (something claimed the host, enabled where it was); "
        "Failed (Nova refused a step); Interrupted (someone changed the host's reason mid-move, left as "
        "they set it); Held (in its target with an instance on it, left disabled)."
    )
    message: str = Field(default="", description="What happened, in words.")


class BlockerStatus(_Model):
    pool: str = Field(description="Pool held back: spot, runpod, contract:<aggregate> or onDemand.")
    reason: str = Field(description="Machine-readable CamelCase reason, e.g. NotEnoughMovableHosts.")
    message: str = Field(description="What holds the pool back and what would unblock it.")


class Summary(_Model):
    spot: str = Field(default="-", description="Spot hosts as current/desired, for kubectl get.")
    runpod: str = Field(default="-", description="RunPod hosts as current/desired, for kubectl get.")
    contracts: str = Field(
        default="-", description="Contract hosts summed as current/desired, for kubectl get."
    )
    on_demand: str = Field(
        default="0 (0 movable)",
        description='On-demand hosts, and how many of them may move, e.g. "19 (3 movable)", for kubectl get.',
    )
    message: str = Field(default="", description="The Ready condition's message, for kubectl get -o wide.")


LAST_MOVES_LIMIT = 20


class GpuHostPoolStatus(_Model):
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled and Paused (one of each).",
        # Keyed by type, as metav1.Condition lists are: server-side apply merges them per type.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    pools: PoolsStatus = Field(default_factory=PoolsStatus, description="What each pool holds now.")
    total: HostCounts = Field(default_factory=HostCounts, description="Spot, runpod and contracts together.")
    in_flight: list[InFlightMove] = Field(default_factory=list, description="Moves under way.")
    planned_moves: list[PlannedMove] = Field(
        default_factory=list, description="Moves the plan would make (dry run only)."
    )
    last_moves: list[MoveRecord] = Field(
        default_factory=list,
        max_length=LAST_MOVES_LIMIT,
        description=f"The most recent finished moves, oldest first (at most {LAST_MOVES_LIMIT}).",
    )
    blockers: list[BlockerStatus] = Field(
        default_factory=list, description="Why some pool cannot reach its count."
    )
    summary: Summary = Field(default_factory=Summary, description="Short strings for kubectl get columns.")
    returned_to_on_demand: bool | None = Field(
        default=None,
        description="Set while the resource is being deleted with deletionPolicy ReturnToOnDemand: true once "
        "every host of its pools is back in on-demand and the deletion can finish.",
    )


# ------------------------------------------------------------------------------------ resource


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the operator reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        min_length=1, max_length=253, pattern=KUBE_NAME_PATTERN, description="Name of the GpuHostPool."
    )


class GpuHostPool(_Model):
    """A whole GpuHostPool document, as a user would `kubectl apply` it."""

    api_version: Literal["gpupool.io/v1alpha1"] = Field(description="gpupool.io/v1alpha1")
    kind: Literal["GpuHostPool"] = Field(description="GpuHostPool")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: GpuHostPoolSpec = Field(description="The pools this resource manages.")
    status: GpuHostPoolStatus | None = Field(default=None, description="What the operator observed and did.")

    @property
    def name(self) -> str:
        return self.metadata.name


class SpecError(ValueError):
    """A GpuHostPool document that cannot be used; one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_pool(document: Any, where: str = "", node: yaml.Node | None = None) -> GpuHostPool:
    """One GpuHostPool from a parsed YAML/JSON document. Raises SpecError with every problem.

    `where` prefixes each problem; with the document's YAML `node`, each also names its line:
    `pools.yaml:12: spec.pools.spot.hosts: must be >= 0 (got -1)`.
    """

    def at(loc: tuple[Any, ...], text: str, label: str = "") -> str:
        if node is not None:
            return f"{where}:{_line(node, loc)}: {text}" if where else f"line {_line(node, loc)}: {text}"
        prefix = label or where
        return f"{prefix}: {text}" if prefix else text

    if not isinstance(document, dict):
        raise SpecError([at((), f"expected a GpuHostPool mapping, got {type(document).__name__}")])
    problems = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            at(
                ("apiVersion",),
                f"apiVersion: must be {API_VERSION} (got {_Shown(document.get('apiVersion'))})",
            )
        )
    if document.get("kind") != KIND:
        problems.append(at(("kind",), f"kind: must be {KIND} (got {_Shown(document.get('kind'))})"))
    if problems:
        raise SpecError(problems)
    try:
        return GpuHostPool.model_validate(document)
    except ValidationError as error:
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"{where} ({name})" if where and name else where or name or ""
        raise SpecError([at(loc, text, label) for loc, text in _problems(error, model=GpuHostPool)]) from None


def load_pools(text: str, source: str = "") -> list[GpuHostPool]:
    """Every GpuHostPool in a YAML stream (`---`-separated documents; empty documents skipped).

    Problems name `source` (a file name) and the line: `pools.yaml:7: spec.gpuType: is required`.
    """
    return [pool for pool, _ in load_pools_with_lines(text, source)]


def load_pools_with_lines(text: str, source: str = "") -> list[tuple[GpuHostPool, int]]:
    """load_pools, each GpuHostPool with the line of its metadata.name (to name where it is)."""
    where = source or "<input>"
    try:
        documents = _documents(text)
    except _InputError as error:
        raise SpecError([f"{where}:{error.line}: {error.text}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = mark.line + 1 if mark is not None else 1
        what = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        raise SpecError(
            [f"{where}:{at}: not valid YAML: {what}{f' ({context})' if context else ''}"]
        ) from None
    documents = [(node, data) for node, data in documents if data is not None]
    if not documents:
        raise SpecError(
            [f"{where}:1: no GpuHostPool in this file (it is empty); write one, see examples/pools/"]
        )
    pools: list[tuple[GpuHostPool, int]] = []
    problems = []
    for node, document in documents:
        try:
            pools.append((parse_pool(document, where=where, node=node), _line(node, ("metadata", "name"))))
        except SpecError as error:
            problems.extend(error.problems)
    seen: set[str] = set()
    for pool, line in pools:
        if pool.name in seen:
            problems.append(f"{where}:{line}: metadata.name: {pool.name!r} appears twice in this file")
        seen.add(pool.name)
    if problems:
        raise SpecError(problems)
    return pools


def load_pools_file(path: str | Path) -> list[GpuHostPool]:
    return load_pools(Path(path).read_text(), source=str(path))


# Values that YAML aliases may add to a document beyond what is written out. A GpuHostPool needs
# none; a "billion laughs" file of 500 bytes asks for billions, and would take minutes and gigabytes
# to build.
ALIAS_BUDGET = 10_000


class _InputError(Exception):
    """A YAML stream gpupool refuses before building it: the 1-based line and what to fix."""

    def __init__(self, line: int, text: str):
        self.line, self.text = line, text
        super().__init__(f"{line}: {text}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers where each alias is used (to name it when it expands too far)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.aliases: list[tuple[yaml.Mark, str, yaml.Node]] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event() if self.check_event(yaml.AliasEvent) else None
        node = super().compose_node(parent, index)
        if event is not None and node is not None:
            self.aliases.append((event.start_mark, event.anchor, node))
        return node


def _documents(text: str) -> list[tuple[yaml.Node, Any]]:
    """(node, data) for each document: the nodes know the lines the data came from.

    Each document's node graph is composed and checked before anything is built from it: aliases
    may not expand it by more than ALIAS_BUDGET values, a key may appear once in a mapping, and keys
    are plain values (raises _InputError).
    """
    loader = _Loader(text)
    try:
        found: list[tuple[yaml.Node, Any]] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_aliases(node, loader.aliases)
                _check_keys(node)
                found.append((node, loader.construct_document(node)))
            loader.aliases.clear()
        return found
    except RecursionError:
        raise _InputError(1, "nested too deeply to read: flatten the document") from None
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node, aliases: list[tuple[yaml.Mark, str, yaml.Node]]) -> None:
    """Refuses a document whose aliases would build more than ALIAS_BUDGET extra values.

    Counts the values each node stands for, once per node (the graph is as small as the text),
    without building any of them.
    """
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise _Recursive(node)
        busy.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        busy.discard(key)
        sizes[key] = total
        return total

    try:
        total = size(root)
    except _Recursive as error:
        mark, anchor = next(((m, a) for m, a, n in aliases if n is error.node), (error.node.start_mark, "?"))
        raise _InputError(
            mark.line + 1, f"the alias *{anchor} is used inside its own anchor &{anchor}: remove the loop"
        ) from None
    written = len(sizes)
    if total - written > ALIAS_BUDGET:
        mark, anchor, node = max(aliases, key=lambda use: sizes[id(use[2])])
        raise _InputError(
            mark.line + 1,
            f"the alias *{anchor} stands for {sizes[id(node)]:,} values, and the aliases of this document "
            f"for {total - written:,} in all (at most {ALIAS_BUDGET:,}): write the values out instead",
        )


class _Recursive(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def _check_keys(root: yaml.Node) -> None:
    """Refuses a key given twice in one mapping, and keys that are lists or mappings."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    kind = "list" if isinstance(key, yaml.SequenceNode) else "mapping"
                    raise _InputError(
                        key.start_mark.line + 1,
                        f"{path or 'the document'}: a key here is a {kind}; keys must be field names",
                    )
                here = f"{path}.{key.value}" if path else str(key.value)
                if key.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by design
                    continue
                earlier = first.setdefault((key.tag, key.value), key)
                if earlier is not key:
                    raise _InputError(
                        key.start_mark.line + 1,
                        f"{here}: given twice (also line {earlier.start_mark.line + 1}); keep one",
                    )
                stack.append((value, here))


def _line(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest part of `loc` the document has (a missing key: its parent)."""
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# ----------------------------------------------------------------------------- error messages


def format_errors(error: ValidationError, root: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """One readable line per problem: `spec.pools.spot.hosts: must be >= 0 (got -1)`.

    With the validated `model`, an unknown key also gets a "did you mean" from the known ones.
    """
    return [text for _, text in _problems(error, root, model)]


def _problems(
    error: ValidationError, root: str = "", model: type[BaseModel] | None = None
) -> list[tuple[tuple[Any, ...], str]]:
    """(where in the document, one readable line) per problem."""
    details = error.errors(include_url=False)
    # `host: 1` is one mistake, not two: its "did you mean 'hosts'" already says what a separate
    # "hosts: is required" would.
    misspelt = {
        tuple(d["loc"][:-1]) + (close,)
        for d in details
        if d["type"] == "extra_forbidden"
        and model is not None
        and (close := _closest(model, tuple(d["loc"])))
    }
    lines = []
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] == "missing" and loc in misspelt:
            continue
        if detail["type"] == "invalid_key":
            loc = loc[:-1]  # the key itself is no place: its mapping is
        text = _message(detail)
        if detail["type"] == "extra_forbidden" and model is not None:
            text += _did_you_mean(model, loc)
        # A cross-field check reports several problems at once, one per line, each starting with
        # the field it is about: that field is where it points.
        for line in text.splitlines():
            field_path = _FIELD_PREFIX.match(line) if detail["type"] == "value_error" else None
            here = loc + _parts(field_path["path"]) if field_path else loc
            path = _path(loc, root)
            if field_path:
                base = path
                path = ".".join(p for p in (base, field_path["path"]) if p)
                if field_path["more"]:
                    path += " and " + ".".join(p for p in (base, field_path["more"]) if p)
                line = line[field_path.end() :]
            lines.append((here, f"{path}: {line}" if path else line))
    return lines


# "pools.spot.aggregate: ..." or "onDemand.aggregates[0] and pools.contracts[0].aggregate: ..."
_FIELD_PREFIX = re.compile(
    r"^(?P<path>[a-zA-Z]+(?:\[\d+\])?(?:\.[a-zA-Z]+(?:\[\d+\])?)*)(?: and (?P<more>[\w.\[\]]+))?: "
)


def _parts(path: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        parts.append(name)
        if rest:
            parts.append(int(rest.rstrip("]")))
    return tuple(parts)


def _did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    known = _known_fields(model, loc)
    if known is None:
        return ""
    close = _closest(model, loc)
    return f" (did you mean {close!r}?)" if close else f" (known fields: {', '.join(known)})"


def _closest(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The known field an unknown key at `loc` most likely meant, if one is close."""
    close = difflib.get_close_matches(str(loc[-1]), _known_fields(model, loc) or [], n=1, cutoff=0.6)
    return close[0] if close else None


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The fields of the model that holds the key at `loc`; None when that is not a model."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = {info.alias or name: info for name, info in current.model_fields.items()}
        candidates = [m for m in _models_in(fields[part].annotation)] if part in fields else []
        if not candidates:
            return None
        current = candidates[0]
    return [info.alias or name for name, info in current.model_fields.items()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _path(loc: tuple[Any, ...], root: str) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _message(detail: Any) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    got = _Shown(detail.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field: remove it or fix its spelling"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[
            kind
        ]
        bound = next(iter(ctx.values()))
        return f"must be {sign} {bound} (got {got})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (got {got})"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {got})"
    if kind == "string_type":
        return f"must be a string (got {got})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {got})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping (got {got})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {got})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty: list at least one"
    if kind == "too_short":
        return f"must list at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must list at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NOVA_NAME_PATTERN:
        return f"{NOVA_NAME_RULE} (got {got})"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == KUBE_NAME_PATTERN:
        return f"{KUBE_NAME_RULE} (got {got})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')} (got {got})"
    if kind == "invalid_key":
        return f"the key {got} is not a field name: field names are text, e.g. gpuType"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    return str(detail["msg"])


# The longest value a message shows; a longer one is cut, with "...".
SHOWN_LENGTH = 80


class _Shown:
    """A value as the user wrote it in YAML (true, null, 2018-01-01, [a, b]), cut to SHOWN_LENGTH.

    Strings keep their quotes (and escapes: a newline shows as \\n)."""

    def __init__(self, value: Any):
        self.value = value

    def __str__(self) -> str:
        value = self.value
        if isinstance(value, str):
            text = repr(value)
        else:
            try:
                text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=False)
                text = text.removesuffix("\n").removesuffix("\n...").strip()
            except yaml.YAMLError:
                text = repr(value)
        return text if len(text) <= SHOWN_LENGTH else text[: SHOWN_LENGTH - 3] + "..."
