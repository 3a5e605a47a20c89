"""Nova's bodies -> the engine's types, on bodies shaped as a real Nova 34 answers them
(docs/conformance.md lists the answers; the conformance tier runs the same parsers through
cloud.Cloud against a real Nova and novasim)."""

from __future__ import annotations

import pytest

from gpupool import novajson
from gpupool.errors import AlreadyAMember, Conflict, NotAMember, NotFound, NovaRequestError, nova_error
from gpupool.model import Aggregate

NODE = "8a5f0a47-5cd4-4f3e-9d3c-2a4b8c1d0e11"

AGGREGATES = {
    "aggregates": [
        {
            "id": 1,
            "name": "L40-n3",
            "hosts": ["gpu-l40-001", "gpu-l40-002"],
            "metadata": {"availability_zone": "nova"},
            "availability_zone": "nova",
            "created_at": "2026-11-30T10:00:00.000000",
            "updated_at": None,
            "deleted": False,
            "deleted_at": None,
            "uuid": "0f2b4e3c-2c1e-4d39-9a57-1f7c0c6f8a10",
        },
        {
            "id": 2,
            "name": "L40-n3-spot",
            "hosts": [],
            "metadata": {},
            "created_at": "2026-11-30T10:00:01.000000",
        },
    ]
}


def test_the_aggregate_list_becomes_aggregates_by_name():
    found = novajson.aggregates(AGGREGATES)
    assert found["L40-n3"] == Aggregate(
        1,
        "L40-n3",
        frozenset({"gpu-l40-001", "gpu-l40-002"}),
        {"availability_zone": "nova"},
        "2026-11-30T10:00:00.000000",
    )
    assert found["L40-n3"].availability_zone == "nova"
    assert found["L40-n3-spot"].hosts == frozenset()
    assert novajson.aggregates({"aggregates": []}) == {}


def test_an_aggregate_action_answer_carries_the_members_or_says_nothing():
    assert novajson.aggregate_members({"aggregate": {"id": 2, "hosts": ["gpu-l40-001"]}}) == {"gpu-l40-001"}
    assert novajson.aggregate_members({"aggregate": {"id": 2}}) is None


def test_services_joined_with_the_hypervisor_counts():
    services = {
        "services": [
            {
                "id": "5d2c…",
                "binary": "nova-compute",
                "host": "gpu-l40-001",
                "state": "up",
                "status": "enabled",
                "disabled_reason": None,
                "zone": "nova",
            },
            {
                "id": "77aa",
                "binary": "nova-compute",
                "host": "gpu-l40-002",
                "state": "down",
                "status": "disabled",
                "disabled_reason": "RMA 47",
                "zone": "nova",
            },
            {"id": "99bb", "binary": "nova-compute", "host": "gpu-l40-003"},  # fields Nova may omit
        ]
    }
    page = {
        "hypervisors": [
            {"id": NODE, "service": {"host": "gpu-l40-001", "id": "5d2c…"}, "running_vms": 2, "state": "up"},
            {"id": "b1", "service": {"host": "gpu-l40-002"}, "running_vms": 0},
            {"id": "ironic-node", "service": {"host": "gpu-l40-001"}, "running_vms": 1},  # a second node
            {"id": "orphan"},  # a node whose service is gone
        ],
        "hypervisors_links": [
            {"rel": "next", "href": "http://nova.example:8774/v2.1/os-hypervisors/detail?marker=b1&limit=2"}
        ],
    }
    counts, nodes, following = novajson.hypervisor_page(page)
    assert counts == {"gpu-l40-001": 3, "gpu-l40-002": 0}
    assert nodes == {"gpu-l40-001": NODE, "gpu-l40-002": "b1"}  # the first node of a host
    assert following == "/os-hypervisors/detail?marker=b1&limit=2"
    hosts = novajson.hosts(services, counts, nodes)
    assert hosts["gpu-l40-001"].is_enabled and hosts["gpu-l40-001"].is_up
    assert hosts["gpu-l40-001"].instances == 3 and hosts["gpu-l40-001"].hypervisor_id == NODE
    assert hosts["gpu-l40-002"].disabled_reason == "RMA 47" and not hosts["gpu-l40-002"].is_up
    # Missing fields never make a host look movable; no hypervisor means an unknown count.
    assert not hosts["gpu-l40-003"].is_enabled and not hosts["gpu-l40-003"].is_up
    assert hosts["gpu-l40-003"].instances is None and hosts["gpu-l40-003"].hypervisor_id is None


def test_the_last_hypervisor_page_has_no_next_link():
    assert novajson.hypervisor_page({"hypervisors": []})[2] is None
    assert novajson.next_link([{"rel": "self", "href": "http://x/os-hypervisors"}]) is None


