"""The kopf handlers: watch GpuHostPools, wake the controller, guard deletions.

kopf watches the resources, serves the liveness endpoint, runs the deletion finalizer and keeps this
replica's peering record. The work itself (rounds of reconciler passes, status, Events) is done by
the Controller on its own thread, and only while this replica leads (peering.py). kopf's own Events
and status progress are off: the status and Events users read are the controller's alone, posted
once, by the leader. The handlers live on a registry built for one controller (no module state);
process.py runs kopf with it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import kopf

from .api import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
RETURN_TO_ON_DEMAND = "ReturnToOnDemand"


class Wakeable(Protocol):
    def poke(self, name: str | None = None) -> None: ...

    def seen(self, body: dict) -> None: ...


def registry_for(controller: Wakeable) -> kopf.OperatorRegistry:
    """kopf's handlers for GpuHostPools, each waking `controller`."""
    registry = kopf.OperatorRegistry()

    # A registry of our own starts without kopf's default login handlers: log in as the kubernetes
    # client does (in-cluster service account, or the kubeconfig), which kube.py uses too.
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    # Handler ids name kopf's progress annotations: stable, readable ones.
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="spec_seen")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="spec_seen")
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, id="spec_seen")
    def spec_seen(name: str, body: kopf.Body, **_: Any) -> None:
        controller.seen(dict(body))  # the status says "new generation" before any Nova work
        controller.poke(name)

    # Any deletion may end a conflict: wake the controller. A raw watch event, because kopf runs no
    # deletion handler for an object without a finalizer (which Retain resources do not get).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def watched(type: str, **_: Any) -> None:
        if type == "DELETED":
            controller.poke()

    # Only resources with deletionPolicy ReturnToOnDemand get the finalizer (kopf adds it for the
    # deletion handlers whose filter matches): deleting a Retain resource never waits for the operator.
    @kopf.on.delete(
        GROUP, VERSION, PLURAL, when=_returns_hosts, registry=registry, id="return_hosts_before_deletion"
    )
    def return_hosts_before_deletion(name: str, status: kopf.Status, **_: Any) -> None:
        controller.poke(name)
        if status.get("returnedToOnDemand") is True:
            log.info("%s: every host is back in on-demand; deletion proceeds", name)
            return
        raise kopf.TemporaryError("returning the pools' hosts to on-demand before deletion", delay=2)

    return registry


def _returns_hosts(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == RETURN_TO_ON_DEMAND


def kopf_settings(peering_lifetime_s: int) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # the Events users read are the controller's, posted once
    settings.persistence.finalizer = "gpupool.io/return-to-on-demand"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="gpupool.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="gpupool.io")
    # Timeouts on every request kopf makes: a connection the API server stops answering on costs
    # a request, never the replica (a watch is renewed well before its server-side timeout).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 5
    settings.peering.lifetime = peering_lifetime_s
    settings.peering.stealth = True  # no log line per keep-alive
    return settings
