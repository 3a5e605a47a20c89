"""The engine's value types: what the cloud looks like, what the planner decides, what a move and a
pass come to. Plain frozen data, no I/O and no behaviour beyond derived properties, so every layer
(planner, mover, reconciler, status, publisher, CLI) shares them without importing another's logic.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

# Names as Nova and the spec spell them. Aliases, not new types: they say what a str holds.
HostName: TypeAlias = str
AggregateName: TypeAlias = str
# A pool's label in plans, statuses and metrics: "spot", "runpod", "contract:<aggregate>", "onDemand".
PoolLabel: TypeAlias = str

ON_DEMAND = "onDemand"
SPOT = "spot"
RUNPOD = "runpod"
_CONTRACT_PREFIX = "contract:"


def contract_label(aggregate: AggregateName) -> PoolLabel:
    """The pool label of a contract: "contract:<aggregate>"."""
    return f"{_CONTRACT_PREFIX}{aggregate}"


def is_contract_label(label: PoolLabel) -> bool:
    return label.startswith(_CONTRACT_PREFIX)


# -- the cloud, as a snapshot shows it ---------------------------------------------------------------
@dataclass(frozen=True)
class Aggregate:
    id: int
    name: AggregateName
    hosts: frozenset[HostName]
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None  # as Nova wrote it (UTC, no zone suffix)

    @property
    def availability_zone(self) -> str | None:
        return self.metadata.get("availability_zone")


@dataclass(frozen=True)
class Host:
    """A nova-compute host and its service."""

    name: HostName
    service_id: str
    state: str = "up"  # "up" | "down": is nova-compute reporting in
    status: str = "enabled"  # "enabled" | "disabled"
    disabled_reason: str | None = None
    # Instances on the host, any state. None: not counted (the host cannot move anyway).
    instances: int | None = 0
    # The compute node's uuid (the hypervisor id from microversion 2.53, and its Placement
    # resource provider's uuid). None: Nova lists no hypervisor for the service.
    hypervisor_id: str | None = None

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    @property
    def is_enabled(self) -> bool:
        return self.status == "enabled"


@dataclass(frozen=True)
class HostNow:
    """A host as Nova describes it at one moment, read right before a step that depends on it."""

    name: str
    status: str  # "enabled" | "disabled"
    state: str  # "up" | "down"
    disabled_reason: str | None
    # Instances whose host is this one (names or uuids). None: Nova could not say.
    servers: tuple[str, ...] | None

    @property
    def is_enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def is_up(self) -> bool:
        return self.state == "up"


@dataclass(frozen=True)
class Snapshot:
    """One consistent-enough view of the cloud: aggregates by name, compute hosts by name."""

    aggregates: Mapping[str, Aggregate]
    hosts: Mapping[str, Host]

    def aggregates_of(self, host: str) -> list[str]:
        return sorted(name for name, agg in self.aggregates.items() if host in agg.hosts)


# -- what the planner decides --------------------------------------------------------------------

# Blocker reasons: machine-readable, CamelCase, stable (they end up in conditions).
AGGREGATE_MISSING = "AggregateMissing"
HOST_IN_SEVERAL_POOLS = "HostInSeveralPools"
NOT_ENOUGH_MOVABLE_HOSTS = "NotEnoughMovableHosts"
CANNOT_SHRINK = "CannotShrink"
HOST_SHARED = "HostShared"
AVAILABILITY_ZONE_CONFLICT = "AvailabilityZoneConflict"
EXCLUDED_HOST_UNKNOWN = "ExcludedHostUnknown"
AGGREGATE_REFUSED = "AggregateRefused"
ON_DEMAND_FLOOR = "OnDemandFloor"
TOO_MANY_MOVES = "TooManyMoves"


@dataclass(frozen=True)
class Neighbours:
    """The other GpuHostPools on the same cloud: whose aggregates a host must not also sit in."""

    me: str  # this resource's name, for messages
    others: Mapping[str, str] = field(default_factory=dict)  # aggregate -> the resource managing it


@dataclass(frozen=True)
class OriginRecord:
    """A metadata change on one aggregate that keeps a host's on-demand origin (value None: forget)."""

    aggregate: str
    key: str
    value: str | None


@dataclass(frozen=True)
class Move:
    host: HostName
    source: AggregateName
    target: AggregateName
    pool: PoolLabel
    # Set only when the origin record must change: a grow from another than the first on-demand
    # aggregate (remember it), a shrink of a host that has one (forget it). Else no extra request.
    origin: OriginRecord | None = None
    # The move's id, as its intent in Nova carries it: set for a move found under way, and by the
    # mover for a new one (it names the move's Events, whichever process finishes it).
    move_id: str | None = None


@dataclass(frozen=True)
class Blocker:
    pool: PoolLabel
    reason: str  # one of the blocker reasons above
    message: str


@dataclass(frozen=True)
class PoolState:
    """A pool as the snapshot shows it (moves in flight not counted)."""

    label: PoolLabel
    aggregate: AggregateName
    desired: int
    current: int
    hosts: tuple[str, ...] = ()
    exists: bool = True


