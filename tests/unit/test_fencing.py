"""Fencing: a process that lost the cloud's move lock writes nothing more, not even an undo.

A pause (SIGSTOP, a long GC, a partition) is played by stopping the lock's renewer and letting
its TTL run out, while "another process" takes the lock over in the in-memory cloud.
"""

from __future__ import annotations

import time

from gpupool.api import GpuHostPoolSpec
from gpupool.intent import LOCK_AGGREGATE, parse_reason
from gpupool.model import Outcome
from gpupool.movelock import MoveLock
from gpupool.reconciler import Reconciler

from .fakecloud import FakeNova

WRITES = {"disable", "enable", "remove", "add", "set_metadata"}


def spec(spot: int) -> GpuHostPoolSpec:
    return GpuHostPoolSpec.model_validate(
        {"gpuType": "L40", "pools": {"spot": {"hosts": spot}}, "policy": {"maxConcurrentMoves": 1}}
    )


def test_a_process_paused_past_its_claim_writes_nothing_once_another_holds_the_lock():
    nova = FakeNova({"L40-n3": [f"gpu-{i}" for i in range(1, 5)], "L40-n3-spot": []})
    lock = MoveLock(nova, "process A", ttl_s=0.4)
    assert lock.acquire(nova.snapshot()) is None
    taken_over_at = []

    def pause_and_take_over(call, phase, fake):
        if call == "remove" and phase == "after" and not taken_over_at:
            lock._renewing.clear()  # the whole process stops: its renewer too
            time.sleep(0.3)  # longer than half the TTL: the claim cannot be trusted any more
            del fake.aggregates[LOCK_AGGREGATE]  # process B found the claim expired, took it over
            fake.create(LOCK_AGGREGATE).metadata["gpupool.holder.id"] = "process-b"
            taken_over_at.append(len(fake.calls))

    nova.adversary = pause_and_take_over
    report = Reconciler(nova, fence=lock.fence).reconcile(spec(2))

    after = [name for name, _ in nova.calls[taken_over_at[0] :]]
    assert not WRITES & set(after), after  # nothing written once the lock was another's
    assert [r.outcome for r in report.results] == [Outcome.FAILED] and report.results[0].fenced
    assert "another process took the cloud's move lock over" in report.breaker
    # The half-done move stays for the new holder: disabled with its intent, out of its source.
    assert parse_reason("gpu-1", nova.services["gpu-1"].reason) is not None
    assert nova.where("gpu-1") == []
    assert not report.converged


def test_a_short_pause_proves_the_claim_and_goes_on():
    nova = FakeNova({"L40-n3": [f"gpu-{i}" for i in range(1, 5)], "L40-n3-spot": []})
    lock = MoveLock(nova, "process A", ttl_s=0.4)
    assert lock.acquire(nova.snapshot()) is None
    paused = []

    def pause(call, phase, fake):
        if call == "remove" and phase == "after" and not paused:
            paused.append(True)
            lock._renewing.clear()  # the whole process stops, its renewer too
            time.sleep(0.25)  # past half the TTL, but nobody took the lock: prove it, renew, go on

    nova.adversary = pause
    report = Reconciler(nova, fence=lock.fence).reconcile(spec(2))
    assert report.converged
    assert nova.count("get_aggregate") >= 1  # the proof: the lock read back before the next write
    lock.release()
    assert LOCK_AGGREGATE not in nova.aggregates


def test_without_the_lock_a_process_writes_nothing():
    nova = FakeNova({"L40-n3": ["gpu-1", "gpu-2"], "L40-n3-spot": []})
    lock = MoveLock(nova, "never acquired")
    report = Reconciler(nova, fence=lock.fence).reconcile(spec(1))
    assert not WRITES & {name for name, _ in nova.calls}
    assert report.results[0].fenced
