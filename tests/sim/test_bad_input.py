"""Bad input: one clear line saying what is wrong and what to do, exit 1, nothing moved."""

from __future__ import annotations

import yaml

from testbed.daemons import free_port
from tests.sim.reconcile_helpers import membership, pool_spec, run_gpupool, small_fleet, write_spec

ACTION = "POST /compute/v2.1/os-aggregates/{aggregate_id}/action"


def one_line_error(result, problems: int = 1) -> str:
    """Exit 1, no traceback, one line per problem (the only other line names the cloud acted on)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gpupool reconcile: error:")]
    assert len(errors) == problems, result.stderr
    others = [line for line in result.stderr.splitlines() if line.strip() and line not in errors]
    assert all(line.startswith("gpupool reconcile: cloud ") for line in others), result.stderr
    return result.stderr


def test_spec_that_does_not_validate(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    before = membership(sim.state())
    bad = pool_spec(spot=-2)
    bad["spec"]["pools"]["contracts"] = [{"hosts": 1}]
    bad["spec"]["polcy"] = {}
    spec = write_spec(tmp_path / "pools.yaml", bad)
    message = one_line_error(run_gpupool(sim, "reconcile", "-f", str(spec)), problems=3)
    assert "pools.spot.hosts" in message and "0" in message
    assert "contracts[0].aggregate" in message or "contracts.0.aggregate" in message
    assert "polcy" in message and "policy" in message  # did you mean
    assert str(spec) in message
    assert membership(sim.state()) == before
    assert ACTION not in sim.stats()["by_route"]


def test_spec_that_is_not_yaml(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    spec = tmp_path / "pools.yaml"
    spec.write_text("apiVersion: gpupool.io/v1alpha1\nkind: GpuHostPool\nspec: [unclosed\n")
    message = one_line_error(run_gpupool(sim, "reconcile", "-f", str(spec)))
    assert str(spec) in message


def test_unknown_cloud_name_lists_the_known_ones(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=1))
    message = one_line_error(run_gpupool(sim, "reconcile", "-f", str(spec), "--os-cloud", "prod-typo"))
    assert "prod-typo" in message and "sim" in message


def test_unreachable_keystone_and_wrong_password(start_sim, tmp_path):
    sim = start_sim(small_fleet(on_demand=4))
    clouds = yaml.safe_load(sim.clouds_yaml.read_text())
    good = clouds["clouds"]["sim"]
    clouds["clouds"]["gone"] = {
        **good,
        "auth": {**good["auth"], "auth_url": f"http://127.0.0.1:{free_port()}/v3"},
    }
    clouds["clouds"]["badpw"] = {**good, "auth": {**good["auth"], "password": "hunter2-wrong"}}
    sim.clouds_yaml.write_text(yaml.safe_dump(clouds))
    spec = write_spec(tmp_path / "pools.yaml", pool_spec(spot=1))

    unreachable = one_line_error(run_gpupool(sim, "reconcile", "-f", str(spec), "--os-cloud", "gone"))
    assert "127.0.0.1" in unreachable or "reach" in unreachable.lower()

    refused = run_gpupool(sim, "reconcile", "-f", str(spec), "--os-cloud", "badpw")
    message = one_line_error(refused)
    assert "credentials" in message.lower() or "401" in message or "authenticat" in message.lower()
    assert "hunter2-wrong" not in refused.stderr + refused.stdout  # never print a secret
    assert ACTION not in sim.stats()["by_route"]
