"""`make monitoring-manifests` (`python3 -m scripts.monitoring_manifests` from the repo root): writes
the two generated files of manifests/monitoring/ from their sources; `--check` only compares and
fails when a file is out of date (tests/monitoring does the same).

  prometheusrule.yaml      the PrometheusRule (prometheus-operator) holding exactly the rules of
                           gpupool-alerts.rules.yaml, the plain Prometheus rules file (the source:
                           edit that one)
  gpupool-dashboard.json   the Grafana dashboard, built by dashboard() below (edit this file: the
                           JSON is its output). The ConfigMap Grafana's sidecar reads is generated
                           from the JSON by kustomize (configMapGenerator in kustomization.yaml).

Standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "gpupool-alerts.rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "gpupool-dashboard.json"

GENERATED = "# Generated from {source} by `make monitoring-manifests`: edit that file, not this one.\n"

# ------------------------------------------------------------------------------ PrometheusRule


def prometheus_rule(rules_text: str) -> str:
    """The PrometheusRule whose spec is the rules file's content, text for text (its header
    comment left out, every other line indented under `spec:`)."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines[start:])
    return (
        GENERATED.format(source=RULES.name)
        + "apiVersion: monitoring.coreos.com/v1\n"
        + "kind: PrometheusRule\n"
        + "metadata:\n"
        + "  name: gpupool-operator\n"
        + "  namespace: gpupool-system\n"
        + "  labels:\n"
        + "    app.kubernetes.io/name: gpupool-operator\n"
        + "spec:\n"
        + body
    )


# ---------------------------------------------------------------------------------- dashboard

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POOL = 'gpuhostpool=~"$gpuhostpool"'


def acting(selector: str) -> str:
    """The series of the acting replica only: every replica serves /metrics, only the acting one
    keeps the per-resource gauges current (the same rule as the alerts)."""
    return f"{selector} and on(instance) (gpupool_acting == 1)"


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    *,
    description: str,
    unit: str = "short",
    bars: bool = False,
    stack: bool = False,
    threshold: float | None = None,
    overrides: list[dict] | None = None,
    decimals: int | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
        steps.append({"color": "red", "value": threshold})
    defaults: dict[str, Any] = {
        "unit": unit,
        "min": 0,
        "custom": custom,
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def state_stat(title: str, expr: str, *, description: str, one: tuple[str, str], zero: tuple[str, str]):
    """A stat per GpuHostPool showing a 1/0 gauge as words and colours."""
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "1": {"text": one[0], "color": one[1], "index": 0},
                            "0": {"text": zero[0], "color": zero[1], "index": 1},
                        },
                    }
                ],
                "color": {"mode": "thresholds"},
                "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "orientation": "auto",
            "justifyMode": "auto",
        },
        "targets": [target(expr, "{{gpuhostpool}}", "A")],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric: str, by: str, legend: str, selector: str = "") -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket{selector}[$__rate_interval])))",
            f"p{round(q * 100)}{legend}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def layout(items: list[tuple[dict[str, Any], int, int]]) -> list[dict[str, Any]]:
    """Place (panel, width, height) left to right, wrapping at 24 columns; rows take a full line."""
    panels, x, y, line_height = [], 0, 0, 0
    for pid, (panel, w, h) in enumerate(items, start=1):
        if panel["type"] == "row" or x + w > 24:
            x, y, line_height = 0, y + line_height, 0
        panels.append({"id": pid, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel})
        x, line_height = x + w, max(line_height, h)
        if panel["type"] == "row":
            x, y, line_height = 0, y + h, 0
    return panels


