"""`-f` given more than once, and a folder with a .json and an upper-case .YAML spec, against novasim:
every spec is planned and reconciled (the CLI used to keep only the last -f and skip the other
files of a folder without a word). Both specs are L40 on one fleet: the second is set aside as a
Conflict, which shows it was read as well."""

from __future__ import annotations

import json

from tests.sim.reconcile_helpers import membership, pool_spec, run_gpupool, small_fleet, write_spec


def test_every_f_is_planned(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    a = write_spec(tmp_path / "a.yaml", pool_spec("a", spot=1))
    b = write_spec(tmp_path / "b.yaml", pool_spec("b", runpod=1))
    result = run_gpupool(sim, "plan", "-f", str(a), "-f", str(b), "-o", "json")
    assert result.returncode == 2, result.stderr
    planned = json.loads(result.stdout)
    assert [d["name"] for d in planned] == ["a", "b"]
    assert planned[1]["status"]["blockers"][0]["reason"] == "Conflict"


def test_a_folder_with_json_and_upper_case_yaml_is_reconciled(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    folder = tmp_path / "pools"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(pool_spec("a", spot=1), indent="\t"))
    write_spec(folder / "b.YAML", pool_spec("b", runpod=1))
    (folder / "notes.txt").write_text("not a spec\n")
    result = run_gpupool(sim, "reconcile", "-f", str(folder), "-o", "json")
    assert result.returncode == 2, result.stderr
    assert [d["name"] for d in json.loads(result.stdout)] == ["a", "b"]
    assert "b: Conflict: aggregate 'L40-n3'" in result.stderr
    assert (
        f"gpupool reconcile: note: {folder / 'notes.txt'}: skipped: not .yaml, .yml or .json" in result.stderr
    )
    groups = membership(sim.state())
    assert len(groups["L40-n3-spot"]) == 1 and not groups["L40-n3-runpod"]  # a moved; b, set aside, did not
