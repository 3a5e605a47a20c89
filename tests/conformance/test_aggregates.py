"""Host aggregates: the answers the operator's move steps rely on, on novasim and on real Nova.

Expected texts are real Nova 34's (ids and names normalized: `<L40-n3>` is that aggregate's id).
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import aggregate_state, check_error

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-001]
  - name: L40-n3-spot
    hosts: []
hosts:
  - name: gpu-l40-002
"""


def add(d, agg_id, host):
    return d.request("POST", f"/os-aggregates/{agg_id}/action", {"add_host": {"host": host}})


def remove(d, agg_id, host):
    return d.request("POST", f"/os-aggregates/{agg_id}/action", {"remove_host": {"host": host}})


def test_add_host_already_in_aggregate(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "add-again",
        add(d, d.agg("L40-n3"), d.host("gpu-l40-001")),
        status=409,
        text="Aggregate <L40-n3> already has host gpu-l40-001.",
        meaning=[r"already has host", r"\bgpu-l40-001\b", r"<L40-n3>"],
    )
    assert aggregate_state(d, ["L40-n3"])["L40-n3"]["hosts"] == ["gpu-l40-001"]


def test_remove_host_not_in_aggregate(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "remove-absent",
        remove(d, d.agg("L40-n3"), d.host("gpu-l40-002")),
        status=404,
        text="Cannot remove host gpu-l40-002 in aggregate <L40-n3>",
        meaning=[r"Cannot remove host .* in aggregate", r"\bgpu-l40-002\b", r"<L40-n3>"],
    )


def test_add_unknown_host(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "add-unknown-host",
        add(d, d.agg("L40-n3-spot"), "no-such-host"),
        status=404,
        text="Compute host no-such-host could not be found.",
        meaning=[r"no-such-host", r"could not be found"],
    )
    assert aggregate_state(d, ["L40-n3-spot"])["L40-n3-spot"]["hosts"] == []


def test_add_to_unknown_aggregate(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "add-unknown-aggregate",
        add(d, 999999, d.host("gpu-l40-002")),
        status=404,
        text="Aggregate 999999 could not be found.",
        meaning=[r"Aggregate 999999 could not be found"],
    )


def test_remove_from_unknown_aggregate(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "remove-unknown-aggregate",
        remove(d, 999999, d.host("gpu-l40-001")),
        status=404,
        text="Cannot remove host gpu-l40-001 in aggregate 999999",
        meaning=[r"Cannot remove host .* in aggregate", r"999999"],
    )


AZ_FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-001]
  - name: Contract-L40-Customer1
    metadata: {availability_zone: az-contract}
    hosts: []
  - name: L40-n3-spot
    hosts: []
hosts:
  - name: gpu-l40-002
    instances: 2
"""


def test_add_host_in_another_availability_zone(cloud, observe):
    d = cloud.deploy(AZ_FLEET)
    check_error(
        d,
        observe,
        "add-other-az",
        add(d, d.agg("Contract-L40-Customer1"), d.host("gpu-l40-001")),
        status=409,
        text=(
            "Cannot add host to aggregate <Contract-L40-Customer1>. Reason: One or more hosts already in "
            "availability zone(s) ['nova']."
        ),
        meaning=[r"Cannot add host to aggregate <Contract-L40-Customer1>", r"availability zone", r"nova"],
    )
    state = aggregate_state(d, ["L40-n3", "Contract-L40-Customer1"])
    assert state["L40-n3"]["hosts"] == ["gpu-l40-001"]
    assert state["Contract-L40-Customer1"]["hosts"] == []


def test_add_host_with_instances_into_another_availability_zone(cloud, observe):
    """A host with instances may not change availability zone (real Nova since Zed)."""
    d = cloud.deploy(AZ_FLEET)
    check_error(
        d,
        observe,
        "add-with-instances-other-az",
        add(d, d.agg("Contract-L40-Customer1"), d.host("gpu-l40-002")),
        status=409,
        text=(
            "Cannot add host to aggregate <Contract-L40-Customer1>. Reason: The host cannot be added to the "
            "aggregate as the availability zone of the host would change from 'None' to 'az-contract' but "
            "the host already has 2 instance(s). Changing the AZ of an existing instance is not supported by "
            "this action. Move the instances away from this host then try again. If you need to move the "
            "instances between AZs then you can use shelve_offload and unshelve to achieve this.."
        ),
        meaning=[r"Cannot add host to aggregate <Contract-L40-Customer1>", r"availability zone", r"instance"],
    )
    assert aggregate_state(d, ["Contract-L40-Customer1"])["Contract-L40-Customer1"]["hosts"] == []


def test_host_with_instances_moves_between_aggregates_without_zone(cloud, observe):
    """Aggregates without an availability_zone (spot, runpod pools) take any host."""
    d = cloud.deploy(AZ_FLEET)
    code, body = add(d, d.agg("L40-n3-spot"), d.host("gpu-l40-002"))
    observe("add-with-instances-no-az", code)
    assert code == 200, body
    assert sorted(d.logical(h) for h in body["aggregate"]["hosts"]) == ["gpu-l40-002"]
    code, body = remove(d, d.agg("L40-n3-spot"), d.host("gpu-l40-002"))
    observe("remove-with-instances", code)
    assert code == 200, body
    assert body["aggregate"]["hosts"] == []


def test_move_host_between_aggregates(cloud, observe):
    """The operator's steps 4 and 5: remove from the source, add to the target."""
    d = cloud.deploy(
        """
        aggregates:
          - name: L40-n3
            hosts: ["gpu-l40-[001-003]"]
          - name: L40-n3-spot
            hosts: [gpu-l40-004]
        """
    )
    assert remove(d, d.agg("L40-n3"), d.host("gpu-l40-002"))[0] == 200
    code, body = add(d, d.agg("L40-n3-spot"), d.host("gpu-l40-002"))
    assert code == 200
    assert body["aggregate"]["id"] == d.agg("L40-n3-spot")
    state = aggregate_state(d, ["L40-n3", "L40-n3-spot"])
    observe("state", state)
    assert state["L40-n3"]["hosts"] == ["gpu-l40-001", "gpu-l40-003"]
    assert state["L40-n3-spot"]["hosts"] == ["gpu-l40-002", "gpu-l40-004"]


