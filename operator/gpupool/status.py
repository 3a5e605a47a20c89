"""The GpuHostPool status, built as the `gpupool.api` models: from a pass report, or from a verdict
reached without a pass (an invalid spec, a conflict, an unreachable cloud, a new generation seen).

Four conditions, shaped like metav1.Condition, that GitOps tools read (docs/operator.md, "How
Argo CD and Flux read a GpuHostPool"):

  Ready        True only when Nova matches the spec: nothing to move, nothing half-done, no blocker.
  Reconciling  True while the operator works towards the spec: moves planned or running, half-done
               moves to finish, a generation not acted on yet, a cloud to wait for.
  Stalled      True when nothing more happens without a person or a change in the cloud: an invalid
               spec, a conflict, a blocker, the circuit breaker, a host left to a person.
  Paused       True while spec.paused, spec.dryRun or a kill switch keeps new moves from starting.

kstatus (Flux) reads Reconciling as InProgress and Stalled as Failed, so the two are never True at
once. Every "nothing moves" verdict, the CLI's and the operator's, comes from `verdict_of` or
`verdict`. A condition's lastTransitionTime only changes when its status does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .api import (
    LAST_MOVES_LIMIT,
    BlockerStatus,
    Condition,
    GpuCounts,
    GpuHostPoolStatus,
    HostCounts,
    InFlightMove,
    MoveRecord,
    OnDemandStatus,
    PlannedMove,
    PoolsStatus,
    PoolStatus,
    Summary,
)
from .model import ON_DEMAND, Outcome, PassReport, PoolState, Verdict


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- verdicts ------------------------------------------------------------------------------------

# Verdicts reached without a pass: whether the operator keeps working on its own (Reconciling) or
# waits for a person (Stalled).
_RECONCILING = {"NewGeneration", "CloudError", "OtherProcessMoving"}
_STALLED = {"InvalidSpec", "Conflict", "InternalError", "NotConfirmed"}


def verdict(reason: str, message: str) -> Verdict:
    """The verdict for a resource no pass ran for (see _RECONCILING and _STALLED)."""
    assert reason in _RECONCILING | _STALLED, reason
    return Verdict(False, reason, message, reconciling=reason in _RECONCILING, stalled=reason in _STALLED)


def verdict_of(report: PassReport) -> Verdict:
    """What a pass comes to, in the conditions' terms."""
    plan = report.plan
    blockers = plan.blockers
    attention = report.needs_attention
    stuck = [f for f in report.in_flight if f.stuck]
    running = [f for f in report.in_flight if not f.stuck]
    half_done = (
        f"{len(stuck)} move(s) left half-done ({', '.join(f.move.host for f in stuck[:5])}): "
        "finished or rolled back in the next round"
    )
    blocked = "; ".join(b.message for b in blockers)
    if report.stopped is not None:
        what = f"stopped: {report.stopped}" + (f"; {half_done}" if stuck else "")
        return Verdict(False, "Stopped", what, paused="Stopped")
    if report.paused or report.dry_run:
        word, field_ = ("Paused", "spec.paused") if report.paused else ("DryRun", "spec.dryRun")
        mode = "paused" if report.paused else "dry run"
        if running:
            return Verdict(
                False,
                word,
                f"{mode}: finishing {len(running)} half-done move(s)",
                reconciling=True,
                paused=word,
            )
        if stuck:
            return Verdict(False, word, f"{mode}: {half_done}", reconciling=True, paused=word)
        if blockers:
            return Verdict(False, blockers[0].reason, f"{mode}: {blocked}", stalled=True, paused=word)
        if plan.moves:
            return Verdict(False, word, f"{mode}: {len(plan.moves)} move(s) needed, none made", paused=word)
        if not report.finished:
            return Verdict(False, word, f"{mode}: checking the pools", reconciling=True, paused=word)
        return Verdict(
            True, "Converged", f"{field_} is true, and every pool holds its desired hosts", paused=word
        )
    if report.breaker is not None:
        return Verdict(False, "CircuitBreakerOpen", report.breaker, stalled=True)
    if attention:
        reason = "MoveInterrupted" if attention[0].outcome is Outcome.INTERRUPTED else "HostHeld"
        return Verdict(False, reason, attention[0].message, stalled=True)
    if running or (plan.moves and not stuck) or not report.finished:
        # A pass still running is never converged: between two moves its plan may be empty for a
        # moment (made when no slot was free), and only its final check against Nova can tell.
        what = f"{len(running)} move(s) in flight"
        under_way = {f.move.host for f in running}
        planned = [m for m in plan.moves if m.host not in under_way]  # not yet started
        if planned:
            what += f", {len(planned)} more planned"
        return Verdict(False, "Moving", what, reconciling=True)
    if stuck:
        return Verdict(False, "MoveInFlight", half_done, reconciling=True)
    if blockers:
        return Verdict(False, blockers[0].reason, blocked, stalled=True)
    return Verdict(True, "Converged", "every pool holds its desired hosts")


