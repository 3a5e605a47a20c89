"""The two outside systems as the engine sees them: small Protocols, implemented by cloud.Cloud
(Nova and Placement over HTTP) and kube.Kube (the Kubernetes API), and by in-memory fakes in the
unit tests. The engine (mover, reconciler, movelock, controller, publisher) depends on these, never
on the HTTP clients, so each can be tested in milliseconds; the wire is checked against novasim,
a real Nova and a real kube-apiserver in the other tiers.
"""

from __future__ import annotations

from typing import Any, Protocol

from .model import Aggregate, Host, HostNow, Snapshot


class CloudPort(Protocol):
    """What a pass needs from Nova and Placement. Writes are idempotent ("already done" is done)."""

    @property
    def cloud_name(self) -> str: ...

    def snapshot(self) -> Snapshot: ...

    def stop_reason(self) -> str | None: ...

    def host_now(self, host: Host) -> HostNow: ...

    def claims_on(self, host: Host) -> tuple[str, ...]: ...

    def aggregates_holding(self, host: str) -> frozenset[str]: ...

    def gpus_in_use(self) -> dict[str, int]: ...

    def disable_service(self, host: Host, reason: str) -> None: ...

    def enable_service(self, host: Host) -> None: ...

    def remove_host(
        self, aggregate: Aggregate, host: str, *, expect_member: bool = False
    ) -> frozenset[str] | None: ...

    def add_host(self, aggregate: Aggregate, host: str) -> frozenset[str] | None: ...

    def set_aggregate_metadata(self, aggregate: Aggregate, metadata: dict[str, str | None]) -> None: ...

    def get_aggregate(self, aggregate: Aggregate) -> Aggregate | None: ...

    def create_aggregate(self, name: str) -> Aggregate | None: ...

    def delete_aggregate(self, aggregate: Aggregate) -> bool: ...


class ClosableCloud(CloudPort, Protocol):
    """A cloud connection the controller keeps between rounds, and closes when its config changes."""

    def close(self) -> None: ...


class KubePort(Protocol):
    """What the controller and the status publisher need from the Kubernetes API."""

    identity: str

    def list_pools(self) -> list[dict[str, Any]]: ...

    def get_pool(self, name: str) -> dict[str, Any] | None: ...

    def patch_status(
        self, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> str | None: ...

    def configmap_data(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def event(
        self, pool: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None
    ) -> bool: ...
