"""Moves one host between aggregates with the crash-safe protocol of docs/architecture.md.

1. check: read the host right before touching it; only an enabled, up, empty service is moved
2. disable its nova-compute service with the intent as its reason (durable, in Nova)
3. verify that nothing holds the host in Placement (instances, builds not yet claimed, migrations);
   when the move changes the record of the host's on-demand origin, write it now, before it leaves
4. remove it from the source aggregate ("not in aggregate" counts as done)
5. add it to the target aggregate ("already has host" counts as done)
6. confirm: read the host again; the reason must still be exactly this move's intent and no
   instance may sit on it
7. enable the service again, which clears the intent

Every step is idempotent. A move found half-done (service disabled with exactly our intent)
resumes from the first step whose effect is missing, or is rolled back when the plan no longer
needs it. gpupool never enables a service whose reason is not exactly its own intent: whoever
disabled or re-labelled a host keeps it as they set it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Literal

from .errors import CloudError, Fenced, HostNotInAggregate, NotFound, NovaRequestError
from .intent import MoveIntent, new_move_id, parse_reason
from .model import (
    Aggregate,
    Host,
    HostNow,
    Move,
    MoveResult,
    Observed,
    Outcome,
    ProgressCallback,
    Snapshot,
    Step,
)
from .planner import position
from .ports import CloudPort

log = logging.getLogger(__name__)


def is_resumed(move: Move, host: Host) -> bool:
    """Whether the host's service carries exactly this move's intent (a move already under way)."""
    intent = parse_reason(host.name, host.disabled_reason) if not host.is_enabled else None
    return intent is not None and intent.same_move(move.host, move.source, move.target)


def resume_step(move: Move, host: Host, snapshot: Snapshot) -> Step:
    """Where a move stands, judged from the cloud alone."""
    if not is_resumed(move, host):
        return Step.CHECK
    return {
        "source": Step.VERIFY_EMPTY,
        "both": Step.REMOVE,
        # Removed from the source but not yet added: it was verified empty before removal.
        "neither": Step.ADD,
        "target": Step.CONFIRM,
    }[position(move, snapshot)]


class Mover:
    def __init__(
        self,
        cloud: CloudPort,
        *,
        allow_instances: bool = False,
        on_step: ProgressCallback | None = None,
    ):
        self._cloud = cloud
        self._allow_instances = allow_instances
        self._on_step = on_step or (lambda move, step: None)

    def run(self, move: Move, snapshot: Snapshot) -> MoveResult:
        """Carry a move out from wherever it stands. Never raises for Nova's refusals."""
        return _Attempt(self, move, snapshot).forward()

    def roll_back(self, move: Move, snapshot: Snapshot, why: str) -> MoveResult:
        """Put the host of a half-done move back into its source and enable it again."""
        return _Attempt(self, move, snapshot).roll_back(why)

    def release(self, move: Move, snapshot: Snapshot, why: str) -> MoveResult:
        """A half-done move whose host someone placed elsewhere: enable it there, move nothing."""
        return _Attempt(self, move, snapshot).release(why)