def conditions(
    found: Verdict, previous: list[dict[str, Any]] | None, stamp: str, generation: int | None
) -> list[Condition]:
    """Ready, Reconciling, Stalled and Paused for this verdict. A False condition carries Ready's
    reason (what the resource is doing instead) and no message of its own."""
    before = {c.get("type"): c for c in previous or () if isinstance(c, dict)}

    def condition(kind: str, true: bool, reason: str, message: str) -> Condition:
        status = "True" if true else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        return Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message if true or kind == "Ready" else "",
            last_transition_time=since or stamp,
            observed_generation=generation,
        )

    return [
        condition("Ready", found.ready, found.reason, found.message),
        condition("Reconciling", found.reconciling, found.reason, found.message),
        condition("Stalled", found.stalled, found.reason, found.message),
        condition("Paused", found.paused is not None, found.paused or found.reason, found.message),
    ]


# -- the status ----------------------------------------------------------------------------------


def build_status(
    report: PassReport,
    *,
    now: float,
    previous: dict[str, Any] | None = None,
    generation: int | None = None,
) -> GpuHostPoolStatus:
    """The status for this report; `previous` (the status as stored) gives the move history and
    when each condition last changed."""
    previous = previous or {}
    plan = report.plan
    pools = plan.pools
    moving = report.moving_per_pool

    gpus = gpus_per_pool(report)

    def pool_status(pool: PoolState) -> PoolStatus:
        return PoolStatus(
            aggregate=pool.aggregate,
            desired=pool.desired,
            current=pool.current,
            moving=moving.get(pool.label, 0),
            gpus=gpus.get(pool.label),
            hosts=sorted(pool.hosts),
        )

    targets = pools.targets()
    history = _history(previous) + [
        MoveRecord.model_validate(
            {
                "host": r.move.host,
                "from": r.move.source,
                "to": r.move.target,
                "result": str(r.outcome),
                "message": r.message,
                "finishedAt": timestamp(r.finished_at),
            }
        )
        for r in report.results
    ]
    status = GpuHostPoolStatus(
        observed_generation=generation,
        conditions=conditions(verdict_of(report), previous.get("conditions"), timestamp(now), generation),
        pools=PoolsStatus(
            spot=pool_status(pools.spot) if pools.spot else None,
            runpod=pool_status(pools.runpod) if pools.runpod else None,
            contracts=[pool_status(c) for c in pools.contracts],
            on_demand=OnDemandStatus(
                aggregates=list(pools.on_demand.aggregates),
                hosts=pools.on_demand.hosts,
                movable=pools.on_demand.movable,
                gpus=gpus.get(ON_DEMAND),
            ),
        ),
        total=HostCounts(
            desired=sum(p.desired for p in targets),
            current=sum(p.current for p in targets),
            moving=sum(moving.values()),
        ),
        in_flight=[
            InFlightMove.model_validate(
                {
                    "host": f.move.host,
                    "from": f.move.source,
                    "to": f.move.target,
                    "step": str(f.step),
                    "since": timestamp(f.since),
                }
            )
            for f in sorted(report.in_flight, key=lambda f: f.move.host)
        ],
        planned_moves=[
            PlannedMove.model_validate({"host": m.host, "from": m.source, "to": m.target}) for m in plan.moves
        ]
        if report.dry_run
        else [],
        last_moves=_deduplicated(history)[-LAST_MOVES_LIMIT:],
        blockers=[BlockerStatus(pool=b.pool, reason=b.reason, message=b.message) for b in plan.blockers],
    )
    status.summary = summary(status)
    return status


