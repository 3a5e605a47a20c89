"""The operator's reconcile rounds: every GpuHostPool, one snapshot per cloud and round.

A round lists the GpuHostPools, sets aside those in conflict (two resources naming one aggregate:
the later one waits), takes one snapshot per cloud, and runs one reconciler pass per resource, in
parallel, all on that snapshot. So in steady state a round costs one list of GpuHostPools and three
Nova requests per cloud, however many resources there are. Rounds run when something changed
(kopf handlers poke the controller), right after a round that moved hosts, and every `interval_s`
to catch drift made behind the operator's back. Only the replica that leads (peering.py) runs rounds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from .api import GpuHostPoolSpec, SpecError, load_pools
from .cloud import Cloud, CloudError
from .conflicts import find_conflicts
from .kube import Kube
from .mover import Outcome
from .publisher import StatusPublisher
from .reconciler import Reconciler

log = logging.getLogger(__name__)


@dataclass
class PoolView:
    """One GpuHostPool as listed at the start of a round."""

    body: dict
    spec: GpuHostPoolSpec | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    @property
    def deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    @property
    def status(self) -> dict:
        return self.body.get("status") or {}


def parse(body: dict) -> PoolView:
    import yaml

    text = yaml.safe_dump({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")})
    try:
        (pool,) = load_pools(text)
        return PoolView(body, spec=pool.spec)
    except SpecError as exc:
        return PoolView(body, error="; ".join(exc.problems))


def returning_spec(spec: GpuHostPoolSpec) -> GpuHostPoolSpec:
    """The same pools, each wanting 0 hosts: what deletionPolicy ReturnToOnDemand carries out."""
    pools = spec.pools
    update: dict = {"contracts": [c.model_copy(update={"hosts": 0}) for c in pools.contracts]}
    if pools.spot is not None:
        update["spot"] = pools.spot.model_copy(update={"hosts": 0})
    if pools.runpod is not None:
        update["runpod"] = pools.runpod.model_copy(update={"hosts": 0})
    return spec.model_copy(
        update={"pools": pools.model_copy(update=update), "paused": False, "dry_run": False}
    )


class Leadership(Protocol):
    """peering.py: set while this replica is the one that acts."""

    leading: threading.Event


@dataclass
class Controller:
    kube: Kube
    leadership: Leadership
    interval_s: float = 60.0
    cloud_factory: Callable[[str], Cloud] = Cloud
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    _changed: set[str] = field(default_factory=set)
    _clouds: dict[str, Cloud] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- called from kopf handlers ----------------------------------------------------------

    def poke(self, name: str | None = None) -> None:
        """Something changed: a resource's spec (its running pass stops starting moves), or anything."""
        if name is not None:
            with self._lock:
                self._changed.add(name)
        self.wake.set()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.leadership.leading.is_set():
                self.wake.wait(1.0)
                continue
            self.wake.clear()
            try:
                busy = self.round()
                pause = 0.0 if busy else self.interval_s
            except Exception:  # a round must never kill the loop; the next one starts afresh
                log.exception("reconcile round failed; retrying in a few seconds")
                pause = min(self.interval_s, 5.0)
            if pause:
                self.wake.wait(pause)
        for cloud in self._clouds.values():
            cloud.close()

    def round(self) -> bool:
        """One round over every GpuHostPool. True when hosts moved or a pass was cut short."""
        with self._lock:
            self._changed.clear()
        views = [parse(body) for body in self.kube.list_pools()]
        for view in views:
            if view.error:
                StatusPublisher(self.kube, view.body).invalid(view.error)
        valid = [
            v for v in views if v.spec is not None and not (v.deleting and v.spec.deletion_policy == "Retain")
        ]
        conflicts = find_conflicts(
            [(v.name, v.body["metadata"].get("creationTimestamp", ""), v.spec) for v in valid]
        )
        by_cloud: dict[str, list[PoolView]] = {}
        for view in valid:
            if view.name in conflicts:
                StatusPublisher(self.kube, view.body).conflict(conflicts[view.name])
            else:
                by_cloud.setdefault(view.spec.cloud, []).append(view)
        busy = False
        for cloud_name, group in sorted(by_cloud.items()):
            busy |= self._round_on_cloud(cloud_name, group)
        return busy

    def _round_on_cloud(self, cloud_name: str, group: list[PoolView]) -> bool:
        try:
            cloud = self._cloud(cloud_name)
            snapshot = cloud.snapshot()
        except CloudError as exc:
            for view in group:
                StatusPublisher(self.kube, view.body).cloud_error(str(exc))
            return False
        with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix=f"pass-{cloud_name}") as pool:
            results = list(pool.map(lambda v: self._pass(cloud, snapshot, v), group))
        return any(results)

    def _pass(self, cloud: Cloud, snapshot, view: PoolView) -> bool:
        spec = returning_spec(view.spec) if view.deleting else view.spec
        publisher = StatusPublisher(self.kube, view.body)

        def should_stop() -> bool:
            with self._lock:
                changed = view.name in self._changed
            return changed or self.stop.is_set() or not self.leadership.leading.is_set()

        started = time.monotonic()
        try:
            report = Reconciler(cloud).reconcile(
                spec, on_report=publisher.update, snapshot=snapshot, should_stop=should_stop
            )
        except CloudError as exc:
            publisher.cloud_error(str(exc))
            return False
        publisher.final(report, returned=report.converged if view.deleting else None)
        log.info(
            "%s: pass in %.1fs, %d move(s), %s",
            view.name,
            time.monotonic() - started,
            len(report.results),
            "converged" if report.converged else "not converged",
        )
        # Another round at once after progress; after nothing but failures, wait for the timer.
        return any(r.outcome is Outcome.MOVED for r in report.results) or should_stop()

    def _cloud(self, name: str) -> Cloud:
        cloud = self._clouds.get(name)
        if cloud is None:
            cloud = self._clouds[name] = self.cloud_factory(name)
        return cloud
