"""The operator's metrics as agreed (docs/operator.md, "Monitoring"): names, types and labels.

The dashboard, the alert rules, the sample exposition (sample.py) and the e2e test against the
real operator (tests/e2e/test_metrics_prometheus.py) are all checked against this one table.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # as exposed (a counter with its _total)
    type: str  # gauge, counter or histogram
    labels: frozenset[str]
    help: str

    def series_names(self) -> set[str]:
        """The names its samples carry."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"}
        return {self.name}

    def labels_of(self, series_name: str) -> frozenset[str]:
        return self.labels | {"le"} if series_name.endswith("_bucket") else self.labels


POOL_LABELS = frozenset({"gpuhostpool", "pool", "aggregate"})
METRICS = {
    m.name: m
    for m in (
        Metric("gpupool_pool_desired_hosts", "gauge", POOL_LABELS, "Hosts the spec asks for, per pool."),
        Metric("gpupool_pool_current_hosts", "gauge", POOL_LABELS, "Hosts in the pool's aggregate(s) now."),
        Metric("gpupool_pool_moving_hosts", "gauge", POOL_LABELS, "Moves into or out of the pool under way."),
        Metric(
            "gpupool_pool_gpus",
            "gauge",
            frozenset({"gpuhostpool", "pool", "state"}),
            "GPUs per pool, used or total.",
        ),
        Metric(
            "gpupool_moves_total",
            "counter",
            frozenset({"gpuhostpool", "result"}),
            "Finished moves by result.",
        ),
        Metric(
            "gpupool_move_duration_seconds",
            "histogram",
            frozenset({"gpuhostpool", "result"}),
            "How long a move took, by result.",
        ),
        Metric(
            "gpupool_moves_in_flight", "gauge", frozenset({"gpuhostpool"}), "Moves begun and not finished."
        ),
        Metric(
            "gpupool_oldest_move_in_flight_seconds",
            "gauge",
            frozenset({"gpuhostpool"}),
            "Age of the oldest unfinished move (0 when none).",
        ),
        Metric("gpupool_blockers", "gauge", frozenset({"gpuhostpool", "reason"}), "Blockers by reason."),
        Metric("gpupool_ready", "gauge", frozenset({"gpuhostpool"}), "1 when the Ready condition is True."),
        Metric(
            "gpupool_stalled", "gauge", frozenset({"gpuhostpool"}), "1 when the Stalled condition is True."
        ),
        Metric("gpupool_paused", "gauge", frozenset({"gpuhostpool"}), "1 when the Paused condition is True."),
        Metric(
            "gpupool_circuit_breaker_open",
            "gauge",
            frozenset({"gpuhostpool"}),
            "1 when the last pass stopped on Nova's refusals.",
        ),
        Metric(
            "gpupool_nova_requests_total",
            "counter",
            frozenset({"method", "route", "code"}),
            "Requests to Nova and Placement by route template and status code (error: no answer).",
        ),
        Metric(
            "gpupool_nova_request_duration_seconds",
            "histogram",
            frozenset({"method", "route"}),
            "Time to Nova's answer.",
        ),
        Metric("gpupool_acting", "gauge", frozenset(), "1 on the replica that moves hosts, 0 on a standby."),
        Metric("gpupool_round_duration_seconds", "histogram", frozenset(), "Duration of a controller round."),
        Metric("gpupool_build_info", "gauge", frozenset({"version"}), "The running version (always 1)."),
    )
}

MOVE_RESULTS = ("Moved", "RolledBack", "Skipped", "Aborted", "Failed", "Interrupted", "Held")
GPU_STATES = ("used", "total")
MOVE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

# prometheus_client's default collectors (process_*, python_*): the dashboard may use these too.
DEFAULT_METRICS = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "python_info",
    "python_gc_objects_collected_total",
    "python_gc_objects_uncollectable_total",
    "python_gc_collections_total",
}

# Labels Prometheus adds to every scraped series (and those a ServiceMonitor adds).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint", "container"})


def metric_of(series_name: str) -> Metric | None:
    """The contract's metric a series name belongs to (a histogram's _bucket/_count/_sum too)."""
    for metric in METRICS.values():
        if series_name in metric.series_names():
            return metric
    return None


# ------------------------------------------------------------------------ an exposition

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(TYPE of each family, [(series name, labels, value)]) of a text exposition."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def contract_problems(text: str, *, require_all: bool) -> list[str]:
    """Families of the contract missing (require_all) or with another type, and samples whose
    labels are not the contract's."""
    types, samples = parse(text)
    problems = []
    for name, metric in METRICS.items():
        if name not in types:
            if require_all:
                problems.append(f"{name}: no TYPE line")
        elif types[name] != metric.type:
            problems.append(f"{name}: TYPE {types[name]}, the contract says {metric.type}")
    for series, labels, _ in samples:
        known = metric_of(series)
        if known and set(labels) != known.labels_of(series):
            problems.append(
                f"{series}: labels {sorted(labels)}, the contract says {sorted(known.labels_of(series))}"
            )
    return problems
