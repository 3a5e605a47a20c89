"""Everything the operator says to OpenStack. The only module that imports openstacksdk.

One `snapshot()` gathers aggregates, nova-compute services and instance counts in three Nova
requests, whatever the fleet size. The move steps are one request each. Transient failures
(5xx, timeouts, refused connections) are retried with backoff and jitter; an expired token is
renewed by keystoneauth itself (it re-authenticates once on a 401); Nova's "already in aggregate"
and "not in aggregate" answers count as done, so every step is idempotent. Everything else becomes
one of our own exceptions, whose messages carry no credentials.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import openstack
import openstack.config
from keystoneauth1 import exceptions as ksa_exceptions
from openstack import exceptions as sdk_exceptions

from . import metrics, novajson
from .errors import (
    AlreadyAMember,
    CloudAuthError,
    CloudConfigError,
    CloudUnreachable,
    Conflict,
    HostNotInAggregate,
    NotAMember,
    NotFound,
    nova_error,
)
from .intent import stop_reason
from .model import Aggregate, Host, HostNow, Snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPUTE_BINARY = "nova-compute"
# The last microversion whose hypervisor list still carries running_vms: one request counts the
# instances of every host. The mover re-checks each host with a servers query before it moves it.
HYPERVISOR_COUNTS_MICROVERSION = "2.87"
# Aggregates carry their uuid from 2.41; nothing later changes the list.
AGGREGATE_MICROVERSION = "2.41"
# Service ids are UUIDs and PUT /os-services/{id} exists from here on.
SERVICE_UPDATE_MICROVERSION = "2.53"
# Placement's allocations of a resource provider exist since 1.0; nothing we read changed since.
PLACEMENT_MICROVERSION = "1.0"
# Servers carry their flavor's extra specs from 2.47 (the GPU usage reads them).
FLAVOR_EXTRA_SPECS_MICROVERSION = "2.47"
SERVERS_PAGE = 1000

_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})


class RetryPolicy:
    """Exponential backoff with full jitter: spreads retries of parallel moves apart."""

    def __init__(self, attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0, rng=None):
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None:
        code = getattr(exc, "http_status", None)
    return code if isinstance(code, int) else None


def _details(exc: BaseException) -> str:
    """Nova's own error message, on one line, without URLs or request ids."""
    details = getattr(exc, "details", None) or getattr(exc, "message", None) or exc
    return " ".join(str(details).split())


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ksa_exceptions.ConnectionError):
        return True
    return _status_code(exc) in _TRANSIENT_STATUS


def _is_auth_failure(exc: BaseException) -> bool:
    return isinstance(exc, ksa_exceptions.Unauthorized) or _status_code(exc) == 401