def test_delete_non_empty_aggregate(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "delete-non-empty",
        d.request("DELETE", f"/os-aggregates/{d.agg('L40-n3')}"),
        status=400,
        text="Cannot remove host from aggregate <L40-n3>. Reason: Host aggregate is not empty.",
        meaning=[r"Host aggregate is not empty"],
    )
    assert aggregate_state(d, ["L40-n3"])["L40-n3"]["hosts"] == ["gpu-l40-001"]


def test_duplicate_aggregate_name(cloud, observe):
    d = cloud.deploy(FLEET)
    check_error(
        d,
        observe,
        "duplicate-name",
        d.request("POST", "/os-aggregates", {"aggregate": {"name": d.name("L40-n3")}}),
        status=409,
        text="Aggregate L40-n3 already exists.",
        meaning=[r"L40-n3", r"already exists"],
    )


def test_aggregate_round_trip(cloud, observe):
    """create, list, show, update, set_metadata (add and remove keys), delete."""
    d = cloud.deploy(FLEET)
    conn = d.conn
    created = conn.compute.create_aggregate(name=d.alias("L40-n3-runpod"), availability_zone="az-runpod")
    d.track_aggregate("L40-n3-runpod", created.id)
    assert created.name == d.name("L40-n3-runpod")
    assert created.availability_zone == "az-runpod"
    listed = {int(a.id): d.logical(a.name) for a in conn.compute.aggregates()}
    assert listed[d.agg("L40-n3-runpod")] == "L40-n3-runpod"
    assert listed[d.agg("L40-n3")] == "L40-n3"

    conn.compute.update_aggregate(created, name=d.alias("L40-n3-runpod-2"), availability_zone="az-runpod-2")
    conn.compute.set_aggregate_metadata(created, {"gpu": "L40", "pool": "runpod"})
    conn.compute.set_aggregate_metadata(created, {"pool": None, "owner": "gpupool"})
    shown = conn.compute.get_aggregate(created.id)
    result = {
        "name": d.logical(shown.name),
        "availability_zone": shown.availability_zone,
        "metadata": dict(shown.metadata),
        "hosts": list(shown.hosts or []),
    }
    observe("round-trip", result)
    assert result == {
        "name": "L40-n3-runpod-2",
        "availability_zone": "az-runpod-2",
        "metadata": {"availability_zone": "az-runpod-2", "gpu": "L40", "owner": "gpupool"},
        "hosts": [],
    }
    # the raw body, as the operator's snapshot reads it
    code, body = d.request("GET", f"/os-aggregates/{created.id}")
    assert code == 200
    assert set(body["aggregate"]) >= {"id", "name", "availability_zone", "hosts", "metadata"}

    code, _ = d.request("DELETE", f"/os-aggregates/{created.id}")
    observe("delete-empty", code)
    assert code == 200
    check_error(
        d,
        observe,
        "show-deleted",
        d.request("GET", f"/os-aggregates/{created.id}"),
        status=404,
        text="Aggregate <L40-n3-runpod> could not be found.",
        meaning=[r"could not be found"],
    )
