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

from .state import CloudState, NovaError

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

    def _hypervisor(self, host: str, version, detail: bool) -> dict:
        node = self.state.nodes[host]
        svc = self.state.computes[host]
        up = self.state.service_is_up(svc)
        body: dict[str, Any] = {
            "id": node.uuid if version >= (2, 53) else node.id,
            "hypervisor_hostname": host,
            "state": "up" if up else "down",
            "status": "disabled" if svc.disabled else "enabled",
        }
        if not detail:
            return body
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
        if version < (2, 88):
            running = len(self.state.instances_by_host[host])
            used_vcpus = min(node.vcpus, 16 * running)
            used_ram = min(node.memory_mb, 131_072 * running + 4096)
            body.update(
                {
                    "vcpus": node.vcpus,
                    "memory_mb": node.memory_mb,
                    "local_gb": node.local_gb,
                    "vcpus_used": used_vcpus,
                    "memory_mb_used": used_ram,
                    "local_gb_used": 100 * running,
                    "free_ram_mb": node.memory_mb - used_ram,
                    "free_disk_gb": node.local_gb - 100 * running,
                    "current_workload": 0,
                    "running_vms": running,
                    "disk_available_least": node.local_gb - 100 * running,
                    "cpu_info": {"arch": "x86_64", "model": "EPYC-Genoa", "vendor": "AMD"}
                    if version >= (2, 28)
                    else '{"arch": "x86_64", "model": "EPYC-Genoa", "vendor": "AMD"}',
                }
            )
        else:
            body["uptime"] = self._uptime() if up else None
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
        hosts = list(self.state.nodes)
        pattern = request.query.get("hypervisor_hostname_pattern")
        if pattern is not None:
            hosts = [h for h in hosts if pattern in h]
            if not hosts:
                raise NovaError(404, f"Hypervisor with hostname pattern {pattern} could not be found.")
        limit, marker = _paging(request) if version >= (2, 33) else (None, None)
        if marker is not None:
            ids = [
                str(self.state.nodes[h].uuid if version >= (2, 53) else self.state.nodes[h].id) for h in hosts
            ]
            if marker not in ids:
                raise NovaError(400, f"marker [{marker}] not found")
            hosts = hosts[ids.index(marker) + 1 :]
        page = hosts[:limit] if limit is not None else hosts
        body: dict[str, Any] = {"hypervisors": [self._hypervisor(h, version, detail) for h in page]}
        if limit is not None and len(page) == limit and page:
            path = request.path
            query = {**request.query, "marker": str(body["hypervisors"][-1]["id"])}
            body["hypervisors_links"] = [{"rel": "next", "href": f"{self.base_url}{path}?{urlencode(query)}"}]
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
        vm_state = {"ACTIVE": "active", "SHUTOFF": "stopped", "ERROR": "error", "BUILD": "building"}.get(
            inst.status, inst.status.lower()
        )
        flavor = (
            {
                "vcpus": 16,
                "ram": 131072,
                "disk": 100,
                "ephemeral": 0,
                "swap": 0,
                "original_name": inst.flavor,
                "extra_specs": {},
            }
            if version >= (2, 47)
            else {"id": inst.flavor, "links": []}
        )
        body.update(
            {
                "status": inst.status,
                "tenant_id": inst.project_id,
                "user_id": "0" * 32,
                "metadata": {},
                "hostId": inst.host and f"{abs(hash((inst.host, inst.project_id))):056x}"[:56],
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
                "OS-EXT-AZ:availability_zone": self.state.host_zone(inst.host) or "nova",
                "OS-EXT-SRV-ATTR:host": inst.host,
                "OS-EXT-SRV-ATTR:hypervisor_hostname": inst.host,
                "OS-EXT-SRV-ATTR:instance_name": f"instance-{inst.id[:8]}",
                "OS-EXT-STS:task_state": None,
                "OS-EXT-STS:vm_state": vm_state,
                "OS-EXT-STS:power_state": 1 if inst.status == "ACTIVE" else 4,
                "OS-SRV-USG:launched_at": inst.created,
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
