"""Placement 16 under /placement: version discovery, microversions 1.0-1.39, and what the
compute nodes' resource providers show (read only).

Bodies, fields per microversion, status codes and error bodies follow openstack-placement 16.0.0
(placement/handlers/{root,resource_provider,inventory,usage,aggregate,allocation}.py, its
microversion middleware and util.json_error_formatter). The state is CloudState's: one provider
per compute node (uuid = the hypervisor's uuid, name = the host), its inventory, its aggregates
(Nova mirrors host aggregate membership into Placement) and the allocations of instances and
migrations.
"""

from __future__ import annotations

import json
import pprint
import re
import textwrap
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from .state import CloudState, ComputeNode

PREFIX = "/placement"
MIN_VERSION = (1, 0)
MAX_VERSION = (1, 39)  # openstack-placement 16.0.0
VERSIONS = {(1, minor) for minor in range(0, MAX_VERSION[1] + 1)}
ERROR_CODE_VERSION = (1, 23)  # errors carry a "code" from here on

_EXPLANATION = {
    400: (
        "Bad Request",
        "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    ),
    404: ("Not Found", "The resource could not be found."),
    405: ("Method Not Allowed", None),
    406: ("Not Acceptable", None),
    500: (
        "Internal Server Error",
        "The server has either erred or is incapable of performing the requested operation.",
    ),
    503: (
        "Service Unavailable",
        "The server is currently unavailable. Please try again at a later time.",
    ),
}
# The resource classes Placement knows without being told (os-resource-classes' standard set).
STANDARD_RESOURCE_CLASSES = {
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
}


class PlacementError(Exception):
    """An error answer: status, Placement's detail text (before the explanation is prefixed)."""

    def __init__(self, status: int, message: str, *, vary: bool = True, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.vary = vary  # Placement's own 404s (not from a handler) come without Vary
        self.headers = headers or {}


def _detail(status: int, message: str) -> str:
    """The text webob makes of an HTTP error, as Placement's JSON formatter passes it on."""
    if status == 405:
        return f"{message} \n\n The method specified is not allowed for this resource."
    if status == 406:
        return (
            "The resource could not be generated that was acceptable to your browser (content of type "
            f"application/json. \n\n {message}"
        )
    explanation = _EXPLANATION.get(status, ("", ""))[1]
    return f"{explanation}\n\n {message}  "


def error_response(
    status: int, message: str, version: tuple[int, int] | None, *, version_failed: bool = False
) -> web.Response:
    """Placement's error body: {"errors": [{status, title, detail, code?, request_id}]}."""
    title = _EXPLANATION.get(status, ("Error", ""))[0]
    error: dict[str, Any] = {"status": status, "title": title, "detail": _detail(status, message)}
    if version is not None and version >= ERROR_CODE_VERSION:
        error["code"] = "placement.undefined_code"
    request_id = f"req-{uuid.uuid4()}"
    error["request_id"] = request_id
    if version_failed and status == 406:
        error["max_version"] = _text(MAX_VERSION)
        error["min_version"] = _text(MIN_VERSION)
    return web.Response(
        body=_json({"errors": [error]}),
        status=status,
        content_type="application/json",
        headers={"x-openstack-request-id": request_id},
    )


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def requested_version(request: web.Request) -> tuple[int, int]:
    """microversion_parse.extract_version for service type placement; PlacementError 400/406."""
    found = None
    header = request.headers.get("OpenStack-API-Version")
    if header:
        for part in reversed(header.split(",")):
            pieces = part.strip().split(None, 1)
            if len(pieces) == 2 and pieces[0].lower() == "placement":
                found = pieces[1].strip()
                break
    value = found or _text(MIN_VERSION)
    if value == "latest":
        value = _text(MAX_VERSION)
    numbers = value.split(".", 1)
    try:
        if len(numbers) != 2:
            raise TypeError("Version.__new__() missing 1 required positional argument: 'minor'")
        version = (int(numbers[0]), int(numbers[1]))
    except (TypeError, ValueError) as exc:
        raise PlacementError(400, f"Invalid microversion: invalid version string: {value}; {exc}") from None
    if version not in VERSIONS:
        raise PlacementError(406, f"Invalid microversion: Unacceptable version header: {value}")
    return version


def _accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept")
    if not accept:
        return True
    for item in accept.split(","):
        media, *params = (x.strip() for x in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0 and media.lower() in ("application/json", "application/*", "*/*"):
            return True
    return False


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def _uuid_like(value: str) -> bool:
    """oslo.utils' is_uuid_like."""
    value = value.strip()
    for prefix in ("urn:", "uuid:"):
        value = value.removeprefix(prefix)
    return bool(_UUID_RE.match(value.strip("{}")))


class Placement:
    def __init__(self, state: CloudState):
        self.state = state

    # -- routing, as placement.handler.make_map: a known path with another method is a 405 ----

    _ROUTES: list[tuple[str, str]] = [
        ("", "root"),
        ("/", "root"),
        ("/resource_providers", "list_providers"),
        ("/resource_providers/{uuid}", "show_provider"),
        ("/resource_providers/{uuid}/inventories", "inventories"),
        ("/resource_providers/{uuid}/usages", "usages"),
        ("/resource_providers/{uuid}/aggregates", "aggregates"),
        ("/resource_providers/{uuid}/allocations", "provider_allocations"),
        ("/allocations/{consumer}", "consumer_allocations"),
    ]

    def routes(self) -> list[web.RouteDef]:
        """One aiohttp route per Placement path (so /_sim faults and stats name them), then a
        catch-all for the paths Placement does not have."""
        known = [web.route("*", PREFIX + path, self._handler(name)) for path, name in self._ROUTES]
        return known + [web.route("*", PREFIX + "/{tail:.*}", self.not_found)]

    def _handler(self, name: str):
        async def handle(request: web.Request) -> web.Response:
            if request.method != "GET":
                raise PlacementError(
                    405,
                    f"The method {request.method} is not allowed for this resource.",
                    headers={"Allow": "GET"},
                )
            if name != "root" and not _accepts_json(request):
                return web.Response(
                    status=406,
                    text="406 Not Acceptable\n\nThe resource could not be generated that was acceptable to "
                    "your browser (content of type text/plain. \n\n Only application/json is provided",
                )
            return getattr(self, name)(request, **request.match_info)

        return handle

    async def not_found(self, request: web.Request) -> web.Response:
        raise PlacementError(404, "", vary=False)

    def _ok(self, request: web.Request, body: Any, *, modified: bool = True) -> web.Response:
        response = web.Response(body=_json(body), content_type="application/json")
        if request["placement_version"] >= (1, 15) and modified:
            response.headers["Cache-Control"] = "no-cache"
            response.headers["Last-Modified"] = format_datetime(datetime.now(UTC), usegmt=True)
        return response

    def _node(self, provider_uuid: str, message: str | None = None, vary: bool = True) -> ComputeNode:
        node = self.state.nodes_by_uuid.get(provider_uuid)
        if node is None:
            missing = f"No resource provider with uuid {provider_uuid} found"
            raise PlacementError(404, (message or "{}").format(missing), vary=vary)
        return node

    # -- handlers ---------------------------------------------------------------------------

    def root(self, request: web.Request) -> web.Response:
        doc = {
            "versions": [
                {
                    "id": f"v{_text(MIN_VERSION)}",
                    "max_version": _text(MAX_VERSION),
                    "min_version": _text(MIN_VERSION),
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": ""}],
                }
            ]
        }
        return self._ok(request, doc)

    def _provider(self, node: ComputeNode, version: tuple[int, int]) -> dict:
        url = f"{PREFIX}/resource_providers/{node.uuid}"
        rels = ["inventories", "usages"]
        rels += ["aggregates"] if version >= (1, 1) else []
        rels += ["traits"] if version >= (1, 6) else []
        rels += ["allocations"] if version >= (1, 11) else []
        body: dict[str, Any] = {
            "uuid": node.uuid,
            "name": node.host,
            "generation": node.generation,
            "links": [{"rel": "self", "href": url}] + [{"rel": r, "href": f"{url}/{r}"} for r in rels],
        }
        if version >= (1, 14):
            body["parent_provider_uuid"] = None
            body["root_provider_uuid"] = node.uuid
        return body

    def show_provider(self, request: web.Request, uuid: str) -> web.Response:
        node = self._node(uuid, vary=False)
        return self._ok(request, self._provider(node, request["placement_version"]))

    def list_providers(self, request: web.Request) -> web.Response:
        version = request["placement_version"]
        q = request.query
        _validate_query(q, version)
        nodes = list(self.state.nodes.values())
        if q.get("name"):
            nodes = [n for n in nodes if n.host == q.getall("name")[-1]]
        if q.get("uuid"):
            nodes = [n for n in nodes if n.uuid == q.getall("uuid")[-1]]
        if q.get("in_tree"):  # every provider here is a root without children
            nodes = [n for n in nodes if n.uuid == q.getall("in_tree")[-1]]
        if "member_of" in q:
            required, forbidden = _member_of(q, version)
            nodes = [
                n
                for n in nodes
                if all(set(self.state.provider_aggregates(n)) & any_of for any_of in required)
                and not set(self.state.provider_aggregates(n)) & forbidden
            ]
        if "resources" in q:
            wanted = _resources(q.getall("resources")[-1])
            nodes = [n for n in nodes if self._has_capacity(n, wanted)]
        if "required" in q and _required_traits(q.getall("required")[-1]):
            nodes = []  # novasim's providers have no traits
        return self._ok(request, {"resource_providers": [self._provider(n, version) for n in nodes]})

    def _has_capacity(self, node: ComputeNode, wanted: dict[str, int]) -> bool:
        inventory, usages = node.inventory(), self.state.provider_usages(node)
        for rc, amount in wanted.items():
            inv = inventory.get(rc)
            if inv is None or not inv["min_unit"] <= amount <= inv["max_unit"] or amount % inv["step_size"]:
                return False
            capacity = (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]
            if usages.get(rc, 0) + amount > capacity:
                return False
        return True

    def inventories(self, request: web.Request, uuid: str) -> web.Response:
        node = self._node(uuid, "No resource provider with uuid " + uuid + " found : {}")
        return self._ok(
            request, {"resource_provider_generation": node.generation, "inventories": node.inventory()}
        )

    def usages(self, request: web.Request, uuid: str) -> web.Response:
        node = self._node(uuid, "No resource provider with uuid " + uuid + " found: {}")
        body = {"resource_provider_generation": node.generation, "usages": self.state.provider_usages(node)}
        return self._ok(request, body)

    def aggregates(self, request: web.Request, uuid: str) -> web.Response:
        version = request["placement_version"]
        if version < (1, 1):
            raise PlacementError(404, "")
        node = self._node(uuid, vary=False)
        body: dict[str, Any] = {"aggregates": self.state.provider_aggregates(node)}
        if version >= (1, 19):
            body["resource_provider_generation"] = node.generation
        return self._ok(request, body)

    def provider_allocations(self, request: web.Request, uuid: str) -> web.Response:
        version = request["placement_version"]
        node = self._node(uuid, "Resource provider '" + uuid + "' not found: {}")
        allocations: dict[str, dict] = {}
        for consumer_uuid in self.state.provider_consumers[node.uuid]:
            consumer = self.state.consumers[consumer_uuid]
            entry: dict[str, Any] = {"resources": dict(consumer.allocations[node.uuid])}
            if version >= (1, 28):
                entry["consumer_generation"] = consumer.generation
            allocations[consumer_uuid] = entry
        return self._ok(
            request, {"allocations": allocations, "resource_provider_generation": node.generation}
        )

    def consumer_allocations(self, request: web.Request, consumer: str) -> web.Response:
        version = request["placement_version"]
        found = self.state.consumers.get(consumer)
        if found is None:
            return self._ok(request, {"allocations": {}})
        body: dict[str, Any] = {
            "allocations": {
                provider: {
                    "resources": dict(resources),
                    "generation": self.state.nodes_by_uuid[provider].generation,
                }
                for provider, resources in found.allocations.items()
            }
        }
        if version >= (1, 12):
            body["project_id"] = found.project_id
            body["user_id"] = found.user_id
        if version >= (1, 28):
            body["consumer_generation"] = found.generation
        if version >= (1, 38):
            body["consumer_type"] = "unknown"  # Nova's claims do not name a consumer type
        return self._ok(request, body)


# -- query strings ----------------------------------------------------------------------------


def _rp_query_schema(version: tuple[int, int]) -> dict:
    """placement/schemas/resource_provider.py GET_RPS_SCHEMA_1_* for this microversion."""
    properties: dict[str, Any] = {"name": {"type": "string"}, "uuid": {"type": "string", "format": "uuid"}}
    if version >= (1, 3):
        properties["member_of"] = {"type": "string"}
    if version >= (1, 4):
        properties["resources"] = {"type": "string"}
    if version >= (1, 14):
        properties["in_tree"] = {"type": "string", "format": "uuid"}
    if version >= (1, 18):
        properties["required"] = {"type": "string"}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _schema_error(
    message: str, validator: str, schema_path: str, schema: Any, instance_path: str, instance: Any
):
    """jsonschema's ValidationError text, as webob flattens it (newlines become spaces)."""

    def pretty(thing: Any) -> str:
        return textwrap.indent(pprint.pformat(thing, width=72, sort_dicts=False), " " * 4).lstrip()

    text = (
        f"{message}\n\nFailed validating {validator!r} in {schema_path}:\n    {pretty(schema)}\n\n"
        f"On {instance_path}:\n    {pretty(instance)}"
    )
    return PlacementError(400, f"Invalid query string parameters: {text}".replace("\n", " "))


def _validate_query(query, version: tuple[int, int]) -> None:
    """util.validate_query_params: the schema of GET /resource_providers at this microversion."""
    schema = _rp_query_schema(version)
    instance = {k: query.getall(k)[-1] for k in query}
    extra = [k for k in instance if k not in schema["properties"]]
    if extra:
        listed = ", ".join(repr(k) for k in sorted(extra))
        message = f"Additional properties are not allowed ({listed} {'was' if len(extra) == 1 else 'were'} unexpected)"
        raise _schema_error(message, "additionalProperties", "schema", schema, "instance", instance)
    for key, value in instance.items():
        prop = schema["properties"][key]
        if prop.get("format") == "uuid" and not _schema_uuid(value):
            raise _schema_error(
                f"{value!r} is not a 'uuid'",
                "format",
                f"schema['properties'][{key!r}]",
                prop,
                f"instance[{key!r}]",
                value,
            )


def _schema_uuid(value: str) -> bool:
    """jsonschema's "uuid" format: a UUID written with its four dashes."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) > 23 and all(value[i] == "-" for i in (8, 13, 18, 23))


def _member_of(query, version: tuple[int, int]) -> tuple[list[set[str]], set[str]]:
    values = query.getall("member_of")
    if version < (1, 24) and len(values) > 1:
        raise PlacementError(400, "Multiple member_of parameters are not supported")
    required: list[set[str]] = []
    forbidden: set[str] = set()
    for value in values:
        if "," in value and not (value.startswith("in:") or value.startswith("!in:")):
            raise PlacementError(
                400,
                "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' keyword using the "
                f"valid microversion. Got: {value}",
            )
        wanted: set[str] = set()
        unwanted: set[str] = set()
        if value.startswith("!in:"):
            unwanted = set(value[4:].split(","))
        elif value.startswith("!"):
            unwanted = {value[1:]}
        elif value.startswith("in:"):
            wanted = set(value[3:].split(","))
        else:
            wanted = {value}
        for aggregate in wanted | unwanted:
            if not _uuid_like(aggregate):
                raise PlacementError(
                    400,
                    "Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). "
                    f"Got: {aggregate}",
                )
        if wanted:
            required.append(wanted)
        if unwanted:
            if version < (1, 32):
                raise PlacementError(
                    400, "Forbidden member_of parameters are not supported in the specified microversion"
                )
            forbidden |= unwanted
    return required, forbidden


def _resources(value: str) -> dict[str, int]:
    """util.normalize_resources_qs_param, then the resource classes Placement knows."""
    form = "Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024."
    if value.strip() == "":
        raise PlacementError(400, f"Badly formed resources parameter. {form} Got: empty string.")
    result: dict[str, int] = {}
    for item in value.split(","):
        try:
            rc, amount_text = item.split(":")
        except ValueError:
            raise PlacementError(400, f"Badly formed resources parameter. {form} Got: {item}.") from None
        try:
            amount = int(amount_text)
        except ValueError:
            raise PlacementError(
                400, f"Requested resource {rc} expected positive integer amount. Got: {amount_text}."
            ) from None
        if amount < 1:
            raise PlacementError(400, f"Requested resource {rc} requires amount >= 1. Got: {amount}.")
        result[rc] = amount
    for rc in result:
        if rc not in STANDARD_RESOURCE_CLASSES:
            raise PlacementError(
                400, f"Invalid resource class in resources parameter: No such resource class {rc}."
            )
    return result


def _required_traits(value: str) -> set[str]:
    """The traits a `required` value asks for (forbidden ones, !NAME, filter nothing here)."""
    names = value[3:].split(",") if value.startswith("in:") else value.split(",")
    return {n.strip() for n in names if n.strip() and not n.strip().startswith("!")}
