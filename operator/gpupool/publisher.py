"""Writes a pass's progress into the GpuHostPool's status, and posts its Events.

Called from the pass's threads whenever something changes. A status patch goes out at once when the
set of moves under way or finished changes (so `kubectl get` shows in-flight moves while they run),
otherwise at most once a second. Events: one per move started (or resumed, when another process
or replica began it), finished, aborted or failed, and one per blocker the status did not already
show; nothing is posted twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .api import LAST_MOVES_LIMIT
from .errors import StatusConflict
from .model import Outcome, PassReport, Step, Verdict
from .ports import KubePort
from .status import build_status, verdict, verdict_of, verdict_status, wire

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
_RESULT_EVENTS = {
    Outcome.MOVED: ("Normal", "MoveFinished"),
    Outcome.ROLLED_BACK: ("Normal", "MoveRolledBack"),
    Outcome.SKIPPED: ("Normal", "MoveSkipped"),
    Outcome.ABORTED: ("Warning", "MoveAborted"),
    Outcome.FAILED: ("Warning", "MoveFailed"),
    Outcome.INTERRUPTED: ("Warning", "MoveInterrupted"),
    Outcome.HELD: ("Warning", "HostHeld"),
}


@dataclass
class Mailbox:
    """What a resource's publisher could not deliver yet, kept by the controller across rounds:
    Events the API server did not take, and finished moves no status write has recorded yet.
    Both are delivered by the next publisher of that resource, so an API outage loses nothing."""

    events: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # type, reason, message, key
    history: list[dict] = field(default_factory=list)  # lastMoves entries not written yet
    failing: bool = False  # the last write failed: further failures are not logged again


class StatusPublisher:
    def __init__(
        self,
        kube: KubePort,
        body: dict,
        mailbox: Mailbox | None = None,
        may_write: Callable[[], bool] | None = None,
    ):
        """`may_write`: whether this replica may write the status now (it leads); Events for moves
        it made are posted either way (they are named after the move, so never twice)."""
        self.kube = kube
        self.body = body
        self.name = body["metadata"]["name"]
        self.generation = body["metadata"].get("generation")
        self.resource_version = body["metadata"].get("resourceVersion")
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self.may_write = may_write or (lambda: True)
        self.previous: dict = _with_history(dict(body.get("status") or {}), self.mailbox.history)
        self._lock = threading.Lock()
        self._last_patch = 0.0
        self._last_shape: tuple = ()
        self._started: set[str] = set()
        self._results_posted = 0
        self._breaker_posted = False
        self._stopped_posted = False
        self._blockers_known = {
            (b.get("reason"), b.get("message")) for b in self.previous.get("blockers") or ()
        }
        self._flush()

    # -- during a pass ------------------------------------------------------------------------

    def update(self, report: PassReport) -> Verdict:
        """Say how the pass goes (the status at most every MIN_INTERVAL_S unless its shape changed);
        returns the verdict the status carries."""
        with self._lock:
            self._events(report)
            shape = (tuple(sorted(f.move.host for f in report.in_flight)), len(report.results))
            due = shape != self._last_shape or time.monotonic() - self._last_patch >= MIN_INTERVAL_S
            if due:

                def build(previous: dict) -> dict:
                    status = build_status(
                        report, now=time.time(), previous=previous, generation=self.generation
                    )
                    return wire(status, previous)

                # A pass with nothing to do reports too: the same status as before is not written.
                if self.mailbox.history or self._differs(build(self.previous)):
                    self._publish(build)
                self._last_shape = shape
        return verdict_of(report)

    def final(self, report: PassReport, returned: bool | None = None) -> Verdict:
        with self._lock:
            self._events(report)

            def build(previous: dict) -> dict:
                status = build_status(report, now=time.time(), previous=previous, generation=self.generation)
                status.returned_to_on_demand = returned
                return wire(status, previous)

            # Steady state: the same status as the round before. Writing it again would cost an API
            # write per resource and round (and wake every watcher) for nothing.
            if self.mailbox.history or self._differs(build(self.previous)):
                self._publish(build)
        return verdict_of(report)

    # -- without a pass -----------------------------------------------------------------------

    def seen(self) -> None:
        """A new resource or a new generation, seen before any Nova work: say so at once, so that
        nothing (kstatus, Argo CD, `kubectl wait`) reads the old status as this generation's."""
        recorded = self.previous.get("observedGeneration")
        if self.generation is not None and recorded != self.generation:
            new = not recorded  # none yet, or the CRD's default 0
            what = "new resource" if new else f"spec changed (generation {self.generation})"
            self._verdict("NewGeneration", f"{what}: planning", event=False)

    # Each returns the verdict the status now carries (the metrics record the same one).

    def invalid(self, problems: str) -> Verdict:
        return self._verdict("InvalidSpec", f"the spec is invalid: {problems}")

    def conflict(self, message: str) -> Verdict:
        return self._verdict("Conflict", message)

    def cloud_error(self, message: str) -> Verdict:
        return self._verdict("CloudError", message)

    def failed(self, message: str) -> Verdict:
        return self._verdict("InternalError", message)

    def waiting(self, message: str) -> Verdict:
        """Another gpupool process holds the cloud's move lock: nothing moves here meanwhile."""
        return self._verdict("OtherProcessMoving", message)

    def _verdict(self, reason: str, message: str, *, event: bool = True) -> Verdict:
        """No pass ran: the conditions say why (status.verdict), with an Event when it is news."""
        found = verdict(reason, message)
        with self._lock:
            before: dict[str, Any] = next(
                (c for c in self.previous.get("conditions") or () if c.get("type") == "Ready"), {}
            )

            def build(previous: dict) -> dict:
                status = verdict_status(found, now=time.time(), previous=previous, generation=self.generation)
                return wire(status, previous)

            if self._differs(build(self.previous)):
                self._publish(build)
            if event and (before.get("reason"), before.get("message")) != (reason, message):
                self._post("Normal" if reason == "OtherProcessMoving" else "Warning", reason, message)
        return found

    # -- helpers ------------------------------------------------------------------------------

    def _differs(self, status: dict) -> bool:
        """Whether writing `status` would change what the resource says (None: a key to remove)."""
        return any(self.previous.get(key) != value for key, value in status.items())

    def _publish(self, build: Callable[[dict], dict]) -> None:
        """Write the status `build` makes from the last one known, with optimistic concurrency: if
        the resource changed meanwhile (another replica took over and wrote), read it again and
        build on what it says now. Only while this replica may write. Called from the move threads:
        a Kubernetes API hiccup must never break a move; what could not be written is kept in the
        mailbox and written by the next publisher of this resource."""
        if not self.may_write():
            return
        status = build(self.previous)
        try:
            try:
                version = self.kube.patch_status(self.name, status, self.resource_version)
            except StatusConflict:
                fresh = self.kube.get_pool(self.name)
                if fresh is None or not self.may_write():
                    return
                self.resource_version = fresh["metadata"].get("resourceVersion")
                self.previous = _with_history(dict(fresh.get("status") or {}), self.mailbox.history)
                status = build(self.previous)
                version = self.kube.patch_status(self.name, status, self.resource_version)
        except Exception as exc:  # noqa: BLE001
            self.mailbox.history = list(status.get("lastMoves") or self.mailbox.history)
            if not self.mailbox.failing:  # one line per outage, not one per update
                log.warning("%s: could not write the status (%s); kept for the next write", self.name, exc)
            self.mailbox.failing = True
            return
        if self.mailbox.failing:
            log.info("%s: writing the status again", self.name)
        self.mailbox.failing = False
        self.mailbox.history = []
        self.resource_version = version or self.resource_version
        self.previous = {**self.previous, **status}
        self._last_patch = time.monotonic()

    def _post(self, type_: str, reason: str, message: str, key: str | None = None) -> None:
        if not self.kube.event(self.body, type_, reason, message, key=key):
            self.mailbox.events.append((type_, reason, message, key))

    def _flush(self) -> None:
        """Post the Events an earlier pass could not (the API server was away)."""
        pending, self.mailbox.events = self.mailbox.events, []
        for type_, reason, message, key in pending:
            self._post(type_, reason, message, key)

    def _events(self, report: PassReport) -> None:
        for flight in report.in_flight:
            move = flight.move
            if move.host not in self._started:
                self._started.add(move.host)
                # A move's first step is the check before its disable; one that begins further on was
                # started by a process that died (or a leader that lost its lease): say so.
                if flight.rolling_back is not None:
                    reason = "MoveRollingBack"
                    message = (
                        f"rolling back the move of {move.host} from {move.source} to {move.target}: "
                        f"it {flight.rolling_back}"
                    )
                elif flight.step in (Step.CHECK, Step.DISABLE):
                    reason, message = "MoveStarted", f"moving {move.host} from {move.source} to {move.target}"
                else:
                    reason = "MoveResumed"
                    message = (
                        f"resuming the move of {move.host} from {move.source} to {move.target}"
                        f" at step {flight.step}"
                    )
                self._post("Normal", reason, message, key=_key(move, reason))
        for result in report.results[self._results_posted :]:
            type_, reason = _RESULT_EVENTS[result.outcome]
            self._post(type_, reason, result.message, key=_key(result.move, reason))
        self._results_posted = len(report.results)
        if report.stopped is not None and not self._stopped_posted and report.finished:
            self._stopped_posted = True
            if not any(c.get("reason") == "Stopped" for c in self.previous.get("conditions") or ()):
                self._post("Warning", "Stopped", report.stopped)
        if report.breaker is not None and not self._breaker_posted:
            self._breaker_posted = True
            self._post("Warning", "CircuitBreakerOpen", report.breaker)
        for blocker in report.plan.blockers if report.finished else ():
            key = (blocker.reason, blocker.message)
            if key not in self._blockers_known:
                self._blockers_known.add(key)
                self._post("Warning", blocker.reason, blocker.message)


def _key(move, reason: str) -> str | None:
    """An Event's identity: the move (its id, from its intent in Nova) and what happened to it."""
    return f"{move.move_id}.{reason}" if move.move_id else None


def _with_history(status: dict, history: list[dict]) -> dict:
    """The status with the finished moves not written yet merged into its lastMoves."""
    if not history:
        return status
    moves = list(status.get("lastMoves") or [])
    moves += [entry for entry in history if entry not in moves]
    moves.sort(key=lambda entry: entry.get("finishedAt") or "")
    return {**status, "lastMoves": moves[-LAST_MOVES_LIMIT:]}
