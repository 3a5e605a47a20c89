"""The CLI as an SRE tries it before adopting it: exit codes, one target, one JSON shape, the
question before a big change, versions that agree, and the newcomer's usual mistakes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
import tomllib
from pathlib import Path

import yaml

from tests.sim.reconcile_helpers import GPUPOOL, membership, pool_spec, run_gpupool, small_fleet, write_spec

REPO = Path(__file__).resolve().parents[2]


def test_usage_errors_have_their_own_exit_code(start_sim, tmp_path):
    for args in (["plan"], ["reconcile", "-f"], ["nonsense"], ["plan", "-f", "x", "--bogus"]):
        result = subprocess.run([GPUPOOL, *args], capture_output=True, text=True)
        assert result.returncode == 64, (args, result.returncode, result.stderr)
        assert "usage error" in result.stderr and "Traceback" not in result.stderr


def test_version_and_verbose_anywhere(start_sim, tmp_path):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    shown = subprocess.run([GPUPOOL, "--version"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.strip() == f"gpupool {version}"
    sim = start_sim(small_fleet(on_demand=2))
    quiet = run_gpupool(sim, "reconcile", "-f", str(write_spec(tmp_path / "a.yaml", pool_spec(spot=1))))
    after = run_gpupool(sim, "reconcile", "-f", str(write_spec(tmp_path / "b.yaml", pool_spec(spot=2))), "-v")
    assert quiet.returncode == after.returncode == 0, after.stderr
    assert " INFO " not in quiet.stderr
    assert (
        " INFO gpupool.mover: gpu-l40-002 L40-n3 -> L40-n3-spot: Check" in after.stderr
    )  # -v after the subcommand


def test_versions_agree_across_package_image_and_changelog():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    deployment = yaml.safe_load((REPO / "manifests" / "deployment.yaml").read_text())
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{version}")
    kustomization = yaml.safe_load((REPO / "manifests" / "kustomization.yaml").read_text())
    assert kustomization["images"][0]["newTag"] == version
    first = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert first and first[1] == version
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_json_is_a_list_whatever_the_number_of_specs(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    one = run_gpupool(
        sim, "plan", "-f", str(write_spec(tmp_path / "one.yaml", pool_spec(spot=1))), "-o", "json"
    )
    two = run_gpupool(
        sim,
        "plan",
        "-f",
        str(write_spec(tmp_path / "two.yaml", pool_spec("a", spot=1), pool_spec("b", runpod=1))),
        "-o",
        "json",
    )
    assert [d["name"] for d in json.loads(one.stdout)] == ["l40"]
    assert [d["name"] for d in json.loads(two.stdout)] == ["a", "b"]
    as_yaml = run_gpupool(sim, "plan", "-f", str(tmp_path / "one.yaml"), "-o", "yaml")
    assert [d["name"] for d in yaml.safe_load(as_yaml.stdout)] == ["l40"]


def test_plan_exits_2_when_something_blocks_and_names_the_hosts(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=3, busy=("gpu-l40-001", "gpu-l40-002")))
    blocked = run_gpupool(sim, "plan", "-f", str(write_spec(tmp_path / "p.yaml", pool_spec(spot=3))))
    assert blocked.returncode == 2, blocked.stderr
    assert "2 have instances (gpu-l40-001, gpu-l40-002)" in blocked.stdout
    fine = run_gpupool(sim, "plan", "-f", str(write_spec(tmp_path / "q.yaml", pool_spec(spot=1))))
    assert fine.returncode == 0, fine.stdout


def test_os_cloud_in_the_environment_never_overrides_the_specs_cloud(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    spec = pool_spec(spot=2)
    spec["spec"]["cloud"] = "staging-do-not-touch"
    path = write_spec(tmp_path / "pools.yaml", spec)
    result = run_gpupool(sim, "reconcile", "-f", str(path))  # sim.env() sets OS_CLOUD=sim
    assert result.returncode == 1
    assert "OS_CLOUD=sim is not used" in result.stderr
    assert "cloud 'staging-do-not-touch' is not usable" in result.stderr
    assert f"{sim.clouds_yaml} has: sim" in result.stderr
    assert membership(sim.state())["L40-n3-spot"] == set()
    # --os-cloud on the command line does override it, and the run says so before acting.
    moved = run_gpupool(sim, "reconcile", "-f", str(path), "--os-cloud", "sim")
    assert moved.returncode == 0, moved.stderr
    assert f"cloud 'sim' (--os-cloud) from {sim.clouds_yaml}, Keystone {sim.auth_url}" in moved.stderr


def test_without_any_clouds_yaml_it_says_where_it_looked(tmp_path):
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [GPUPOOL, "plan", "-f", str(spec)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "no clouds.yaml was found" in result.stderr and "defaults" not in result.stderr


def test_progress_lines_carry_a_timestamp(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=3))
    result = run_gpupool(sim, "reconcile", "-f", str(write_spec(tmp_path / "p.yaml", pool_spec(spot=1))))
    assert result.returncode == 0, result.stderr
    moved = [line for line in result.stderr.splitlines() if "moved:" in line]
    assert moved and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", moved[0]), result.stderr


def _on_a_terminal(sim, args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal, answer its question, return (exit code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [GPUPOOL, *args], env={**os.environ, **sim.env()}, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    seen, answered, deadline = b"", False, time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"Go on? [y/N]" in seen:
            os.write(leader, answer.encode() + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(30)
    os.close(leader)
    return proc.returncode, seen.decode(errors="replace")


def test_a_big_change_is_confirmed_on_a_terminal_and_never_asked_in_a_script(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=10))
    path = str(write_spec(tmp_path / "p.yaml", pool_spec(spot=6, policy={"maxConcurrentMoves": 3})))
    code, output = _on_a_terminal(sim, ["reconcile", "-f", path], "n")
    assert "this would move 6 hosts on cloud 'sim' (6 into L40-n3-spot). Go on? [y/N]" in output
    assert code == 2 and membership(sim.state())["L40-n3-spot"] == set()
    code, output = _on_a_terminal(sim, ["reconcile", "-f", path], "y")
    assert code == 0, output
    assert len(membership(sim.state())["L40-n3-spot"]) == 6
    # Not on a terminal (a script, CI): never asked.
    scripted = run_gpupool(sim, "reconcile", "-f", str(write_spec(tmp_path / "q.yaml", pool_spec(spot=0))))
    assert scripted.returncode == 0 and "Go on?" not in scripted.stderr


def test_a_typo_in_a_count_moves_nothing(start_sim, tmp_path):
    """spot: 200 meant 20: the spec cannot be reached, and a change that big is over the limit."""
    sim = start_sim(small_fleet(on_demand=30))
    result = run_gpupool(
        sim, "reconcile", "-f", str(write_spec(tmp_path / "p.yaml", pool_spec(spot=200))), "-o", "json"
    )
    assert result.returncode == 2
    assert membership(sim.state())["L40-n3-spot"] == set()
    (blocker,) = json.loads(result.stdout)[0]["status"]["blockers"]
    assert "spot wants 200 hosts and can reach 30" in blocker["message"]
    assert "Nothing moves until every count can be reached" in blocker["message"]


def test_the_run_operator_without_a_kubeconfig_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([GPUPOOL, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpupool run: error: no Kubernetes API to talk to"), lines
