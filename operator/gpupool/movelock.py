"""One gpupool process moves hosts on a cloud at a time: a lock kept in Nova itself.

Two `gpupool reconcile` runs, or the CLI while the operator runs, would otherwise both act on the
same hosts and both report the same moves as theirs. Nova has no compare-and-set, but it refuses
to create a second aggregate with a name already taken (409, aggregate names are unique), so the
lock is an empty aggregate named `gpupool-lock`: creating it acquires the lock, deleting it (by
id, so a lock someone else has re-created since is never deleted by mistake) releases it. Its
metadata says who holds it and until when; the holder renews that claim while it moves hosts.

A holder that died is recognised when its claim runs out, or at once when it ran on this machine
and its process is gone (a killed CLI run does not make the next one wait). The lock is read from
the aggregate list every snapshot already fetches, so checking it costs nothing; taking it costs
two requests (create, claim) and releasing it one, once per run or busy spell, not per move.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import CloudError, Fenced
from .intent import LOCK_AGGREGATE
from .model import Aggregate, Host, HostNow, Snapshot
from .ports import CloudPort

log = logging.getLogger(__name__)

# A claim lasts TTL_S; it is renewed every TTL_S / 3. A holder that has not renewed for TTL_S / 2
# (a pause, a partition) proves it still holds the lock before its next write, or stops writing:
# the claim it cannot prove may have been taken over (docs/architecture.md, fencing).
TTL_S = 30.0
_KEY_ID = "gpupool.holder.id"
_KEY_WHO = "gpupool.holder"
_KEY_HOST = "gpupool.holder.host"
_KEY_PID = "gpupool.holder.pid"
_KEY_EXPIRES = "gpupool.expires"


@dataclass(frozen=True)
class Holder:
    """Who holds a cloud's move lock, as its aggregate says."""

    id: str | None
    who: str
    host: str | None
    pid: int | None
    expires: float | None  # epoch seconds; None: not claimed yet (or not readable)
    since: float | None  # epoch seconds the lock was created, from Nova

    def describe(self) -> str:
        until = f", claim runs until {_stamp(self.expires)}" if self.expires else ""
        return f"{self.who}{until}"


def holder_of(aggregate: Aggregate) -> Holder:
    metadata = aggregate.metadata
    pid = metadata.get(_KEY_PID)
    return Holder(
        id=metadata.get(_KEY_ID),
        who=metadata.get(_KEY_WHO) or "another gpupool process (no claim written yet)",
        host=metadata.get(_KEY_HOST),
        pid=int(pid) if pid and pid.isdigit() else None,
        expires=_parse(metadata.get(_KEY_EXPIRES)),
        since=_parse(aggregate.created_at),
    )


