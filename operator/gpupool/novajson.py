"""Nova's and Placement's JSON bodies -> the engine's value types. Pure functions, no I/O.

cloud.py sends the requests and hands the bodies here; the unit tests feed these the bodies the
conformance tier recorded from a real Nova 34 (tests/conformance/recordings), so a change in what
Nova sends shows up here first. Fields Nova may omit are read defensively: a service without a
status counts as disabled, one without a state as down (never as movable).
"""

from __future__ import annotations

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


def next_link(links: Iterable[Mapping[str, str]] | None) -> str | None:
    """The path of the hypervisor list's next page (its `hypervisors_links` with rel "next"): the
    link is absolute, the client wants the path below the compute endpoint."""
    for link in links or ():
        if link.get("rel") == "next":
            href = link["href"]
            index = href.find("/os-hypervisors")
            return href[index:] if index >= 0 else None
    return None
