"""Fleet files: ranges, defaults, and errors that name the file, line and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from novasim.fleet import FleetError, load_fleet, parse_fleet

ROOT = Path(__file__).resolve().parents[2]


def test_example_fleet_looks_like_a_gpu_cloud():
    fleet = load_fleet(ROOT / "examples" / "fleet.yaml")
    names = {a.name for a in fleet.aggregates}
    assert len(fleet.hosts) == 200
    for gpu in ("L40", "RTX-A6000", "A100", "H100"):
        assert {f"{gpu}-n3", f"{gpu}-n3-spot", f"{gpu}-n3-runpod"} <= names
    assert {"L40-n3-NVLink", "Contract-FLA-4145-0522-Flawless-16xRTX-A6000"} <= names
    assert sum(1 for a in fleet.aggregates if a.name.startswith("Contract-")) >= 3
    assert any(h.instances for h in fleet.hosts.values())
    assert any(h.state == "down" for h in fleet.hosts.values())
    assert any(h.status == "disabled" and h.disabled_reason for h in fleet.hosts.values())


def test_ranges_defaults_and_later_entries_refine_earlier_ones():
    fleet = parse_fleet(
        """
aggregates:
  - name: L40-n3
    hosts: ["gpu-l40-[008-011]"]
hosts:
  - {name: "gpu-l40-[008-010]", instances: 2}
  - {name: gpu-l40-009, state: down}
"""
    )
    assert list(fleet.hosts) == ["gpu-l40-008", "gpu-l40-009", "gpu-l40-010", "gpu-l40-011"]
    h9 = fleet.hosts["gpu-l40-009"]
    assert (h9.state, h9.status, len(h9.instances)) == ("down", "enabled", 2)
    assert fleet.hosts["gpu-l40-011"].instances == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "aggregates:\n  - name: A\n    hosts: ['gpu-[9-1]']\n",
            "fleet.yaml:3: aggregates[0].hosts[0]: 'gpu-[9-1]'",
        ),
        (
            "aggregates:\n  - name: A\n  - name: A\n",
            "fleet.yaml:3: aggregates[1].name: aggregate 'A' is listed twice",
        ),
        (
            "hosts:\n  - name: h1\n    state: sideways\n",
            "fleet.yaml:3: hosts[0].state: 'sideways' is not a service state",
        ),
        ("hosts:\n  - name: h1\n    instances: -1\n", "fleet.yaml:3: hosts[0].instances: cannot be negative"),
        ("hosts:\n  - name: h1\n    colour: red\n", "fleet.yaml:3: hosts[0].colour: unknown key"),
        ("aggregates: [\n", "fleet.yaml:2: not valid YAML"),
        ("hosts:\n  - {name: h1, disabled_reason: RMA}\n", "only a disabled service has a reason"),
    ],
)
def test_bad_fleet_files_say_where_and_what(tmp_path, text, expected):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(FleetError) as caught:
        load_fleet(path)
    assert expected in str(caught.value).replace(str(tmp_path) + "/", "")


def test_cli_reports_a_bad_fleet_in_one_line(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("aggregates:\n  - hosts: [a]\n")
    result = subprocess.run(
        [sys.executable, "-m", "novasim", "--fleet", str(path), "--clouds-out", ""],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"novasim: error: {path}:2: aggregates[0].name: every aggregate needs a name"
    )


def test_the_fleet_file_example_in_the_docs_loads_as_described():
    docs = (ROOT / "docs" / "novasim.md").read_text()
    example = re.search(r"```yaml\n(cloud:.*?)```", docs, re.S)[1]
    hosts = parse_fleet(example, "docs/novasim.md").hosts
    assert hosts["gpu-l40-040"].disabled_reason == "RMA 4711"
    (infer,) = hosts["gpu-l40-024"].instances
    assert infer.extra_specs == {"pci_passthrough:alias": "l40:2"}