class Cloud:
    """A connection to one clouds.yaml entry, with the few calls the operator needs."""

    def __init__(
        self,
        cloud_name: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cloud_name = cloud_name
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._conn = self._connect(cloud_name, timeout)

    @staticmethod
    def _connect(cloud_name: str, timeout: float):
        try:
            return openstack.connect(cloud=cloud_name, api_timeout=timeout)
        except sdk_exceptions.ConfigException as exc:
            path, known = config_file(), _known_cloud_names()
            if path is None:
                hint = (
                    "no clouds.yaml was found (looked in ./clouds.yaml, ~/.config/openstack/ and "
                    "/etc/openstack/); set OS_CLIENT_CONFIG_FILE to yours"
                )
            else:
                entries = ", ".join(known) if known else "no entries"
                hint = f"{path} has: {entries}; fix the spec's cloud, pass --os-cloud, or set OS_CLIENT_CONFIG_FILE"
            raise CloudConfigError(f"cloud {cloud_name!r} is not usable: {_details(exc)} ({hint})") from None

    def close(self) -> None:
        self._conn.close()

    @property
    def auth_url(self) -> str:
        return self._auth_url()

    def _auth_url(self) -> str:
        """Where Keystone is expected (not a secret; said in errors so users can check it)."""
        try:
            return str(self._conn.config.config["auth"]["auth_url"])
        except (AttributeError, KeyError, TypeError):
            return "unknown"

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Nova call with retries on transient failures; map errors to ours."""
        last: BaseException | None = None
        for attempt in range(self._retry.attempts):
            try:
                return fn()
            except (sdk_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
                if _is_auth_failure(exc):
                    raise CloudAuthError(
                        f"{what}: Keystone refused the credentials of cloud {self.cloud_name!r}; "
                        "check username, password, project and domain in clouds.yaml"
                    ) from None
                if isinstance(exc, ksa_exceptions.EndpointNotFound | sdk_exceptions.EndpointNotFound):
                    raise CloudConfigError(
                        f"{what}: cloud {self.cloud_name!r} has no compute endpoint in its catalog "
                        "(check region_name and interface in clouds.yaml)"
                    ) from None
                if not _is_transient(exc):
                    raise nova_error(f"{what}: {_details(exc)}", _status_code(exc), attempt + 1) from None
                last = exc
                delay = self._retry.delay(attempt)
                log.info("%s failed (%s), retry %d in %.2fs", what, _brief(exc), attempt + 1, delay)
                self._sleep(delay)
        assert last is not None
        if isinstance(last, ksa_exceptions.ConnectionError):
            raise CloudUnreachable(
                f"{what}: cloud {self.cloud_name!r} did not answer after {self._retry.attempts} attempts "
                f"({_brief(last)}); check auth_url ({self._auth_url()}) in clouds.yaml and the network"
            ) from None
        raise nova_error(
            f"{what}: still failing after {self._retry.attempts} attempts: {_details(last)}",
            _status_code(last),
            self._retry.attempts,
        ) from None

    def _request(self, service: str, method: str, path: str, **kwargs: Any):
        """One HTTP request to Nova ("compute") or Placement, timed and counted by route template
        (metrics.py): every request gpupool makes passes here."""
        adapter = self._conn.compute if service == "compute" else self._conn.placement
        started = time.monotonic()
        code = None
        try:
            response = adapter.request(path, method, **kwargs)
            code = response.status_code
            return response
        finally:
            metrics.nova_request(method, path, code, time.monotonic() - started)

    def _get_json(self, path: str, microversion: str | None = None) -> dict[str, Any]:
        response = self._request("compute", "GET", path, microversion=microversion)
        sdk_exceptions.raise_from_response(response)
        return response.json()

    # -- reading ------------------------------------------------------------------------------

    def stop_reason(self) -> str | None:
        """The kill switch, read on its own (one request: the aggregate list)."""
        body = self._call(
            "list aggregates", lambda: self._get_json("/os-aggregates", microversion=AGGREGATE_MICROVERSION)
        )
        return stop_reason(novajson.aggregates(body))

    def snapshot(self) -> Snapshot:
        """Aggregates, nova-compute hosts and their instance counts: three Nova requests.

        The bodies are read as JSON, not as openstacksdk resources: building a resource object per
        aggregate and per service costs about 1 ms each, which at 10,000 hosts is seconds per pass
        (bench: novasim_rps.py shows 0.48 s for 500 aggregates through the SDK, 6 ms raw).
        """
        aggregates = self._call(
            "list aggregates", lambda: self._get_json("/os-aggregates", microversion=AGGREGATE_MICROVERSION)
        )
        services = self._call(
            "list compute services",
            lambda: self._get_json(
                f"/os-services?binary={COMPUTE_BINARY}", microversion=SERVICE_UPDATE_MICROVERSION
            ),
        )
        counts, nodes = self._call("count instances per host", self._instance_counts)
        return Snapshot(
            aggregates=novajson.aggregates(aggregates), hosts=novajson.hosts(services, counts, nodes)
        )

    def aggregates_holding(self, host: str) -> frozenset[str]:
        """The names of the aggregates that hold `host` now (one aggregate list)."""
        body = self._call(
            "list aggregates", lambda: self._get_json("/os-aggregates", microversion=AGGREGATE_MICROVERSION)
        )
        return frozenset(name for name, agg in novajson.aggregates(body).items() if host in agg.hosts)

    def _instance_counts(self) -> tuple[dict[str, int], dict[str, str]]:
        """({host: instances}, {host: compute node uuid}) from the hypervisor list."""
        counts: dict[str, int] = {}
        nodes: dict[str, str] = {}
        path: str | None = "/os-hypervisors/detail"
        while path:
            page_counts, page_nodes, path = novajson.hypervisor_page(
                self._get_json(path, microversion=HYPERVISOR_COUNTS_MICROVERSION)
            )
            for host, running in page_counts.items():
                counts[host] = counts.get(host, 0) + running
            for host, node in page_nodes.items():
                nodes.setdefault(host, node)
        return counts, nodes

    def gpus_in_use(self) -> dict[str, int]:
        """{host: GPUs its instances use}, from every server's flavor (one paged list across all
        projects, 1,000 servers a page; only hosts with GPU instances appear)."""

        def read() -> dict[str, int]:
            used: dict[str, int] = {}
            path: str | None = f"/servers/detail?all_tenants=1&limit={SERVERS_PAGE}"
            while path:
                page, path = novajson.gpus_page(
                    self._get_json(path, microversion=FLAVOR_EXTRA_SPECS_MICROVERSION)
                )
                for host, count in page.items():
                    used[host] = used.get(host, 0) + count
            return {host: count for host, count in used.items() if count}

        return self._call("count the GPUs instances use", read)

    def host_now(self, host: Host) -> HostNow:
        """The host's service (status, state, reason) and its instances, in one request.

        `GET /os-hypervisors/{id}?with_servers=true` at 2.87 carries both, so the checks right
        before a disable and right before an enable cost one request each. A service Nova lists
        without a hypervisor is read from the service list (its instances are then unknown).
        """
        if host.hypervisor_id is None:
            return self._call(f"read the service of {host.name}", lambda: self._service_now(host))

        def read() -> HostNow:
            body = self._get_json(
                f"/os-hypervisors/{quote(host.hypervisor_id or '')}?with_servers=true",
                microversion=HYPERVISOR_COUNTS_MICROVERSION,
            )
            return novajson.host_now_from_hypervisor(host.name, body)

        return self._call(f"read {host.name} and its instances", read)

    def _service_now(self, host: Host) -> HostNow:
        body = self._get_json(
            f"/os-services?binary={COMPUTE_BINARY}&host={quote(host.name)}",
            microversion=SERVICE_UPDATE_MICROVERSION,
        )
        now = novajson.host_now_from_services(host.name, body)
        if now is None:
            raise NotFound(f"read the service of {host.name}: Nova lists no nova-compute service", 404)
        return now

    def claims_on(self, host: Host) -> tuple[str, ...]:
        """Consumers holding resources on the host in Placement: instances, builds, migrations.

        The authoritative "is anything here or on its way here": the scheduler claims in Placement
        before the compute claims the host, and a migration holds the destination (instance) and
        the source (migration record) from its start, while an instance's `host` field shows
        neither. One request. A host without a compute node cannot be checked: it reports itself.
        """
        if host.hypervisor_id is None:
            return (f"{host.name} has no compute node to check",)

        def read() -> tuple[str, ...]:
            response = self._request(
                "placement",
                "GET",
                f"/resource_providers/{quote(host.hypervisor_id or '')}/allocations",
                microversion=PLACEMENT_MICROVERSION,
            )
            sdk_exceptions.raise_from_response(response)
            return novajson.consumers(response.json())

        return self._call(f"read the Placement allocations of {host.name}", read)

    # -- move steps ---------------------------------------------------------------------------

    def disable_service(self, host: Host, reason: str) -> None:
        self._call(
            f"disable nova-compute on {host.name}",
            lambda: _checked(
                self._request(
                    "compute",
                    "PUT",
                    f"/os-services/{host.service_id}",
                    json={"status": "disabled", "disabled_reason": reason},
                    microversion=SERVICE_UPDATE_MICROVERSION,
                )
            ),
        )

    def enable_service(self, host: Host) -> None:
        self._call(
            f"enable nova-compute on {host.name}",
            lambda: _checked(
                self._request(
                    "compute",
                    "PUT",
                    f"/os-services/{host.service_id}",
                    json={"status": "enabled"},
                    microversion=SERVICE_UPDATE_MICROVERSION,
                )
            ),
        )

    def remove_host(
        self, aggregate: Aggregate, host: str, *, expect_member: bool = False
    ) -> frozenset[str] | None:
        """Remove a host from an aggregate; 'not in the aggregate' means it is already done.

        Returns the aggregate's hosts as Nova answered (its response carries the whole aggregate),
        or None when Nova said it was done already and sent no membership. With `expect_member`,
        a host that was not there at the first try raises HostNotInAggregate: it was not our own
        earlier try that removed it, so someone else moved it.
        """
        try:
            answer = self._call(
                f"remove {host} from {aggregate.name}",
                lambda: self._aggregate_action(aggregate, {"remove_host": {"host": host}}),
            )
        except NotAMember as exc:
            if expect_member and exc.attempts == 1:
                raise HostNotInAggregate(f"{host} is not in {aggregate.name} any more") from None
            return None
        return answer

    def add_host(self, aggregate: Aggregate, host: str) -> frozenset[str] | None:
        """Add a host to an aggregate; 'already has host' means it is already done.

        Returns the aggregate's hosts as Nova answered, or None (see remove_host).
        """
        try:
            answer = self._call(
                f"add {host} to {aggregate.name}",
                lambda: self._aggregate_action(aggregate, {"add_host": {"host": host}}),
            )
        except AlreadyAMember:
            return None
        return answer

    def _aggregate_action(self, aggregate: Aggregate, body: dict) -> frozenset[str] | None:
        """POST an aggregate action; the members Nova answers with. Raw JSON, as in snapshot():
        the SDK's Aggregate object costs ~2 ms of CPU per call for a 2,000-host aggregate."""
        response = self._request(
            "compute",
            "POST",
            f"/os-aggregates/{aggregate.id}/action",
            json=body,
            microversion=AGGREGATE_MICROVERSION,
        )
        _checked(response)
        return novajson.aggregate_members(response.json())

    def set_aggregate_metadata(self, aggregate: Aggregate, metadata: dict[str, str | None]) -> None:
        self._call(
            f"set metadata on {aggregate.name}",
            lambda: self._aggregate_action(aggregate, {"set_metadata": {"metadata": metadata}}),
        )

    def get_aggregate(self, aggregate: Aggregate) -> Aggregate | None:
        """The aggregate as Nova has it now (by id; a small request), None when it is gone."""

        def read() -> Aggregate:
            body = self._get_json(f"/os-aggregates/{aggregate.id}", microversion=AGGREGATE_MICROVERSION)
            return novajson.aggregate(body["aggregate"])

        try:
            return self._call(f"read aggregate {aggregate.name}", read)
        except NotFound:
            return None

    def create_aggregate(self, name: str) -> Aggregate | None:
        """Create an empty aggregate; None when one of that name exists (Nova keeps names unique)."""

        def create() -> Aggregate:
            response = self._request(
                "compute",
                "POST",
                "/os-aggregates",
                json={"aggregate": {"name": name}},
                microversion=AGGREGATE_MICROVERSION,
            )
            _checked(response)
            return novajson.aggregate(response.json()["aggregate"])

        try:
            return self._call(f"create aggregate {name}", create)
        except Conflict:
            return None

    def delete_aggregate(self, aggregate: Aggregate) -> bool:
        """Delete an aggregate by id; False when it was gone already."""

        def delete() -> None:
            _checked(
                self._request(
                    "compute", "DELETE", f"/os-aggregates/{aggregate.id}", microversion=AGGREGATE_MICROVERSION
                )
            )

        try:
            self._call(f"delete aggregate {aggregate.name}", delete)
        except NotFound:
            return False
        return True


def _checked(response) -> None:
    sdk_exceptions.raise_from_response(response)


def _brief(exc: BaseException) -> str:
    code = _status_code(exc)
    kind = type(exc).__name__
    return f"{kind} {code}" if code else kind


def _known_cloud_names() -> list[str]:
    try:
        names = openstack.config.OpenStackConfig().get_cloud_names()
    except Exception:  # a broken clouds.yaml: the caller's message already says so
        return []
    return sorted(n for n in names if n != "defaults")  # "defaults" is openstacksdk's, not a file's


def config_file() -> str | None:
    """The clouds.yaml openstacksdk reads (OS_CLIENT_CONFIG_FILE first, then the usual places)."""
    try:
        return openstack.config.OpenStackConfig().config_filename
    except Exception:  # noqa: BLE001 - unreadable: said by the error that follows
        return None
