"""The CLI's human output: the status table, and live progress on a terminal and in a log."""

from __future__ import annotations

import io

from gpupool.model import InFlight, Move, MoveResult, Outcome, PassReport, Step
from gpupool.planner import plan
from gpupool.report import Progress, table

from .fleet import cloud, spec


def test_the_table_shows_pools_on_demand_moves_blockers_and_conditions():
    doc = {
        "name": "l40",
        "status": {
            "pools": {
                "spot": {
                    "aggregate": "L40-n3-spot",
                    "current": 1,
                    "desired": 2,
                    "gpus": {"used": 6, "total": 8},
                    "hosts": ["gpu-1"],
                },
                "contracts": [
                    {
                        "aggregate": "Contract-C1",
                        "current": 8,
                        "desired": 8,
                        "hosts": [f"gpu-{i}" for i in range(10, 18)],
                    }
                ],
                "onDemand": {"aggregates": ["L40-n3"], "hosts": 19, "movable": 0, "gpus": {"used": 100}},
            },
            "lastMoves": [{"result": "Moved", "host": "gpu-1", "from": "L40-n3", "to": "L40-n3-spot"}],
            "blockers": [{"pool": "spot", "reason": "NotEnoughMovableHosts", "message": "19 have instances"}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "NotEnoughMovableHosts",
                    "message": "spot short",
                }
            ],
        },
    }
    text = table(doc)
    lines = text.splitlines()
    assert lines[0] == "GpuHostPool l40"
    assert lines[1].split() == ["POOL", "AGGREGATE", "CURRENT", "DESIRED", "GPUS", "HOSTS"]
    assert lines[2].split() == ["spot", "L40-n3-spot", "1", "2", "6/8", "gpu-1"]
    assert lines[3].split()[:5] == ["contract", "Contract-C1", "8", "8", "-"]
    assert lines[3].endswith(",+2")  # long host lists are cut
    assert "on-demand L40-n3: 19 hosts, 0 movable, GPUs 100" in text
    assert "moved gpu-1: L40-n3 -> L40-n3-spot" in text
    assert "blocked (NotEnoughMovableHosts): 19 have instances" in text
    assert "Ready=False NotEnoughMovableHosts: spot short" in text


def test_a_plan_says_what_would_move_or_that_nothing_needs_to():
    planned = {
        "name": "l40",
        "status": {"plannedMoves": [{"host": "gpu-2", "from": "L40-n3", "to": "L40-n3-spot"}]},
    }
    assert "would move gpu-2: L40-n3 -> L40-n3-spot" in table(planned)
    assert "1 move(s) needed" in table(planned)
    assert "nothing to move" in table({"name": "l40", "status": {}})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _report() -> PassReport:
    return PassReport(
        plan=plan(spec(pools={"spot": {"hosts": 1}}), cloud({"L40-n3": ["gpu-1"], "L40-n3-spot": []}))
    )


def test_progress_in_a_log_is_one_line_per_step_and_per_result():
    out = io.StringIO()
    progress = Progress("l40", out)
    report = _report()
    move = Move("gpu-1", "L40-n3", "L40-n3-spot", "spot")
    report.in_flight = [InFlight(move, Step.DISABLE, 0.0)]
    progress.update(report)
    progress.update(report)  # the same step again: no new line
    report.in_flight = []
    report.results.append(MoveResult(move, Outcome.MOVED, "gpu-1 moved from L40-n3 to L40-n3-spot"))
    progress.update(report)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("l40: gpu-1 L40-n3 -> L40-n3-spot: Disable")
    assert lines[1].endswith("l40: moved: gpu-1 moved from L40-n3 to L40-n3-spot")
    progress.done(
        {"conditions": [{"type": "Ready", "status": "True", "reason": "Converged", "message": "ok"}]}
    )
    assert out.getvalue().splitlines()[-1] == "l40: Ready=True (Converged) ok"


def test_progress_on_a_terminal_rewrites_one_line():
    out = Terminal()
    progress = Progress("l40", out)
    report = _report()
    move = Move("gpu-1", "L40-n3", "L40-n3-spot", "spot")
    report.in_flight = [InFlight(move, Step.ADD, 0.0)]
    progress.update(report)
    assert out.getvalue() == "\r\x1b[Kl40: 0 moved, 1 in flight gpu-1:AddToTarget"
