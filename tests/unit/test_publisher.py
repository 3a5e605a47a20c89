"""The status publisher against a Kubernetes API that goes away, conflicts and comes back (an
in-memory fake of our own Kube interface): nothing finished is lost, nothing is posted twice, an
old leader never overwrites a new one."""

from __future__ import annotations

import itertools

from gpupool.errors import StatusConflict
from gpupool.model import Move, MoveResult, Outcome, PassReport
from gpupool.planner import plan
from gpupool.publisher import Mailbox, StatusPublisher

from .fleet import cloud, spec


class FakeKube:
    """Stores one GpuHostPool's status and Events by name; `down` makes every call fail."""

    def __init__(self):
        self.down = False
        self.version = itertools.count(1)
        self.resource_version = str(next(self.version))
        self.status: dict = {}
        self.events: dict[str, str] = {}
        self.unnamed: list[str] = []
        self.patches = 0

    def body(self) -> dict:
        return {
            "metadata": {"name": "l40", "resourceVersion": self.resource_version},
            "status": dict(self.status),
        }

    def patch_status(self, name, status, resource_version=None):
        if self.down:
            raise ConnectionError("API server away")
        if resource_version is not None and resource_version != self.resource_version:
            raise StatusConflict(name)
        self.patches += 1
        self.status = {**self.status, **status}
        self.resource_version = str(next(self.version))
        return self.resource_version

    def get_pool(self, name):
        if self.down:
            raise ConnectionError("API server away")
        return self.body()

    def event(self, pool, type_, reason, message, key=None) -> bool:
        if self.down:
            return False
        if key is None:
            self.unnamed.append(reason)
        else:
            self.events.setdefault(key, reason)
        return True


def finished(host: str, move_id: str, at: float) -> PassReport:
    move = Move(host, "L40-n3", "L40-n3-spot", "spot", move_id=move_id)
    s = spec(pools={"spot": {"hosts": 1}})
    report = PassReport(plan=plan(s, cloud({"L40-n3": [], "L40-n3-spot": [host]})), finished=True)
    report.results.append(MoveResult(move, Outcome.MOVED, f"{host} moved", finished_at=at))
    return report


def test_what_an_outage_kept_from_the_api_server_is_delivered_by_the_next_round():
    kube = FakeKube()
    mailbox = Mailbox()
    kube.down = True
    StatusPublisher(kube, kube.body(), mailbox).final(finished("gpu-1", "aaaaaa", 1000.0))
    assert kube.patches == 0 and mailbox.events and mailbox.history
    kube.down = False
    StatusPublisher(kube, kube.body(), mailbox).final(finished("gpu-2", "bbbbbb", 2000.0))
    assert [m["host"] for m in kube.status["lastMoves"]] == ["gpu-1", "gpu-2"]
    assert kube.events == {"aaaaaa.MoveFinished": "MoveFinished", "bbbbbb.MoveFinished": "MoveFinished"}
    assert not mailbox.events and not mailbox.history


def test_an_old_leader_builds_on_the_new_leaders_status_and_posts_nothing_twice():
    kube = FakeKube()
    old = StatusPublisher(kube, kube.body())  # read before the handover
    StatusPublisher(kube, kube.body()).final(finished("gpu-1", "aaaaaa", 1000.0))  # the new leader
    old.final(finished("gpu-1", "aaaaaa", 1000.0))  # the same move, finished by both
    assert [m["host"] for m in kube.status["lastMoves"]] == ["gpu-1"]  # kept, not overwritten or doubled
    assert list(kube.events) == ["aaaaaa.MoveFinished"]


def test_a_replica_that_does_not_lead_writes_no_status():
    kube = FakeKube()
    StatusPublisher(kube, kube.body(), may_write=lambda: False).final(finished("gpu-1", "aaaaaa", 1000.0))
    assert kube.patches == 0
    assert list(kube.events) == ["aaaaaa.MoveFinished"]  # the move it finished is still told, once
