"""Aggregate naming conventions seen in real clouds.

`{GPU}-n3`, `{GPU}-n3-NVLink` (on-demand), `{GPU}-n3-spot`, `{GPU}-n3-runpod`, `Contract-{name}`.
They only supply a spec's default aggregate names: the planner moves hosts between aggregates
named in the spec, never between names built here.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["onDemand", "spot", "runpod", "contract"]

CONTRACT_PREFIX = "Contract-"


def on_demand_aggregate(gpu_type: str) -> str:
    return f"{gpu_type}-n3"


def nvlink_aggregate(gpu_type: str) -> str:
    return f"{gpu_type}-n3-NVLink"


def spot_aggregate(gpu_type: str) -> str:
    return f"{gpu_type}-n3-spot"


def runpod_aggregate(gpu_type: str) -> str:
    return f"{gpu_type}-n3-runpod"


def contract_aggregate(name: str) -> str:
    return f"{CONTRACT_PREFIX}{name}"
