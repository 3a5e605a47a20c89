"""kopf wiring and `gpupool run`: watch GpuHostPools, wake the controller, guard deletions.

kopf watches the resources, serves the liveness endpoint and runs the deletion finalizer. The work
itself (rounds of reconciler passes, status, Events) is done by the Controller on its own thread,
and only by the replica that holds the Lease (leader.py says why not kopf's peering). So kopf runs
standalone, and its own Events and status progress are off: the status and Events users read are
the controller's alone, posted once, by the leader.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

import kopf

from .kube import GROUP, PLURAL, VERSION, Kube, load_config

log = logging.getLogger(__name__)
RETURN_TO_ON_DEMAND = "ReturnToOnDemand"

# Set by run(); the handlers below only poke it.
_controller = None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.persistence.finalizer = "gpupool.io/return-to-on-demand"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="gpupool.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="gpupool.io")
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_seen(name: str, **_: Any) -> None:
    if _controller is not None:
        _controller.poke(name)


# Any deletion may end a conflict: wake the controller. A raw watch event, because kopf runs no
# deletion handler for an object without a finalizer (which Retain resources do not get).
@kopf.on.event(GROUP, VERSION, PLURAL)
def watched(type: str, **_: Any) -> None:
    if type == "DELETED" and _controller is not None:
        _controller.poke()


def _returns_hosts(spec: dict, **_: Any) -> bool:
    return spec.get("deletionPolicy") == RETURN_TO_ON_DEMAND


# Only resources with deletionPolicy ReturnToOnDemand get the finalizer (kopf adds it for the
# deletion handlers whose filter matches): deleting a Retain resource never waits for the operator.
@kopf.on.delete(GROUP, VERSION, PLURAL, when=_returns_hosts)
def return_hosts_before_deletion(name: str, status: dict, **_: Any) -> None:
    if _controller is not None:
        _controller.poke(name)
    if status.get("returnedToOnDemand") is True:
        log.info("%s: every host is back in on-demand; deletion proceeds", name)
        return
    raise kopf.TemporaryError("returning the pools' hosts to on-demand before deletion", delay=2)


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    global _controller
    from .controller import Controller
    from .leader import LeaderElector

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    load_config()
    kube = Kube(identity=args.identity)
    elector = LeaderElector(kube, args.lease_namespace, args.lease_name, args.lease_duration)
    _controller = Controller(kube, elector, interval_s=args.interval)
    stop = _controller.stop
    threads = [
        threading.Thread(target=elector.run, args=(stop,), name="lease", daemon=True),
        threading.Thread(target=_controller.run, name="controller", daemon=True),
    ]
    for thread in threads:
        thread.start()
    log.info("gpupool operator %s starting (drift check every %.0fs)", kube.identity, args.interval)
    try:
        kopf.run(clusterwide=True, standalone=True, liveness_endpoint=args.liveness)
    finally:
        stop.set()
        _controller.wake.set()
        for thread in threads:
            thread.join(timeout=30)
    return 0