def verdict_status(
    found: Verdict,
    *,
    now: float,
    previous: dict[str, Any] | None = None,
    generation: int | None = None,
    blockers: list[BlockerStatus] | None = None,
) -> GpuHostPoolStatus:
    """The status of a resource no pass ran for: what it said before (pools, history), with this
    verdict's conditions and no move in flight."""
    previous = previous or {}
    try:
        status = GpuHostPoolStatus.model_validate(
            {k: v for k, v in previous.items() if k in ("pools", "total", "blockers")}
        )
    except ValidationError:  # written by an older version: start afresh, nothing is lost but counts
        status = GpuHostPoolStatus()
    status.observed_generation = generation
    status.conditions = conditions(found, previous.get("conditions"), timestamp(now), generation)
    status.last_moves = _history(previous)[-LAST_MOVES_LIMIT:]
    status.in_flight = []
    if blockers is not None:
        status.blockers = blockers
    status.summary = summary(status)
    return status


def summary(status: GpuHostPoolStatus) -> Summary:
    """Short strings for `kubectl get` printer columns."""
    pools = status.pools

    def ratio(pool: PoolStatus | None) -> str:
        return f"{pool.current}/{pool.desired}" if pool else "-"

    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    contracts = pools.contracts
    return Summary(
        spot=ratio(pools.spot),
        runpod=ratio(pools.runpod),
        contracts=(
            f"{sum(c.current for c in contracts)}/{sum(c.desired for c in contracts)}" if contracts else "-"
        ),
        on_demand=f"{pools.on_demand.hosts} ({pools.on_demand.movable} movable)",
        message=ready.message[:200] if ready else "",
    )


def wire(status: GpuHostPoolStatus, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status as stored in the resource (camelCase). A key the previous status had and this one
    leaves out is sent as null, which removes it (a merge patch)."""
    document = status.to_wire()
    for key in (previous or {}).keys() - document.keys():
        document[key] = None
    return document


def gpus_per_pool(report: PassReport) -> dict[str, GpuCounts]:
    """GPUs used (and, with spec.gpusPerHost, carried) by each pool's hosts, on-demand included;
    empty when the pass had no GPU usage to go by."""
    usage = report.gpu_usage
    if usage is None:
        return {}
    per_host = report.gpus_per_host
    pools = report.plan.pools
    members = [(p.label, p.hosts) for p in pools.targets()] + [(ON_DEMAND, pools.on_demand.members)]
    return {
        label: GpuCounts(
            used=sum(usage.get(host, 0) for host in hosts),
            total=per_host * len(hosts) if per_host is not None else None,
        )
        for label, hosts in members
    }


def _history(previous: dict[str, Any]) -> list[MoveRecord]:
    """The finished moves the stored status lists (entries it cannot read are dropped)."""
    records = []
    for entry in previous.get("lastMoves") or ():
        try:
            records.append(MoveRecord.model_validate(entry))
        except ValidationError:
            continue
    return records


def _deduplicated(records: list[MoveRecord]) -> list[MoveRecord]:
    seen, kept = set(), []
    for record in records:
        key = record.model_dump_json()
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept
