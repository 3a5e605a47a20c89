"""The simulator's own knobs under /_sim: faults, holds, counters, state, out-of-band changes.

Nothing here exists in a real cloud; the operator never calls it. Tests, the demo and the
benchmarks use it (through novasim.testing.SimProcess) to make the cloud misbehave on purpose and
to count what the operator asked of it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from .keystone import Keystone
from .state import CloudState, NovaError


@dataclass
class RouteFault:
    error_rate: float = 0.0
    error_status: int = 503
    count: int | None = None  # fail only the next N matching requests
    hang: bool = False
    latency_ms: float = 0.0


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # on every /compute request
    error_status: int = 503
    hang_s: float = 600.0
    routes: dict[str, RouteFault] = field(default_factory=dict)  # "METHOD /route/{template}" -> fault
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, key: str) -> float:
        route = self.routes.get(key)
        extra = route.latency_ms if route else 0.0
        jitter = self.rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter + extra) / 1000.0

    def injected(self, key: str, is_compute: bool) -> tuple[str, int] | None:
        """("error", status) or ("hang", 0) when this request should fail, else None."""
        route = self.routes.get(key)
        if route is not None and (route.count is None or route.count > 0):
            if route.hang or (route.error_rate and self.rng.random() < route.error_rate):
                if route.count is not None:
                    route.count -= 1
                return ("hang", 0) if route.hang else ("error", route.error_status)
        if is_compute and self.error_rate and self.rng.random() < self.error_rate:
            return ("error", self.error_status)
        return None


@dataclass
class Hold:
    id: int
    method: str
    route: str
    body_contains: str | None
    remaining: int
    hits: int = 0
    held: int = 0
    path: str = ""  # the path of the request held last (the route with its ids)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, method: str, route: str, body: bytes) -> bool:
        return (
            self.remaining > 0
            and not self.released.is_set()
            and method == self.method
            and route == self.route
            and (self.body_contains is None or self.body_contains.encode() in body)
        )

    def view(self) -> dict:
        return {
            "id": self.id,
            "method": self.method,
            "route": self.route,
            "body_contains": self.body_contains,
            "remaining": self.remaining,
            "hits": self.hits,
            "held": self.held,
            "released": self.released.is_set(),
            "path": self.path,
        }


class Stats:
    def __init__(self):
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.first_at: float | None = None  # wall clock, when the first counted request arrived
        self.last_at: float | None = None  # ... and when the last one was answered

    def started(self) -> None:
        if self.first_at is None:
            self.first_at = time.time()

    def record(self, key: str, status: int) -> None:
        self.by_route[key] += 1
        self.by_status[str(status)] += 1
        self.last_at = time.time()

    def view(self) -> dict:
        total = sum(self.by_route.values())
        compute = sum(n for k, n in self.by_route.items() if " /compute" in k)
        return {
            "total": total,
            "compute": compute,
            "by_route": dict(sorted(self.by_route.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


class Control:
    def __init__(self, state: CloudState, keystone: Keystone, faults: Faults):
        self.state = state
        self.keystone = keystone
        self.faults = faults
        self.stats = Stats()
        self.holds: dict[int, Hold] = {}
        self._hold_ids = itertools.count(1)
        # Every request in the order it was applied (the /_sim ones too, but not journal reads):
        # tests read it to tell who changed what first.
        self.journal: collections.deque[dict] = collections.deque(maxlen=20_000)
        self._journal_seq = itertools.count(1)

    def record(self, method: str, path: str, body: bytes, status: int) -> None:
        if path == "/_sim/journal":
            return
        text = body[:500].decode("utf-8", errors="replace") if body else ""
        self.journal.append(
            {"seq": next(self._journal_seq), "method": method, "path": path, "body": text, "status": status}
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/stats", self.get_stats),
            web.get("/_sim/journal", self.get_journal),
            web.post("/_sim/stats/reset", self.reset_stats),
            web.get("/_sim/state", self.get_state),
            web.get("/_sim/faults", self.get_faults),
            web.post("/_sim/faults", self.set_faults),
            web.delete("/_sim/faults", self.clear_faults),
            web.post("/_sim/tokens/expire", self.expire_tokens),
            web.post("/_sim/hosts/{host}/instances", self.start_instance),
            web.delete("/_sim/hosts/{host}/instances", self.delete_instances),
            web.post("/_sim/hosts/{host}/service", self.set_service),
            web.post("/_sim/hosts/{host}/builds", self.schedule_build),
            web.post("/_sim/builds/{instance}/claim", self.claim_build),
            web.post("/_sim/migrations", self.start_migration),
            web.post("/_sim/migrations/{migration}/finish", self.finish_migration),
            web.post("/_sim/move", self.move_host),
            web.post("/_sim/holds", self.add_hold),
            web.get("/_sim/holds", self.list_holds),
            web.delete("/_sim/holds", self.release_all),
            web.get("/_sim/holds/{hold_id}", self.get_hold),
            web.post("/_sim/holds/{hold_id}/release", self.release),
        ]

    # -- holds, used by the HTTP middleware ---------------------------------------------------

    async def maybe_hold(self, method: str, route: str, body: bytes, path: str = "") -> None:
        for hold in self.holds.values():
            if hold.matches(method, route, body):
                hold.path = path
                hold.remaining -= 1
                hold.hits += 1
                hold.held += 1
                hold.arrived.set()
                try:
                    await hold.released.wait()
                finally:
                    hold.held -= 1
                return

    # -- handlers -----------------------------------------------------------------------------

    async def get_journal(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": list(self.journal)})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.view())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response(self.stats.view())

    async def get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.snapshot())

    def _faults_view(self) -> dict:
        f = self.faults
        return {
            "latency_ms": f.latency_ms,
            "jitter_ms": f.jitter_ms,
            "error_rate": f.error_rate,
            "error_status": f.error_status,
            "routes": {k: vars(v) for k, v in f.routes.items()},
        }

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults_view())

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await _body(request)
        f = self.faults
        for key in ("latency_ms", "jitter_ms", "error_rate", "hang_s"):
            if body.get(key) is not None:
                setattr(f, key, float(body[key]))
        if body.get("error_status") is not None:
            f.error_status = int(body["error_status"])
        for route, spec in (body.get("routes") or {}).items():
            if spec is None:
                f.routes.pop(route, None)
                continue
            unknown = set(spec) - set(vars(RouteFault()))
            if unknown:
                return _problem(f"unknown route fault keys: {sorted(unknown)}")
            f.routes[route] = RouteFault(**spec)
        return web.json_response(self._faults_view())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.latency_ms = self.faults.jitter_ms = self.faults.error_rate = 0.0
        self.faults.routes.clear()
        return web.json_response(self._faults_view())

    async def expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.keystone.expire_all()})

    async def start_instance(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        body = await _body(request)
        count = int(body.get("count", 1))
        if host not in self.state.computes:
            return _problem(f"no host {host}", 404)
        started = []
        for n in range(count):
            name = body.get("name") or f"{host}-oob-{len(self.state.instances_by_host.get(host, {})) + n + 1}"
            inst = self.state.start_instance(
                host,
                name,
                body.get("flavor", "gpu.standard"),
                body.get("status", "ACTIVE"),
                body.get("extra_specs") or {},
            )
            started.append(inst.id)
        return web.json_response({"started": started}, status=201)

    async def delete_instances(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        if host not in self.state.computes:
            return _problem(f"no host {host}", 404)
        return web.json_response({"deleted": self.state.delete_instances(host)})

    async def set_service(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        svc = self.state.computes.get(host)
        if svc is None:
            return _problem(f"no host {host}", 404)
        body = await _body(request)
        if "state" in body:
            svc.state = body["state"]
        if "status" in body:
            svc.disabled = body["status"] == "disabled"
            if not svc.disabled:
                svc.disabled_reason = None
        if "disabled_reason" in body:
            svc.disabled_reason = body["disabled_reason"]
        self.state.version += 1
        return web.json_response({"host": host, "state": svc.state, "disabled": svc.disabled})

    async def schedule_build(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        body = await _body(request)
        if host not in self.state.computes:
            return _problem(f"no host {host}", 404)
        scheduled = []
        for n in range(int(body.get("count", 1))):
            name = body.get("name") or f"{host}-build-{len(self.state.instances) + n + 1}"
            inst = self.state.schedule_build(host, name, body.get("flavor", "gpu.standard"))
            scheduled.append(inst.id)
        return web.json_response({"instance": scheduled[0], "instances": scheduled}, status=201)

    async def claim_build(self, request: web.Request) -> web.Response:
        try:
            inst = self.state.claim_build(request.match_info["instance"])
        except NovaError as exc:
            return _problem(exc.message, exc.status)
        return web.json_response({"instance": inst.id, "host": inst.host, "status": inst.status})

    async def start_migration(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body.get("instance"), str) or not isinstance(body.get("dest"), str):
            return _problem("give the instance (uuid) and dest (host)")
        try:
            migration = self.state.start_migration(body["instance"], body["dest"])
        except NovaError as exc:
            return _problem(exc.message, exc.status)
        return web.json_response(
            {
                "migration": migration.uuid,
                "id": migration.id,
                "source": migration.source_compute,
                "dest": migration.dest_compute,
                "status": migration.status,
            },
            status=201,
        )

    async def finish_migration(self, request: web.Request) -> web.Response:
        try:
            migration = self.state.finish_migration(request.match_info["migration"])
        except NovaError as exc:
            return _problem(exc.message, exc.status)
        return web.json_response({"migration": migration.uuid, "status": migration.status})

    async def move_host(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.state.move_host(body["host"], body["from"], body["to"])
        return web.json_response({"moved": body["host"]})

    async def add_hold(self, request: web.Request) -> web.Response:
        body = await _body(request)
        hold = Hold(
            id=next(self._hold_ids),
            method=body["method"].upper(),
            route=body["route"],
            body_contains=body.get("body_contains"),
            remaining=int(body.get("count", 1)),
        )
        self.holds[hold.id] = hold
        return web.json_response(hold.view(), status=201)

    async def list_holds(self, request: web.Request) -> web.Response:
        return web.json_response({"holds": [h.view() for h in self.holds.values()]})

    async def get_hold(self, request: web.Request) -> web.Response:
        hold = self.holds.get(int(request.match_info["hold_id"]))
        if hold is None:
            return _problem("no such hold", 404)
        wait = float(request.query.get("wait", 0))
        if wait and not hold.held:
            try:
                await asyncio.wait_for(hold.arrived.wait(), wait)
            except TimeoutError:
                pass
        return web.json_response(hold.view())

    async def release(self, request: web.Request) -> web.Response:
        hold = self.holds.get(int(request.match_info["hold_id"]))
        if hold is None:
            return _problem("no such hold", 404)
        hold.released.set()
        return web.json_response(hold.view())

    async def release_all(self, request: web.Request) -> web.Response:
        for hold in self.holds.values():
            hold.released.set()
        count = len(self.holds)
        self.holds.clear()
        return web.json_response({"released": count})


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise NovaError(400, "the /_sim body must be JSON") from None
    return body if isinstance(body, dict) else {}


def _problem(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
