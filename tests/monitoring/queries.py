"""Every PromQL expression gpupool ships: the alert rules' and the dashboard's, with Grafana's
variables replaced so that Prometheus itself can parse and evaluate them."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml

from tests.monitoring.contract import DEFAULT_METRICS, METRICS, TARGET_LABELS, metric_of

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
RULES_FILE = MONITORING / "gpupool-alerts.rules.yaml"
DASHBOARD_FILE = MONITORING / "gpupool-dashboard.json"

# Grafana's variables, as Grafana would fill them in (the dashboard's own and the built-in ones).
GRAFANA_VARIABLES = {
    "gpuhostpool": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclasses.dataclass(frozen=True)
class Expression:
    where: str  # e.g. "alert GpuHostPoolStalled", "panel 'Move duration' B"
    expr: str  # ready to send to Prometheus
    kind: str  # alert, record, panel, variable
    title: str = ""  # the alert's name or the panel's title

    def __str__(self) -> str:
        return self.where


def substitute(expr: str) -> str:
    """The expression as Grafana sends it; KeyError for a variable the dashboard does not define."""

    def value(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def rule_expressions() -> list[Expression]:
    out = []
    for rule in rules():
        kind = "alert" if "alert" in rule else "record"
        out.append(Expression(f"{kind} {rule[kind]}", rule["expr"], kind, rule[kind]))
    return out


def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def panels(board: dict | None = None) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for panel in (board or dashboard())["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions() -> list[Expression]:
    board = dashboard()
    out = []
    for panel in panels(board):
        for t in panel.get("targets", []):
            out.append(
                Expression(
                    f"panel {panel['title']!r} {t['refId']}", substitute(t["expr"]), "panel", panel["title"]
                )
            )
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, f"variable {var['name']}: only label_values(SELECTOR, LABEL) is checked, not {query!r}"
        out.append(Expression(f"variable {var['name']}", substitute(m.group(1)), "variable", var["name"]))
    return out


def all_expressions() -> list[Expression]:
    return rule_expressions() + dashboard_expressions()


# ------------------------------------------------------------------ names used against the contract

_NAME = re.compile(r"\b((?:gpupool|process|python)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(gpupool_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def unknown_names(expr: str) -> list[str]:
    """Metric names in expr that the contract (or prometheus_client's defaults) does not have."""
    return [n for n in _NAME.findall(expr) if not metric_of(n) and n not in DEFAULT_METRICS]


def unknown_labels(expr: str) -> list[str]:
    """Labels matched in a selector that its metric does not carry, and grouping labels no
    metric of the contract carries."""
    problems = []
    for name, matchers in _SELECTOR.findall(expr):
        metric = metric_of(name)
        if metric is None:
            continue
        for label in _MATCHER.findall(matchers):
            if label not in metric.labels_of(name) | TARGET_LABELS:
                problems.append(f"{name}{{{label}}}")
    known = {label for m in METRICS.values() for label in m.labels} | {"le"} | TARGET_LABELS
    for group in _GROUPING.findall(expr):
        problems += [f"by/on ({label})" for label in re.findall(r"\w+", group) if label not in known]
    return problems
