"""The GpuHostPool status, written from a pass report: pools, moves, blockers and conditions.

Conditions follow the Kubernetes API conventions (kstatus and Argo CD read them):
Ready (converged), Progressing (moves planned or running), Degraded (blocked or failing).
A condition's lastTransitionTime only changes when its status does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .api import LAST_MOVES_LIMIT
from .model import Outcome, PassReport


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pool_entry(pool) -> dict:
    return {
        "aggregate": pool.aggregate,
        "desired": pool.desired,
        "current": pool.current,
        "hosts": sorted(pool.hosts),
    }


def _conditions(report: PassReport, failures: list[str]) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) for Ready, Progressing, Degraded."""
    plan = report.plan
    blockers = plan.blockers
    first_blocker = blockers[0] if blockers else None
    attention = report.needs_attention
    stuck = [f for f in report.in_flight if f.stuck]
    moving = bool(report.in_flight) or bool(plan.moves)
    half_done = (
        f"{len(stuck)} move(s) left half-done ({', '.join(f.move.host for f in stuck[:5])}): "
        "finished or rolled back in the next round"
        if stuck
        else ""
    )
    if report.stopped is not None:
        what = f"stopped: {report.stopped}" + (f"; {half_done}" if half_done else "")
        ready = ("Ready", "False", "Stopped", what)
        progressing = ("Progressing", "False", "Stopped", what)
    elif report.paused or report.dry_run:
        word, field_ = ("Paused", "spec.paused") if report.paused else ("DryRun", "spec.dryRun")
        running = [f for f in report.in_flight if not f.stuck]
        if stuck:
            ready = ("Ready", "False", word, f"{word.lower()}: {half_done}")
        elif running:
            ready = ("Ready", "False", word, f"{word.lower()}: finishing {len(running)} half-done move(s)")
        elif moving or blockers:
            what = f"{len(plan.moves)} move(s) needed, none made" if plan.moves else first_blocker.message  # type: ignore[union-attr]
            ready = ("Ready", "False", word, f"{'paused' if report.paused else 'dry run'}: {what}")
        else:
            ready = (
                "Ready",
                "True",
                "Converged",
                f"{field_} is true, and every pool holds its desired hosts",
            )
        progressing = ("Progressing", "False", word, f"{field_} is true")
    elif report.breaker is not None:
        ready = ("Ready", "False", "CircuitBreakerOpen", report.breaker)
        progressing = ("Progressing", "False", "CircuitBreakerOpen", report.breaker)
    elif attention:
        reason = "MoveInterrupted" if attention[0].outcome is Outcome.INTERRUPTED else "HostHeld"
        ready = ("Ready", "False", reason, attention[0].message)
        progressing = ("Progressing", "False", reason, attention[0].message)
    elif report.in_flight and not stuck or (plan.moves and not stuck):
        count = len(report.in_flight)
        ready = ("Ready", "False", "Moving", f"{count} move(s) in flight")
        progressing = ("Progressing", "True", "MovingHosts", f"{count} move(s) in flight")
    elif stuck:
        ready = ("Ready", "False", "MoveInFlight", half_done)
        progressing = ("Progressing", "True", "MoveInFlight", half_done)
    elif first_blocker is not None:
        ready = ("Ready", "False", first_blocker.reason, first_blocker.message)
        progressing = ("Progressing", "False", "Blocked", first_blocker.message)
    else:
        ready = ("Ready", "True", "Converged", "every pool holds its desired hosts")
        progressing = ("Progressing", "False", "Converged", "no move needed")
    if first_blocker is not None:
        message = "; ".join(b.message for b in blockers)
        degraded = ("Degraded", "True", first_blocker.reason, message)
    elif report.breaker is not None:
        degraded = ("Degraded", "True", "CircuitBreakerOpen", report.breaker)
    elif report.stopped is not None:
        degraded = ("Degraded", "False", "Stopped", ready[3])
    elif attention:
        degraded = ("Degraded", "True", ready[2], attention[0].message)
    elif failures:
        degraded = ("Degraded", "True", "MoveFailed", failures[-1])
    else:
        degraded = ("Degraded", "False", "AsPlanned", "no blocker")
    return [ready, progressing, degraded]


def merge_conditions(
    previous: list[dict] | None, new: list[tuple[str, str, str, str]], now: str
) -> list[dict]:
    before = {c.get("type"): c for c in previous or ()}
    merged = []
    for kind, status, reason, message in new:
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else now
        merged.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": since or now,
            }
        )
    return merged


def build_status(
    report: PassReport,
    *,
    now: float,
    previous: dict | None = None,
    generation: int | None = None,
) -> dict:
    """The status document (camelCase, as stored in the resource) for this report."""
    previous = previous or {}
    stamp = timestamp(now)
    plan = report.plan
    pools = plan.pools
    failures = [r.message for r in report.results if r.outcome is Outcome.FAILED]

    last_moves = list(previous.get("lastMoves") or [])
    for result in report.results:
        entry = {
            "host": result.move.host,
            "from": result.move.source,
            "to": result.move.target,
            "result": str(result.outcome),
            "message": result.message,
            "finishedAt": timestamp(result.finished_at),
        }
        if entry not in last_moves:
            last_moves.append(entry)
    last_moves = last_moves[-LAST_MOVES_LIMIT:]

    status: dict[str, Any] = {
        "pools": {
            "spot": _pool_entry(pools.spot) if pools.spot else None,
            "runpod": _pool_entry(pools.runpod) if pools.runpod else None,
            "contracts": [_pool_entry(c) for c in pools.contracts],
            "onDemand": {
                "aggregates": list(pools.on_demand.aggregates),
                "hosts": pools.on_demand.hosts,
                "movable": pools.on_demand.movable,
            },
        },
        "inFlight": [
            {
                "host": f.move.host,
                "from": f.move.source,
                "to": f.move.target,
                "step": str(f.step),
                "since": timestamp(f.since),
            }
            for f in sorted(report.in_flight, key=lambda f: f.move.host)
        ],
        "plannedMoves": [{"host": m.host, "from": m.source, "to": m.target} for m in plan.moves]
        if report.dry_run
        else [],
        "lastMoves": last_moves,
        "blockers": [{"pool": b.pool, "reason": b.reason, "message": b.message} for b in plan.blockers],
        "conditions": merge_conditions(previous.get("conditions"), _conditions(report, failures), stamp),
    }
    status["pools"] = {k: v for k, v in status["pools"].items() if v is not None}
    if generation is not None:
        status["observedGeneration"] = generation
    status["summary"] = summary(status)
    return status


def _ratio(entry: dict | None) -> str:
    return f"{entry['current']}/{entry['desired']}" if entry else "-"


def summary(status: dict) -> dict:
    """Short strings for `kubectl get` printer columns."""
    pools = status.get("pools", {})
    contracts = pools.get("contracts") or []
    on_demand = pools.get("onDemand") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    return {
        "spot": _ratio(pools.get("spot")),
        "runpod": _ratio(pools.get("runpod")),
        "contracts": (
            f"{sum(c['current'] for c in contracts)}/{sum(c['desired'] for c in contracts)}"
            if contracts
            else "-"
        ),
        "onDemand": f"{on_demand.get('hosts', 0)} ({on_demand.get('movable', 0)} movable)",
        "message": ready["message"] if ready else "",
    }
