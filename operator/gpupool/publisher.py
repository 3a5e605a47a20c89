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

from .kube import Kube
from .mover import Outcome, Step
from .reconciler import PassReport
from .status import build_status, merge_conditions, summary, timestamp

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


class StatusPublisher:
    def __init__(self, kube: Kube, body: dict):
        self.kube = kube
        self.body = body
        self.name = body["metadata"]["name"]
        self.generation = body["metadata"].get("generation")
        self.previous: dict = dict(body.get("status") or {})
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

    # -- during a pass ------------------------------------------------------------------------

    def update(self, report: PassReport) -> None:
        with self._lock:
            self._events(report)
            shape = (tuple(sorted(f.move.host for f in report.in_flight)), len(report.results))
            due = shape != self._last_shape or time.monotonic() - self._last_patch >= MIN_INTERVAL_S
            if due:
                self._publish(
                    build_status(report, now=time.time(), previous=self.previous, generation=self.generation)
                )
                self._last_shape = shape

    def final(self, report: PassReport, returned: bool | None = None) -> None:
        with self._lock:
            self._events(report)
            status = build_status(report, now=time.time(), previous=self.previous, generation=self.generation)
            status["returnedToOnDemand"] = returned
            # Steady state: the same status as the round before. Writing it again would cost an API
            # write per resource and round (and wake every watcher) for nothing.
            if any(self.previous.get(key) != value for key, value in status.items()):
                self._publish(status)

    # -- without a pass -----------------------------------------------------------------------

    def invalid(self, problems: str) -> None:
        self._verdict("InvalidSpec", f"the spec is invalid: {problems}")

    def conflict(self, message: str) -> None:
        self._verdict("Conflict", message)

    def cloud_error(self, message: str) -> None:
        self._verdict("CloudError", message)

    def failed(self, message: str) -> None:
        self._verdict("InternalError", message)

    def waiting(self, message: str) -> None:
        """Another gpupool process holds the cloud's move lock: nothing moves here meanwhile."""
        self._verdict("OtherProcessMoving", message, degraded=False)

    def _verdict(self, reason: str, message: str, *, degraded: bool = True) -> None:
        """Nothing moves: Ready False, Degraded True with the reason; an Event when it is news."""
        with self._lock:
            before = next((c for c in self.previous.get("conditions") or () if c.get("type") == "Ready"), {})
            stamp = timestamp(time.time())
            conditions = merge_conditions(
                self.previous.get("conditions"),
                [
                    ("Ready", "False", reason, message),
                    ("Progressing", "False", reason, "nothing moves until this is fixed"),
                    ("Degraded", "True" if degraded else "False", reason, message),
                ],
                stamp,
            )
            status = {"conditions": conditions, "inFlight": []}
            if self.generation is not None:
                status["observedGeneration"] = self.generation
            status["summary"] = {**summary({**self.previous, **status}), "message": message[:200]}
            self._publish(status)
            if (before.get("reason"), before.get("message")) != (reason, message):
                self.kube.event(self.body, "Warning" if degraded else "Normal", reason, message)

    # -- helpers ------------------------------------------------------------------------------

    def _publish(self, status: dict) -> None:
        # Called from the move threads: a Kubernetes API hiccup must never break a move. The next
        # update (or the next round) writes the status again.
        try:
            self.kube.patch_status(self.name, status)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: could not write the status (%s); retried with the next update", self.name, exc)
            return
        self.previous = {**self.previous, **status}
        self._last_patch = time.monotonic()

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
                self.kube.event(self.body, "Normal", reason, message)
        for result in report.results[self._results_posted :]:
            type_, reason = _RESULT_EVENTS[result.outcome]
            self.kube.event(self.body, type_, reason, result.message)
        self._results_posted = len(report.results)
        if report.stopped is not None and not self._stopped_posted and report.finished:
            self._stopped_posted = True
            if not any(c.get("reason") == "Stopped" for c in self.previous.get("conditions") or ()):
                self.kube.event(self.body, "Warning", "Stopped", report.stopped)
        if report.breaker is not None and not self._breaker_posted:
            self._breaker_posted = True
            self.kube.event(self.body, "Warning", "CircuitBreakerOpen", report.breaker)
        for blocker in report.plan.blockers if report.finished else ():
            key = (blocker.reason, blocker.message)
            if key not in self._blockers_known:
                self._blockers_known.add(key)
                self.kube.event(self.body, "Warning", blocker.reason, blocker.message)
