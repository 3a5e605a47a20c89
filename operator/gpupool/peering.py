"""High availability through kopf's peering: of all replicas, exactly one moves hosts.

Every replica runs kopf with peering on. kopf keeps one record per replica (identity, priority,
lastseen, lifetime) in the ClusterKopfPeering object named by `--peering`, renews its own record
before it expires, and pauses its watching, handlers and timers while another live record has a
higher *or the same* priority. Because equal priorities pause every replica, each replica gets its
own priority by seniority: the earlier a replica started, the higher its priority. A replica that
starts later never pre-empts the one acting; when the acting one dies, its record expires after its
lifetime and the next in seniority takes over.

The controller does the moving on its own thread, so it follows the same records with kopf's rule
(`PeeringLeadership`): it leads while its own record is live and no other live record has a priority
as high as its own, and only once its own record has been visible for a settle period (time for a
replica started at the same moment to write its record). Nothing but the peering records is kept:
a new leader resumes the moves in flight from Nova itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from kubernetes.client import ApiException

from .kube import TIMEOUT, Kube

log = logging.getLogger(__name__)

PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL = "kopf.dev", "v1", "clusterkopfpeerings"
DEFAULT_PEERING_NAME = "gpupool-operator"
KOPF_DEFAULT_LIFETIME_S = 60  # what kopf assumes for a record that does not say
_PRIORITY_CEILING = 2**53  # JSON-safe integers only: the records are read by other clients too


def seniority_priority(started_at: float, rng: random.Random | None = None) -> int:
    """A priority that falls with the start time (milliseconds), random below that to break ties."""
    tie_breaker = (rng or random).randrange(1000)
    return _PRIORITY_CEILING - int(started_at * 1000) * 1000 - tie_breaker


@dataclass(frozen=True)
class PeerRecord:
    identity: str
    priority: int
    deadline: dt.datetime

    def live(self, now: dt.datetime) -> bool:
        return self.deadline > now


def parse_records(status: dict | None) -> list[PeerRecord]:
    """The records kopf writes into the peering object's status, as kopf itself reads them."""
    records = []
    for identity, info in (status or {}).items():
        if not isinstance(info, dict):
            continue
        lifetime = dt.timedelta(seconds=int(info.get("lifetime", KOPF_DEFAULT_LIFETIME_S)))
        lastseen = info.get("lastseen")
        seen = dt.datetime.fromisoformat(lastseen) if lastseen else dt.datetime.now(dt.UTC)
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=dt.UTC)
        records.append(PeerRecord(identity, int(info.get("priority", 0)), seen + lifetime))
    return records


def outranking_peers(identity: str, priority: int, records: list[PeerRecord], now: dt.datetime) -> list[str]:
    """Live peers that pause this replica in kopf: a higher or the same priority."""
    return sorted(
        r.identity for r in records if r.identity != identity and r.live(now) and r.priority >= priority
    )