class _Attempt:
    """One move from wherever it stands to its end, and the way back when a step fails."""

    def __init__(self, mover: Mover, move: Move, snapshot: Snapshot):
        self.cloud = mover._cloud
        self.allow_instances = mover._allow_instances
        self.on_step = mover._on_step
        self.snapshot = snapshot
        self.host = snapshot.hosts[move.host]
        # Either may be missing when a half-done move is resumed after someone deleted an aggregate.
        self.source: Aggregate | None = snapshot.aggregates.get(move.source)
        self.target: Aggregate | None = snapshot.aggregates.get(move.target)
        self.resumed = is_resumed(move, self.host)
        found = parse_reason(self.host.name, self.host.disabled_reason) if self.resumed else None
        move_id = found.move_id if found else (move.move_id or new_move_id())
        self.move = move = replace(move, move_id=move_id)  # every step and result names the move
        self.reason = MoveIntent(move.host, move.source, move.target, move_id).reason()
        self.step: Step | None = None
        self.began = time.monotonic()
        self.now: HostNow | None = None
        self.observed: list[Observed] = []

    # -- the way forward ------------------------------------------------------------------------

    def forward(self) -> MoveResult:
        move = self.move
        if self.resumed:
            at = position(move, self.snapshot)
            if self.target is None:
                return self.roll_back(f"aggregate {move.target} no longer exists")
        else:
            self._enter(Step.CHECK)
            try:
                now = self._read()
            except CloudError as exc:
                return self._result(Outcome.FAILED, f"{exc}; {move.host} not touched", location="source")
            why_not = self._why_not_movable(now)
            if why_not:
                return self._result(
                    Outcome.SKIPPED, f"{move.host} {why_not} since the plan: not touched", location="source"
                )
            self._enter(Step.DISABLE)
            try:
                self.cloud.disable_service(self.host, self.reason)
            except CloudError as exc:
                return self._undo(exc)
            at = "source"
        try:
            if at == "source":
                self._enter(Step.VERIFY_EMPTY)
                busy = self._claims()
                if busy:
                    return self._back_in_source(Outcome.ABORTED, f"{move.host} {busy}; left in {move.source}")
                self._record_origin()
            if at in ("source", "both"):
                self._enter(Step.REMOVE)
                if self.source is not None:
                    removed = self.cloud.remove_host(self.source, move.host, expect_member=True)
                    if removed is None:
                        self._check_not_moved_away()
                    self._seen(self.source.name, removed)
            if at in ("source", "neither"):
                self._enter(Step.ADD)
                if self.target is None:
                    raise CloudError(f"aggregate {move.target} no longer exists")
                self._seen(self.target.name, self.cloud.add_host(self.target, move.host))
        except HostNotInAggregate as exc:
            # Someone moved it out of its source since we looked: not ours to move any more.
            return self._moved_away(str(exc))
        except CloudError as exc:
            return self._undo(exc)
        return self._finish_in_target()

    def _finish_in_target(self) -> MoveResult:
        move = self.move
        self._enter(Step.CONFIRM)
        try:
            now = self._read()
        except CloudError as exc:
            return self._stuck(exc, "target")
        if not self._still_ours(now):
            return self._left_to_someone(now, move.target)
        if not self.allow_instances and now.servers != ():
            return self._result(
                Outcome.HELD,
                f"{move.host} is in {move.target} with {_instances(now)} on it: left disabled with "
                "gpupool's intent; each pass checks again and enables it once it is empty "
                "(or move the instances away, or enable it by hand)",
                intent_left=True,
                location="target",
            )
        self._enter(Step.ENABLE)
        try:
            self.cloud.enable_service(self.host)
        except CloudError as exc:
            return self._stuck(exc, "target")
        text = f"{move.host} moved from {move.source} to {move.target}"
        if self.resumed:
            text += " (a move another process began)"
        return self._result(Outcome.MOVED, text, location="target", enabled=True)

    # -- the way back ---------------------------------------------------------------------------

    def roll_back(self, why: str) -> MoveResult:
        """A half-done move the plan no longer needs: back into its source, enabled again."""
        move = self.move
        if self.source is None:
            if self.target is not None:
                # Nowhere to go back to: finishing is the only way not to strand the host.
                return self.forward()
            return self._result(
                Outcome.FAILED,
                f"{move.host} was moving from {move.source} to {move.target} and both aggregates are gone: "
                "left disabled with gpupool's intent; add it to an aggregate by hand, then enable it",
                intent_left=True,
            )
        at = position(move, self.snapshot)
        try:
            if at in ("target", "both"):
                self._enter(Step.CONFIRM)
                now = self._read()
                if not self._still_ours(now):
                    return self._left_to_someone(now, move.target if at == "target" else move.source)
                if at == "target" and not self.allow_instances and now.servers != ():
                    return self._result(
                        Outcome.HELD,
                        f"{move.host} should go back to {move.source} but has {_instances(now)} on it in "
                        f"{move.target}: left disabled with gpupool's intent until it is empty",
                        intent_left=True,
                        location="target",
                    )
                self._enter(Step.LEAVE_TARGET)
                if self.target is not None:
                    self._seen(self.target.name, self.cloud.remove_host(self.target, move.host))
            if at in ("target", "neither"):
                self._enter(Step.RETURN_TO_SOURCE)
                self._seen(self.source.name, self.cloud.add_host(self.source, move.host))
            self._enter(Step.CONFIRM)
            restored = self._restore_service()
        except CloudError as exc:
            return self._stuck(exc, None)
        if restored is not None:
            return self._left_to_someone(restored, move.source)
        return self._result(
            Outcome.ROLLED_BACK,
            f"{move.host} back in {move.source}, enabled: the move to {move.target} {why}",
            location="source",
            enabled=True,
        )

    def release(self, why: str) -> MoveResult:
        self._enter(Step.CONFIRM)
        try:
            restored = self._restore_service()
        except CloudError as exc:
            return self._stuck(exc, None)
        if restored is not None:
            return self._left_to_someone(restored, "the aggregate it was put in")
        return self._result(
            Outcome.INTERRUPTED,
            f"{self.move.host} {why}: left there and enabled again; gpupool moved it no further",
        )

    def _undo(self, error: CloudError) -> MoveResult:
        """A step failed for good before the host was confirmed in its target: put it back where it
        came from and enable it again (only if the intent on it is still ours). If that fails too,
        the intent stays and the next pass resumes from wherever the host is."""
        move, failed = self.move, self.step
        if isinstance(error, Fenced):  # not ours to write any more, not even an undo
            return self._fenced(error)
        log.warning(
            "move of %s from %s to %s failed at %s: %s", move.host, move.source, move.target, failed, error
        )
        refused_by = None
        if isinstance(error, NovaRequestError) and error.refused:
            refused_by = {Step.REMOVE: move.source, Step.ADD: move.target}.get(failed)  # type: ignore[arg-type]
        try:
            if failed is Step.ADD and self.target is not None:
                self._leave(self.target)
            if failed in (Step.REMOVE, Step.ADD):
                if self.source is None:
                    raise CloudError(f"aggregate {move.source} no longer exists either")
                self.cloud.add_host(self.source, move.host)
            restored = self._restore_service()
        except CloudError as exc:
            return self._result(
                Outcome.FAILED,
                f"{error}; could not put {move.host} back yet ({exc}): it keeps gpupool's intent and the "
                "next pass resumes it",
                intent_left=True,
                refused_by=refused_by,
            )
        if restored is not None:
            text = f"{error}; {move.host} stays in {move.source}, left disabled as someone set it"
            return self._result(Outcome.FAILED, text, location="source", refused_by=refused_by)
        return self._result(
            Outcome.FAILED,
            f"{error}; {move.host} stays in {move.source}",
            location="source",
            refused_by=refused_by,
        )

    def _moved_away(self, what: str) -> MoveResult:
        """The host left its source behind our back before we removed it: enable it where it is
        (if the intent on it is still ours) and leave its membership to whoever changed it."""
        try:
            restored = self._restore_service()
        except CloudError as exc:
            return self._stuck(exc, None)
        if restored is not None:
            return self._left_to_someone(restored, "whatever aggregate it was moved to")
        return self._result(Outcome.SKIPPED, f"{what}: someone moved it since the plan; not moved by gpupool")

    def _back_in_source(self, outcome: Outcome, message: str) -> MoveResult:
        """The host never left its source: enable it again (if the intent is still ours)."""
        try:
            restored = self._restore_service()
        except CloudError as exc:
            return self._stuck(exc, "source")
        if restored is not None:
            return self._left_to_someone(restored, self.move.source)
        return self._result(outcome, message, location="source", enabled=True)

    # -- steps ------------------------------------------------------------------------------------

    def _enter(self, step: Step) -> None:
        self.step = step
        log.info("%s %s -> %s: %s", self.move.host, self.move.source, self.move.target, step)
        self.on_step(self.move, step)

    def _read(self) -> HostNow:
        self.now = self.cloud.host_now(self.host)
        return self.now

    def _why_not_movable(self, now: HostNow) -> str | None:
        if not now.is_enabled:
            return f"was disabled by someone else ({now.disabled_reason or 'no reason given'!r})"
        if not now.is_up:
            return "went down"
        if not self.allow_instances and now.servers != ():
            return "has instances now" if now.servers else "has an unknown number of instances"
        return None

    def _claims(self) -> str | None:
        """Why the host is not empty right now, or None."""
        if self.allow_instances:
            return None
        claims = self.cloud.claims_on(self.host)
        if not claims:
            return None
        shown = ", ".join(claims[:3]) + (", ..." if len(claims) > 3 else "")
        return f"is claimed in Placement by {len(claims)} consumer(s) now ({shown}: an instance, a build or a migration)"

    def _record_origin(self) -> None:
        if self.move.origin is None:
            return
        record = self.move.origin
        noted = self.snapshot.aggregates.get(record.aggregate)
        if noted is not None:
            self.cloud.set_aggregate_metadata(noted, {record.key: record.value})

    def _still_ours(self, now: HostNow) -> bool:
        return not now.is_enabled and now.disabled_reason == self.reason

    def _restore_service(self) -> HostNow | None:
        """Enable the host again if, and only if, it still carries our intent.

        Returns None when the host is enabled (by us, or already), else the service as someone
        else left it (disabled with another reason), which is then left alone.
        """
        now = self._read()
        if now.is_enabled:
            return None
        if now.disabled_reason != self.reason:
            return now
        self._enter(Step.ENABLE)
        self.cloud.enable_service(self.host)
        return None

    def _leave(self, target: Aggregate) -> None:
        """After a failed add whose outcome is unknown: make sure the host is not in the target."""
        try:
            self.cloud.remove_host(target, self.move.host)
        except NotFound:  # the target aggregate is gone: nothing to leave
            pass

    def _check_not_moved_away(self) -> None:
        """Nova said the host had left its source already, after a retry: our first try may have
        removed it (its answer lost), or someone moved it meanwhile. Only the aggregates it is in
        now tell: one it was not in when the pass began (other than the target) means someone
        else placed it, and adding it to the target would put it in two pools."""
        was_in = {name for name, agg in self.snapshot.aggregates.items() if self.move.host in agg.hosts}
        now_in = self.cloud.aggregates_holding(self.move.host)
        placed = sorted(now_in - was_in - {self.move.target})
        if placed:
            raise HostNotInAggregate(
                f"{self.move.host} is not in {self.move.source} any more (now in {', '.join(placed)})"
            )

    def _seen(self, aggregate: str, hosts: frozenset[str] | None) -> None:
        if hosts is not None:
            self.observed.append(Observed(aggregate, hosts, time.monotonic()))

    # -- results ----------------------------------------------------------------------------------

    def _left_to_someone(self, now: HostNow, where: str) -> MoveResult:
        if now.is_enabled:
            what = "was enabled by someone else mid-move"
        else:
            what = f"had its reason changed mid-move to {now.disabled_reason!r}"
        return self._result(
            Outcome.INTERRUPTED,
            f"{self.move.host} {what}: left as it is, in {where}; gpupool will not touch it while "
            "someone else's reason is on it",
            location="target" if where == self.move.target else "source",
        )

    def _fenced(self, error: CloudError) -> MoveResult:
        log.warning("move of %s stopped before %s: %s", self.move.host, self.step, error)
        result = self._result(
            Outcome.FAILED,
            f"{error}; {self.move.host} keeps gpupool's intent and the lock's holder resumes it",
            intent_left=True,
        )
        return replace(result, fenced=True)

    def _stuck(self, error: CloudError, location: Literal["source", "target"] | None) -> MoveResult:
        if isinstance(error, Fenced):
            return self._fenced(error)
        log.warning("move of %s stopped at %s: %s", self.move.host, self.step, error)
        return self._result(
            Outcome.FAILED,
            f"{error}; {self.move.host} keeps gpupool's intent and the next pass resumes it",
            intent_left=True,
            location=location,
        )

    def _result(
        self,
        outcome: Outcome,
        message: str,
        *,
        intent_left: bool = False,
        location: Literal["source", "target"] | None = None,
        refused_by: str | None = None,
        enabled: bool = False,
    ) -> MoveResult:
        now = self.now
        if enabled and now is not None:
            now = HostNow(now.name, "enabled", now.state, None, now.servers)
        return MoveResult(
            self.move,
            outcome,
            message,
            tuple(self.observed),
            resumed=self.resumed,
            intent_left=intent_left,
            location=location,
            now=now if not intent_left else None,
            refused_by=refused_by,
            seconds=time.monotonic() - self.began,
        )


def _instances(now: HostNow) -> str:
    if now.servers is None:
        return "an unknown number of instances"
    shown = ", ".join(now.servers[:3]) + (", ..." if len(now.servers) > 3 else "")
    return f"{len(now.servers)} instance(s) ({shown})"
