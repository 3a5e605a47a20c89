"""The HTTP server: Keystone, Nova, Placement and /_sim on one aiohttp app, bound to 127.0.0.1.

Middleware, outermost first: counters and faults (latency, injected errors, hangs), then Nova's
and Placement's request handling (authentication, microversion negotiation, errors as their fault
bodies), then holds (a held request is applied, its response is kept back until released).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

import yaml
from aiohttp import web

from . import placement
from .control import Control, Faults
from .fleet import Fleet
from .keystone import Keystone, unauthorized
from .nova import MAX_VERSION, PREFIX, Nova, fault, requested_version
from .state import CloudState, NovaError

log = logging.getLogger("novasim")

_LB_ERROR = {
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Time-out",
}


def _route_key(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    template = resource.canonical if resource is not None else "(unmatched)"
    return f"{request.method} {template}"


def _injected_error(status: int, path: str) -> web.Response:
    if status in _LB_ERROR:
        # What the load balancer in front of nova-api answers when the backend is gone.
        text = _LB_ERROR[status]
        html = (
            f"<html><body><h1>{text}</h1>\nNo server is available to handle this request.\n</body></html>\n"
        )
        return web.Response(status=status, text=html, content_type="text/html")
    if path.startswith(placement.PREFIX):
        return placement.error_response(status, "<class 'oslo_db.exception.DBConnectionError'>", None)
    return fault(
        status,
        "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log "
        "if possible.\n<class 'oslo_db.exception.DBConnectionError'>",
    )


class Simulator:
    def __init__(self, fleet: Fleet, faults: Faults | None = None):
        self.fleet = fleet
        self.keystone = Keystone(fleet.cloud)
        self.state = CloudState(fleet, customer_project_id=self.keystone.customer_project_id)
        self.nova = Nova(self.state, project_id=self.keystone.project_id)
        self.placement = placement.Placement(self.state)
        self.control = Control(self.state, self.keystone, faults or Faults())
        self.app = web.Application(
            middlewares=[self._observe, self._nova, self._placement, self._hold], client_max_size=8 * 2**20
        )
        self.app.add_routes(
            self.keystone.routes() + self.nova.routes() + self.placement.routes() + self.control.routes()
        )
        self.url = ""

    def set_url(self, url: str) -> None:
        self.url = url
        self.keystone.base_url = url
        self.nova.base_url = url

    @web.middleware
    async def _observe(self, request: web.Request, handler):
        if request.path.startswith("/_sim"):
            return await handler(request)
        key = _route_key(request)
        self.control.stats.started()
        faults = self.control.faults
        delay = faults.delay_s(key)
        if delay > 0:
            await asyncio.sleep(delay)
        injected = faults.injected(key, is_compute=request.path.startswith(PREFIX + "/"))
        if injected:
            kind, status = injected
            if kind == "hang":  # until the client gives up (or hang_s passes)
                deadline = time.monotonic() + faults.hang_s
                while (
                    time.monotonic() < deadline and request.transport and not request.transport.is_closing()
                ):
                    await asyncio.sleep(0.05)
                status = 504
            response = _injected_error(status, request.path)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        self.control.stats.record(key, response.status)
        return response

    @web.middleware
    async def _nova(self, request: web.Request, handler):
        path = request.path
        if not path.startswith("/compute"):
            return await handler(request)
        if path.rstrip("/") in ("/compute", PREFIX):
            return await handler(request)  # version documents need no token, as in Nova
        if not self.keystone.valid(request.headers.get("X-Auth-Token")):
            return unauthorized()
        try:
            version = requested_version(request)
        except NovaError as exc:
            return fault(exc.status, exc.message)
        request["microversion"] = version
        try:
            response = await handler(request)
        except NovaError as exc:
            response = fault(exc.status, exc.message)
        except web.HTTPNotFound:
            response = fault(404, "The resource could not be found.")
        except web.HTTPMethodNotAllowed:
            response = fault(405, "The method specified is not allowed for this resource.")
        text = f"{version[0]}.{version[1]}"
        response.headers["OpenStack-API-Version"] = f"compute {text}"
        response.headers["X-OpenStack-Nova-API-Version"] = text
        response.headers["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
        return response

    @web.middleware
    async def _placement(self, request: web.Request, handler):
        """keystonemiddleware (except for the root), then the microversion middleware, then the
        handler; errors as Placement's {"errors": [...]} bodies."""
        path = request.path
        if path != placement.PREFIX and not path.startswith(placement.PREFIX + "/"):
            return await handler(request)
        if path.rstrip("/") != placement.PREFIX and not self.keystone.valid(
            request.headers.get("X-Auth-Token")
        ):
            return unauthorized()
        try:
            version = placement.requested_version(request)
        except placement.PlacementError as exc:
            return placement.error_response(exc.status, exc.message, None, version_failed=True)
        request["placement_version"] = version
        vary = True
        try:
            response = await handler(request)
        except placement.PlacementError as exc:
            response = placement.error_response(exc.status, exc.message, version)
            response.headers.update(exc.headers)
            vary = exc.vary
        response.headers["OpenStack-API-Version"] = f"placement {version[0]}.{version[1]}"
        if vary:
            response.headers["Vary"] = "openstack-api-version"
        response.headers.setdefault("x-openstack-request-id", f"req-{uuid.uuid4()}")
        return response

    @web.middleware
    async def _hold(self, request: web.Request, handler):
        """Innermost: the request has been applied when the handler returns. It is written into the
        journal in that order, then its answer may be held back."""
        response = await handler(request)
        body = await request.read()  # what the handler read (aiohttp keeps it), or the rest now
        self.control.record(request.method, request.path, body, response.status)
        if request.path.startswith("/_sim") or not self.control.holds:
            return response
        route = request.match_info.route.resource
        if route is not None:
            await self.control.maybe_hold(request.method, route.canonical, body, request.path)
        return response

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> web.AppRunner:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]
        self.set_url(f"http://{host}:{bound}")
        return runner


def clouds_entry(sim: Simulator) -> dict:
    cloud = sim.fleet.cloud
    return {
        "auth": {
            "auth_url": f"{sim.url}/identity/v3",
            "username": cloud.username,
            "password": cloud.password,
            "project_name": cloud.project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": cloud.region,
        "identity_api_version": 3,
        "interface": "public",
    }


def write_clouds_yaml(path: Path, name: str, entry: dict) -> None:
    """Add or replace the entry `name` in a clouds.yaml, keeping every other entry."""
    data: dict = {}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            data = {}
    data.setdefault("clouds", {})[name] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)  # it holds a password
    tmp.replace(path)


__all__ = ["Simulator", "clouds_entry", "write_clouds_yaml", "MAX_VERSION"]