class PeeringLeadership:
    """Follows the ClusterKopfPeering records; `leading` is set while this replica should act."""

    def __init__(
        self,
        kube: Kube,
        name: str,
        priority: int,
        lifetime_s: int,
        *,
        poll_s: float | None = None,
        settle_s: float | None = None,
        watchdog_s: float | None = None,
    ):
        self.kube = kube
        self.name = name
        self.identity = kube.identity
        self.priority = priority
        self.lifetime_s = lifetime_s
        self.poll_s = poll_s if poll_s is not None else min(2.0, max(0.5, lifetime_s / 5))
        self.settle_s = settle_s if settle_s is not None else self.poll_s + 1.0
        self.leading = threading.Event()
        self._own_record_since: float | None = None
        self._last_reason = ""
        # The watchdog: the last time (monotonic) this replica saw its own record live and read
        # the records at all. kopf renews the record; one that stays stale while the API answers
        # means kopf's machinery has failed (it does not always end kopf.run): `broken` is set and
        # the process exits non-zero, so that Kubernetes restarts it.
        self.watchdog_s = watchdog_s if watchdog_s is not None else max(60.0, 4.0 * lifetime_s)
        self._started = time.monotonic()
        self._record_seen = self._started
        self._api_seen = self._started
        self.broken = threading.Event()
        self.why_broken = ""

    def observe(self, records: list[PeerRecord] | None, now: dt.datetime, clock: float) -> bool:
        """Decide from the records read at `now` (None: no peering object). Sets `leading`."""
        if records is None:
            self._set(
                False,
                f"the ClusterKopfPeering {self.name!r} does not exist yet (crds/, manifests/peering.yaml)",
            )
            return False
        self._api_seen = clock
        mine = next((r for r in records if r.identity == self.identity and r.live(now)), None)
        if mine is None:
            self._own_record_since = None
            if clock - self._record_seen > self.watchdog_s:
                self._fail(
                    f"kopf has not renewed this replica's peering record for {clock - self._record_seen:.0f} s"
                )
            self._set(False, "kopf has not written this replica's peering record yet")
            return False
        self._record_seen = clock
        if self._own_record_since is None:
            self._own_record_since = clock
        above = outranking_peers(self.identity, self.priority, records, now)
        if above:
            self._set(False, f"standing by: {', '.join(above)} outrank(s) this replica")
            return False
        if clock - self._own_record_since < self.settle_s:
            self._set(False, "settling: peers started at the same moment may not have written yet")
            return False
        self._set(True, "no live peer outranks this replica")
        return True

    def read_records(self) -> list[PeerRecord] | None:
        try:
            body = self.kube.custom.get_cluster_custom_object(
                PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, self.name, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                self._create_peering_object()
                return None
            raise
        return parse_records(cast(dict[str, Any], body).get("status"))

    def _create_peering_object(self) -> None:
        """kopf does not create it (manifests/peering.yaml does); create it when missing."""
        body = {
            "apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": self.name},
        }
        try:
            self.kube.custom.create_cluster_custom_object(
                PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, body
            )
            log.info("created the ClusterKopfPeering %r", self.name)
        except ApiException as exc:
            if exc.status not in (404, 409):  # 404: no CRD (crds/); 409: a peer created it first
                log.warning("cannot create the ClusterKopfPeering %r: %s", self.name, exc.reason)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.observe(self.read_records(), dt.datetime.now(dt.UTC), time.monotonic())
            except Exception as exc:  # noqa: BLE001 - API unreachable: stop acting, keep trying
                self._set(False, f"cannot read the peering records ({type(exc).__name__})")
                silent = time.monotonic() - self._api_seen
                if silent > self.watchdog_s:
                    self._fail(f"cannot read the peering records for {silent:.0f} s")
            stop.wait(self.poll_s)
        self.leading.clear()

    def _fail(self, why: str) -> None:
        """Cannot act, and waiting will not help: stop acting at once, and have the process exit
        non-zero (Kubernetes restarts it with fresh connections and a fresh kopf)."""
        self.leading.clear()
        if not self.broken.is_set():
            self.why_broken = why
            log.error("%s: %s; exiting so that Kubernetes restarts this replica", self.identity, why)
            self.broken.set()

    def _set(self, leading: bool, reason: str) -> None:
        if leading != self.leading.is_set() or (not leading and reason != self._last_reason):
            level = logging.INFO if leading or not self.leading.is_set() else logging.WARNING
            state = "leads" if leading else "does not act"
            log.log(
                level,
                "%s %s (peering %s, priority %d): %s",
                self.identity,
                state,
                self.name,
                self.priority,
                reason,
            )
        self._last_reason = reason
        (self.leading.set if leading else self.leading.clear)()


class StandaloneLeadership:
    """`gpupool run --standalone`: one replica only, no peering; it always acts."""

    def __init__(self) -> None:
        self.leading = threading.Event()
        self.leading.set()
        self.broken = threading.Event()
        self.why_broken = ""

    def run(self, stop: threading.Event) -> None:
        stop.wait()
