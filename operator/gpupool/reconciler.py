"""One reconcile pass: snapshot -> plan -> move -> status. Knows nothing of Kubernetes.

The pass takes one snapshot, then keeps `maxConcurrentMoves` moves running: whenever one ends,
its effect is applied to the in-memory snapshot and the planner (pure, fast) picks the next. So a
pass needs one snapshot, not one per batch, and a slot never waits for the slowest move of a batch.
A final snapshot checks the result before the pass reports converged.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from .api import GpuHostPoolSpec
from .cloud import Cloud
from .intent import parse_reason
from .inventory import Aggregate, Snapshot
from .mover import Mover, MoveResult, Outcome, Step
from .planner import Move, Plan, plan, with_origin_record

log = logging.getLogger(__name__)

REPLAN_EVERY_S = 1.0


@dataclass(frozen=True)
class InFlight:
    move: Move
    step: Step
    since: float


@dataclass
class PassReport:
    """What a pass saw and did: everything the status is written from."""

    plan: Plan
    in_flight: list[InFlight] = field(default_factory=list)
    results: list[MoveResult] = field(default_factory=list)
    finished: bool = False
    paused: bool = False
    dry_run: bool = False

    @property
    def converged(self) -> bool:
        return self.finished and not self.plan.moves and not self.in_flight and not self.plan.blockers

    @property
    def blocked(self) -> bool:
        return self.finished and not self.plan.moves and not self.in_flight and bool(self.plan.blockers)


ReportCallback = Callable[[PassReport], None]


def managed_aggregates(spec: GpuHostPoolSpec) -> set[str]:
    names = set(spec.on_demand_aggregates())
    names.update(pool.aggregate for pool in spec.target_pools())
    return names


def recover_in_flight(spec: GpuHostPoolSpec, snapshot: Snapshot) -> list[Move]:
    """Moves a previous run began and did not finish: services disabled with our intent.

    A move is this spec's to finish when it leaves or joins an aggregate the spec manages, even if
    the spec has changed since: one whose pool was dropped from the spec is finished as recorded
    (the host joins the hosts already there, which stay too), so no host is left disabled or
    outside every aggregate. The mover puts a host back where it came from if its target is gone.
    """
    managed = managed_aggregates(spec)
    moves = []
    for host in sorted(snapshot.hosts.values(), key=lambda h: h.name):
        if host.is_enabled:
            continue
        intent = parse_reason(host.disabled_reason)
        if intent and (intent.source in managed or intent.target in managed):
            # The pool the move serves: the target of a grow, the source of a shrink.
            pool = spec.move_pool(intent.source, intent.target) or "onDemand"
            move = Move(host=host.name, source=intent.source, target=intent.target, pool=pool)
            moves.append(with_origin_record(move, spec.on_demand_aggregates(), snapshot))
    return moves


def apply_result(snapshot: Snapshot, result: MoveResult) -> Snapshot:
    """The snapshot as it stands after a move ended, without asking Nova again."""
    move = result.move
    hosts = dict(snapshot.hosts)
    aggregates = dict(snapshot.aggregates)
    host = hosts[move.host]
    if result.outcome is Outcome.MOVED:
        aggregates[move.source] = _without(aggregates[move.source], move.host)
        aggregates[move.target] = _with(aggregates[move.target], move.host)
        hosts[move.host] = replace(host, status="enabled", disabled_reason=None)
        if move.origin is not None and move.origin.aggregate in aggregates:
            noted = aggregates[move.origin.aggregate]
            metadata = {k: v for k, v in noted.metadata.items() if k != move.origin.key}
            if move.origin.value is not None:
                metadata[move.origin.key] = move.origin.value
            aggregates[noted.name] = replace(noted, metadata=metadata)
    elif result.outcome is Outcome.ABORTED:
        hosts[move.host] = replace(
            host, status="enabled", disabled_reason=None, instances=max(1, host.instances or 0)
        )
    return Snapshot(aggregates=aggregates, hosts=hosts)


def merge_observed(
    snapshot: Snapshot, result: MoveResult, touched: set[str], seen_at: dict[str, float]
) -> Snapshot:
    """Fold in what Nova's answers to our add/remove steps said each aggregate holds.

    Someone may change an aggregate behind our back during a pass; the answers to our own steps
    carry the whole membership, so the pass learns of it without asking Nova again. Hosts this
    pass moves are tracked from our own results (answers to concurrent moves may be older), every
    other host is taken from the newest answer about its aggregate.
    """
    aggregates = dict(snapshot.aggregates)
    for observed in result.observed:
        current = aggregates.get(observed.aggregate)
        if current is None or observed.at <= seen_at.get(observed.aggregate, float("-inf")):
            continue
        seen_at[observed.aggregate] = observed.at
        known = frozenset(observed.hosts & snapshot.hosts.keys())
        merged = (known - touched) | (current.hosts & touched)
        if merged != current.hosts:
            log.info("%s changed behind our back: now %s", observed.aggregate, sorted(merged))
            aggregates[observed.aggregate] = replace(current, hosts=merged)
    return Snapshot(aggregates=aggregates, hosts=snapshot.hosts)


def _with(aggregate: Aggregate, host: str) -> Aggregate:
    return replace(aggregate, hosts=aggregate.hosts | {host})


def _without(aggregate: Aggregate, host: str) -> Aggregate:
    return replace(aggregate, hosts=aggregate.hosts - {host})


def _excluding(spec: GpuHostPoolSpec, hosts: set[str]) -> GpuHostPoolSpec:
    if not hosts:
        return spec
    excluded = sorted(set(spec.policy.exclude_hosts) | hosts)
    return spec.model_copy(update={"policy": spec.policy.model_copy(update={"exclude_hosts": excluded})})


class Reconciler:
    def __init__(self, cloud: Cloud, *, clock: Callable[[], float] = time.time):
        self._cloud = cloud
        self._clock = clock

    def reconcile(
        self,
        spec: GpuHostPoolSpec,
        on_report: ReportCallback | None = None,
        *,
        snapshot: Snapshot | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PassReport:
        """One pass. Calls `on_report` whenever something changed (moves start or end).

        `snapshot`: a fresh one taken for several GpuHostPools at once (the operator shares one per
        cloud and round); otherwise the pass takes its own. `should_stop`: asked before each new
        move; once true, no move starts and the pass ends when the running ones have finished (a
        move is never abandoned half-way).
        """
        notify = on_report or (lambda report: None)
        stop = should_stop or (lambda: False)
        snapshot = snapshot if snapshot is not None else self._cloud.snapshot()
        resumed = recover_in_flight(spec, snapshot)
        report = PassReport(
            # A dry run shows every move the spec needs, not only the first maxConcurrentMoves.
            plan=plan(spec, snapshot, in_flight=resumed, all_moves=spec.dry_run),
            paused=spec.paused,
            dry_run=spec.dry_run,
        )
        if spec.paused or spec.dry_run:
            report.finished = True
            notify(report)
            return report

        steps: dict[str, InFlight] = {}

        def on_step(move: Move, step: Step) -> None:
            steps[move.host] = InFlight(
                move, step, steps.get(move.host, InFlight(move, step, self._clock())).since
            )
            report.in_flight = list(steps.values())
            notify(report)

        mover = Mover(self._cloud, allow_instances=spec.policy.move_hosts_with_instances, on_step=on_step)
        bound = spec.policy.max_concurrent_moves
        failed_hosts: set[str] = set()
        touched: set[str] = {m.host for m in resumed}
        seen_at: dict[str, float] = {}
        running: dict[Future[MoveResult], Move] = {}
        pending = list(resumed)
        # Planning is pure but not free (about 10 ms at 2,000 hosts); it runs on the thread that also
        # feeds the movers. So the pass plans every move still needed at once and hands them out as
        # slots free up, and plans again only when the world differs from that plan: a move that did
        # not succeed, an aggregate changed behind our back, or REPLAN_EVERY_S for fresh counts.
        queue: collections.deque[Move] = collections.deque()
        replan, planned_at = True, float("-inf")
        with ThreadPoolExecutor(max_workers=bound, thread_name_prefix="move") as pool:
            while True:
                if replan or not queue or time.monotonic() - planned_at >= REPLAN_EVERY_S:
                    in_flight = list(running.values()) + pending
                    everything = plan(
                        _excluding(spec, failed_hosts), snapshot, in_flight=in_flight, all_moves=True
                    )
                    queue = collections.deque(everything.moves)
                    replan, planned_at = False, time.monotonic()
                    free = max(0, bound - len(in_flight))
                    report.plan = replace(everything, moves=tuple(everything.moves[:free]))
                if stop():
                    queue.clear()
                starting = pending + [
                    queue.popleft() for _ in range(min(len(queue), bound - len(running) - len(pending)))
                ]
                for move in starting:
                    touched.add(move.host)
                    running[pool.submit(mover.run, move, snapshot)] = move
                pending = []
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    move = running.pop(future)
                    result = future.result()
                    steps.pop(move.host, None)
                    report.in_flight = list(steps.values())
                    report.results.append(result)
                    if result.outcome is Outcome.FAILED:
                        failed_hosts.add(move.host)
                    applied = apply_result(snapshot, result)
                    snapshot = merge_observed(applied, result, touched, seen_at)
                    replan |= result.outcome is not Outcome.MOVED or snapshot.aggregates != applied.aggregates
                notify(report)

        # Check the outcome against Nova itself, not our own bookkeeping. Nothing moved: the
        # snapshot the pass started from is still the truth, and asking again would only cost.
        final = self._cloud.snapshot() if report.results else snapshot
        report.plan = plan(_excluding(spec, failed_hosts), final, in_flight=recover_in_flight(spec, final))
        report.finished = True
        notify(report)
        return report
