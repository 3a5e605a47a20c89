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
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from . import metrics
from .api import GpuHostPoolSpec, SpecError, parse_pool
from .conflicts import find_conflicts_per_cloud, neighbours_of
from .errors import CloudError
from .model import Neighbours, Outcome, PassReport, Snapshot
from .movelock import FencedCloud, MoveLock
from .ports import ClosableCloud, CloudPort, KubePort
from .publisher import Mailbox, StatusPublisher
from .reconciler import Reconciler, has_work, orphan_moves, roll_back_orphans
from .status import gpus_per_pool

log = logging.getLogger(__name__)
# After a cloud could not be reached or refused our credentials, how soon to try again (a fixed
# clouds.yaml, say a rotated Secret, is picked up then).
CLOUD_RETRY_S = 10.0


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

    def effective_spec(self) -> GpuHostPoolSpec:
        assert self.spec is not None
        return returning_spec(self.spec) if self.deleting else self.spec


def parse(body: dict) -> PoolView:
    document = {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")}
    document["metadata"] = {"name": (body.get("metadata") or {}).get("name")}
    try:
        return PoolView(body, spec=parse_pool(document).spec)
    except SpecError as exc:
        return PoolView(body, error="; ".join(exc.problems))


def returning_spec(spec: GpuHostPoolSpec) -> GpuHostPoolSpec:
    """The same pools, each wanting 0 hosts: what deletionPolicy ReturnToOnDemand carries out.
    Every host that can go back goes back at once; one still running instances stays (and the
    deletion waits for it) instead of holding back the others."""
    pools = spec.pools
    update: dict = {"contracts": [c.model_copy(update={"hosts": 0}) for c in pools.contracts]}
    if pools.spot is not None:
        update["spot"] = pools.spot.model_copy(update={"hosts": 0})
    if pools.runpod is not None:
        update["runpod"] = pools.runpod.model_copy(update={"hosts": 0})
    return spec.model_copy(
        update={
            "pools": pools.model_copy(update=update),
            "policy": spec.policy.model_copy(update={"allow_partial": True}),
            "paused": False,
            "dry_run": False,
        }
    )


def _config_stamp() -> tuple | None:
    """What identifies the clouds.yaml as read now (a Secret volume swaps the file on rotation)."""
    path = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


class MeteredPublisher:
    """A resource's StatusPublisher that also records what it publishes as metrics (metrics.py):
    the verdict the metrics show is the one the publisher put in the status."""

    def __init__(self, publisher: StatusPublisher, name: str):
        self._publisher = publisher
        self._name = name

    def update(self, report: PassReport) -> None:
        found = self._publisher.update(report)
        metrics.pass_reported(self._name, report, found, _gpus(report), time.time())

    def final(self, report: PassReport, returned: bool | None = None) -> None:
        found = self._publisher.final(report, returned=returned)
        metrics.pass_reported(self._name, report, found, _gpus(report), time.time())
        metrics.moves_finished(self._name, [(str(r.outcome), r.seconds) for r in report.results])

    def seen(self) -> None:
        self._publisher.seen()

    def invalid(self, problems: str) -> None:
        metrics.verdict_reported(self._name, self._publisher.invalid(problems))

    def conflict(self, message: str) -> None:
        metrics.verdict_reported(self._name, self._publisher.conflict(message))

    def cloud_error(self, message: str) -> None:
        metrics.verdict_reported(self._name, self._publisher.cloud_error(message))

    def failed(self, message: str) -> None:
        metrics.verdict_reported(self._name, self._publisher.failed(message))

    def waiting(self, message: str) -> None:
        metrics.verdict_reported(self._name, self._publisher.waiting(message))


def _gpus(report: PassReport) -> dict[str, tuple[int, int | None]]:
    return {label: (counts.used, counts.total) for label, counts in gpus_per_pool(report).items()}


class Leadership(Protocol):
    """peering.py: set while this replica is the one that acts."""

    leading: threading.Event


@dataclass
class Controller:
    kube: KubePort
    leadership: Leadership
    # A connection to the named cloud (process.py passes cloud.Cloud; the unit tests a fake).
    cloud_factory: Callable[[str], ClosableCloud]
    interval_s: float = 60.0
    identity: str = "gpupool operator"
    # The operator's own kill switch: while this ConfigMap exists, no move starts on any cloud.
    kill_switch_ref: tuple[str, str] | None = None  # (namespace, name)
    lock_ttl_s: float = 30.0
    # How often GPU usage is read per cloud (a paged server list, 1,000 servers a request); 0: never.
    gpu_usage_interval_s: float = 300.0
    _gpu_usage: dict[str, tuple[float, dict[str, int]]] = field(default_factory=dict)
    _kill_switch_read: tuple[float, str | None] = (float("-inf"), None)
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    _changed: set[str] = field(default_factory=set)
    _clouds: dict[str, ClosableCloud] = field(default_factory=dict)
    _locks: dict[str, MoveLock] = field(default_factory=dict)
    _config_stamps: dict[str, tuple | None] = field(default_factory=dict)
    _mail: dict[str, Mailbox] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- called from kopf handlers ----------------------------------------------------------

    def poke(self, name: str | None = None) -> None:
        """Something changed: a resource's spec (its running pass stops starting moves), or anything."""
        if name is not None:
            with self._lock:
                self._changed.add(name)
        self.wake.set()

    def seen(self, body: dict) -> None:
        """A resource was created or its spec changed: its status says so at once, before any Nova
        work (only the leader writes; a round in progress for other resources does not delay it)."""
        if not self.leadership.leading.is_set():
            return
        view = parse(body)
        if view.spec is not None and not view.deleting:
            self._publisher(view).seen()

    def kill_switch(self) -> str | None:
        """Why the operator's kill switch stops all moves, or None. Read at most every 2 s (a pass
        asks before each move it starts); an unreadable one counts as on: in doubt, do not move."""
        if self.kill_switch_ref is None:
            return None
        read_at, why = self._kill_switch_read
        if time.monotonic() - read_at < 2.0:
            return why
        namespace, name = self.kill_switch_ref
        try:
            data = self.kube.configmap_data(namespace, name)
            if data is None:
                why = None
            else:
                reason = data.get("reason") or "no reason given"
                why = f"the operator's kill switch is on (ConfigMap {namespace}/{name}: {reason}); delete it to resume"
        except Exception as exc:  # noqa: BLE001 - the API server's trouble must not let moves start
            why = (
                f"cannot read the operator's kill switch (ConfigMap {namespace}/{name}): {type(exc).__name__}"
            )
        self._kill_switch_read = (time.monotonic(), why)
        return why

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop.is_set():
            metrics.ACTING.set(1 if self.leadership.leading.is_set() else 0)
            if not self.leadership.leading.is_set():
                self._release_locks()  # a standby moves nothing: let others (the CLI) move meanwhile
                self.wake.wait(1.0)
                continue
            self.wake.clear()
            try:
                pause = self.round()
            except Exception:  # a round must never kill the loop; the next one starts afresh
                log.exception("reconcile round failed; retrying in a few seconds")
                pause = min(self.interval_s, 5.0)
            if pause:
                self.wake.wait(pause)
        self._release_locks()
        for cloud in self._clouds.values():
            cloud.close()

    def round(self) -> float:
        started = time.monotonic()
        try:
            return self._round()
        finally:
            metrics.ROUND_DURATION.observe(time.monotonic() - started)

    def _round(self) -> float:
        """One round over every GpuHostPool; returns how long to wait before the next one:
        0 after progress (or a pass cut short), a few seconds while another process holds a
        cloud's move lock, else the drift-check interval."""
        with self._lock:
            self._changed.clear()
        views = [parse(body) for body in self.kube.list_pools()]
        for gone in set(self._mail) - {v.name for v in views}:
            del self._mail[gone]  # deleted: nothing left to tell it
            metrics.resource_gone(gone)
        for view in views:
            if view.error:
                self._publisher(view).invalid(view.error)
        valid = [
            v for v in views if v.spec is not None and not (v.deleting and v.spec.deletion_policy == "Retain")
        ]
        for view in valid:
            if not view.deleting:
                self._publisher(view).seen()  # a generation the handlers' write did not reach yet
        conflicts = find_conflicts_per_cloud(
            (v.spec.cloud, v.name, v.body["metadata"].get("creationTimestamp", ""), v.spec)
            for v in valid
            if v.spec
        )
        by_cloud: dict[str, list[PoolView]] = {}
        for view in valid:
            if view.name in conflicts:
                self._publisher(view).conflict(conflicts[view.name])
            else:
                by_cloud.setdefault(view.effective_spec().cloud, []).append(view)
        # A cloud whose last resource went away is visited once more: half-done moves of a resource
        # deleted mid-move are rolled back, and its move lock released.
        for name in list(self._clouds):
            by_cloud.setdefault(name, [])
        pauses = [self.interval_s]
        for cloud_name, group in sorted(by_cloud.items()):
            pauses.append(self._round_on_cloud(cloud_name, group))
        if self.kill_switch() is not None:
            pauses.append(5.0)  # look again soon: the switch costs no Nova request to read
        return min(pauses)

    def _round_on_cloud(self, cloud_name: str, group: list[PoolView]) -> float:
        try:
            cloud = self._cloud(cloud_name)
            snapshot = cloud.snapshot()
        except Exception as exc:  # noqa: BLE001 - one cloud's surprise must not stop the others
            if isinstance(exc, CloudError):
                message = str(exc)
            else:
                # The text of an exception we did not expect may carry what clouds.yaml holds: only its type.
                log.error("cloud %r: connecting failed unexpectedly (%s)", cloud_name, type(exc).__name__)
                message = f"connecting to cloud {cloud_name!r} failed ({type(exc).__name__}); check its clouds.yaml entry"
            for view in group:
                self._publisher(view).cloud_error(message)
            return min(self.interval_s, CLOUD_RETRY_S)
        specs = {v.name: v.effective_spec() for v in group}
        entries = [(name, spec) for name, spec in specs.items()]
        neighbours = {name: neighbours_of(name, entries) for name in specs}
        managed = set().union(*(spec.managed_names() for spec in specs.values()))
        orphans = orphan_moves(snapshot, managed)
        working = [v for v in group if has_work(specs[v.name], snapshot, neighbours[v.name])]
        if self.kill_switch() is not None:
            working, orphans = [], []  # the passes below only report; nothing takes the lock
        lock = self._move_lock(cloud_name, cloud)
        if not (working or orphans):
            lock.reap(snapshot)
        waiting = False
        if (working or orphans) and not lock.held:
            try:
                holder = lock.acquire(snapshot)
            except CloudError as exc:
                for view in group:
                    self._publisher(view).cloud_error(f"could not take the move lock: {exc}")
                return self.interval_s
            if holder is None:
                snapshot = cloud.snapshot()  # what we saw may be the previous holder's work in progress
                orphans = orphan_moves(snapshot, managed)
            else:
                waiting = True
                message = (
                    f"another gpupool process is moving hosts on cloud {cloud_name!r}: {holder.describe()}"
                )
                for view in working:
                    self._publisher(view).waiting(message)
                group = [v for v in group if v not in working]
                orphans = []
        if orphans:
            roll_back_orphans(FencedCloud(cloud, lock.fence), snapshot, orphans)
            snapshot = cloud.snapshot()
        if not group:
            if not waiting:
                lock.release()
                if not specs:
                    self._forget(cloud_name)
            return 5.0 if waiting else self.interval_s
        gpus = self._gpus(cloud)
        with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix=f"pass-{cloud_name}") as pool:
            busy = list(
                pool.map(
                    lambda v: self._pass(cloud, lock, snapshot, v, specs[v.name], neighbours[v.name], gpus),
                    group,
                )
            )
        if not any(busy) and not waiting:
            lock.release()
        return 0.0 if any(busy) else (5.0 if waiting else self.interval_s)

    def _pass(
        self,
        cloud: CloudPort,
        lock: MoveLock,
        snapshot: Snapshot,
        view: PoolView,
        spec: GpuHostPoolSpec,
        neighbours: Neighbours,
        gpus: dict[str, int] | None = None,
    ) -> bool:
        """One resource's pass; True when another round should follow at once. Whatever goes wrong
        stays with this resource: the others' passes in the round run on."""
        publisher = self._publisher(view)

        def should_stop() -> bool:
            with self._lock:
                changed = view.name in self._changed
            return changed or self.stop.is_set() or not self.leadership.leading.is_set()

        started = time.monotonic()
        try:
            report = Reconciler(cloud, fence=lock.fence).reconcile(
                spec,
                on_report=publisher.update,
                snapshot=snapshot,
                should_stop=should_stop,
                neighbours=neighbours,
                kill_switch=self.kill_switch,
                gpu_usage=gpus,
            )
        except CloudError as exc:
            publisher.cloud_error(str(exc))
            return False
        except Exception as exc:  # a bug must not cut the round short for the other resources
            log.exception("%s: pass failed", view.name)
            publisher.failed(f"the pass failed unexpectedly ({type(exc).__name__}); see the operator's log")
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
        progressed = any(r.outcome in (Outcome.MOVED, Outcome.ROLLED_BACK) for r in report.results)
        return (progressed and report.breaker is None) or should_stop()

    def _publisher(self, view: PoolView) -> MeteredPublisher:
        """A publisher for this round, with what earlier rounds could not deliver; it writes the
        status only while this replica leads, and the metrics always."""
        mailbox = self._mail.setdefault(view.name, Mailbox())
        publisher = StatusPublisher(self.kube, view.body, mailbox, may_write=self.leadership.leading.is_set)
        return MeteredPublisher(publisher, view.name)

    def _cloud(self, name: str) -> ClosableCloud:
        """The connection to a cloud; a new one when clouds.yaml changed (a rotated credentials
        Secret is picked up within a round, without a restart)."""
        stamp = _config_stamp()
        cloud = self._clouds.get(name)
        if cloud is not None and self._config_stamps.get(name) != stamp:
            log.info("clouds.yaml changed: reconnecting to %s", name)
            self._clouds.pop(name).close()
            cloud = None
        if cloud is None:
            cloud = self._clouds[name] = self.cloud_factory(name)
            self._config_stamps[name] = stamp
        return cloud

    def _gpus(self, cloud: CloudPort) -> dict[str, int] | None:
        """GPU usage per host on this cloud, read again when older than gpu_usage_interval_s (the
        passes of one round share it). A failed read keeps the last one: it is a report, not a guard."""
        if self.gpu_usage_interval_s <= 0:
            return None
        read_at, usage = self._gpu_usage.get(cloud.cloud_name, (float("-inf"), None))
        if time.monotonic() - read_at < self.gpu_usage_interval_s:
            return usage
        try:
            usage = cloud.gpus_in_use()
        except CloudError as exc:
            log.warning("could not read GPU usage on %s: %s", cloud.cloud_name, exc)
            return usage
        self._gpu_usage[cloud.cloud_name] = (time.monotonic(), usage)
        return usage

    def _move_lock(self, name: str, cloud: CloudPort) -> MoveLock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = MoveLock(cloud, self.identity, ttl_s=self.lock_ttl_s)
        lock.use(cloud)  # a new connection after clouds.yaml changed
        return lock

    def _forget(self, name: str) -> None:
        self._locks.pop(name, None)
        cloud = self._clouds.pop(name, None)
        if cloud is not None:
            cloud.close()

    def _release_locks(self) -> None:
        for lock in self._locks.values():
            lock.release()
