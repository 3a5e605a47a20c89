"""Aggregate naming conventions seen in real clouds.

`{GPU}-n3`, `{GPU}-n3-NVLink` (on-demand), `{GPU}-n3-spot`, `{GPU}-n3-runpod`, `Contract-{name}`.
They only supply defaults and labels in reports: the planner moves hosts between aggregates named
in the spec, never between names built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["onDemand", "spot", "runpod", "contract"]

CONTRACT_PREFIX = "Contract-"

_GPU_POOL = re.compile(r"^(?P<gpu>.+?)-n3(?P<suffix>-NVLink|-spot|-runpod)?$", re.IGNORECASE)


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


@dataclass(frozen=True)
class AggregateKind:
    """What an aggregate's name says about it. `gpu_type` is None when the name does not tell."""

    role: Role
    gpu_type: str | None = None
    nvlink: bool = False
    contract: str | None = None  # the contract's name, for role "contract"


def classify(name: str) -> AggregateKind | None:
    """The role a conventional aggregate name implies, or None for names outside the conventions."""
    if name.startswith(CONTRACT_PREFIX) and len(name) > len(CONTRACT_PREFIX):
        contract = name[len(CONTRACT_PREFIX) :]
        return AggregateKind(role="contract", gpu_type=_gpu_in_contract(contract), contract=contract)
    match = _GPU_POOL.match(name)
    if not match:
        return None
    suffix = (match["suffix"] or "").lower()
    gpu = match["gpu"]
    if suffix == "-spot":
        return AggregateKind(role="spot", gpu_type=gpu)
    if suffix == "-runpod":
        return AggregateKind(role="runpod", gpu_type=gpu)
    return AggregateKind(role="onDemand", gpu_type=gpu, nvlink=suffix == "-nvlink")


def _gpu_in_contract(contract: str) -> str | None:
    # Contract names end with the hardware when they say it: "FLA-4145-0522-Flawless-16xRTX-A6000".
    match = re.search(r"\d+x(?P<gpu>[A-Za-z0-9][A-Za-z0-9-]*)$", contract)
    return match["gpu"] if match else None
