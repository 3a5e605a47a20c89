"""Nova v2.1 under /compute: version discovery, microversions, and the resources the operator uses.

Bodies, fields per microversion, status codes and error messages follow nova 34
(nova/api/openstack/compute/{aggregates,services,hypervisors,servers}.py).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .state import (
    FLAVOR_DISK_GB,
    FLAVOR_RAM_MB,
    FLAVOR_VCPUS,
    LIVE_MIGRATION_IN_PROGRESS,
    RESERVED_HOST_MEMORY_MB,
    CloudState,
    NovaError,
)

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 104)  # nova 34.0.0
PREFIX = "/compute/v2.1"
_FAULT_KIND = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}
_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
MAX_LIMIT = 1000  # nova's [api] max_limit


def fault(status: int, message: str) -> web.Response:
    kind = _FAULT_KIND.get(status, "computeFault")
    return web.json_response({kind: {"code": status, "message": message}}, status=status)


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def requested_version(request: web.Request) -> tuple[int, int]:
    """The microversion the client asked for; NovaError(400/406) when unusable."""
    value = None
    header = request.headers.get("OpenStack-API-Version")
    if header:
        for part in header.split(","):
            service, _, version = part.strip().partition(" ")
            if service.lower() == "compute":
                value = version.strip()
    if value is None:
        value = request.headers.get("X-OpenStack-Nova-API-Version")
    if value is None:
        return MIN_VERSION
    if value.lower() == "latest":
        return MAX_VERSION
    m = _VERSION.match(value.strip())
    if not m:
        raise NovaError(
            400, f"API Version String {value} is of invalid format. Must be of format MajorNum.MinorNum."
        )
    version = (int(m[1]), int(m[2]))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NovaError(
            406,
            f"Version {value} is not supported by the API. Minimum is {_text(MIN_VERSION)} and maximum is "
            f"{_text(MAX_VERSION)}.",
        )
    return version


class Nova:
    def __init__(self, state: CloudState, project_id: str):
        self.state = state
        self.project_id = project_id  # the admin's own project
        self.base_url = ""
        self._list_cache: dict[tuple, bytes] = {}

    def routes(self) -> list[web.RouteDef]:
        p = PREFIX
        return [
            web.get("/compute", self.versions),
            web.get("/compute/", self.versions),
            web.get(p, self.version),
            web.get(p + "/", self.version),
            web.get(p + "/os-aggregates", self.list_aggregates),
            web.post(p + "/os-aggregates", self.create_aggregate),
            web.get(p + "/os-aggregates/{aggregate_id}", self.show_aggregate),
            web.put(p + "/os-aggregates/{aggregate_id}", self.update_aggregate),
            web.delete(p + "/os-aggregates/{aggregate_id}", self.delete_aggregate),
            web.post(p + "/os-aggregates/{aggregate_id}/action", self.aggregate_action),
            web.get(p + "/os-services", self.list_services),
            web.put(p + "/os-services/{service_id}", self.update_service),
            web.get(p + "/os-hypervisors", self.list_hypervisors),
            web.get(p + "/os-hypervisors/detail", self.list_hypervisors_detail),
            web.get(p + "/os-hypervisors/{hypervisor_id}", self.show_hypervisor),
            web.get(p + "/os-migrations", self.list_migrations),
            web.get(p + "/servers", self.list_servers),
            web.get(p + "/servers/detail", self.list_servers_detail),
            web.get(p + "/servers/{server_id}", self.show_server),
        ]

    # -- versions -----------------------------------------------------------------------------

    def _v21(self) -> dict:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": _text(MAX_VERSION),
            "min_version": _text(MIN_VERSION),
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base_url}{PREFIX}/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}
            ],
        }

    async def versions(self, request: web.Request) -> web.Response:
        v20 = {
            "id": "v2.0",
            "status": "DEPRECATED",
            "version": "",
            "min_version": "",
            "updated": "2025-07-04T12:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base_url}/compute/v2/"}],
        }
        return web.json_response({"versions": [v20, self._v21()]})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self._v21()})

    # -- aggregates ---------------------------------------------------------------------------

    def _aggregate(self, agg, version, create: bool = False) -> dict:
        body = {
            "availability_zone": agg.availability_zone,
            "created_at": agg.created_at,
            "deleted": False,
            "deleted_at": None,
            "id": agg.id,
            "name": agg.name,
            "updated_at": agg.updated_at,
        }
        if not create:
            body["hosts"] = list(agg.hosts)
            body["metadata"] = dict(agg.metadata)
        if version >= (2, 41):
            body["uuid"] = agg.uuid
        return body

    async def list_aggregates(self, request: web.Request) -> web.Response:
        version = request["microversion"]
        key = ("aggregates", self.state.version, version >= (2, 41))
        cached = self._list_cache.get(key)
        if cached is None:
            self._list_cache.clear()
            body = {"aggregates": [self._aggregate(a, version) for a in self.state.aggregates.values()]}
            cached = self._list_cache[key] = json.dumps(body).encode()
        return web.Response(body=cached, content_type="application/json")

    async def create_aggregate(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        agg = _field(body, "aggregate", dict)
        name = _name(agg.get("name"), "aggregate/name", required=True)
        zone = agg.get("availability_zone")
        if zone is not None:
            zone = _name(zone, "aggregate/availability_zone")
        _only(agg, {"name", "availability_zone"}, "aggregate")
        created = self.state.create_aggregate(name, zone or None)
        return web.json_response(
            {"aggregate": self._aggregate(created, request["microversion"], create=True)}
        )

    async def show_aggregate(self, request: web.Request) -> web.Response:
        agg = self.state.aggregate(_integer_id(request))
        return web.json_response({"aggregate": self._aggregate(agg, request["microversion"])})

    async def update_aggregate(self, request: web.Request) -> web.Response:
        aggregate_id = _integer_id(request)
        body = await _json_body(request)
        updates = _field(body, "aggregate", dict)
        _only(updates, {"name", "availability_zone"}, "aggregate")
        if not updates:
            raise NovaError(
                400,
                "Invalid input for field/attribute aggregate. Value: {}. {} does not have enough properties",
            )
        name = _name(updates["name"], "aggregate/name") if "name" in updates else None
        zone = updates.get("availability_zone")
        if zone is not None:
            zone = _name(zone, "aggregate/availability_zone")
        agg = self.state.update_aggregate(aggregate_id, name, zone, set_az="availability_zone" in updates)
        return web.json_response({"aggregate": self._aggregate(agg, request["microversion"])})

    async def delete_aggregate(self, request: web.Request) -> web.Response:
        self.state.delete_aggregate(_integer_id(request))
        return web.Response(status=200)

    async def aggregate_action(self, request: web.Request) -> web.Response:
        aggregate_id = request.match_info["aggregate_id"]
        body = await _json_body(request)
        if len(body) != 1:
            raise NovaError(
                400,
                "There is no such action: " + ", ".join(sorted(body)) if body else "Malformed request body",
            )
        (action,) = body
        args = body[action]
        if action in ("add_host", "remove_host"):
            if not isinstance(args, dict) or "host" not in args:
                raise NovaError(
                    400,
                    f"Invalid input for field/attribute {action}. Value: {json.dumps(args)}. 'host' is a required property",
                )
            _only(args, {"host"}, action)
            host = _name(args["host"], f"{action}/host", required=True)
            _integer_id(request)
            if action == "add_host":
                agg = self.state.add_host(aggregate_id, host)
            else:
                agg = self.state.remove_host(aggregate_id, host)
        elif action == "set_metadata":
            metadata = _field(args if isinstance(args, dict) else {}, "metadata", dict, f"{action}")
            for key, value in metadata.items():
                if not isinstance(key, str) or not 1 <= len(key) <= 255:
                    raise NovaError(
                        400, f"Invalid input for field/attribute metadata. Value: {json.dumps(metadata)}."
                    )
                if value is not None and not isinstance(value, str):
                    raise NovaError(
                        400,
                        f"Invalid input for field/attribute {key}. Value: {json.dumps(value)}. "
                        f"{json.dumps(value)} is not of type 'string', 'null'",
                    )
            _integer_id(request)
            agg = self.state.set_metadata(aggregate_id, metadata)
        else:
            raise NovaError(400, f"There is no such action: {action}")
        return web.json_response({"aggregate": self._aggregate(agg, request["microversion"])})

    # -- services -----------------------------------------------------------------------------

    def _service(self, svc, version) -> dict:
        body = {
            "binary": svc.binary,
            "host": svc.host,
            "id": svc.uuid if version >= (2, 53) else svc.id,
            "zone": self.state.service_zone(svc),
            "status": "disabled" if svc.disabled else "enabled",
            "state": "up" if self.state.service_is_up(svc) else "down",
            "updated_at": svc.updated_at,
            "disabled_reason": svc.disabled_reason,
        }
        if version >= (2, 11):
            body["forced_down"] = svc.forced_down
        return body

    async def list_services(self, request: web.Request) -> web.Response:
        host, binary = request.query.get("host"), request.query.get("binary")
        version = request["microversion"]
        services = [
            self._service(s, version)
            for s in self.state.services.values()
            if (host is None or s.host == host) and (binary is None or s.binary == binary)
        ]
        return web.json_response({"services": services})

    async def update_service(self, request: web.Request) -> web.Response:
        service_id = request.match_info["service_id"]
        version = request["microversion"]
        body = await _json_body(request)
        if version >= (2, 53):
            if not _UUID.match(service_id):
                raise NovaError(400, f"Invalid uuid {service_id}")
            _only(body, {"status", "disabled_reason", "forced_down"}, "service")
            status = body.get("status")
            if status is not None and status not in ("enabled", "disabled"):
                raise NovaError(
                    400,
                    f"Invalid input for field/attribute status. Value: {status}. "
                    f"'{status}' is not one of ['enabled', 'disabled']",
                )
            reason = body.get("disabled_reason")
            if reason is not None and (not isinstance(reason, str) or len(reason) > 255):
                raise NovaError(400, "Invalid input for field/attribute disabled_reason.")
            forced = body.get("forced_down")
            if forced is not None and not isinstance(forced, bool):
                raise NovaError(400, "Invalid input for field/attribute forced_down.")
            svc = self.state.service(service_id)
            self.state.update_service(svc, status, reason, forced)
            return web.json_response({"service": self._service(svc, version)})
        return self._legacy_service_action(service_id, body, version)

    def _legacy_service_action(self, action: str, body: dict, version) -> web.Response:
        actions = {"enable", "disable", "disable-log-reason"} | (
            {"force-down"} if version >= (2, 11) else set()
        )
        if action not in actions:
            raise NovaError(404, "Unknown action")
        host, binary = body.get("host"), body.get("binary")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise NovaError(400, "Invalid input for field/attribute host. 'host' is a required property")
        if action == "force-down":
            if "forced_down" not in body:
                raise NovaError(400, "Missing forced_down field")
            svc = self.state.service_by_host_binary(host, binary)
            self.state.update_service(svc, None, None, bool(body["forced_down"]))
            return web.json_response(
                {"service": {"host": host, "binary": binary, "forced_down": svc.forced_down}}
            )
        reason = None
        if action == "disable-log-reason":
            if "disabled_reason" not in body:
                raise NovaError(400, "Missing disabled reason field")
            reason = body["disabled_reason"]
        svc = self.state.service_by_host_binary(host, binary)
        status = "enabled" if action == "enable" else "disabled"
        self.state.update_service(svc, status, reason, None)
        result = {"host": host, "binary": binary, "status": status}
        if reason:
            result["disabled_reason"] = reason
        return web.json_response({"service": result})

    # -- hypervisors --------------------------------------------------------------------------

    def _hypervisor(self, host: str, version, detail: bool, with_servers: bool = False) -> dict:
        node = self.state.nodes[host]
        svc = self.state.computes[host]
        up = self.state.service_is_up(svc)
        body: dict[str, Any] = {
            "id": node.uuid if version >= (2, 53) else node.id,
            "hypervisor_hostname": host,
            "state": "up" if up else "down",
            "status": "disabled" if svc.disabled else "enabled",
        }
        if detail:
            body.update(
                {
                    "host_ip": f"10.{(node.id >> 16) & 255}.{(node.id >> 8) & 255}.{node.id & 255}",
                    "hypervisor_type": "QEMU",
                    "hypervisor_version": 8002002,
                    "service": {
                        "host": host,
                        "id": svc.uuid if version >= (2, 53) else svc.id,
                        "disabled_reason": svc.disabled_reason,
                    },
                }
            )
        if detail and version < (2, 88):
            # the resource tracker's counts: instances whose host is this one
            running = len(self.state.instances_by_host[host])
            used_vcpus = min(node.vcpus, FLAVOR_VCPUS * running)
            used_ram = min(node.memory_mb, FLAVOR_RAM_MB * running + RESERVED_HOST_MEMORY_MB)
            used_disk = min(node.local_gb, FLAVOR_DISK_GB * running)
            body.update(
                {
                    "vcpus": node.vcpus,
                    "memory_mb": node.memory_mb,
                    "local_gb": node.local_gb,
                    "vcpus_used": used_vcpus,
                    "memory_mb_used": used_ram,
                    "local_gb_used": used_disk,
                    "free_ram_mb": node.memory_mb - used_ram,
                    "free_disk_gb": node.local_gb - used_disk,
                    "current_workload": 0,
                    "running_vms": running,
                    "disk_available_least": node.local_gb - used_disk,
                    "cpu_info": {"arch": "x86_64", "model": "EPYC-Genoa", "vendor": "AMD"}
                    if version >= (2, 28)
                    else '{"arch": "x86_64", "model": "EPYC-Genoa", "vendor": "AMD"}',
                }
            )
        elif detail:
            body["uptime"] = self._uptime() if up else None
        if with_servers:
            # Nova: the servers whose host is this one; the key only when there are some,
            # from 2.75 always ([] for none)
            on_host = sorted(self.state.instances_by_host[host].values(), key=lambda i: i.db_id)
            servers = [{"name": i.instance_name, "uuid": i.id} for i in on_host]
            if servers or version >= (2, 75):
                body["servers"] = servers
        return body

    def _uptime(self) -> str:
        days = (datetime.now(UTC) - self.state.booted_at).days + 41
        return f" 08:32:11 up {days} days, 19:12,  0 users,  load average: 0.10, 0.08, 0.05"

    async def list_hypervisors(self, request: web.Request) -> web.Response:
        return self._hypervisors(request, detail=False)

    async def list_hypervisors_detail(self, request: web.Request) -> web.Response:
        return self._hypervisors(request, detail=True)

    def _hypervisors(self, request: web.Request, detail: bool) -> web.Response:
        version = request["microversion"]
        q = request.query
        with_servers, pattern = False, None
        if version >= (2, 53):
            _query_schema(q, {"limit", "marker", "hypervisor_hostname_pattern", "with_servers"})
            with_servers = _query_bool(q, "with_servers")
            pattern = q.get("hypervisor_hostname_pattern")
        if version >= (2, 33) and "limit" in q:
            _query_limit(q)
        hosts = list(self.state.nodes)
        if pattern is not None:
            if "limit" in q or q.get("marker"):
                # Nova passes its message as the detail, so the generic explanation is shown
                raise NovaError(
                    400,
                    "The server could not comply with the request since it is either malformed or "
                    "otherwise incorrect.",
                )
            hosts = [h for h in hosts if pattern in h]
            if not hosts:
                raise NovaError(404, f"No hypervisor matching '{pattern}' could be found.")
        limit, marker = _paging(request) if version >= (2, 33) and pattern is None else (None, None)
        if marker is not None:
            ids = [
                str(self.state.nodes[h].uuid if version >= (2, 53) else self.state.nodes[h].id) for h in hosts
            ]
            if marker not in ids:
                raise NovaError(400, f"marker [{marker}] not found")
            hosts = hosts[ids.index(marker) + 1 :]
        page = hosts[:limit] if limit is not None else hosts
        body: dict[str, Any] = {
            "hypervisors": [self._hypervisor(h, version, detail, with_servers) for h in page]
        }
        if limit is not None and len(page) == limit and page:
            path = request.path
            query = {**request.query, "marker": str(body["hypervisors"][-1]["id"])}
            body["hypervisors_links"] = [{"rel": "next", "href": f"{self.base_url}{path}?{urlencode(query)}"}]
        return web.json_response(body)

    async def show_hypervisor(self, request: web.Request) -> web.Response:
        version = request["microversion"]
        hypervisor_id = request.match_info["hypervisor_id"]
        with_servers = False
        if version >= (2, 53):
            _query_schema(request.query, {"with_servers"})
            with_servers = _query_bool(request.query, "with_servers")
            if not _UUID.match(hypervisor_id):
                raise NovaError(400, f"Invalid uuid {hypervisor_id}")
            node = self.state.nodes_by_uuid.get(hypervisor_id)
        else:
            node = None
            if re.fullmatch(r"-?\d+", hypervisor_id.strip()):
                node = next((n for n in self.state.nodes.values() if n.id == int(hypervisor_id)), None)
        if node is None:
            raise NovaError(404, f"Hypervisor with ID '{hypervisor_id}' could not be found.")
        return web.json_response(
            {"hypervisor": self._hypervisor(node.host, version, detail=True, with_servers=with_servers)}
        )

    # -- migrations ---------------------------------------------------------------------------

    def _migration(self, m, version) -> dict:
        body: dict[str, Any] = {"id": m.id}
        if version >= (2, 59):
            body["uuid"] = m.uuid
        body.update(
            {
                "source_compute": m.source_compute,
                "dest_compute": m.dest_compute,
                "source_node": m.source_compute,
                "dest_node": m.dest_compute,
                "dest_host": None,  # a live migration never sets it
                "old_instance_type_id": m.flavor_id,
                "new_instance_type_id": m.flavor_id,
                "instance_uuid": m.instance_uuid,
                "status": m.status,
            }
        )
        if version >= (2, 23):
            body["migration_type"] = m.migration_type
        if version >= (2, 80):
            body["user_id"] = m.user_id
            body["project_id"] = m.project_id
        body["created_at"] = m.created_at
        body["updated_at"] = m.updated_at
        if (
            version >= (2, 23)
            and m.migration_type == "live-migration"
            and m.status in LIVE_MIGRATION_IN_PROGRESS
        ):
            link = f"{self.base_url}{PREFIX}/servers/{m.instance_uuid}/migrations/{m.id}"
            body["links"] = [
                {"rel": "self", "href": link},
                {"rel": "bookmark", "href": link.replace("/v2.1", "")},
            ]
        return body

    async def list_migrations(self, request: web.Request) -> web.Response:
        version = request["microversion"]
        q = request.query
        allowed = {"hidden", "host", "instance_uuid", "source_compute", "status", "migration_type"}
        if version >= (2, 59):
            allowed |= {"limit", "marker", "changes-since"}
            if version >= (2, 66):
                allowed.add("changes-before")
            if version >= (2, 80):
                allowed |= {"user_id", "project_id"}
            _query_schema(q, allowed)
            if "limit" in q:
                _query_limit(q)
        since = _query_time(q, "changes-since") if version >= (2, 59) else None
        before = _query_time(q, "changes-before") if version >= (2, 66) else None
        if since and before and before < since:
            raise NovaError(400, "The value of changes-since must be less than or equal to changes-before.")
        migrations = list(self.state.migrations.values())
        if "status" in q:
            migrations = [m for m in migrations if m.status == q.getall("status")[-1]]
        if "host" in q:
            host = q.getall("host")[-1]
            migrations = [m for m in migrations if host in (m.source_compute, m.dest_compute)]
        elif "source_compute" in q:
            migrations = [m for m in migrations if m.source_compute == q.getall("source_compute")[-1]]
        for key, attr in (
            ("migration_type", "migration_type"),
            ("instance_uuid", "instance_uuid"),
            *((("user_id", "user_id"), ("project_id", "project_id")) if version >= (2, 80) else ()),
        ):
            if key in q:
                migrations = [m for m in migrations if getattr(m, attr) == q.getall(key)[-1]]
        if since is not None:
            migrations = [m for m in migrations if m.updated_at and _parse_time(m.updated_at) >= since]
        if before is not None:
            migrations = [m for m in migrations if m.updated_at and _parse_time(m.updated_at) <= before]
        body: dict[str, Any] = {}
        if version >= (2, 59):
            # newest first (created_at, id descending), paged by uuid
            migrations.sort(key=lambda m: (m.created_at, m.id), reverse=True)
            marker = q.get("marker")
            if marker is not None:
                found = next((m for m in self.state.migrations.values() if m.uuid == marker), None)
                if found is None:
                    raise NovaError(400, f"Marker {marker} could not be found.")
                migrations = [m for m in migrations if (m.created_at, m.id) < (found.created_at, found.id)]
            limit = int(q["limit"]) if "limit" in q else MAX_LIMIT
            limit = min(limit, MAX_LIMIT)
            migrations = migrations[:limit]
            body["migrations"] = [self._migration(m, version) for m in migrations]
            if migrations and len(migrations) == limit:
                query = {**q, "marker": migrations[-1].uuid}
                body["migrations_links"] = [
                    {"rel": "next", "href": f"{self.base_url}{request.path}?{urlencode(query)}"}
                ]
        else:
            body["migrations"] = [self._migration(m, version) for m in migrations]
        return web.json_response(body)

    # -- servers ------------------------------------------------------------------------------

    def _server(self, inst, version, detail: bool) -> dict:
        link = f"{self.base_url}{PREFIX}/servers/{inst.id}"
        body: dict[str, Any] = {
            "id": inst.id,
            "name": inst.name,
            "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link.replace("/v2.1", "")}],
        }
        if not detail:
            return body
        vm_state = {
            "ACTIVE": "active",
            "SHUTOFF": "stopped",
            "ERROR": "error",
            "BUILD": "building",
            "MIGRATING": "active",  # a live migration: task_state migrating
        }.get(inst.status, inst.status.lower())
        power_state = {"ACTIVE": 1, "MIGRATING": 1, "BUILD": 0}.get(inst.status, 4)
        flavor = (
            {
                "vcpus": FLAVOR_VCPUS,
                "ram": FLAVOR_RAM_MB,
                "disk": FLAVOR_DISK_GB,
                "ephemeral": 0,
                "swap": 0,
                "original_name": inst.flavor,
                "extra_specs": dict(inst.extra_specs),
            }
            if version >= (2, 47)
            else {"id": inst.flavor, "links": []}
        )
        body.update(
            {
                "status": inst.status,
                "tenant_id": inst.project_id,
                "user_id": self.state.customer_user_id,
                "metadata": {},
                "hostId": f"{abs(hash((inst.host, inst.project_id))):056x}"[:56] if inst.host else "",
                "image": "",
                "flavor": flavor,
                "created": inst.created,
                "updated": inst.created,
                "addresses": {},
                "accessIPv4": "",
                "accessIPv6": "",
                "key_name": None,
                "config_drive": "",
                "progress": 0,
                "OS-DCF:diskConfig": "MANUAL",
                "OS-EXT-AZ:availability_zone": inst.zone,
                "OS-EXT-SRV-ATTR:host": inst.host,
                "OS-EXT-SRV-ATTR:hypervisor_hostname": inst.host,
                "OS-EXT-SRV-ATTR:instance_name": inst.instance_name,
                "OS-EXT-STS:task_state": inst.task_state,
                "OS-EXT-STS:vm_state": vm_state,
                "OS-EXT-STS:power_state": power_state,
                "OS-SRV-USG:launched_at": inst.created if inst.launched else None,
                "OS-SRV-USG:terminated_at": None,
                "os-extended-volumes:volumes_attached": [],
                "security_groups": [{"name": "default"}],
            }
        )
        if version >= (2, 9):
            body["locked"] = False
        if version >= (2, 19):
            body["description"] = None
        if version >= (2, 26):
            body["tags"] = []
        return body

    async def list_servers(self, request: web.Request) -> web.Response:
        return self._servers(request, detail=False)

    async def list_servers_detail(self, request: web.Request) -> web.Response:
        return self._servers(request, detail=True)

    def _servers(self, request: web.Request, detail: bool) -> web.Response:
        q = request.query
        version = request["microversion"]
        all_tenants = "all_tenants" in q and q["all_tenants"].lower() not in ("0", "false", "off", "no")
        project = q.get("project_id") or q.get("tenant_id")
        if "host" in q:
            candidates = list(self.state.instances_by_host.get(q["host"], {}).values())
        else:
            candidates = list(self.state.instances.values())
        servers = [
            i
            for i in candidates
            if (all_tenants and (project is None or i.project_id == project))
            or (not all_tenants and i.project_id == self.project_id)
        ]
        if "name" in q:
            pattern = re.compile(q["name"])
            servers = [i for i in servers if pattern.search(i.name)]
        if "status" in q:
            servers = [i for i in servers if i.status == q["status"].upper()]
        limit, marker = _paging(request)
        if marker is not None:
            ids = [i.id for i in servers]
            if marker not in ids:
                raise NovaError(400, f"marker [{marker}] not found")
            servers = servers[ids.index(marker) + 1 :]
        limit = MAX_LIMIT if limit is None else min(limit, MAX_LIMIT)
        page = servers[:limit]
        body: dict[str, Any] = {"servers": [self._server(i, version, detail) for i in page]}
        if page and len(page) == limit:
            query = {**q, "marker": page[-1].id}
            body["servers_links"] = [
                {"rel": "next", "href": f"{self.base_url}{request.path}?{urlencode(query)}"}
            ]
        return web.json_response(body)

    async def show_server(self, request: web.Request) -> web.Response:
        inst = self.state.instances.get(request.match_info["server_id"])
        if inst is None:
            raise NovaError(404, f"Instance {request.match_info['server_id']} could not be found.")
        return web.json_response({"server": self._server(inst, request["microversion"], detail=True)})


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise NovaError(400, "Malformed request body") from None
    if not isinstance(body, dict):
        raise NovaError(400, "Malformed request body")
    return body


def _field(body: dict, key: str, kind: type, where: str | None = None) -> Any:
    if key not in body:
        raise NovaError(
            400,
            f"Invalid input for field/attribute {where or key}. Value: {json.dumps(body)}. '{key}' is a required property",
        )
    value = body[key]
    if not isinstance(value, kind):
        raise NovaError(400, f"Invalid input for field/attribute {key}. Value: {json.dumps(value)}.")
    return value


def _only(body: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        listed = ", ".join(f"'{k}'" for k in extra)
        raise NovaError(
            400,
            f"Invalid input for field/attribute {where}. Value: {json.dumps(body)}. "
            f"Additional properties are not allowed ({listed} {'was' if len(extra) == 1 else 'were'} unexpected)",
        )


def _name(value: Any, where: str, required: bool = False) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise NovaError(
            400, f"Invalid input for field/attribute {where.split('/')[-1]}. Value: {json.dumps(value)}."
        )
    return value.strip()


def _integer_id(request: web.Request) -> str:
    value = request.match_info["aggregate_id"]
    try:
        int(value)
    except ValueError:
        raise NovaError(400, "Invalid input received: id must be an integer") from None
    return value


def _paging(request: web.Request) -> tuple[int | None, str | None]:
    limit = request.query.get("limit")
    if limit is not None:
        try:
            limit = int(limit)
            if limit < 0:
                raise ValueError
        except ValueError:
            raise NovaError(400, "limit param must be an integer") from None
    return limit, request.query.get("marker")


_BOOL_VALUES = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes"]
_BOOL_VALUES += [False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"]


def _query_schema(query, allowed: set[str]) -> None:
    """Nova's query schemas with additionalProperties false (2.53+ hypervisors, 2.59+ migrations)."""
    extra = sorted(set(query) - allowed)
    if extra:
        listed = ", ".join(repr(k) for k in extra)
        raise NovaError(
            400,
            f"Additional properties are not allowed ({listed} {'was' if len(extra) == 1 else 'were'} unexpected)",
        )


def _single(query, name: str) -> str:
    values = query.getall(name)
    if len(values) > 1:
        raise NovaError(
            400, f"Invalid input for query parameters {name}. Value: {values}. {values} is too long"
        )
    return values[0]


def _query_bool(query, name: str) -> bool:
    if name not in query:
        return False
    value = _single(query, name)
    if value not in _BOOL_VALUES:
        raise NovaError(
            400,
            f"Invalid input for query parameters {name}. Value: {value}. {value!r} is not one of {_BOOL_VALUES}",
        )
    return value.lower() in ("true", "1", "on", "yes")


def _query_limit(query) -> None:
    value = _single(query, "limit")
    if not re.fullmatch(r"[0-9]*", value):
        raise NovaError(
            400,
            f"Invalid input for query parameters limit. Value: {value}. '{value}' does not match '^[0-9]*$'",
        )


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _query_time(query, name: str) -> datetime | None:
    if name not in query:
        return None
    value = _single(query, name)
    try:
        return _parse_time(value)
    except ValueError:
        raise NovaError(
            400, f"Invalid input for query parameters {name}. Value: {value}. {value!r} is not a 'date-time'"
        ) from None
