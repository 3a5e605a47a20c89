"""The operator's Prometheus metrics (prometheus_client), in one registry, and what records them.

Names and labels are a contract (docs/operator.md, "Monitoring"; the alert rules and the dashboard
in manifests/monitoring/ depend on them). Labels never carry host names, ids or secrets: Nova
routes are templates (`/os-aggregates/{id}/action`), pools are labels (`spot`, `contract:<name>`).
Recording is cheap and never raises: a metric must not break a move.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from . import __version__
from .model import ON_DEMAND, PassReport, Verdict

REGISTRY = CollectorRegistry(auto_describe=True)
# The process's own figures (memory, CPU, open files, Python's GC), as every Python exporter has.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_POOL = ["gpuhostpool", "pool", "aggregate"]

POOL_DESIRED = Gauge(
    "gpupool_pool_desired_hosts", "Hosts the spec asks for in a pool.", _POOL, registry=REGISTRY
)
POOL_CURRENT = Gauge(
    "gpupool_pool_current_hosts", "Hosts a pool's aggregate holds now.", _POOL, registry=REGISTRY
)
POOL_MOVING = Gauge(
    "gpupool_pool_moving_hosts", "Moves into or out of a pool under way.", _POOL, registry=REGISTRY
)
POOL_GPUS = Gauge(
    "gpupool_pool_gpus",
    "GPUs of a pool's hosts: used (by instances, from their flavors) and total.",
    ["gpuhostpool", "pool", "state"],
    registry=REGISTRY,
)
MOVES = Counter("gpupool_moves", "Moves finished, by result.", ["gpuhostpool", "result"], registry=REGISTRY)
MOVE_DURATION = Histogram(
    "gpupool_move_duration_seconds",
    "How long a move took, from its first step to its result.",
    ["gpuhostpool", "result"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("gpupool_moves_in_flight", "Moves under way.", ["gpuhostpool"], registry=REGISTRY)
OLDEST_IN_FLIGHT = Gauge(
    "gpupool_oldest_move_in_flight_seconds",
    "Age of the oldest move under way (0 when none).",
    ["gpuhostpool"],
    registry=REGISTRY,
)
BLOCKERS = Gauge(
    "gpupool_blockers",
    "Blockers holding a pool back, by reason.",
    ["gpuhostpool", "reason"],
    registry=REGISTRY,
)
READY = Gauge("gpupool_ready", "1 while the Ready condition is True.", ["gpuhostpool"], registry=REGISTRY)
STALLED = Gauge(
    "gpupool_stalled", "1 while the Stalled condition is True.", ["gpuhostpool"], registry=REGISTRY
)
PAUSED = Gauge(
    "gpupool_paused",
    "1 while the Paused condition is True (spec.paused, spec.dryRun or a kill switch).",
    ["gpuhostpool"],
    registry=REGISTRY,
)
BREAKER = Gauge(
    "gpupool_circuit_breaker_open",
    "1 when the last pass stopped starting moves because Nova kept failing.",
    ["gpuhostpool"],
    registry=REGISTRY,
)
NOVA_REQUESTS = Counter(
    "gpupool_nova_requests",
    "Requests to Nova and Placement, by route template and answer (`error`: no answer).",
    ["method", "route", "code"],
    registry=REGISTRY,
)
NOVA_DURATION = Histogram(
    "gpupool_nova_request_duration_seconds",
    "How long Nova and Placement took to answer.",
    ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ACTING = Gauge("gpupool_acting", "1 on the replica that moves hosts, 0 on a standby.", registry=REGISTRY)
ROUND_DURATION = Histogram(
    "gpupool_round_duration_seconds",
    "How long a controller round over every GpuHostPool took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
BUILD_INFO = Gauge("gpupool_build_info", "The running version.", ["version"], registry=REGISTRY)
BUILD_INFO.labels(__version__).set(1)

_lock = threading.Lock()
_series: dict[str, set[tuple[str, ...]]] = {}  # resource -> the pool/blocker label sets it set last

_UUID = re.compile(r"/[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}(?=/|$)")
_NUMBER = re.compile(r"/\d+(?=/|$)")


def route_of(path: str) -> str:
    """A request path as a route template: no query, ids and uuids as placeholders."""
    path = path.split("?", 1)[0]
    return _NUMBER.sub("/{id}", _UUID.sub("/{uuid}", path))


def nova_request(method: str, path: str, code: int | None, seconds: float) -> None:
    route = route_of(path)
    NOVA_REQUESTS.labels(method, route, str(code) if code is not None else "error").inc()
    NOVA_DURATION.labels(method, route).observe(seconds)


def pass_reported(
    name: str, report: PassReport, verdict: Verdict, gpus: Mapping[str, tuple[int, int | None]], now: float
) -> None:
    """A resource's pools, moves in flight, blockers and conditions after a pass (or during one)."""
    plan = report.plan
    moving = report.moving_per_pool
    pools = [(p.label, p.aggregate, p.desired, p.current) for p in plan.pools.targets()]
    on_demand = plan.pools.on_demand
    with _lock:
        seen: set[tuple[str, ...]] = set()
        for label, aggregate, desired, current in pools:
            POOL_DESIRED.labels(name, label, aggregate).set(desired)
            POOL_CURRENT.labels(name, label, aggregate).set(current)
            POOL_MOVING.labels(name, label, aggregate).set(moving.get(label, 0))
            seen.add(("pool", label, aggregate))
        aggregates = ",".join(on_demand.aggregates)
        POOL_CURRENT.labels(name, ON_DEMAND, aggregates).set(on_demand.hosts)
        POOL_MOVING.labels(name, ON_DEMAND, aggregates).set(moving.get(ON_DEMAND, 0))
        seen.add(("onDemand", ON_DEMAND, aggregates))
        for label, (used, total) in gpus.items():
            POOL_GPUS.labels(name, label, "used").set(used)
            seen.add(("gpus", label, "used"))
            if total is not None:
                POOL_GPUS.labels(name, label, "total").set(total)
                seen.add(("gpus", label, "total"))
        counts: dict[str, int] = {}
        for blocker in plan.blockers:
            counts[blocker.reason] = counts.get(blocker.reason, 0) + 1
        for reason, count in counts.items():
            BLOCKERS.labels(name, reason).set(count)
            seen.add(("blocker", reason))
        IN_FLIGHT.labels(name).set(len(report.in_flight))
        OLDEST_IN_FLIGHT.labels(name).set(max((now - f.since for f in report.in_flight), default=0.0))
        READY.labels(name).set(1 if verdict.ready else 0)
        STALLED.labels(name).set(1 if verdict.stalled else 0)
        PAUSED.labels(name).set(1 if verdict.paused is not None else 0)
        BREAKER.labels(name).set(1 if report.breaker is not None else 0)
        _forget(name, _series.get(name, set()) - seen)
        _series[name] = seen


