"""The Kubernetes side, through the official client: GpuHostPools, their status, Events.

With handlers.py (kopf) and peering.py (the peering records), the only module that talks to the
Kubernetes API. Cluster-scoped objects have their Events in the `default` namespace, where
`kubectl describe` finds them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from typing import Any, cast

import kubernetes
from kubernetes.client import ApiException

from .api import GROUP, KIND, PLURAL, VERSION
from .errors import StatusConflict

# Every request: (connect, read) seconds. An API server that stops answering on an open
# connection costs a request at most this long, never a thread for good.
TIMEOUT = (5, 30)
POOL_SIZE = 64
EVENTS_NAMESPACE = "default"
COMPONENT = "gpupool-operator"

log = logging.getLogger(__name__)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KubeConfigError(Exception):
    """No usable Kubernetes configuration; the message says where it looked."""


def load_config() -> None:
    """In a pod: the service account. Elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
        return
    except kubernetes.config.ConfigException:
        pass
    where = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    source = "$KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default"
    try:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise KubeConfigError(
            f"no Kubernetes API to talk to: not running in a pod, and {where} ({source}) gives none "
            f"({detail}); set KUBECONFIG to a kubeconfig file or run the operator in the cluster"
        ) from None


class Kube:
    def __init__(self, identity: str | None = None):
        config = kubernetes.client.Configuration.get_default_copy()
        config.keep_alive = True  # TCP keepalive: a silently dropped connection is noticed
        config.connection_pool_maxsize = POOL_SIZE  # passes run in parallel, one per resource
        self.api = kubernetes.client.ApiClient(config)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.identity = identity or f"{os.uname().nodename}-{uuid.uuid4().hex[:6]}"

    # -- GpuHostPools -----------------------------------------------------------------------

    def list_pools(self) -> list[dict[str, Any]]:
        answer = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=TIMEOUT)
        return cast(dict[str, Any], answer)["items"]

    def get_pool(self, name: str) -> dict[str, Any] | None:
        try:
            answer = self.custom.get_cluster_custom_object(
                GROUP, VERSION, PLURAL, name, _request_timeout=TIMEOUT
            )
            return cast(dict[str, Any], answer)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_status(self, name: str, status: dict, resource_version: str | None = None) -> str | None:
        """Merge `status` into the resource's status subresource (null values remove keys).

        With `resource_version`, only if the resource is still at that version (optimistic
        concurrency): StatusConflict otherwise. Returns the new resourceVersion (None: it is gone).
        """
        body: dict = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            answer = self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, PLURAL, name, body, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:  # deleted meanwhile: nothing to report on
                return None
            if exc.status == 409:
                raise StatusConflict(name) from None
            raise
        return (cast(dict[str, Any], answer).get("metadata") or {}).get("resourceVersion")

    # -- the operator's kill switch -----------------------------------------------------------

    def configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's data, or None when there is none of that name."""
        try:
            found = self.core.read_namespaced_config_map(name, namespace, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.data or {})

    # -- Events -----------------------------------------------------------------------------

    def event(self, pool: dict, type_: str, reason: str, message: str, key: str | None = None) -> bool:
        """Post an Event; False when the API server could not take it (the caller keeps it).

        With `key`, the Event's name is derived from it, so the same Event is posted once whoever
        posts it and however often (a replica that took over, a retry after an outage).
        """
        meta = pool["metadata"]
        stamp = now()
        if key is not None:
            named = {"name": _event_name(meta["name"], key)}
        else:
            named = {"generate_name": f"{meta['name']}."}
        body = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(namespace=EVENTS_NAMESPACE, **named),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta["name"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=kubernetes.client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self.identity[:128],
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
        )
        try:
            self.core.create_namespaced_event(EVENTS_NAMESPACE, body, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 409 and key is not None:
                return True  # posted already (by us before an outage, or by another replica)
            log.debug("could not post event %s for %s: %s", reason, meta["name"], exc.reason)
            return False
        except Exception as exc:  # noqa: BLE001 - an Event is worth a retry, never a failed move
            log.debug("could not post event %s for %s: %s", reason, meta["name"], exc)
            return False
        return True


def _event_name(resource: str, key: str) -> str:
    """A valid Event name (a DNS subdomain) for this resource and key."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", key.lower()).strip("-.")
    return f"{resource}.{cleaned}"[:253].rstrip("-.")