@dataclass(frozen=True)
class OnDemandState:
    aggregates: tuple[str, ...]
    hosts: int
    movable: int
    # The on-demand hosts by name (for per-pool GPU usage); derived from the counts' source, so not
    # part of equality.
    members: tuple[HostName, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PoolsState:
    spot: PoolState | None
    runpod: PoolState | None
    contracts: tuple[PoolState, ...]
    on_demand: OnDemandState

    def targets(self) -> list[PoolState]:
        """Spot, runpod and contracts, in spec order."""
        return [p for p in (self.spot, self.runpod) if p is not None] + list(self.contracts)


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    blockers: tuple[Blocker, ...]
    pools: PoolsState


@dataclass(frozen=True)
class Triage:
    """What to do with the half-done moves a pass found in Nova."""

    finish: tuple[Move, ...]
    roll_back: tuple[tuple[Move, str], ...]  # (move, why it is no longer needed)
    # Someone put the host into another pool's aggregate mid-move: where they put it stands; the
    # host is only enabled again (if it still carries our intent), and that is reported.
    release: tuple[tuple[Move, str], ...] = ()


# -- what a move comes to ------------------------------------------------------------------------


class Step(enum.StrEnum):
    CHECK = "Check"
    DISABLE = "Disable"
    VERIFY_EMPTY = "VerifyEmpty"
    REMOVE = "RemoveFromSource"
    ADD = "AddToTarget"
    CONFIRM = "Confirm"
    ENABLE = "Enable"
    # Rolling a move back.
    LEAVE_TARGET = "LeaveTarget"
    RETURN_TO_SOURCE = "ReturnToSource"


class Outcome(enum.StrEnum):
    MOVED = "Moved"
    # A half-done move the plan no longer needs: the host is back in its source, enabled.
    ROLLED_BACK = "RolledBack"
    # The host changed since the plan (disabled by someone, down, busy): not touched at all.
    SKIPPED = "Skipped"
    # Something claimed the host after it was disabled: enabled again where it was.
    ABORTED = "Aborted"
    # Nova refused a step: the host was put back (or, with `intent_left`, is left to the next pass).
    FAILED = "Failed"
    # Someone changed the host's reason (or enabled it) mid-move: left exactly as they set it.
    INTERRUPTED = "Interrupted"
    # In its target with an instance on it: left disabled with the intent, reported, checked again.
    HELD = "Held"


@dataclass(frozen=True)
class Observed:
    """An aggregate's hosts as Nova reported them in its answer to one of our steps."""

    aggregate: str
    hosts: frozenset[str]
    at: float  # time.monotonic() when the answer arrived


@dataclass(frozen=True)
class MoveResult:
    move: Move
    outcome: Outcome
    message: str
    observed: tuple[Observed, ...] = ()
    finished_at: float = field(default_factory=time.time)  # wall clock, for the status history
    # The move was found half-done in Nova: another process (or a killed run) began it.
    resumed: bool = False
    # gpupool's intent is still on the host's service: the move is not over (the next pass resumes it).
    intent_left: bool = False
    # Where the host ended up: "source", "target", or None when unknown or in neither.
    location: Literal["source", "target"] | None = None
    # The host's service as last read (None: not read, or unknown after a failure).
    now: HostNow | None = None
    # An aggregate that refused a step for good (4xx): not asked again in this pass.
    refused_by: str | None = None
    # This process lost the cloud's move lock before a write: it stopped there, writing nothing.
    fenced: bool = False
    # How long the move took, from its first step to this result.
    seconds: float = 0.0


ProgressCallback = Callable[[Move, Step], None]


# -- what a resource's conditions say ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a resource's conditions say (status.verdict_of, status.verdict): decided in one place
    for the CLI and the operator."""

    ready: bool
    reason: str  # Ready's reason, CamelCase
    message: str
    reconciling: bool = False  # the operator keeps working on its own
    stalled: bool = False  # nothing more happens without a person or a change in the cloud
    paused: str | None = None  # Paused, DryRun or Stopped: new moves do not start


# -- what a pass comes to ------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    move: Move
    step: Step
    since: float
    # Left with gpupool's intent when the pass ended: the next pass resumes it.
    stuck: bool = False
    # A half-done move going back to its source (see planner.triage_resumed), and why.
    rolling_back: str | None = None


@dataclass
class PassReport:
    """What a pass saw and did: everything the status is written from."""

    plan: Plan
    in_flight: list[InFlight] = field(default_factory=list)
    results: list[MoveResult] = field(default_factory=list)
    finished: bool = False
    paused: bool = False
    dry_run: bool = False
    # Why the pass stopped starting moves (Nova kept failing); None while the breaker is closed.
    breaker: str | None = None
    # A kill switch is on (the cloud's gpupool-stop aggregate, or the operator's own): why.
    stopped: str | None = None
    # GPUs in use per host (from the instances' flavors), when read; and spec.gpusPerHost.
    gpu_usage: Mapping[HostName, int] | None = None
    gpus_per_host: int | None = None

    @property
    def moving_per_pool(self) -> dict[PoolLabel, int]:
        """Moves under way, by the pool they serve."""
        counts: dict[PoolLabel, int] = {}
        for flight in self.in_flight:
            counts[flight.move.pool] = counts.get(flight.move.pool, 0) + 1
        return counts

    @property
    def needs_attention(self) -> list[MoveResult]:
        """Moves left for a person: someone else's reason on the host, or an instance in the way."""
        return [r for r in self.results if r.outcome in (Outcome.INTERRUPTED, Outcome.HELD)]

    @property
    def converged(self) -> bool:
        """Nova matches the spec: nothing to move (ignoring the concurrency cap), no gpupool intent
        left on any host, no blocker, and nothing this pass left for a person."""
        return (
            self.finished
            and not self.plan.moves
            and not self.in_flight
            and not self.plan.blockers
            and self.breaker is None
            and self.stopped is None
            and not self.needs_attention
        )

    @property
    def blocked(self) -> bool:
        return self.finished and not self.converged


ReportCallback = Callable[[PassReport], None]