def test_a_hypervisor_show_with_servers_is_the_host_now():
    body = {
        "hypervisor": {
            "id": NODE,
            "status": "disabled",
            "state": "up",
            "service": {"host": "gpu-l40-004", "id": "c3", "disabled_reason": "RMA 47"},
            "running_vms": 1,
            "servers": [{"name": "instance-0000000a", "uuid": "3c1e9a55-0000-4000-8000-00000000000a"}],
        }
    }
    now = novajson.host_now_from_hypervisor("gpu-l40-004", body)
    assert (now.status, now.state, now.disabled_reason) == ("disabled", "up", "RMA 47")
    assert now.servers == ("3c1e9a55-0000-4000-8000-00000000000a",)
    # From 2.75 an empty host answers `servers: []`; before, no key: both mean no instance.
    empty = {"hypervisor": {"id": NODE, "status": "enabled", "state": "up", "service": {"host": "h"}}}
    assert novajson.host_now_from_hypervisor("h", empty).servers == ()


def test_a_service_read_alone_leaves_the_instances_unknown():
    body = {
        "services": [{"id": "c3", "host": "h", "status": "enabled", "state": "up", "disabled_reason": None}]
    }
    now = novajson.host_now_from_services("h", body)
    assert now is not None and now.is_enabled and now.servers is None
    assert novajson.host_now_from_services("h", {"services": []}) is None


def test_placement_allocations_name_their_consumers():
    body = {
        "allocations": {
            "b-instance": {"resources": {"VCPU": 16}, "consumer_generation": 1},
            "a-migration": {"resources": {"VCPU": 16}, "consumer_generation": 1},
        },
        "resource_provider_generation": 4,
    }
    assert novajson.consumers(body) == ("a-migration", "b-instance")
    assert novajson.consumers({"allocations": {}, "resource_provider_generation": 2}) == ()


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (409, "add gpu-l40-001 to L40-n3: Aggregate 1 already has host gpu-l40-001.", AlreadyAMember),
        (404, "remove gpu-l40-002 from L40-n3: Cannot remove host gpu-l40-002 in aggregate 1", NotAMember),
        (404, "add x to y: Compute host no-such-host could not be found.", NotFound),
        (404, "add x to y: Aggregate 999999 could not be found.", NotFound),
        (409, "create L40-n3: Aggregate L40-n3 already exists.", Conflict),
        (
            409,
            "add x: Cannot add host to aggregate 4. Reason: One or more hosts already in availability zone(s)",
            Conflict,
        ),
        (
            400,
            "delete: Cannot remove host from aggregate 1. Reason: Host aggregate is not empty.",
            NovaRequestError,
        ),
        (None, "list aggregates: still failing after 5 attempts: timed out", NovaRequestError),
    ],
)
def test_novas_answers_are_told_apart_by_kind(status, message, kind):
    error = nova_error(message, status)
    assert type(error) is kind
    assert error.refused == (status is not None and 400 <= status < 500)


@pytest.mark.parametrize(
    ("extra_specs", "gpus"),
    [
        ({"pci_passthrough:alias": "l40:8"}, 8),
        ({"pci_passthrough:alias": "a6000:1, a6000-nvlink:2"}, 3),
        ({"pci_passthrough:alias": "l40"}, 1),  # no count: one device
        ({"resources:VGPU": "1"}, 1),
        ({"resources1:CUSTOM_PCI_10DE_26B5": "2", "resources:VCPU": "16"}, 2),
        ({"resources:CUSTOM_H100_GPU": "4"}, 4),
        # PCI in Placement: Nova derives the resources from the alias; never counted twice.
        ({"pci_passthrough:alias": "l40:2", "resources:CUSTOM_PCI_10DE_26B5": "2"}, 2),
        ({"hw:cpu_policy": "dedicated", "resources:CUSTOM_NIC": "1"}, 0),
        ({}, 0),
    ],
)
def test_gpus_of_a_flavor(extra_specs, gpus):
    assert novajson.gpus_of(extra_specs) == gpus


def test_gpus_in_use_per_host_from_a_server_page():
    body = {
        "servers": [
            {"OS-EXT-SRV-ATTR:host": "gpu-1", "flavor": {"extra_specs": {"pci_passthrough:alias": "l40:2"}}},
            {"OS-EXT-SRV-ATTR:host": "gpu-1", "flavor": {"extra_specs": {"pci_passthrough:alias": "l40:4"}}},
            {"OS-EXT-SRV-ATTR:host": "gpu-2", "flavor": {"original_name": "cpu.small", "extra_specs": {}}},
            {"OS-EXT-SRV-ATTR:host": None, "flavor": {"extra_specs": {"pci_passthrough:alias": "l40:8"}}},
        ],
        "servers_links": [
            {"rel": "next", "href": "http://nova:8774/v2.1/servers/detail?all_tenants=1&marker=x"}
        ],
    }
    used, following = novajson.gpus_page(body)
    assert used == {"gpu-1": 6, "gpu-2": 0}
    assert following == "/servers/detail?all_tenants=1&marker=x"
