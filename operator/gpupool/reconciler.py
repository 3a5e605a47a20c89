"""One reconcile pass: snapshot -> plan -> move -> status. Knows nothing of Kubernetes.

The pass takes one snapshot, first deals with the half-done moves it finds in Nova (finishing those
the spec still needs, rolling the others back), then keeps `maxConcurrentMoves` moves running:
whenever one ends, its effect is applied to the in-memory snapshot and the planner (pure, fast)
picks the next. A final snapshot checks the result before the pass reports converged.

Moves resumed from Nova count against `maxConcurrentMoves` like any other. A circuit breaker stops
a pass from starting moves when Nova keeps refusing (docs/architecture.md): the next round tries
again.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from .api import GpuHostPoolSpec
from .errors import CloudError
from .intent import MoveIntent, parse_reason, stop_reason
from .model import (
    ON_DEMAND,
    Aggregate,
    InFlight,
    Move,
    MoveResult,
    Neighbours,
    Outcome,
    PassReport,
    Plan,
    ReportCallback,
    Snapshot,
    Step,
)
from .movelock import FencedCloud
from .mover import Mover, resume_step
from .planner import CHANGED, failed_this_pass, plan, triage_resumed, with_origin_record
from .ports import CloudPort

log = logging.getLogger(__name__)

REPLAN_EVERY_S = 1.0
# While a pass still has moves to start, how often it reads the cloud's kill switch again (one
# request: the aggregate list; a pass with nothing left to start never reads it).
STOP_CHECK_EVERY_S = 2.0
# Failed moves in a row that open the circuit breaker. One failed move whose undo failed too
# (its host keeps gpupool's intent) opens it at once.
BREAKER_FAILURES = 3


def recover_in_flight(spec: GpuHostPoolSpec, snapshot: Snapshot) -> list[Move]:
    """Moves a previous run began and did not finish: services disabled with exactly our intent.

    A move is this spec's when it leaves or joins an aggregate the spec manages (its pool may have
    been dropped from the spec since: the pass then rolls it back). A reason that is not exactly
    what gpupool writes, for exactly this host, is someone else's: see intent.py.
    """
    managed = spec.managed_names()
    moves = []
    for host in sorted(snapshot.hosts.values(), key=lambda h: h.name):
        if host.is_enabled:
            continue
        intent = parse_reason(host.name, host.disabled_reason)
        if intent and (intent.source in managed or intent.target in managed):
            # The pool the move serves: the target of a grow, the source of a shrink.
            pool = spec.move_pool(intent.source, intent.target) or ON_DEMAND
            move = Move(host.name, intent.source, intent.target, pool, move_id=intent.move_id)
            moves.append(with_origin_record(move, spec.on_demand_aggregates(), snapshot))
    return moves


def orphan_moves(snapshot: Snapshot, managed: set[str]) -> list[Move]:
    """Half-done moves no GpuHostPool manages any more (deleted with deletionPolicy Retain mid-move,
    say): gpupool intents whose source and target are both outside `managed`."""
    moves = []
    for host in sorted(snapshot.hosts.values(), key=lambda h: h.name):
        intent = parse_reason(host.name, host.disabled_reason) if not host.is_enabled else None
        if intent and intent.source not in managed and intent.target not in managed:
            moves.append(Move(host.name, intent.source, intent.target, "-", move_id=intent.move_id))
    return moves


def roll_back_orphans(cloud: CloudPort, snapshot: Snapshot, moves: list[Move]) -> list[MoveResult]:
    """Put the hosts of orphaned moves back where they came from, one at a time (this is rare)."""
    mover = Mover(cloud)
    results = []
    for move in moves:
        result = mover.roll_back(move, snapshot, "belongs to no GpuHostPool any more")
        log.warning("orphaned move of %s: %s: %s", move.host, result.outcome, result.message)
        results.append(result)
    return results


def has_work(spec: GpuHostPoolSpec, snapshot: Snapshot, neighbours: Neighbours | None = None) -> bool:
    """Whether a pass on this snapshot would change anything in Nova (and so needs the move lock)."""
    if stop_reason(snapshot.aggregates) is not None:
        return False
    resumed = recover_in_flight(spec, snapshot)
    if resumed:
        return True
    if spec.paused or spec.dry_run:
        return False
    return bool(plan(spec, snapshot, neighbours=neighbours).moves)


def apply_result(snapshot: Snapshot, result: MoveResult) -> Snapshot:
    """The snapshot as it stands after a move ended, without asking Nova again."""
    move = result.move
    hosts = dict(snapshot.hosts)
    aggregates = dict(snapshot.aggregates)
    host = hosts[move.host]
    if result.location is not None:
        for name in (move.source, move.target):
            if name in aggregates:
                aggregates[name] = _without(aggregates[name], move.host)
        ended = move.source if result.location == "source" else move.target
        if ended in aggregates:
            aggregates[ended] = _with(aggregates[ended], move.host)
    if result.now is not None:
        now = result.now
        host = replace(
            host,
            status=now.status,
            state=now.state,
            disabled_reason=now.disabled_reason,
            instances=len(now.servers) if now.servers is not None else host.instances,
        )
    elif result.intent_left:
        reason = MoveIntent(move.host, move.source, move.target, move.move_id or "").reason()
        host = replace(host, status="disabled", disabled_reason=reason)
    if result.outcome is Outcome.ABORTED:
        host = replace(host, instances=max(1, host.instances or 0))  # something claimed it
    hosts[move.host] = host
    if result.outcome is Outcome.MOVED and move.origin is not None and move.origin.aggregate in aggregates:
        noted = aggregates[move.origin.aggregate]
        metadata = {k: v for k, v in noted.metadata.items() if k != move.origin.key}
        if move.origin.value is not None:
            metadata[move.origin.key] = move.origin.value
        aggregates[noted.name] = replace(noted, metadata=metadata)
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


def _reversed(move: Move) -> Move:
    """A move being rolled back, as the planner should count it: on its way back to its source."""
    return replace(move, source=move.target, target=move.source, origin=None)


class CircuitBreaker:
    """Opens when Nova keeps refusing, so a pass stops before it disables half the fleet."""

    def __init__(self, threshold: int = BREAKER_FAILURES):
        self.threshold = threshold
        self.in_a_row = 0
        self.why: str | None = None

    def record(self, result: MoveResult) -> None:
        if result.outcome is not Outcome.FAILED:
            if result.outcome is Outcome.MOVED:
                self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.why is not None:
            return
        if result.intent_left:
            self.why = (
                f"a move failed and could not be undone ({result.message}); no new move starts "
                "until the next round"
            )
        elif self.in_a_row >= self.threshold:
            self.why = (
                f"{self.in_a_row} moves failed in a row (last: {result.message}); no new move starts "
                "until the next round"
            )


class Reconciler:
    def __init__(
        self,
        cloud: CloudPort,
        *,
        clock: Callable[[], float] = time.time,
        fence: Callable[[], None] | None = None,
    ):
        """`fence`: called before every write of a move (MoveLock.fence): raises Fenced once this
        process may no longer write on the cloud."""
        self._cloud = cloud
        self._clock = clock
        self._fence = fence

    def reconcile(
        self,
        spec: GpuHostPoolSpec,
        on_report: ReportCallback | None = None,
        *,
        snapshot: Snapshot | None = None,
        should_stop: Callable[[], bool] | None = None,
        neighbours: Neighbours | None = None,
        kill_switch: Callable[[], str | None] | None = None,
        gpu_usage: Mapping[str, int] | None = None,
    ) -> PassReport:
        """One pass. Calls `on_report` whenever something changed (moves start or end).

        `snapshot`: a fresh one taken for several GpuHostPools at once (the operator shares one per
        cloud and round); otherwise the pass takes its own. `should_stop`: asked before each new
        move; once true, no move starts and the pass ends when the running ones have finished (a
        move is never abandoned half-way). `neighbours`: the other GpuHostPools on this cloud.
        `kill_switch`: the caller's own (the operator's, in the cluster): why moves are stopped, or None.
        The cloud's kill switch is read from the snapshot, and again while moves are left to start.
        """
        snapshot = snapshot if snapshot is not None else self._cloud.snapshot()
        return _Pass(
            self._cloud,
            self._clock,
            spec,
            snapshot,
            on_report or (lambda report: None),
            should_stop or (lambda: False),
            neighbours,
            kill_switch or (lambda: None),
            self._fence,
            gpu_usage,
        ).run()


class _Pass:
    """The state of one pass while its moves run."""

    def __init__(
        self,
        cloud: CloudPort,
        clock: Callable[[], float],
        spec: GpuHostPoolSpec,
        snapshot: Snapshot,
        notify: ReportCallback,
        stop: Callable[[], bool],
        neighbours: Neighbours | None,
        kill_switch: Callable[[], str | None],
        fence: Callable[[], None] | None = None,
        gpu_usage: Mapping[str, int] | None = None,
    ):
        self.cloud, self.clock, self.spec, self.snapshot = cloud, clock, spec, snapshot
        self.notify, self.stop, self.neighbours = notify, stop, neighbours
        self.kill_switch = kill_switch
        self.stop_checked = time.monotonic()
        self.may_start_new = not (spec.paused or spec.dry_run)
        self.bound = spec.policy.max_concurrent_moves
        self.breaker = CircuitBreaker()
        self.held_back: dict[str, str] = {}  # host -> why the pass set it aside
        self.refusing: dict[str, str] = {}  # aggregate -> Nova's answer
        self.stuck: list[Move] = []  # moves that kept their intent: still in flight
        self.steps: dict[str, InFlight] = {}
        self.rolling: dict[str, str] = {}  # host -> why its half-done move is rolled back
        self.touched: set[str] = set()
        self.seen_at: dict[str, float] = {}
        self.running: dict[Future[MoveResult], tuple[Move, str | None]] = {}
        resumed = recover_in_flight(spec, snapshot)
        triage = triage_resumed(spec, snapshot, resumed, neighbours)
        # (move, why it is rolled back or released, or None to finish it), in the order they start.
        self.resumed = collections.deque(
            [(m, None) for m in triage.finish] + list(triage.roll_back) + list(triage.release)
        )
        self.released = {m.host for m, _ in triage.release}
        self.touched.update(m.host for m in resumed)
        self.queue: collections.deque[Move] = collections.deque()
        self.planned_at = float("-inf")
        self.report = PassReport(
            # Paused and dry-run resources show every move the spec needs, not only the first
            # maxConcurrentMoves.
            plan=self._plan(all_moves=not self.may_start_new),
            paused=spec.paused,
            dry_run=spec.dry_run,
            gpu_usage=gpu_usage,
            gpus_per_host=spec.gpus_per_host,
        )
        writer: CloudPort = FencedCloud(cloud, fence) if fence is not None else cloud
        self.mover = Mover(
            writer, allow_instances=spec.policy.move_hosts_with_instances, on_step=self._on_step
        )

    # -- planning ---------------------------------------------------------------------------------

    def _in_flight_moves(self) -> list[Move]:
        """Moves under way as the planner should count them: done, or on their way back (a
        released host stays where someone put it, and is not counted as moving)."""
        pending = [*self.running.values(), *self.resumed]
        moves = [m if why is None else _reversed(m) for m, why in pending if m.host not in self.released]
        return moves + self.stuck

    def _plan(self, *, all_moves: bool) -> Plan:
        return plan(
            self.spec,
            self.snapshot,
            in_flight=self._in_flight_moves(),
            all_moves=all_moves,
            neighbours=self.neighbours,
            held_back=self.held_back,
            refusing=self.refusing,
        )

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> PassReport:
        """The phases of a pass: triage (done in __init__: which half-done moves to finish, roll
        back or release), a check of the kill switches, moving until nothing is left to start or
        running, and a final check of the result against Nova."""
        if self._waits():
            return self._report_waiting()
        self._move_until_done()
        return self._final()

    # -- phase: may anything start? ---------------------------------------------------------------

    def _waits(self) -> bool:
        """A kill switch is on, or nothing is resumed and nothing new may start (paused, dry run)."""
        self.report.stopped = stop_reason(self.snapshot.aggregates) or self.kill_switch()
        return self.report.stopped is not None or (not self.resumed and not self.may_start_new)

    def _report_waiting(self) -> PassReport:
        """Nothing starts, not even a half-done move (a person may be handling it): report them."""
        report = self.report
        report.in_flight = [
            InFlight(m, resume_step(m, self.snapshot.hosts[m.host], self.snapshot), self.clock(), stuck=True)
            for m, _ in self.resumed
        ]
        report.finished = True
        self.notify(report)
        return report

    # -- phase: move --------------------------------------------------------------------------------

    def _move_until_done(self) -> None:
        """Keep up to maxConcurrentMoves moves running, half-done ones first, until none is left."""
        replan = True
        with ThreadPoolExecutor(max_workers=self.bound, thread_name_prefix="move") as pool:
            while True:
                self._refresh_plan(force=replan)
                self._stop_starting_if_asked()
                self._start(pool)
                if not self.running:
                    return
                done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                replan = False
                for future in done:
                    replan |= self._finished(future)
                self.notify(self.report)

    def _refresh_plan(self, *, force: bool) -> None:
        """Planning is pure but not free (about 10 ms at 2,000 hosts): the pass plans every move
        still needed at once and hands them out as slots free up, and plans again only when the
        world differs from that plan (`force`: a move that did not succeed, an aggregate changed
        behind our back) or after REPLAN_EVERY_S, for fresh counts."""
        if not (self.may_start_new and self.breaker.why is None):
            return
        if not (force or not self.queue or time.monotonic() - self.planned_at >= REPLAN_EVERY_S):
            return
        everything = self._plan(all_moves=True)
        self.queue = collections.deque(everything.moves)
        self.planned_at = time.monotonic()
        free = max(0, self.bound - len(self._in_flight_moves()))
        self.report.plan = replace(everything, moves=tuple(everything.moves[:free]))

    def _stop_starting_if_asked(self) -> None:
        """The caller, the circuit breaker or a kill switch stops new moves: those not yet started
        (half-done ones included) wait for the next round; running ones finish."""
        report = self.report
        if (self.queue or self.resumed) and report.stopped is None:
            report.stopped = self._stopped_now()
        if self.stop() or self.breaker.why is not None or report.stopped is not None:
            self.queue.clear()
            self.resumed.clear()

    def _stopped_now(self) -> str | None:
        """A kill switch turned on during the pass: the caller's at once, the cloud's every
        STOP_CHECK_EVERY_S (a Nova request)."""
        why = self.kill_switch()
        if why is None and time.monotonic() - self.stop_checked >= STOP_CHECK_EVERY_S:
            self.stop_checked = time.monotonic()
            try:
                why = self.cloud.stop_reason()
            except CloudError as exc:
                log.warning("could not read the kill switch (%s); going on", exc)
        return why

    def _start(self, pool: ThreadPoolExecutor) -> None:
        free = self.bound - len(self.running) - len(self.stuck)
        while free > 0 and (self.resumed or self.queue):
            if self.resumed:  # half-done moves first, and they count against the bound
                move, why = self.resumed.popleft()
            else:
                move, why = self.queue.popleft(), None
            self.touched.add(move.host)
            if why is not None and move.host not in self.released:
                self.rolling[move.host] = why  # before it starts: its first step reports it
            if why is None:
                future = pool.submit(self.mover.run, move, self.snapshot)
            elif move.host in self.released:
                future = pool.submit(self.mover.release, move, self.snapshot, why)
            else:
                future = pool.submit(self.mover.roll_back, move, self.snapshot, why)
            self.running[future] = (move, why)
            free -= 1

    def _on_step(self, move: Move, step: Step) -> None:
        since = self.steps[move.host].since if move.host in self.steps else self.clock()
        self.steps[move.host] = InFlight(move, step, since, rolling_back=self.rolling.get(move.host))
        self.report.in_flight = list(self.steps.values())
        self.notify(self.report)

    def _finished(self, future: Future[MoveResult]) -> bool:
        """Take a move's result into the pass; True when the plan must be made again."""
        move, _ = self.running.pop(future)
        result = future.result()
        self.steps.pop(move.host, None)
        self.report.in_flight = list(self.steps.values())
        self.report.results.append(result)
        self.breaker.record(result)
        if result.fenced and self.breaker.why is None:
            self.breaker.why = result.message  # nothing more is ours to write: stop starting moves
        if self.breaker.why is not None and self.report.breaker is None:
            self.report.breaker = self.breaker.why
            log.warning("circuit breaker open: %s", self.breaker.why)
        if result.intent_left:
            self.stuck.append(move)
        elif result.outcome is Outcome.SKIPPED:
            self.held_back[move.host] = CHANGED
        elif result.outcome in (Outcome.FAILED, Outcome.ABORTED):
            self.held_back[move.host] = failed_this_pass(result.message)
        if result.refused_by is not None:
            self.refusing[result.refused_by] = result.message
        applied = apply_result(self.snapshot, result)
        self.snapshot = merge_observed(applied, result, self.touched, self.seen_at)
        return result.outcome is not Outcome.MOVED or self.snapshot.aggregates != applied.aggregates

    # -- phase: check the result ------------------------------------------------------------------

    def _final(self) -> PassReport:
        """Check the outcome against Nova itself, not our own bookkeeping.

        Nothing was done: the snapshot the pass started from is still the truth, and asking again
        would only cost. The plan is made without the concurrency cap: converged means nothing at
        all is left to move, and every gpupool intent still on a host is a move in flight.
        """
        report = self.report
        final = self.cloud.snapshot() if report.results else self.snapshot
        self.snapshot = final
        left = recover_in_flight(self.spec, final)
        now = self.clock()
        report.in_flight = [
            InFlight(m, resume_step(m, final.hosts[m.host], final), now, stuck=True) for m in left
        ]
        self.stuck, self.resumed, self.running = left, collections.deque(), {}
        report.plan = self._plan(all_moves=True)
        report.finished = True
        self.notify(report)
        return report
