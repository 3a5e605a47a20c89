"""Leader election on a coordination.k8s.io Lease: of all replicas, exactly one moves hosts.

Why not kopf's peering: replicas of one Deployment have the same priority, and kopf freezes *all*
operators of equal priority (it warns and stops serving); its timers also keep firing on paused
replicas. A Lease is what controller-runtime and kube-controller-manager use: the holder renews it
every few seconds; when it stops (crash, SIGKILL, partition) another replica takes over once the
lease has expired, and resumes in-flight moves from Nova (nothing is kept in memory).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import kubernetes
from kubernetes.client import ApiException

from .kube import Kube, now

log = logging.getLogger(__name__)


def _stamp() -> dt.datetime:
    # The API server parses MicroTime with a fractional part; isoformat() drops it when it is 0.
    t = now()
    return t if t.microsecond else t.replace(microsecond=1)


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str = "gpupool-operator", duration_s: int = 15):
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.duration_s = duration_s
        self.leading = threading.Event()

    @property
    def identity(self) -> str:
        return self.kube.identity

    def try_acquire_or_renew(self) -> bool:
        try:
            leading = self._attempt()
        except ApiException as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc.reason)
            leading = False
        except Exception as exc:  # noqa: BLE001 - API server unreachable: not leading, try again
            log.warning("lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
            leading = False
        if leading and not self.leading.is_set():
            log.info("%s leads (lease %s/%s)", self.identity, self.namespace, self.name)
        if not leading and self.leading.is_set():
            log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
        (self.leading.set if leading else self.leading.clear)()
        return leading

    def _attempt(self) -> bool:
        coordination = self.kube.coordination
        lease = self.kube.read_lease(self.namespace, self.name)
        stamp = _stamp()
        if lease is None:
            body = kubernetes.client.V1Lease(
                metadata=kubernetes.client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=kubernetes.client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=self.duration_s,
                    acquire_time=stamp,
                    renew_time=stamp,
                    lease_transitions=0,
                ),
            )
            try:
                coordination.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as exc:
                if exc.status == 409:  # another replica created it first
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity
        duration = dt.timedelta(seconds=spec.lease_duration_seconds or self.duration_s)
        expired = spec.renew_time is None or spec.renew_time + duration < stamp
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = stamp
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = stamp
        spec.lease_duration_seconds = self.duration_s
        try:
            coordination.replace_namespaced_lease(
                self.name, self.namespace, lease
            )  # resourceVersion guards it
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def release(self) -> None:
        """On a clean shutdown: hand the lease back so another replica need not wait for expiry."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            if lease is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.kube.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc.reason)

    def run(self, stop: threading.Event, renew_every_s: float | None = None) -> None:
        period = renew_every_s or max(1.0, self.duration_s / 3)
        while not stop.is_set():
            self.try_acquire_or_renew()
            stop.wait(period)
        self.release()
