"""Plain data describing what the cloud looks like: what `cloud.snapshot()` returns.

No I/O and no openstacksdk types here, so the planner can be tested with hand-built data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Aggregate:
    id: int
    name: str
    hosts: frozenset[str]
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None  # as Nova wrote it (UTC, no zone suffix)

    @property
    def availability_zone(self) -> str | None:
        return self.metadata.get("availability_zone")


@dataclass(frozen=True)
class Host:
    """A nova-compute host and its service."""

    name: str
    service_id: str
    state: str = "up"  # "up" | "down": is nova-compute reporting in
    status: str = "enabled"  # "enabled" | "disabled"
    disabled_reason: str | None = None
    # Instances on the host, any state. None: not counted (the host cannot move anyway).
    instances: int | None = 0
    # The compute node's uuid (the hypervisor id from microversion 2.53, and its Placement
    # resource provider's uuid). None: Nova lists no hypervisor for the service.
    hypervisor_id: str | None = None

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    @property
    def is_enabled(self) -> bool:
        return self.status == "enabled"


@dataclass(frozen=True)
class HostNow:
    """A host as Nova describes it at one moment, read right before a step that depends on it."""

    name: str
    status: str  # "enabled" | "disabled"
    state: str  # "up" | "down"
    disabled_reason: str | None
    # Instances whose host is this one (names or uuids). None: Nova could not say.
    servers: tuple[str, ...] | None

    @property
    def is_enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def is_up(self) -> bool:
        return self.state == "up"


@dataclass(frozen=True)
class Snapshot:
    """One consistent-enough view of the cloud: aggregates by name, compute hosts by name."""

    aggregates: Mapping[str, Aggregate]
    hosts: Mapping[str, Host]

    def aggregates_of(self, host: str) -> list[str]:
        return sorted(name for name, agg in self.aggregates.items() if host in agg.hosts)
