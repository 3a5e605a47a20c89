"""GPU usage per pool, from what Nova says about the instances (their flavors' extra specs), in
`gpupool plan` as a user runs it against novasim."""

from __future__ import annotations

import json

from tests.sim.reconcile_helpers import pool_spec, run_gpupool, write_spec

L40X8 = {"pci_passthrough:alias": "l40:8"}
L40X2 = {"pci_passthrough:alias": "l40:2"}


def test_plan_shows_gpus_used_out_of_the_total_per_pool(start_sim, tmp_path):
    fleet = {
        "aggregates": [
            {"name": "L40-n3", "hosts": ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"]},
            {"name": "L40-n3-spot", "hosts": ["gpu-l40-004", "gpu-l40-005"]},
            {"name": "L40-n3-runpod", "hosts": []},
            {"name": "Contract-L40-Customer1", "hosts": []},
        ],
        "hosts": [
            {"name": "gpu-l40-001", "instances": [{"name": "big", "extra_specs": L40X8}]},
            {
                "name": "gpu-l40-004",
                "instances": [{"name": "a", "extra_specs": L40X2}, {"name": "b", "extra_specs": L40X2}],
            },
            {"name": "gpu-l40-005", "instances": [{"name": "cpu-only"}]},
        ],
    }
    sim = start_sim(fleet)
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=2, gpusPerHost=8))

    result = run_gpupool(sim, "plan", "-f", str(spec), "-o", "json")
    assert result.returncode == 0, result.stdout
    pools = json.loads(result.stdout)[0]["status"]["pools"]
    assert pools["spot"]["gpus"] == {"used": 4, "total": 16}
    assert pools["onDemand"]["gpus"] == {"used": 8, "total": 24}

    table = run_gpupool(sim, "plan", "-f", str(spec)).stdout
    assert any(
        line.split()[:5] == ["spot", "L40-n3-spot", "2", "2", "4/16"] for line in table.splitlines()
    ), table
    assert "GPUs 8/24" in table

    # A new GPU instance shows up in the next read.
    sim.start_instance("gpu-l40-005", name="late", extra_specs={"pci_passthrough:alias": "l40:1"})
    again = json.loads(run_gpupool(sim, "plan", "-f", str(spec), "-o", "json").stdout)[0]["status"]["pools"]
    assert again["spot"]["gpus"] == {"used": 5, "total": 16}
