"""Nova's and Placement's JSON bodies -> the engine's value types. Pure functions, no I/O.

cloud.py sends the requests and hands the bodies here; the unit tests feed these the bodies the
conformance tier recorded from a real Nova 34 (tests/conformance/recordings), so a change in what
Nova sends shows up here first. Fields Nova may omit are read defensively: a service without a
status counts as disabled, one without a state as down (never as movable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .model import Aggregate, AggregateName, Host, HostName, HostNow

Body = Mapping[str, Any]


def aggregate(body: Body) -> Aggregate:
    """One aggregate object (an item of `GET /os-aggregates`, or the `aggregate` of any answer)."""
    return Aggregate(
        id=int(body["id"]),
        name=body["name"],
        hosts=frozenset(body.get("hosts") or ()),
        metadata=dict(body.get("metadata") or {}),
        created_at=body.get("created_at"),
    )


def aggregates(body: Body) -> dict[AggregateName, Aggregate]:
    """`GET /os-aggregates`: every aggregate by name (Nova keeps names unique)."""
    return {item["name"]: aggregate(item) for item in body.get("aggregates") or ()}


def aggregate_members(body: Body) -> frozenset[HostName] | None:
    """The hosts an aggregate action answered with (None: the answer carried no membership)."""
    hosts = (body.get("aggregate") or {}).get("hosts")
    return frozenset(hosts) if hosts is not None else None


def hypervisor_page(body: Body) -> tuple[dict[HostName, int], dict[HostName, str], str | None]:
    """One page of `GET /os-hypervisors/detail` (2.53+): ({host: running VMs}, {host: compute node
    uuid}, the next page's link or None). A host with several nodes sums its VMs, keeps its first
    node."""
    counts: dict[HostName, int] = {}
    nodes: dict[HostName, str] = {}
    for hypervisor in body.get("hypervisors") or ():
        host = (hypervisor.get("service") or {}).get("host")
        if host is not None:
            counts[host] = counts.get(host, 0) + int(hypervisor.get("running_vms") or 0)
            nodes.setdefault(host, str(hypervisor["id"]))
    return counts, nodes, next_link(body.get("hypervisors_links"))


def hosts(
    services: Body, counts: Mapping[HostName, int], nodes: Mapping[HostName, str]
) -> dict[HostName, Host]:
    """`GET /os-services?binary=nova-compute` joined with the hypervisor list's counts and nodes.
    A host the hypervisor list does not show has an unknown instance count (None)."""
    found = {}
    for service in services.get("services") or ():
        name = service["host"]
        found[name] = Host(
            name=name,
            service_id=str(service["id"]),
            state=service.get("state") or "down",
            status=service.get("status") or "disabled",
            disabled_reason=service.get("disabled_reason"),
            instances=counts.get(name),
            hypervisor_id=nodes.get(name),
        )
    return found


def host_now_from_hypervisor(host: HostName, body: Body) -> HostNow:
    """`GET /os-hypervisors/{id}?with_servers=true` at 2.87: the service and the instances on it."""
    hypervisor = body["hypervisor"]
    servers = hypervisor.get("servers") or []
    return HostNow(
        name=host,
        status=hypervisor.get("status") or "disabled",
        state=hypervisor.get("state") or "down",
        disabled_reason=(hypervisor.get("service") or {}).get("disabled_reason"),
        servers=tuple(str(s.get("uuid") or s.get("name")) for s in servers),
    )


def host_now_from_services(host: HostName, body: Body) -> HostNow | None:
    """`GET /os-services?binary=nova-compute&host=H`: the service only (instances unknown); None
    when Nova lists none."""
    service = next(iter(body.get("services") or ()), None)
    if service is None:
        return None
    return HostNow(
        name=host,
        status=service.get("status") or "disabled",
        state=service.get("state") or "down",
        disabled_reason=service.get("disabled_reason"),
        servers=None,
    )


def consumers(body: Body) -> tuple[str, ...]:
    """`GET /resource_providers/{uuid}/allocations`: the consumers holding resources, sorted."""
    return tuple(sorted((body.get("allocations") or {}).keys()))


def next_link(links: Iterable[Mapping[str, str]] | None, collection: str = "/os-hypervisors") -> str | None:
    """The path of a list's next page (its `*_links` with rel "next"): the link is absolute, the
    client wants the path below the compute endpoint, from `collection` on."""
    for link in links or ():
        if link.get("rel") == "next":
            href = link["href"]
            index = href.find(collection)
            return href[index:] if index >= 0 else None
    return None


# -- GPUs ----------------------------------------------------------------------------------------

# Placement resource classes that are GPUs: virtual GPUs, and whole devices reported in Placement
# (Nova's `[pci] report_in_placement` names them CUSTOM_PCI_<vendor>_<product>; 10DE is NVIDIA) or
# given a name with GPU in it by the operator of the cloud.
_GPU_RESOURCE = re.compile(r"^resources\d*:(VGPU|PGPU|CUSTOM_PCI_10DE_\w+|CUSTOM_\w*GPU\w*)$", re.IGNORECASE)


def gpus_of(extra_specs: Mapping[str, str]) -> int:
    """GPUs a flavor gives its instance. PCI passthrough (what GPU clouds use for whole GPUs):
    `pci_passthrough:alias` = "l40:2" or "a:1,b:1", each alias's count summed. Otherwise Placement
    resources: `resources:VGPU=1`, `resources1:CUSTOM_PCI_10DE_26B5=2` (granular groups too). Never
    both: with PCI in Placement, Nova derives the resources from the alias."""
    alias = extra_specs.get("pci_passthrough:alias")
    if alias:
        total = 0
        for part in alias.split(","):
            _, _, count = part.strip().partition(":")
            total += int(count) if count.strip().isdigit() else 1
        return total
    return sum(
        int(value) for key, value in extra_specs.items() if _GPU_RESOURCE.match(key) and str(value).isdigit()
    )


def gpus_page(body: Body) -> tuple[dict[HostName, int], str | None]:
    """One page of `GET /servers/detail?all_tenants=1` (2.47+: the flavor with its extra specs is
    in each server): ({host: GPUs its instances use}, the next page's path or None). A server on
    no host (a build not yet claimed, a shelved one) holds no host's GPUs."""
    used: dict[HostName, int] = {}
    for server in body.get("servers") or ():
        host = server.get("OS-EXT-SRV-ATTR:host")
        flavor = server.get("flavor") or {}
        if host:
            used[host] = used.get(host, 0) + gpus_of(flavor.get("extra_specs") or {})
    return used, next_link(body.get("servers_links"), "/servers")
