"""kopf wiring and `gpupool run`: watch GpuHostPools, wake the controller, guard deletions.

kopf watches the resources, serves the liveness endpoint, runs the deletion finalizer and keeps this
replica's peering record. The work itself (rounds of reconciler passes, status, Events) is done by
the Controller on its own thread, and only while this replica leads (peering.py: kopf's peering
records, seniority priorities). kopf's own Events and status progress are off: the status and Events
users read are the controller's alone, posted once, by the leader.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from typing import Any

import kopf

from .api import GROUP, PLURAL, VERSION
from .kube import Kube, load_config

log = logging.getLogger(__name__)
RETURN_TO_ON_DEMAND = "ReturnToOnDemand"

# Set by run(); the handlers below only poke it.
_controller = None


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


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM.

    kopf runs on a thread of its own, so that shutdown happens in the safe order: the controller
    first (no new move starts, moves under way finish), then kopf, which drops this replica's
    peering record last, so a standby takes over only once nothing moves here any more.
    """
    global _controller
    from .controller import Controller
    from .peering import PeeringLeadership, StandaloneLeadership, seniority_priority

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per watch event
    load_config()
    kube = Kube(identity=args.identity)
    priority = args.priority if args.priority is not None else seniority_priority(time.time())
    if args.standalone:
        leadership = StandaloneLeadership()
    else:
        leadership = PeeringLeadership(
            kube, args.peering, priority, args.peering_lifetime, watchdog_s=args.watchdog
        )
    namespace, _, name = args.kill_switch.partition("/")
    _controller = Controller(
        kube,
        leadership,
        interval_s=args.interval,
        identity=f"gpupool operator {kube.identity}",
        kill_switch_ref=(namespace, name) if name else None,
        lock_ttl_s=args.lock_ttl,
    )
    stop = _controller.stop
    shutdown = threading.Event()
    kopf_stop = threading.Event()
    kopf_ended_on_its_own = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("%s received: stopping (no new moves; moves under way finish)", signal.Signals(signum).name)
        shutdown.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def run_kopf() -> None:
        try:
            kopf.run(
                clusterwide=True,
                standalone=args.standalone,
                peering_name=None if args.standalone else args.peering,
                priority=priority,
                identity=kube.identity,
                liveness_endpoint=args.liveness,
                settings=kopf_settings(args.peering_lifetime),
                stop_flag=kopf_stop,
            )
        except Exception:
            log.exception("kopf failed")
        finally:
            if not kopf_stop.is_set():
                kopf_ended_on_its_own.set()
            shutdown.set()  # kopf ending on its own ends the operator

    workers = [
        threading.Thread(target=leadership.run, args=(stop,), name="leadership", daemon=True),
        threading.Thread(target=_controller.run, name="controller", daemon=True),
    ]
    kopf_thread = threading.Thread(target=run_kopf, name="kopf", daemon=True)
    for thread in [*workers, kopf_thread]:
        thread.start()
    log.info(
        "gpupool operator %s starting: %s, priority %d, drift check every %.0fs",
        kube.identity,
        "standalone" if args.standalone else f"peering {args.peering!r}",
        priority,
        args.interval,
    )
    while not shutdown.wait(1.0):
        if leadership.broken.is_set():  # the watchdog: cannot act, and waiting will not help
            kopf_ended_on_its_own.set()
            break
    stop.set()
    _controller.wake.set()
    deadline = time.monotonic() + args.shutdown_grace
    for thread in workers:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in workers):
        # Moves still under way after the grace: exit hard, so that this process stops writing
        # before a standby takes over. Each move's intent is in Nova; the standby resumes it.
        log.error(
            "gpupool operator %s: moves still under way after %.0f s; exiting hard (the next leader "
            "resumes them from Nova)",
            kube.identity,
            args.shutdown_grace,
        )
        logging.shutdown()
        os._exit(1)
    kopf_stop.set()
    kopf_thread.join(timeout=30)
    if kopf_ended_on_its_own.is_set():
        why = leadership.why_broken or "kopf ended on its own"
        log.error("gpupool operator %s stopped: %s", kube.identity, why)
        return 1
    log.info("gpupool operator %s stopped", kube.identity)
    return 0
