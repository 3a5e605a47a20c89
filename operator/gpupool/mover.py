"""Moves one host between aggregates with the crash-safe protocol of docs/architecture.md.

1. disable the host's nova-compute service with the intent as its reason (durable, in Nova)
2. re-check that the host is empty (the plan's snapshot may be stale); when the move changes the
   record of the host's on-demand origin (planner.OriginRecord), write it now, before it leaves
3. remove it from the source aggregate ("not in aggregate" counts as done)
4. add it to the target aggregate ("already has host" counts as done)
5. enable the service again, which clears the intent

Every step is idempotent. A move found half-done (service disabled with our reason) resumes
from the first step whose effect is missing, so a crash anywhere finishes the move on restart.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cloud import Cloud, CloudError, NovaRequestError
from .intent import MoveIntent, parse_reason
from .inventory import Aggregate, Host, Snapshot
from .planner import Move

log = logging.getLogger(__name__)


class Step(enum.StrEnum):
    DISABLE = "Disable"
    VERIFY_EMPTY = "VerifyEmpty"
    REMOVE = "RemoveFromSource"
    ADD = "AddToTarget"
    ENABLE = "Enable"


class Outcome(enum.StrEnum):
    MOVED = "Moved"
    # The host gained an instance since the plan: re-enabled where it was, nothing changed.
    ABORTED = "Aborted"
    # Nova refused a step; the host was put back where it came from (or left for the next pass).
    FAILED = "Failed"


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


ProgressCallback = Callable[[Move, Step], None]


def resume_step(move: Move, host: Host, snapshot: Snapshot) -> Step:
    """Where a move stands, judged from the cloud alone."""
    intent = parse_reason(host.disabled_reason) if not host.is_enabled else None
    if intent != MoveIntent(move.source, move.target):
        return Step.DISABLE
    source = snapshot.aggregates.get(move.source)
    target = snapshot.aggregates.get(move.target)
    in_source = source is not None and move.host in source.hosts
    in_target = target is not None and move.host in target.hosts
    if in_source and not in_target:
        return Step.VERIFY_EMPTY
    if in_target and not in_source:
        return Step.ENABLE
    if in_source and in_target:
        return Step.REMOVE
    # Removed from the source but not yet added: it was verified empty before removal.
    return Step.ADD


class Mover:
    def __init__(
        self,
        cloud: Cloud,
        *,
        allow_instances: bool = False,
        on_step: ProgressCallback | None = None,
    ):
        self._cloud = cloud
        self._allow_instances = allow_instances
        self._on_step = on_step or (lambda move, step: None)

    def run(self, move: Move, snapshot: Snapshot) -> MoveResult:
        """Carry a move out from wherever it stands. Never raises for Nova's refusals."""
        host = snapshot.hosts[move.host]
        # Either may be missing when a move a crashed run began is resumed after someone deleted
        # the aggregate: a missing source holds nothing to remove, a missing target sends it back.
        source = snapshot.aggregates.get(move.source)
        target = snapshot.aggregates.get(move.target)
        order = list(Step)
        first = resume_step(move, host, snapshot)
        observed: list[Observed] = []

        def seen(aggregate: str, hosts: frozenset[str] | None) -> None:
            if hosts is not None:
                observed.append(Observed(aggregate, hosts, time.monotonic()))

        for step in order[order.index(first) :]:
            self._on_step(move, step)
            try:
                if step is Step.DISABLE:
                    self._cloud.disable_service(host, MoveIntent(move.source, move.target).reason())
                elif step is Step.VERIFY_EMPTY:
                    if not self._allow_instances and self._cloud.instances_on(move.host):
                        self._cloud.enable_service(host)
                        return MoveResult(
                            move, Outcome.ABORTED, f"{move.host} has instances now; left in {move.source}"
                        )
                    if move.origin is not None:  # where the host came from, before it leaves
                        record = move.origin
                        self._cloud.set_aggregate_metadata(
                            snapshot.aggregates[record.aggregate], {record.key: record.value}
                        )
                elif step is Step.REMOVE:
                    if source is not None:
                        seen(source.name, self._cloud.remove_host(source, move.host))
                elif step is Step.ADD:
                    if target is None:
                        raise CloudError(f"aggregate {move.target} no longer exists")
                    seen(target.name, self._cloud.add_host(target, move.host))
                else:
                    self._cloud.enable_service(host)
            except CloudError as exc:
                return self._undo(move, host, source, target, step, exc)
        return MoveResult(
            move, Outcome.MOVED, f"{move.host} moved from {move.source} to {move.target}", tuple(observed)
        )

    def _leave_target(self, target: Aggregate | None, host: str) -> None:
        """After a failed add whose outcome is unknown: make sure the host is not in the target."""
        if target is None:
            return
        try:
            self._cloud.remove_host(target, host)
        except NovaRequestError as exc:
            if exc.status_code != 404:  # the target aggregate is gone: nothing to leave
                raise

    def _undo(
        self,
        move: Move,
        host: Host,
        source: Aggregate | None,
        target: Aggregate | None,
        failed: Step,
        error: CloudError,
    ) -> MoveResult:
        """A step failed for good. Until the host has reached its target, put it back in its source
        and enable it again. Once it has (or if undoing fails too), the intent stays on the service
        and the next pass resumes the move from there.
        """
        log.warning(
            "move of %s from %s to %s failed at %s: %s", move.host, move.source, move.target, failed, error
        )
        if failed is Step.ENABLE:
            return MoveResult(
                move, Outcome.FAILED, f"{error}; {move.host} is in {move.target}, enabling is retried"
            )
        try:
            if failed is Step.ADD:
                self._leave_target(target, move.host)
            if failed in (Step.REMOVE, Step.ADD):
                if source is None:
                    raise CloudError(f"aggregate {move.source} no longer exists either")
                self._cloud.add_host(source, move.host)
            self._cloud.enable_service(host)
        except CloudError as exc:
            return MoveResult(
                move,
                Outcome.FAILED,
                f"{error}; could not put {move.host} back yet ({exc}), the next pass resumes it",
            )
        return MoveResult(move, Outcome.FAILED, f"{error}; {move.host} stays in {move.source}")