def verdict_reported(name: str, verdict: Verdict) -> None:
    """A resource no pass ran for (invalid, conflict, cloud error...): its conditions."""
    with _lock:
        READY.labels(name).set(1 if verdict.ready else 0)
        STALLED.labels(name).set(1 if verdict.stalled else 0)
        PAUSED.labels(name).set(1 if verdict.paused is not None else 0)
        IN_FLIGHT.labels(name).set(0)
        OLDEST_IN_FLIGHT.labels(name).set(0)


def moves_finished(name: str, results: Iterable[tuple[str, float]]) -> None:
    """(result, seconds) of moves that ended."""
    for result, seconds in results:
        MOVES.labels(name, result).inc()
        MOVE_DURATION.labels(name, result).observe(max(0.0, seconds))


def resource_gone(name: str) -> None:
    """A deleted resource: its series go away (counters stay, as Prometheus expects)."""
    with _lock:
        _forget(name, _series.pop(name, set()))
        for gauge in (IN_FLIGHT, OLDEST_IN_FLIGHT, READY, STALLED, PAUSED, BREAKER):
            try:
                gauge.remove(name)
            except KeyError:
                pass


def _forget(name: str, series: set[tuple[str, ...]]) -> None:
    for kind, *labels in series:
        try:
            if kind == "pool":
                for gauge in (POOL_DESIRED, POOL_CURRENT, POOL_MOVING):
                    gauge.remove(name, *labels)
            elif kind == "onDemand":
                POOL_CURRENT.remove(name, *labels)
                POOL_MOVING.remove(name, *labels)
            elif kind == "gpus":
                POOL_GPUS.remove(name, *labels)
            elif kind == "blocker":
                BLOCKERS.remove(name, *labels)
        except KeyError:
            pass


def serve(address: str) -> None:
    """Serve /metrics on ADDRESS ("host:port" or ":port") from a daemon thread."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
