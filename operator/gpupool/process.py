"""`gpupool run`: the operator process, from start to exit.

Three threads: the leadership (which replica acts: peering.py), the controller (rounds of passes),
and kopf (watches, liveness, finalizer, this replica's peering record). Shutdown goes in the safe
order: the controller first (no new move starts, moves under way finish), then kopf, which drops
this replica's peering record last, so a standby takes over only once nothing moves here any more.
Moves still running after the grace end the process hard: their intents in Nova let the next
leader resume them, and a process that goes on writing after its record is gone would overlap it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, cast
from urllib.parse import urlsplit

import kopf

from . import metrics
from .cloud import Cloud
from .controller import Controller
from .handlers import kopf_settings, registry_for
from .kube import Kube, load_config
from .peering import PeeringLeadership, StandaloneLeadership, seniority_priority
from .redact import guard_root_handlers

log = logging.getLogger(__name__)


class ListenError(Exception):
    """A port the operator was asked to serve on (--metrics, --liveness) cannot be listened on."""


def _listen_failure(flag: str, value: str, exc: Exception) -> ListenError:
    why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.EADDRINUSE:
        fix = "another process listens on that port: stop it or pick another port"
    elif code == errno.EACCES:
        fix = "a port below 1024 needs privileges: pick a higher port"
    else:
        fix = "use an address of this host, e.g. 0.0.0.0 for all of them"
    return ListenError(f"{flag} {value}: cannot listen there ({why}): {fix}")


def check_liveness(url: str) -> None:
    """Fail now when kopf could not serve the liveness probe at `url`: kopf only logs that failure
    and runs on without the probe the Deployment relies on."""
    parts = urlsplit(url)
    port = parts.port or 80  # kopf's default for an http URL without a port
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds it
            probe.bind(address)
    except OSError as exc:
        raise _listen_failure("--liveness", url, exc) from None


def serve_metrics(address: str) -> None:
    try:
        metrics.serve(address)
    except (OSError, OverflowError, ValueError) as exc:  # in use, no such address, a bad port
        raise _listen_failure("--metrics", address, exc) from None


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM.

    kopf runs on a thread of its own, so that shutdown happens in the safe order: the controller
    first (no new move starts, moves under way finish), then kopf, which drops this replica's
    peering record last, so a standby takes over only once nothing moves here any more.
    """
    if args.log_format == "json":
        root = logging.getLogger()
        for handler in list(root.handlers):  # the plain handler the CLI set up: one line, one format
            root.removeHandler(handler)
        kopf.configure(log_format=kopf.LogFormat.JSON)  # our lines and kopf's, one JSON object each
    guard_root_handlers()  # the handler kopf just added too
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per watch event
    # The probes first: an operator asked for them does not run without them.
    if args.liveness:
        check_liveness(args.liveness)
    if args.metrics:
        serve_metrics(args.metrics)  # every replica: a standby says it is not acting
    load_config()
    kube = Kube(identity=args.identity)
    priority = args.priority if args.priority is not None else seniority_priority(time.time())
    leadership: PeeringLeadership | StandaloneLeadership
    if args.standalone:
        leadership = StandaloneLeadership()
    else:
        leadership = PeeringLeadership(
            kube, args.peering, priority, args.peering_lifetime, watchdog_s=args.watchdog
        )
    namespace, name = args.kill_switch  # cli._kill_switch: both parts, always
    controller = Controller(
        kube,
        leadership,
        Cloud,
        interval_s=args.interval,
        identity=f"gpupool operator {kube.identity}",
        kill_switch_ref=(namespace, name),
        lock_ttl_s=args.lock_ttl,
        gpu_usage_interval_s=args.gpu_usage_interval,
    )
    stop = controller.stop
    registry = registry_for(controller)
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
                identity=cast(Any, kube.identity),  # kopf types it as its own (private) NewType of str
                liveness_endpoint=args.liveness,
                settings=kopf_settings(args.peering_lifetime),
                stop_flag=kopf_stop,
                registry=registry,
            )
        except Exception:
            log.exception("kopf failed")
        finally:
            if not kopf_stop.is_set():
                kopf_ended_on_its_own.set()
            shutdown.set()  # kopf ending on its own ends the operator

    workers = [
        threading.Thread(target=leadership.run, args=(stop,), name="leadership", daemon=True),
        threading.Thread(target=controller.run, name="controller", daemon=True),
    ]
    kopf_thread = threading.Thread(target=run_kopf, name="kopf", daemon=True)
    for thread in [*workers, kopf_thread]:
        thread.start()
    log.info(
        "gpupool operator %s starting: %s, priority %d, drift check every %.0fs, kill switch ConfigMap %s/%s",
        kube.identity,
        "standalone" if args.standalone else f"peering {args.peering!r}",
        priority,
        args.interval,
        namespace,
        name,
    )
    while not shutdown.wait(1.0):
        if leadership.broken.is_set():  # the watchdog: cannot act, and waiting will not help
            kopf_ended_on_its_own.set()
            break
    stop.set()
    controller.wake.set()
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
