"""High availability under pauses, outages and slow shutdowns: real `gpupool run` replicas, the
local kube-apiserver and etcd (paused with SIGSTOP for outages), novasim. Checked on Nova itself,
the Events and the status a user reads."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from novasim.testing import SimProcess
from testbed.tcp_proxy import TcpProxy
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    condition,
    delete_all_pools,
    disabled_by_gpupool,
    events,
    ghp,
    members,
    new_peering,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLEET = {
    "aggregates": [
        {"name": "L40-n3", "hosts": ["gpu-l40-[001-008]"]},
        {"name": "L40-n3-spot", "hosts": []},
    ]
}
ACTION = "/compute/v2.1/os-aggregates/{aggregate_id}/action"


@pytest.fixture
def ha(kube, tmp_path):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established()
    sim = SimProcess(FLEET, tmp_path / "sim").start()
    peering = new_peering()
    started: list[OperatorProcess] = []

    def replica(identity: str, **options) -> OperatorProcess:
        op = OperatorProcess(
            kube,
            sim,
            tmp_path,
            interval=options.pop("interval", 30),
            identity=identity,
            peering=peering,
            **options,
        )
        started.append(op)
        return op

    replica.sim = sim
    yield replica
    for op in started:
        if op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)
        op.stop()
    delete_all_pools(kube)
    sim.stop()
    for op in started:
        print(f"----- {op.identity} (tail) -----\n" + "\n".join(op.log().splitlines()[-30:]))


def acting(op: OperatorProcess) -> bool:
    leads = [
        line
        for line in op.log().splitlines()
        if " leads (peering" in line or " does not act (peering" in line
    ]
    return bool(leads) and " leads (peering" in leads[-1]


def ready(kube, name: str) -> tuple[str, str]:
    found = condition(kube, name)
    return found.get("status", ""), found.get("reason", "")


def one_event_per_move_and_result(kube, name: str) -> None:
    per_move: dict[tuple[str, str], int] = {}
    for event in events(kube, name):
        match = re.match(
            r"(?:moving |resuming the move of |rolling back the move of )?(\S+)", event["message"]
        )
        if event["reason"].startswith("Move") and match:
            key = (event["metadata"]["name"], event["reason"])
            per_move[key] = per_move.get(key, 0) + 1
    assert all(count == 1 for count in per_move.values()), per_move


def test_a_paused_leader_writes_nothing_once_the_new_leader_took_over(ha, kube):
    """The issue's case: A removed a host from L40-n3 and froze; B took over, the spec shrank, B
    put the host back and a customer's VM landed on it. When A woke up it must not add that host
    to spot (nor enable anything): its move lock was taken over, its fence stops it."""
    sim = ha.sim
    fast = ("--lock-ttl", "10")  # the takeover waits for A's claim to run out: 10 s here, 30 by default
    a = ha("a", extra_args=fast)
    wait_for("a to act", lambda: acting(a), timeout=30)
    b = ha("b", extra_args=fast)
    wait_for("b to stand by", lambda: "outrank" in b.log(), timeout=30)

    hold = sim.hold("POST", ACTION, body_contains="remove_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)  # gpu-l40-001 has left L40-n3; A waits for the answer
    a.proc.send_signal(signal.SIGSTOP)
    sim.release_all()  # the answer sits in A's socket until A runs again
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 0}}, policy={"maxConcurrentMoves": 1})
    )

    # B leads at once (A's peering record expires), and moves once A's claim on the cloud's move
    # lock has run out: it rolls A's half-done move back, since spot wants no host now.
    wait_for("b to act", lambda: acting(b), timeout=30)
    wait_for("A's move rolled back", lambda: not disabled_by_gpupool(sim), timeout=90)
    assert "gpu-l40-001" in members(sim)["L40-n3"]
    sim.start_instance("gpu-l40-001", name="customer-vm")  # a customer's VM lands on it

    a.proc.send_signal(signal.SIGCONT)
    wait_for("A to find itself fenced off", lambda: "took the cloud's move lock over" in a.log(), timeout=60)
    time.sleep(3)
    nova = members(sim)
    assert "gpu-l40-001" in nova["L40-n3"] and "gpu-l40-001" not in nova["L40-n3-spot"]
    host = next(h for h in sim.state()["hosts"] if h["name"] == "gpu-l40-001")
    assert (host["status"], host["disabled_reason"]) == ("enabled", None) and host["instances"]
    wait_for("Ready under B", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    assert not [e for e in finished if e["reportingInstance"] == "a"]  # A claims nothing it did not finish
    one_event_per_move_and_result(kube, "l40")


def test_a_shutdown_longer_than_its_grace_ends_hard_and_the_standby_resumes(ha, kube):
    sim = ha.sim
    a = ha("a", extra_args=("--shutdown-grace", "3"))
    wait_for("a to act", lambda: acting(a), timeout=30)
    b = ha("b")
    wait_for("b to stand by", lambda: "outrank" in b.log(), timeout=30)

    hold = sim.hold("POST", ACTION, body_contains="add_host")
    kube.apply(
        ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}, policy={"maxConcurrentMoves": 1})
    )
    sim.wait_held(hold, timeout=60)  # a move that does not finish before the grace runs out
    stopped_at = time.monotonic()
    a.proc.terminate()
    code = a.proc.wait(30)
    took = time.monotonic() - stopped_at
    assert code == 1 and took < 10, (code, took)
    assert "exiting hard" in a.log()
    sim.release_all()

    wait_for("Ready under B", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=90)
    assert len(members(sim)["L40-n3-spot"]) == 3 and not disabled_by_gpupool(sim)
    finished = [e for e in events(kube, "l40") if e["reason"] == "MoveFinished"]
    assert len(finished) == 3, [e["message"] for e in finished]
    one_event_per_move_and_result(kube, "l40")


def status_patches(kube) -> float:
    """GpuHostPool status writes the API server has served, no-ops included (its own counter:
    a no-op patch leaves resourceVersion alone but is still a request, and an audit entry)."""
    total = 0.0
    for line in kube.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="gpuhostpools"' in line:
            if 'subresource="status"' in line and ('verb="PATCH"' in line or 'verb="UPDATE"' in line):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_steady_state_writes_nothing(ha, kube):
    a = ha("a", interval=1)
    try:
        wait_for("a to act", lambda: acting(a), timeout=30)
    except AssertionError:
        print(a.log())
        raise
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
    wait_for("Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    time.sleep(2)
    before = kube.kubectl_json("get", "ghp", "l40")["metadata"]["resourceVersion"]
    patches = status_patches(kube)
    count = len(events(kube, "l40"))
    time.sleep(6)  # five or more drift rounds
    assert kube.kubectl_json("get", "ghp", "l40")["metadata"]["resourceVersion"] == before
    assert status_patches(kube) == patches  # not even a no-op PATCH
    assert len(events(kube, "l40")) == count
    assert "connection pool is full" not in a.log()


def _control_plane_pids(kube) -> list[int]:
    state = json.loads((kube.state_dir / "state.json").read_text())
    return [state["apiserver_pid"], state["etcd_pid"]]


def _outage(kube, seconds: float) -> None:
    import os

    pids = _control_plane_pids(kube)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_api_outages_a_short_one_is_ridden_out_a_long_one_ends_the_replica(ha, kube):
    sim = ha.sim
    a = ha("a", extra_args=("--watchdog", "20"))  # 60 s by default (4 peering lifetimes, at least 60)
    wait_for("a to act", lambda: acting(a), timeout=30)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}))
    wait_for("Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)

    _outage(kube, 12)  # connections stall: every request times out, nothing hangs for good
    assert a.proc.poll() is None
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
    wait_for("the change after the outage", lambda: len(members(sim)["L40-n3-spot"]) == 2, timeout=90)
    wait_for("Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)

    # Longer than the watchdog's bound: the replica cannot act and exits non-zero, so that
    # Kubernetes restarts it (here: the test does), instead of idling forever.
    _outage(kube, 30)
    code = a.proc.wait(60)
    assert code == 1, code
    assert "exiting so that Kubernetes restarts this replica" in a.log()
    b = ha("b")
    wait_for("b to act", lambda: acting(b), timeout=60)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}))
    wait_for("the restarted replica acts", lambda: len(members(sim)["L40-n3-spot"]) == 3, timeout=90)


def test_a_replica_whose_api_connections_go_silent_follows_the_next_change(ha, kube, tmp_path):
    """The API server stops answering on the replica's open connections (a half-dead proxy or load
    balancer), new connections work: every request has a timeout, so the replica reconnects and
    applies the next spec change instead of hanging."""
    sim = ha.sim
    host, port = kube.server.removeprefix("https://").split(":")
    proxy = TcpProxy(host, int(port))
    proxied = tmp_path / "proxied.kubeconfig"
    proxied.write_text(kube.kubeconfig.read_text().replace(kube.server, f"https://127.0.0.1:{proxy.port}"))
    try:
        a = ha("a", interval=5, env_extra={"KUBECONFIG": str(proxied)})
        wait_for("a to act", lambda: acting(a), timeout=30)
        kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}))
        wait_for("Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
        assert proxy.stall() > 0  # every connection the replica holds goes silent
        kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}))
        wait_for("the change applied", lambda: len(members(sim)["L40-n3-spot"]) == 3, timeout=120)
        wait_for(
            "Ready for the new generation", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60
        )
        assert kube.kubectl_json("get", "ghp", "l40")["status"]["observedGeneration"] == 2
        assert proxy.reset() > 0  # and now every connection is torn down
        kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}}))
        wait_for("the next change applied", lambda: len(members(sim)["L40-n3-spot"]) == 2, timeout=90)
    finally:
        proxy.close()


def test_json_logs_are_one_object_per_line(ha, kube):
    """`--log-format json`, for log pipelines: the operator's lines and kopf's are JSON objects."""
    a = ha("a", interval=1, extra_args=("--log-format", "json"))
    wait_for("a to act", lambda: acting(a), timeout=30)
    kube.apply(ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 1}}))
    wait_for("Ready", lambda: ready(kube, "l40") == ("True", "Converged"), timeout=60)
    lines = [line for line in a.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) >= len(lines) - 2, a.log()  # at most a stray line from a library's own print
    messages = " ".join(str(r.get("message")) for r in records)
    assert " leads (peering" in messages and "L40-n3 -> L40-n3-spot: Enable" in messages, messages
