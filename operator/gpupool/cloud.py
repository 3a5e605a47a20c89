"""Everything the operator says to OpenStack. The only module that imports openstacksdk.

One `snapshot()` gathers aggregates, nova-compute services and instance counts in three Nova
requests, whatever the fleet size. The move steps are one request each. Transient failures
(5xx, timeouts, refused connections) are retried with backoff and jitter; an expired token is
renewed by keystoneauth itself (it re-authenticates once on a 401); Nova's "already in aggregate"
and "not in aggregate" answers count as done, so every step is idempotent. Everything else becomes
one of our own exceptions, whose messages carry no credentials.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import openstack
import openstack.config
import openstack.config.loader
import openstack.connection
import yaml
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import loading as ksa_loading
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
from .redact import redact, redact_url

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
    """Nova's own error message, on one line, with no credential of any URL in it (keystoneauth
    and urllib3 put the whole auth_url, `user:pass@` and query string included, into theirs)."""
    details = getattr(exc, "details", None) or getattr(exc, "message", None) or exc
    return redact(" ".join(str(details).split()))


def _connection_failure(exc: BaseException) -> ksa_exceptions.ConnectionError | None:
    """The refused/timed-out/TLS-failed connection behind `exc`, if that is what it is.

    keystoneauth reports a Keystone it could not reach during version discovery as a
    DiscoveryFailure raised while handling the ConnectFailure (or ConnectTimeout, SSLError)."""
    if isinstance(exc, ksa_exceptions.ConnectionError):
        return exc
    if not isinstance(exc, ksa_exceptions.DiscoveryFailure):
        return None
    seen: set[int] = set()
    inner: BaseException | None = exc.__cause__ or exc.__context__
    while inner is not None and id(inner) not in seen:
        if isinstance(inner, ksa_exceptions.ConnectionError):
            return inner
        seen.add(id(inner))
        inner = inner.__cause__ or inner.__context__
    return None


def _is_transient(exc: BaseException) -> bool:
    if _connection_failure(exc) is not None:
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
        """`timeout` is each request's, unless the clouds.yaml entry sets its own api_timeout."""
        self.cloud_name = cloud_name
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._source = _source_of(cloud_name)
        self._conn = self._connect(cloud_name, timeout, self._source)

    @staticmethod
    def _connect(cloud_name: str, timeout: float, source: str):
        """The connection, or a CloudConfigError that names the entry and what to fix in it."""
        _check_config_file_variable()
        try:
            with _quiet_plugin_lookup():
                region = openstack.config.get_cloud_region(cloud=cloud_name)
        except sdk_exceptions.ConfigException as exc:
            raise CloudConfigError(
                f"cloud {cloud_name!r} is not usable: {_details(exc)} ({_where_to_look()})"
            ) from None
        except ksa_exceptions.ClientException as exc:  # MissingRequiredOptions, NoMatchingPlugin, ...
            raise CloudConfigError(_auth_settings_problem(cloud_name, source, exc)) from None
        except (AttributeError, ValueError, TypeError) as exc:  # the loader on a malformed file
            raise CloudConfigError(_malformed_entry(cloud_name, exc)) from None
        if region.config.get("api_timeout") is None:
            region.config["api_timeout"] = timeout
        return openstack.connection.Connection(config=region)

    def close(self) -> None:
        self._conn.close()

    @property
    def auth_url(self) -> str:
        return self._auth_url()

    def _auth_url(self) -> str:
        """Where Keystone is expected, said in errors so users can check it: without the
        `user:pass@` or query string a URL can carry (those may hold a password)."""
        try:
            return redact_url(str(self._conn.config.config["auth"]["auth_url"]))
        except (AttributeError, KeyError, TypeError):
            return "unknown"

    def _auth_type(self) -> str:
        try:
            return str(self._conn.config.config.get("auth_type") or "password")
        except AttributeError:
            return "password"

    def _refused(self, what: str) -> CloudAuthError:
        auth_type, source = self._auth_type(), self._source
        if "applicationcredential" in auth_type:
            check = (
                "check application_credential_id (or application_credential_name with username and "
                f"user_domain_name) and application_credential_secret in {source}, and that the "
                "credential has not expired or been deleted"
            )
        elif "token" in auth_type:
            check = f"the token may have expired or been revoked: put a new one in auth.token in {source}"
        elif auth_type in ("password", "v3password", "v2password"):
            check = f"check username, password, project and domain in {source}"
        else:
            check = f"check the settings of the {auth_type} plugin in {source}"
        return CloudAuthError(
            f"{what}: Keystone refused the credentials of cloud {self.cloud_name!r} (auth_type {auth_type}); {check}"
        )

    def _no_endpoint(self, what: str, exc: BaseException) -> CloudConfigError:
        """openstacksdk's "Service 'compute' is disabled because its configuration could not be
        loaded" hides the two usual causes: no project (an unscoped token has no catalog) and a
        region or interface the catalog does not have."""
        details = _details(exc)
        if "catalog is empty" in details:
            return CloudConfigError(
                f"{what}: Keystone gave cloud {self.cloud_name!r} an empty service catalog: the "
                f"credentials are not scoped to a project; set project_name (or project_id) and "
                f"project_domain_name in {self._source}"
            )
        reason = details.rpartition("service catalog: ")[2] if "service catalog: " in details else details
        return CloudConfigError(
            f"{what}: cloud {self.cloud_name!r} has no such endpoint in its catalog ({reason}); "
            f"check region_name and interface in {self._source}"
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Nova call with retries on transient failures; map errors to ours."""
        last: BaseException | None = None
        for attempt in range(self._retry.attempts):
            try:
                return fn()
            except (sdk_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
                if _is_auth_failure(exc):
                    raise self._refused(what) from None
                if isinstance(
                    exc,
                    ksa_exceptions.EndpointNotFound
                    | sdk_exceptions.EndpointNotFound
                    | sdk_exceptions.ServiceDisabledException,
                ):
                    raise self._no_endpoint(what, exc) from None
                if not _is_transient(exc):
                    raise nova_error(f"{what}: {_details(exc)}", _status_code(exc), attempt + 1) from None
                last = exc
                delay = self._retry.delay(attempt)
                log.info(
                    "%s failed (%s), retry %d in %.2fs",
                    what,
                    _brief(_connection_failure(exc) or exc),
                    attempt + 1,
                    delay,
                )
                self._sleep(delay)
        assert last is not None
        failure = _connection_failure(last)
        if isinstance(failure, ksa_exceptions.SSLError):
            raise CloudUnreachable(
                f"{what}: no TLS connection to cloud {self.cloud_name!r} after {self._retry.attempts} "
                f"attempts (SSLError); check http or https in auth_url ({self._auth_url()}), and cacert "
                f"and verify in {self._source}"
            ) from None
        if failure is not None:
            raise CloudUnreachable(
                f"{what}: cloud {self.cloud_name!r} did not answer after {self._retry.attempts} attempts "
                f"({_brief(failure)}); check auth_url ({self._auth_url()}) in {self._source} and the network"
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


def _candidates() -> list[str]:
    """The files openstacksdk tries, in its order: OS_CLIENT_CONFIG_FILE, then the usual places."""
    named = os.environ.get("OS_CLIENT_CONFIG_FILE")
    return ([named] if named else []) + list(openstack.config.loader.CONFIG_FILES)


def _parse(path: str) -> tuple[Any, str | None]:
    """(the file's data, None), or (None, one line on why it cannot be read), as openstacksdk
    reads it (JSON for *.json, YAML otherwise). YAML's own error text quotes the file: not used."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except IsADirectoryError:
        return None, f"{path} is a folder, not a clouds.yaml"
    except OSError as exc:
        return None, f"{path}: cannot read it ({exc.strerror})"
    except UnicodeDecodeError:
        return None, f"{path}: not UTF-8 text; save it as UTF-8"
    try:
        return (json.loads(text) if path.endswith(".json") else yaml.safe_load(text)), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{path}:{mark.line + 1}" if mark is not None else path
        return None, f"{at}: not valid YAML ({exc.problem or exc.context or 'syntax error'}); fix the file"
    except yaml.YAMLError:
        return None, f"{path}: not valid YAML; fix the file"
    except json.JSONDecodeError as exc:
        return None, f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file"


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", int: "a number"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _shape_problem(path: str, data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"{path}: the file is {_kind(data)}; it needs a top-level 'clouds:' mapping"
    clouds = data.get("clouds")
    if "clouds" in data and not isinstance(clouds, dict):
        return (
            f"{path}: 'clouds' must map each cloud's name to its settings, not be {_kind(clouds)} "
            "(clouds: {NAME: {auth: {auth_url: ...}}})"
        )
    return None


def _check_config_file_variable() -> None:
    """OS_CLIENT_CONFIG_FILE names a file that is missing or broken: say so. (openstacksdk would
    skip it and look elsewhere, which can find another cloud of the same name.)"""
    path = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not path:
        return
    if not os.path.exists(path):
        raise CloudConfigError(
            f"OS_CLIENT_CONFIG_FILE is {path}, which does not exist; point it at your clouds.yaml or unset it"
        )
    data, problem = _parse(path)
    problem = problem or _shape_problem(path, data)
    if problem:
        raise CloudConfigError(f"{problem} (named by OS_CLIENT_CONFIG_FILE)")


def _where_to_look() -> str:
    """The hint after "cloud X is not usable": which file was read and what it has, or why none."""
    skipped: list[str] = []
    for path in _candidates():
        if not os.path.exists(path):
            continue
        _, problem = _parse(path)
        if problem:
            skipped.append(problem)
            continue
        known = _known_cloud_names()
        entries = ", ".join(known) if known else "no entries"
        hint = f"{path} has: {entries}; fix the spec's cloud, pass --os-cloud, or set OS_CLIENT_CONFIG_FILE"
        return "; ".join([hint, *(f"skipped {p}" for p in skipped)])
    if skipped:
        return "; ".join(skipped)
    if any(k.startswith("OS_AUTH") for k in os.environ):
        name = os.environ.get("OS_CLOUD_NAME", "envvars")
        return f"no clouds.yaml was found; the OS_* environment variables make the cloud {name!r}: pass --os-cloud {name}"
    return (
        "no clouds.yaml was found (looked in ./clouds.yaml, ~/.config/openstack/ and "
        "/etc/openstack/); set OS_CLIENT_CONFIG_FILE to yours"
    )


def _from_environment(cloud_name: str) -> bool:
    return cloud_name == os.environ.get("OS_CLOUD_NAME", "envvars")


def _source_of(cloud_name: str) -> str:
    """Where the cloud's settings come from, for "... in <source>" in messages."""
    if _from_environment(cloud_name):
        return "the OS_* environment variables"
    return config_file() or "clouds.yaml"


def _auth_settings_problem(cloud_name: str, source: str, exc: ksa_exceptions.ClientException) -> str:
    where = f"cloud {cloud_name!r} in {source}"
    if isinstance(exc, ksa_exceptions.MissingRequiredOptions):
        dests = [str(getattr(o, "dest", None) or o.name).replace("-", "_") for o in exc.options]
        if _from_environment(cloud_name):
            return f"{where} lacks {', '.join('OS_' + d.upper() for d in dests)}: set it"
        return f"{where} lacks {', '.join('auth.' + d for d in dests)}: add it under auth:"
    if isinstance(exc, ksa_exceptions.NoMatchingPlugin):
        with _quiet_plugin_lookup():  # loading every plugin logs the ones whose extras are missing
            known = sorted(ksa_loading.get_available_plugin_names())
        close = difflib.get_close_matches(exc.name, known, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"{where}: auth_type {exc.name!r} is not a keystoneauth plugin; {guess}"
            "the usual ones are password, v3applicationcredential and token"
        )
    return f"{where}: its auth settings cannot be used: {_details(exc)}"


def _malformed_entry(cloud_name: str, exc: BaseException) -> str:
    """What is wrong in the file openstacksdk's loader choked on (it says only "'str' object has no
    attribute 'get'" and the like)."""
    path = config_file() or "clouds.yaml"
    where = f"cloud {cloud_name!r} in {path}"
    data, _ = _parse(path) if path != "clouds.yaml" else (None, None)
    problem = _shape_problem(path, data) if data is not None else None
    if problem:
        return problem
    entry = (data or {}).get("clouds", {}).get(cloud_name)
    if entry is not None and not isinstance(entry, dict):
        return f"{where}: its settings must be a mapping (auth:, region_name:, ...), not {_kind(entry)}"
    auth = entry.get("auth") if isinstance(entry, dict) else None
    if auth is not None and not isinstance(auth, dict):
        return f"{where}: auth must be a mapping (auth_url:, username:, password:, ...), not {_kind(auth)}"
    return (
        f"{where} cannot be loaded ({type(exc).__name__}: {redact(str(exc))}); "
        "compare it with openstacksdk's clouds.yaml format"
    )


@contextlib.contextmanager
def _quiet_plugin_lookup() -> Iterator[None]:
    """stevedore logs "Could not load <auth_type>" before keystoneauth raises NoMatchingPlugin,
    which our CloudConfigError says better, in one line (and "Could not load <plugin>" for each
    plugin whose extra libraries are not installed when all are listed)."""

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Could not load")

    loggers = [logging.getLogger(name) for name in ("stevedore.named", "stevedore.extension")]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def config_file() -> str | None:
    """The clouds.yaml openstacksdk reads: the first of OS_CLIENT_CONFIG_FILE and the usual places
    that exists and parses (openstacksdk skips the others)."""
    for path in _candidates():
        if os.path.exists(path) and _parse(path)[1] is None:
            return path
    return None