def dashboard() -> dict[str, Any]:
    ready = f"max by (gpuhostpool) ({acting(f'gpupool_ready{{{POOL}}}')})"
    stalled = f"max by (gpuhostpool) ({acting(f'gpupool_stalled{{{POOL}}}')})"
    paused = f"max by (gpuhostpool) ({acting(f'gpupool_paused{{{POOL}}}')})"
    breaker = f"max by (gpuhostpool) ({acting(f'gpupool_circuit_breaker_open{{{POOL}}}')})"

    def pools(metric: str, extra: str = "", by: str = "gpuhostpool, pool") -> str:
        return f"max by ({by}) ({acting(f'{metric}{{{POOL}{extra}}}')})"

    gpus_used = pools("gpupool_pool_gpus", ', state="used"', "gpuhostpool, pool")
    gpus_total = pools("gpupool_pool_gpus", ', state="total"', "gpuhostpool, pool")
    nova = "gpupool_nova_requests_total"
    desired_dashed = {
        "matcher": {"id": "byRegexp", "options": ".* desired$"},
        "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
    }
    items: list[tuple[dict[str, Any], int, int]] = [
        (row("GpuHostPools"), 24, 1),
        (
            state_stat(
                "Ready",
                ready,
                description="The Ready condition: Nova matches the spec (nothing to move, nothing "
                "half-done, no blocker). `kubectl describe ghp NAME` says why not.",
                one=("Ready", "green"),
                zero=("Not ready", "orange"),
            ),
            6,
            4,
        ),
        (
            state_stat(
                "Stalled",
                stalled,
                description="The Stalled condition: nothing more happens without a person "
                "(invalid spec, conflict, a blocker, a held or interrupted host, the circuit breaker).",
                one=("Stalled", "red"),
                zero=("No", "green"),
            ),
            6,
            4,
        ),
        (
            state_stat(
                "Paused",
                paused,
                description="The Paused condition: spec.paused, spec.dryRun or a kill switch keeps new "
                "moves from starting (on purpose: no alert fires for a paused resource).",
                one=("Paused", "blue"),
                zero=("No", "green"),
            ),
            6,
            4,
        ),
        (
            state_stat(
                "Circuit breaker",
                breaker,
                description="Open: Nova refused several moves in a row and the last pass stopped; "
                "the next round tries again.",
                one=("Open", "red"),
                zero=("Closed", "green"),
            ),
            6,
            4,
        ),
        (
            timeseries(
                "Hosts per pool: current and desired",
                [
                    (
                        pools("gpupool_pool_current_hosts", ', pool!="onDemand"'),
                        "{{gpuhostpool}} {{pool}} current",
                    ),
                    (pools("gpupool_pool_desired_hosts"), "{{gpuhostpool}} {{pool}} desired"),
                ],
                description="Hosts each pool (spot, runpod, contract:<aggregate>) holds in Nova, and "
                "(dashed) how many its GpuHostPool asks for. One GpuHostPool per GPU type.",
                overrides=[desired_dashed],
                decimals=0,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Hosts moving into or out of each pool",
                [(pools("gpupool_pool_moving_hosts"), "{{gpuhostpool}} {{pool}}")],
                description="Moves under way, per pool.",
                decimals=0,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "GPUs per pool: used and total",
                [
                    (gpus_used, "{{gpuhostpool}} {{pool}} used"),
                    (gpus_total, "{{gpuhostpool}} {{pool}} total"),
                ],
                description="GPUs of the hosts in each pool (total) and those instances use (used).",
                overrides=[
                    {
                        "matcher": {"id": "byRegexp", "options": ".* total$"},
                        "properties": [
                            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                        ],
                    }
                ],
                decimals=0,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "GPU usage per pool",
                [(f"{gpus_used} / ({gpus_total} > 0)", "{{gpuhostpool}} {{pool}}")],
                description="Used GPUs over all GPUs of each pool's hosts.",
                unit="percentunit",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "On-demand hosts",
                [
                    (
                        pools("gpupool_pool_current_hosts", ', pool="onDemand"', "gpuhostpool"),
                        "{{gpuhostpool}}",
                    )
                ],
                description="Hosts in the on-demand aggregates: the reservoir pools grow from and "
                "shrink back to.",
                decimals=0,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Blockers",
                [
                    (
                        f"{pools('gpupool_blockers', '', 'gpuhostpool, reason')} > 0",
                        "{{gpuhostpool}} {{reason}}",
                    )
                ],
                description="Why some pool cannot reach its count, by reason (NotEnoughMovableHosts, "
                "AggregateMissing, HostShared, ...). `kubectl describe ghp NAME` has the messages.",
                bars=True,
                stack=True,
                decimals=0,
            ),
            12,
            8,
        ),
        (row("Moves"), 24, 1),
        (
            timeseries(
                "Moves per minute by result",
                [
                    (
                        f"sum by (result) (rate(gpupool_moves_total{{{POOL}}}[$__rate_interval])) * 60",
                        "{{result}}",
                    )
                ],
                description="Finished moves: Moved, RolledBack, Skipped (the host changed since the "
                "plan), Aborted (something claimed the host), Failed, Interrupted (someone changed its "
                "reason), Held (an instance landed on it in its target).",
                bars=True,
                stack=True,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Move duration",
                quantiles("gpupool_move_duration_seconds", "", "", f"{{{POOL}}}"),
                description="From the host's disable to its enable in its target (or back), all results.",
                unit="s",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Moves in flight",
                [(pools("gpupool_moves_in_flight", "", "gpuhostpool"), "{{gpuhostpool}}")],
                description="Moves begun and not finished (their hosts are disabled meanwhile).",
                decimals=0,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Oldest move in flight",
                [(pools("gpupool_oldest_move_in_flight_seconds", "", "gpuhostpool"), "{{gpuhostpool}}")],
                description="Age of the oldest unfinished move (0 when none). Above 15 minutes: the "
                "alert GpuHostPoolMoveTooLong (red line).",
                unit="s",
                threshold=900,
            ),
            12,
            8,
        ),
        (row("Nova (all GpuHostPools)"), 24, 1),
        (
            timeseries(
                "Nova requests by route",
                [(f"sum by (method, route) (rate({nova}[$__rate_interval]))", "{{method}} {{route}}")],
                description="Requests of the operator to Nova and Placement per second.",
                unit="reqps",
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Nova errors by route and code",
                [
                    (
                        f'sum by (route, code) (rate({nova}{{code!~"2..|3.."}}[$__rate_interval]))',
                        "{{code}} {{route}}",
                    )
                ],
                description="Answers other than 2xx/3xx, and `error` (no answer: timeout, refused "
                "connection). Some 404/409 are normal (a host already where it should be).",
                unit="reqps",
                bars=True,
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Nova failure ratio (5xx, no answer)",
                [
                    (
                        f'sum(rate({nova}{{code=~"5..|error"}}[$__rate_interval])) '
                        f"/ sum(rate({nova}[$__rate_interval]))",
                        "failing",
                    )
                ],
                description="Above 10% for 10 minutes: the alert GpupoolNovaErrors (red line).",
                unit="percentunit",
                threshold=0.1,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Nova latency by route",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, method, route) "
                        "(rate(gpupool_nova_request_duration_seconds_bucket[$__rate_interval])))",
                        "p50 {{method}} {{route}}",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le, method, route) "
                        "(rate(gpupool_nova_request_duration_seconds_bucket[$__rate_interval])))",
                        "p99 {{method}} {{route}}",
                    ),
                ],
                description="Time to an answer (or to giving up), per route.",
                unit="s",
            ),
            24,
            8,
        ),
        (row("Operator"), 24, 1),
        (
            timeseries(
                "Acting replica",
                [("max by (instance, pod) (gpupool_acting)", "{{pod}} {{instance}}")],
                description="1 on the replica that moves hosts, 0 on a standby. Exactly one should be "
                "1 (alerts GpupoolNoActingReplica, GpupoolSeveralReplicasActing).",
                decimals=0,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Controller rounds per minute",
                [("sum(rate(gpupool_round_duration_seconds_count[$__rate_interval])) * 60", "rounds")],
                description="A round: list the GpuHostPools, one snapshot per cloud, one pass per "
                "resource. At least one every --interval.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Round duration",
                quantiles("gpupool_round_duration_seconds", "", ""),
                description="How long a controller round takes, moves included.",
                unit="s",
            ),
            8,
            8,
        ),
        (
            {
                "type": "stat",
                "title": "Version",
                "description": "gpupool_build_info: the versions the replicas run.",
                "datasource": DATASOURCE,
                "fieldConfig": {
                    "defaults": {"color": {"mode": "fixed", "fixedColor": "text"}},
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "none",
                    "graphMode": "none",
                    "textMode": "name",
                    "orientation": "auto",
                    "justifyMode": "auto",
                },
                "targets": [target("count by (version) (gpupool_build_info)", "{{version}}", "A")],
            },
            8,
            4,
        ),
        (
            timeseries(
                "Memory (resident)",
                [
                    (
                        "process_resident_memory_bytes and on(instance) gpupool_build_info",
                        "{{pod}} {{instance}}",
                    )
                ],
                description="Resident memory of each replica (the Deployment's limit is 512 MiB).",
                unit="bytes",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "CPU",
                [
                    (
                        "rate(process_cpu_seconds_total[$__rate_interval]) and on(instance) gpupool_build_info",
                        "{{pod}} {{instance}}",
                    )
                ],
                description="CPU seconds per second of each replica.",
                unit="short",
            ),
            8,
            8,
        ),
    ]
    variables = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        {
            "name": "gpuhostpool",
            "label": "GpuHostPool",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": "label_values(gpupool_pool_current_hosts, gpuhostpool)",
            "query": {
                "query": "label_values(gpupool_pool_current_hosts, gpuhostpool)",
                "refId": "gpuhostpool",
            },
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "options": [],
            "refresh": 2,
            "regex": "",
            "sort": 1,
        },
    ]
    return {
        "uid": "gpupool-operator",
        "title": "gpupool operator",
        "description": "GpuHostPools (pools, moves, blockers), Nova requests and the operator's "
        "replicas. Metrics: docs/operator.md (Monitoring).",
        "tags": ["gpupool", "openstack"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables},
        "panels": layout(items),
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


# ---------------------------------------------------------------------------------- main


def generated() -> dict[Path, str]:
    """Each generated file and the text it should have."""
    return {
        PROMETHEUS_RULE: prometheus_rule(RULES.read_text()),
        DASHBOARD: dashboard_text(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m scripts.monitoring_manifests", description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    stale = 0
    for path, text in generated().items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(path), f"{path} (generated)", n=1
            )
            sys.stdout.writelines(list(diff)[:60])
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"\n{stale} file(s) out of date: run `make monitoring-manifests`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
