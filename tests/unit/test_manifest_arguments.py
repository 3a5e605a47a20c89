"""The arguments the shipped manifests and Dockerfile give `gpupool` are ones it accepts: a flag
check that refused them would crash-loop every replica after an upgrade."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gpupool.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_the_deployments_arguments_parse():
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "deployment.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    assert args.metrics and args.liveness


def test_the_dockerfiles_default_command_parses():
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)[1])
    assert build_parser().parse_args(cmd).command == "run"
