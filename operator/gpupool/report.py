"""Human output of the CLI: the status as a table, and live progress while moves run."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from .model import Outcome, PassReport


def table(doc: dict) -> str:
    """One GpuHostPool's status as a small text report."""
    status = doc["status"]
    pools = status.get("pools", {})
    rows = [("POOL", "AGGREGATE", "CURRENT", "DESIRED", "GPUS", "HOSTS")]
    for label in ("spot", "runpod"):
        entry = pools.get(label)
        if entry:
            rows.append(
                (
                    label,
                    entry["aggregate"],
                    str(entry["current"]),
                    str(entry["desired"]),
                    _gpus(entry),
                    _hosts(entry),
                )
            )
    for entry in pools.get("contracts", []):
        rows.append(
            (
                "contract",
                entry["aggregate"],
                str(entry["current"]),
                str(entry["desired"]),
                _gpus(entry),
                _hosts(entry),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"GpuHostPool {doc['name']}"]
    lines += ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    on_demand = pools.get("onDemand")
    if on_demand:
        gpus = f", GPUs {_gpus(on_demand)}" if on_demand.get("gpus") else ""
        lines.append(
            f"  on-demand {', '.join(on_demand.get('aggregates', []))}: "
            f"{on_demand.get('hosts', 0)} hosts, {on_demand.get('movable', 0)} movable{gpus}"
        )
    for move in status.get("plannedMoves", []):
        lines.append(f"  would move {move['host']}: {move['from']} -> {move['to']}")
    for move in status.get("lastMoves", []):
        lines.append(f"  {move['result'].lower()} {move['host']}: {move['from']} -> {move['to']}")
    for blocker in status.get("blockers", []):
        lines.append(f"  blocked ({blocker['reason']}): {blocker['message']}")
    if "conditions" not in status:  # a plan
        count = len(status.get("plannedMoves", []))
        lines.append(f"  {count} move(s) needed" if count else "  nothing to move")
    for condition in status.get("conditions", []):
        lines.append(
            f"  {condition['type']}={condition['status']} {condition['reason']}: {condition['message']}"
        )
    return "\n".join(lines) + "\n"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _gpus(entry: dict) -> str:
    """GPUs in use out of the pool's total ("12/16"), or in use only ("12") without a total."""
    gpus = entry.get("gpus")
    if not gpus:
        return "-"
    total = gpus.get("total")
    return f"{gpus.get('used', 0)}/{total}" if total is not None else str(gpus.get("used", 0))


def _hosts(entry: dict) -> str:
    hosts = entry.get("hosts", [])
    return ",".join(hosts[:6]) + (f",+{len(hosts) - 6}" if len(hosts) > 6 else "")


class Progress:
    """Live progress on a terminal (one rewritten line); plain log lines otherwise."""

    def __init__(self, name: str, stream: TextIO):
        self._name = name
        self._stream = stream
        self._tty = stream.isatty()
        self._lock = threading.Lock()
        self._seen_results = 0
        self._seen_steps: set[tuple[str, str]] = set()

    def update(self, report: PassReport) -> None:
        with self._lock:
            new_results = report.results[self._seen_results :]
            self._seen_results = len(report.results)
            if self._tty:
                moved = sum(1 for r in report.results if r.outcome is Outcome.MOVED)
                flying = ", ".join(f"{f.move.host}:{f.step}" for f in report.in_flight[:4])
                line = f"{self._name}: {moved} moved, {len(report.in_flight)} in flight {flying}"
                self._stream.write("\r\033[K" + line[:160])
                for result in new_results:
                    self._stream.write(f"\r\033[K{self._name}: {result.outcome.lower()} {result.message}\n")
            else:  # a log: one timestamped line per step and per result
                for flight in report.in_flight:
                    key = (flight.move.host, str(flight.step))
                    if key not in self._seen_steps:
                        self._seen_steps.add(key)
                        self._stream.write(
                            f"{_now()} {self._name}: {flight.move.host} {flight.move.source} -> "
                            f"{flight.move.target}: {flight.step}\n"
                        )
                for result in new_results:
                    self._stream.write(
                        f"{_now()} {self._name}: {str(result.outcome).lower()}: {result.message}\n"
                    )
            self._stream.flush()

    def done(self, status: dict | None) -> None:
        if self._tty:
            self._stream.write("\r\033[K")
        ready = next((c for c in (status or {}).get("conditions", []) if c["type"] == "Ready"), None)
        if ready:
            self._stream.write(
                f"{self._name}: Ready={ready['status']} ({ready['reason']}) {ready['message']}\n"
            )
        self._stream.flush()
