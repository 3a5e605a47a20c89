"""An in-memory Kubernetes API behind the same calls as gpupool.kube.Kube (the KubePort), for fast
tests of the controller and the publisher. The rules it keeps are the API server's where the
engine depends on them: status patches are JSON merge patches (null removes a key) with optimistic
concurrency on resourceVersion (409 -> StatusConflict), every write bumps resourceVersion, an
Event with a name already taken is refused (the caller counts that as posted).

The wire itself is checked against a real kube-apiserver in tests/e2e.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from gpupool.errors import StatusConflict
from gpupool.ports import KubePort


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class FakeKube:
    def __init__(self, identity: str = "replica-a"):
        self.identity = identity
        self.pools: dict[str, dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.events: dict[str, dict[str, str]] = {}  # name -> the Event (reason, type, message)
        self.unnamed_events: list[dict[str, str]] = []
        self.status_writes = 0
        self.down = False  # every call fails, as when the API server is away
        self._versions = itertools.count(1)

    # -- arranging -----------------------------------------------------------------------------

    def apply(self, name: str, spec: dict[str, Any]) -> None:
        """kubectl apply: create, or change the spec (a new generation)."""
        pool = self.pools.get(name)
        if pool is None:
            self.pools[name] = {
                "apiVersion": "gpupool.io/v1alpha1",
                "kind": "GpuHostPool",
                "metadata": {
                    "name": name,
                    "uid": f"uid-{name}",
                    "generation": 1,
                    "creationTimestamp": f"2026-12-02T00:00:{len(self.pools):02d}Z",
                    "resourceVersion": str(next(self._versions)),
                },
                "spec": copy.deepcopy(spec),
            }
        elif pool["spec"] != spec:
            pool["spec"] = copy.deepcopy(spec)
            pool["metadata"]["generation"] += 1
            pool["metadata"]["resourceVersion"] = str(next(self._versions))

    def status(self, name: str) -> dict[str, Any]:
        return self.pools[name].get("status") or {}

    def ready(self, name: str) -> tuple[str, str]:
        condition = next(c for c in self.status(name)["conditions"] if c["type"] == "Ready")
        return condition["status"], condition["reason"]

    def reasons(self) -> list[str]:
        return sorted(e["reason"] for e in [*self.events.values(), *self.unnamed_events])

    # -- the KubePort ----------------------------------------------------------------------------

    def _reachable(self) -> None:
        if self.down:
            raise ConnectionError("the API server is away")

    def list_pools(self) -> list[dict[str, Any]]:
        self._reachable()
        return [copy.deepcopy(p) for p in self.pools.values()]

    def get_pool(self, name: str) -> dict[str, Any] | None:
        self._reachable()
        pool = self.pools.get(name)
        return copy.deepcopy(pool) if pool is not None else None

    def patch_status(
        self, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> str | None:
        self._reachable()
        pool = self.pools.get(name)
        if pool is None:
            return None
        if resource_version is not None and resource_version != pool["metadata"]["resourceVersion"]:
            raise StatusConflict(name)
        pool["status"] = merge_patch(pool.get("status") or {}, status)
        pool["metadata"]["resourceVersion"] = str(next(self._versions))
        self.status_writes += 1
        return pool["metadata"]["resourceVersion"]

    def configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self._reachable()
        data = self.configmaps.get((namespace, name))
        return dict(data) if data is not None else None

    def event(
        self, pool: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None
    ) -> bool:
        if self.down:
            return False
        event = {"type": type_, "reason": reason, "message": message, "object": pool["metadata"]["name"]}
        if key is None:
            self.unnamed_events.append(event)
        else:
            self.events.setdefault(f"{pool['metadata']['name']}.{key}", event)
        return True


def _keeps_the_ports_shape(fake: FakeKube) -> KubePort:
    return fake  # mypy (make lint) checks the fake against the Protocol the engine depends on
