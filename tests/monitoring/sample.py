"""A sample of what the operator's /metrics serves, per the contract (contract.py), in Prometheus'
text format as prometheus_client writes it: one replica acting (or standing by), one GpuHostPool
`l40` converged after 7 moves, a few Nova errors.

Served over HTTP by `serve()` for the tests that scrape it with a real Prometheus.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator, Sequence

from tests.monitoring.contract import METRICS, MOVE_BUCKETS

CREATED = 1_790_000_000.0


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _family(lines: list[str], name: str, samples: Sequence[tuple[dict[str, str], float]]) -> None:
    metric = METRICS[name]
    lines.append(f"# HELP {name} {metric.help}")
    lines.append(f"# TYPE {name} {metric.type}")
    for labels, value in samples:
        lines.append(f"{name}{_labels(labels)} {float(value)!r}")
    if metric.type == "counter":  # prometheus_client's _created series
        base = name.removesuffix("_total")
        lines.append(f"# HELP {base}_created {metric.help}")
        lines.append(f"# TYPE {base}_created gauge")
        lines += [f"{base}_created{_labels(labels)} {CREATED!r}" for labels, _ in samples]


def _histogram(
    lines: list[str], name: str, series: list[tuple[dict[str, str], list[float]]], buckets=MOVE_BUCKETS
) -> None:
    metric = METRICS[name]
    lines.append(f"# HELP {name} {metric.help}")
    lines.append(f"# TYPE {name} {metric.type}")
    for labels, observations in series:
        for bound in [*map(float, buckets), float("inf")]:
            le = "+Inf" if bound == float("inf") else repr(bound)
            count = sum(1 for o in observations if o <= bound)
            lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {float(count)!r}")
        lines.append(f"{name}_count{_labels(labels)} {float(len(observations))!r}")
        lines.append(f"{name}_sum{_labels(labels)} {float(sum(observations))!r}")
    lines.append(f"# HELP {name}_created {metric.help}")
    lines.append(f"# TYPE {name}_created gauge")
    lines += [f"{name}_created{_labels(labels)} {CREATED!r}" for labels, _ in series]


POOLS = [  # pool, aggregate, desired, current, gpus used, gpus total
    ("spot", "L40-n3-spot", 4, 4, 8, 32),
    ("runpod", "L40-n3-runpod", 2, 2, 0, 16),
    ("contract:Contract-L40-Acme", "Contract-L40-Acme", 1, 1, 8, 8),
]
ON_DEMAND = ("onDemand", "L40-n3", 5, 16, 40)


def exposition(acting: bool = True, version: str = "0.2.0", stale: bool = False, rounds: int = 4) -> str:
    """The text a replica serves. A standby (acting=False) serves no per-resource series, unless
    stale=True: then it serves alarming ones (not Ready, stalled, a move in flight for an hour,
    the circuit breaker open, 9 hosts per pool), as a replica that acted once might, which alerts
    and dashboard must ignore (they read the acting replica's; a plain max() would not). `rounds`: controller rounds finished so far."""
    lines: list[str] = []
    gp = {"gpuhostpool": "l40"}
    if stale and not acting:
        _family(lines, "gpupool_moves_in_flight", [(gp, 1)])
        _family(lines, "gpupool_oldest_move_in_flight_seconds", [(gp, 3600)])
        _family(lines, "gpupool_ready", [(gp, 0)])
        _family(lines, "gpupool_stalled", [(gp, 1)])
        _family(lines, "gpupool_paused", [(gp, 0)])
        _family(lines, "gpupool_circuit_breaker_open", [(gp, 1)])
        _family(
            lines,
            "gpupool_pool_current_hosts",
            [({**gp, "pool": p, "aggregate": a}, 9) for p, a, *_ in POOLS],
        )
    if acting:
        _family(
            lines,
            "gpupool_pool_desired_hosts",
            [({**gp, "pool": p, "aggregate": a}, d) for p, a, d, *_ in POOLS],
        )
        _family(
            lines,
            "gpupool_pool_current_hosts",
            [({**gp, "pool": p, "aggregate": a}, c) for p, a, _, c, *_ in POOLS]
            + [({**gp, "pool": ON_DEMAND[0], "aggregate": ON_DEMAND[1]}, ON_DEMAND[2])],
        )
        _family(
            lines,
            "gpupool_pool_moving_hosts",
            [({**gp, "pool": p, "aggregate": a}, 0) for p, a, *_ in POOLS],
        )
        gpus = [(p, u, t) for p, _, _, _, u, t in POOLS] + [(ON_DEMAND[0], ON_DEMAND[3], ON_DEMAND[4])]
        _family(
            lines,
            "gpupool_pool_gpus",
            [({**gp, "pool": p, "state": s}, v) for p, u, t in gpus for s, v in (("used", u), ("total", t))],
        )
        _family(
            lines,
            "gpupool_moves_total",
            [({**gp, "result": "Moved"}, 7), ({**gp, "result": "Skipped"}, 1)],
        )
        _histogram(
            lines,
            "gpupool_move_duration_seconds",
            [
                ({**gp, "result": "Moved"}, [0.8, 0.9, 1.1, 1.2, 1.4, 2.5, 7.0]),
                ({**gp, "result": "Skipped"}, [0.3]),
            ],
        )
        _family(lines, "gpupool_moves_in_flight", [(gp, 0)])
        _family(lines, "gpupool_oldest_move_in_flight_seconds", [(gp, 0)])
        _family(lines, "gpupool_blockers", [({**gp, "reason": "NotEnoughMovableHosts"}, 1)])
        _family(lines, "gpupool_ready", [(gp, 1)])
        _family(lines, "gpupool_stalled", [(gp, 0)])
        _family(lines, "gpupool_paused", [(gp, 0)])
        _family(lines, "gpupool_circuit_breaker_open", [(gp, 0)])
    routes = [
        ("GET", "/os-aggregates", "200", 40, 0.02),
        ("GET", "/os-hypervisors/detail", "200", 40, 0.05),
        ("POST", "/os-aggregates/{id}/action", "200", 14, 0.04),
        ("POST", "/os-aggregates/{id}/action", "409", 1, 0.03),
        ("GET", "/resource_providers/{uuid}/allocations", "200", 7, 0.01),
        ("GET", "/resource_providers/{uuid}/allocations", "503", 1, 0.01),
        ("PUT", "/os-services/{id}", "error", 1, 30.0),
    ]
    if acting:
        _family(
            lines,
            "gpupool_nova_requests_total",
            [({"method": m, "route": r, "code": c}, n) for m, r, c, n, _ in routes],
        )
        by_route: dict[tuple[str, str], list[float]] = {}
        for m, r, _, n, seconds in routes:
            by_route.setdefault((m, r), []).extend([seconds] * n)
        _histogram(
            lines,
            "gpupool_nova_request_duration_seconds",
            [({"method": m, "route": r}, obs) for (m, r), obs in by_route.items()],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
    else:  # declared, no child yet: HELP and TYPE only, as prometheus_client does
        for name in ("gpupool_nova_requests_total", "gpupool_nova_request_duration_seconds"):
            lines += [f"# HELP {name} {METRICS[name].help}", f"# TYPE {name} {METRICS[name].type}"]
    _family(lines, "gpupool_acting", [({}, 1 if acting else 0)])
    _histogram(
        lines,
        "gpupool_round_duration_seconds",
        [({}, ([3.2] + [0.05] * (rounds - 1) if rounds else []) if acting else [])],
        buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
    )
    _family(lines, "gpupool_build_info", [({"version": version}, 1)])
    lines += [
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        "process_resident_memory_bytes 1.2e+08",
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        "process_cpu_seconds_total 12.5",
    ]
    return "\n".join(lines) + "\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    text: Callable[[], str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = type(self).text().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(text: str | Callable[[], str]) -> Iterator[str]:
    """Serve `text` (or what text() returns at each scrape) at http://127.0.0.1:<port>/metrics;
    yields "127.0.0.1:<port>"."""
    produce = text if callable(text) else (lambda: text)
    handler = type("Handler", (_Handler,), {"text": staticmethod(produce)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