class MoveLock:
    """This process's hold on one cloud's move lock, and the fence before each of its writes."""

    def __init__(
        self,
        cloud: CloudPort,
        who: str,
        *,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.time,
    ):
        self._cloud = cloud
        self.who = who
        self.id = uuid.uuid4().hex[:16]
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._held: Aggregate | None = None
        self._renewing = threading.Event()
        self._renewer: threading.Thread | None = None
        self._proved_at = float("-inf")  # time.monotonic() of the last claim Nova took from us
        self.lost: str | None = None  # why this process was fenced off, once it was

    def use(self, cloud: CloudPort) -> None:
        """Talk to the cloud through this connection from now on (the old one was closed)."""
        with self._lock:
            self._cloud = cloud

    @property
    def held(self) -> bool:
        return self._held is not None

    def acquire(self, snapshot: Snapshot) -> Holder | None:
        """Take the lock if it is free (or its holder is dead). None when this process holds it now;
        otherwise the live holder that keeps us waiting. The caller takes a fresh snapshot after a
        new acquisition: what it saw before may be the previous holder's work in progress."""
        with self._lock:
            if self._held is not None:
                return None
            existing = snapshot.aggregates.get(LOCK_AGGREGATE)
            if existing is not None:
                holder = holder_of(existing)
                if self._alive(holder):
                    return holder
                log.warning("taking over the move lock of %s: it is not alive any more", holder.describe())
                if not self._cloud.delete_aggregate(existing):
                    return holder  # someone else took it over first; look again later
            created = self._cloud.create_aggregate(LOCK_AGGREGATE)
            if created is None:
                return Holder(
                    None, "another gpupool process (it took the lock just now)", None, None, None, None
                )
            self._held = created
            try:
                self._cloud.set_aggregate_metadata(created, self._claim())
                self._proved(claimed=True)
            except CloudError as exc:
                # The lock is ours all the same (others see it unclaimed, and wait for its creation
                # time plus the TTL); the renewal writes the claim as soon as Nova takes it.
                log.warning("took the move lock but could not write its claim yet (%s)", exc)
                self._claimed = False
                self._proved_at = time.monotonic()  # created just now: ours for a TTL
            self._start_renewing()
            return None

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def fence(self) -> None:
        """Raise Fenced unless this process may still write as the cloud's mover.

        Called right before every write of a move. While the claim was renewed recently (less than
        TTL_S / 2 ago, by this process's monotonic clock), nothing is asked. Otherwise (the process
        was paused, Nova or the network was away) the lock is read and the claim renewed first; a
        lock that is gone or names another holder ends this process's writing for good.
        """
        with self._lock:
            if self.lost is not None:
                raise Fenced(self.lost)
            held = self._held
            if held is None:
                raise Fenced("this process does not hold the cloud's move lock")
            if time.monotonic() - self._proved_at < self._ttl_s / 2:
                return
            try:
                current = self._cloud.get_aggregate(held)
            except CloudError as exc:
                raise Fenced(f"cannot prove this process still holds the cloud's move lock ({exc})") from None
            holder = current.metadata.get(_KEY_ID) if current is not None else None
            if current is None or holder not in (self.id, None):
                self.lost = (
                    "another process took the cloud's move lock over while this one was away: it moves "
                    "nothing more (the new holder finishes what this one left half-done)"
                )
                self._renewing.clear()
                self._held = None
                raise Fenced(self.lost)
            try:
                self._cloud.set_aggregate_metadata(held, self._expiry() if self._claimed else self._claim())
            except CloudError as exc:
                raise Fenced(f"cannot renew the cloud's move lock ({exc})") from None
            self._proved(claimed=True)

    def reap(self, snapshot: Snapshot) -> bool:
        """Delete a lock its dead holder left behind (a killed run), so that nobody waits for it and
        `openstack aggregate list` does not show it. True when one was deleted."""
        with self._lock:
            existing = snapshot.aggregates.get(LOCK_AGGREGATE)
            if self._held is not None or existing is None or self._alive(holder_of(existing)):
                return False
            log.info("removing the move lock %s left behind", holder_of(existing).describe())
            try:
                return self._cloud.delete_aggregate(existing)
            except CloudError as exc:
                log.warning("could not remove a stale move lock (%s)", exc)
                return False

    # -- helpers ----------------------------------------------------------------------------------

    def _claim(self) -> dict[str, str | None]:
        return {
            _KEY_ID: self.id,
            _KEY_WHO: self.who,
            _KEY_HOST: socket.gethostname(),
            _KEY_PID: str(os.getpid()),
            _KEY_EXPIRES: _stamp(self._clock() + self._ttl_s),
        }

    def _alive(self, holder: Holder) -> bool:
        now = self._clock()
        expires = holder.expires
        if expires is None and holder.since is not None:
            expires = holder.since + self._ttl_s  # created, then killed before writing its claim
        if expires is not None and now > expires:
            return False
        if holder.host == socket.gethostname() and holder.pid is not None:
            if holder.pid == os.getpid():
                return holder.id == self.id  # an earlier life of this process (a restarted container)
            try:
                os.kill(holder.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    def _start_renewing(self) -> None:
        # One renewer per hold: a new Event each time, so a renewer of an earlier hold never
        # wakes up to renew this one.
        self._renewing = threading.Event()
        self._renewing.set()
        self._renewer = threading.Thread(
            target=self._renew, args=(self._renewing,), name="movelock", daemon=True
        )
        self._renewer.start()

    def _renew(self, renewing: threading.Event) -> None:
        while renewing.is_set():
            time.sleep(min(1.0, self._ttl_s / 30))
            if not renewing.is_set():
                return
            with self._lock:
                held = self._held
                if held is None or not (self._due() or not self._claimed):
                    continue
                # The whole claim while it has not been written yet, else only its new expiry.
                try:
                    self._cloud.set_aggregate_metadata(
                        held, self._expiry() if self._claimed else self._claim()
                    )
                    self._proved(claimed=True)
                except CloudError as exc:
                    log.warning("could not renew the move lock (%s); trying again", exc)

    _claimed = False

    def _expiry(self) -> dict[str, str | None]:
        return {_KEY_EXPIRES: _stamp(self._clock() + self._ttl_s)}

    def _proved(self, *, claimed: bool) -> None:
        self._proved_at = time.monotonic()
        self._claimed = claimed

    def _due(self) -> bool:
        return time.monotonic() - self._proved_at >= self._ttl_s / 3

    def _release_locked(self) -> None:
        self._renewing.clear()
        self._proved_at = float("-inf")
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self._cloud.delete_aggregate(held)
        except CloudError as exc:  # its claim runs out on its own
            log.warning("could not release the move lock (%s); it expires in %.0f s", exc, self._ttl_s)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # Nova's created_at is UTC without a zone
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class FencedCloud:
    """The cloud as a mover sees it: every write first passes the move lock's fence.

    Reads go straight through. A write the fence refuses raises Fenced before anything is sent.
    """

    def __init__(self, cloud: CloudPort, fence: Callable[[], None]):
        self._cloud = cloud
        self._fence = fence

    # -- reads --------------------------------------------------------------------------------

    @property
    def cloud_name(self) -> str:
        return self._cloud.cloud_name

    def snapshot(self) -> Snapshot:
        return self._cloud.snapshot()

    def stop_reason(self) -> str | None:
        return self._cloud.stop_reason()

    def host_now(self, host: Host) -> HostNow:
        return self._cloud.host_now(host)

    def claims_on(self, host: Host) -> tuple[str, ...]:
        return self._cloud.claims_on(host)

    def aggregates_holding(self, host: str) -> frozenset[str]:
        return self._cloud.aggregates_holding(host)

    def gpus_in_use(self) -> dict[str, int]:
        return self._cloud.gpus_in_use()

    def get_aggregate(self, aggregate: Aggregate) -> Aggregate | None:
        return self._cloud.get_aggregate(aggregate)

    # -- writes: fenced -----------------------------------------------------------------------

    def disable_service(self, host: Host, reason: str) -> None:
        self._fence()
        self._cloud.disable_service(host, reason)

    def enable_service(self, host: Host) -> None:
        self._fence()
        self._cloud.enable_service(host)

    def remove_host(
        self, aggregate: Aggregate, host: str, *, expect_member: bool = False
    ) -> frozenset[str] | None:
        self._fence()
        return self._cloud.remove_host(aggregate, host, expect_member=expect_member)

    def add_host(self, aggregate: Aggregate, host: str) -> frozenset[str] | None:
        self._fence()
        return self._cloud.add_host(aggregate, host)

    def set_aggregate_metadata(self, aggregate: Aggregate, metadata: dict[str, str | None]) -> None:
        self._fence()
        self._cloud.set_aggregate_metadata(aggregate, metadata)

    # The lock's own aggregate is not a move's: creating or deleting it is the lock's business.
    def create_aggregate(self, name: str) -> Aggregate | None:
        return self._cloud.create_aggregate(name)

    def delete_aggregate(self, aggregate: Aggregate) -> bool:
        return self._cloud.delete_aggregate(aggregate)
