"""The operator's metrics as a real Prometheus sees them: two replicas of `gpupool run --metrics`
(one acting, one standing by) against a real kube-apiserver and novasim, scraped every second while
a GpuHostPool's hosts move. The per-pool gauges agree with the GpuHostPool's status and with Nova
itself; the Nova request counters with the requests novasim received; each replica's /metrics passes
`promtool check metrics` and follows the contract (tests/monitoring/contract.py); and every PromQL
expression of the dashboard and the alert rules runs against this Prometheus: each parses, the
panels show data, the rules evaluate without error, and once the pools converged no alert fires.
"""

from __future__ import annotations

import importlib.metadata
import re
import time
import urllib.request

import pytest

from novasim.testing import SimProcess
from testbed import prometheus as testbed_prometheus
from testbed.daemons import free_port
from tests.e2e.operator_helpers import (
    REPO,
    OperatorProcess,
    delete_all_pools,
    ghp,
    members,
    new_peering,
    status,
    wait_for,
)
from tests.monitoring.contract import MOVE_RESULTS, contract_problems, parse
from tests.monitoring.queries import RULES_FILE, dashboard_expressions, rule_expressions

pytestmark = pytest.mark.e2e

FLEET = {
    "aggregates": [
        {"name": "L40-n3", "metadata": {"availability_zone": "nova"}, "hosts": ["gpu-l40-[001-012]"]},
        {"name": "L40-n3-spot", "hosts": []},
        {"name": "L40-n3-runpod", "hosts": []},
        {"name": "Contract-L40-Acme", "hosts": []},
    ],
    # Two busy hosts (they stay on-demand), each running an instance with 2 GPUs (its flavor's
    # pci_passthrough:alias, as GPU clouds give whole GPUs to instances).
    "hosts": [
        {
            "name": "gpu-l40-[001-002]",
            "instances": [{"name": "gpu-vm", "extra_specs": {"pci_passthrough:alias": "l40:2"}}],
        }
    ],
}
SPEC = {
    "gpuType": "L40",
    "cloud": "sim",
    "gpusPerHost": 8,
    "pools": {
        "spot": {"hosts": 4},
        "runpod": {"hosts": 2},
        "contracts": [{"aggregate": "Contract-L40-Acme", "hosts": 1}],
    },
    # One move at a time, with Nova answering in ~100 ms: the moves take seconds, long enough for
    # several scrapes to see them in flight.
    "policy": {"maxConcurrentMoves": 1},
}
MOVES = 4 + 2 + 1
POOL_AGGREGATES = {
    "spot": "L40-n3-spot",
    "runpod": "L40-n3-runpod",
    "contract:Contract-L40-Acme": "Contract-L40-Acme",
}
ACTING = "and on(instance) (gpupool_acting == 1)"

# Panels that show nothing in a healthy run: no blockers, perhaps no error answer from novasim,
# and GPU usage is a ratio over pools with GPUs (novasim's hosts may report none).
MAY_BE_EMPTY = {
    "Blockers",
    "Nova errors by route and code",
    "Nova failure ratio (5xx, no answer)",
}


@pytest.fixture(scope="module")
def crd(kube):
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.wait_established("gpuhostpools.gpupool.io")
    return kube


@pytest.fixture
def scenario(crd, tmp_path, start_prometheus):
    """novasim, two replicas serving /metrics, a Prometheus scraping both with the alert rules."""
    sim = SimProcess(FLEET, tmp_path / "sim", latency_ms=100).start()
    peering = new_peering()
    ports = [free_port(), free_port()]
    operators = [
        OperatorProcess(
            crd, sim, tmp_path, interval=5, peering=peering, identity=f"metrics-{i}", metrics_port=port
        )
        for i, port in enumerate(ports)
    ]
    targets = [f"127.0.0.1:{port}" for port in ports]
    try:
        prom = start_prometheus({"gpupool": targets}, rule_files=[RULES_FILE])
        for op, target in zip(operators, targets, strict=True):
            wait_for(
                f"{op.identity}'s /metrics scraped", lambda op=op, t=target: _scraped(prom, op, t), timeout=60
            )
        yield sim, operators, prom, targets
    finally:
        for op in operators:
            op.stop()
        delete_all_pools(crd)
        sim.stop()
        for op in operators:
            print(f"----- {op.log_file.name} (tail) -----\n" + "\n".join(op.log().splitlines()[-25:]))


def _scraped(prom, op: OperatorProcess, target: str) -> bool:
    if op.proc.poll() is not None:
        raise AssertionError(f"{op.identity} exited with {op.proc.returncode}:\n{op.log()[-3000:]}")
    return any(t["labels"]["instance"] == target and t["health"] == "up" for t in prom.targets())


def _by(result: list[dict], label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in result}


def _scrape(target: str) -> str:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as r:
        return r.read().decode()


def test_metrics_in_prometheus_match_status_and_nova(scenario, crd):
    sim, _, prom, targets = scenario
    wait_for("one replica acting", lambda: prom.value("sum(gpupool_acting)") == 1.0, timeout=60)
    acting = [s["metric"]["instance"] for s in prom.query("gpupool_acting == 1")]
    assert len(acting) == 1 and acting[0] in targets
    standby = next(t for t in targets if t != acting[0])
    assert prom.value(f'gpupool_acting{{instance="{standby}"}}') == 0.0

    applied = time.monotonic()
    crd.apply(ghp("l40", **SPEC))
    crd.kubectl("wait", "--for=condition=Ready", "ghp/l40", "--timeout=180s", timeout=200)
    moving_for = time.monotonic() - applied
    st = status(crd, "l40")
    nova = members(sim)

    # Prometheus has caught up with the converged state (scrapes every second).
    wait_for(
        "Prometheus to see l40 Ready with its hosts",
        lambda: (
            prom.value(f'max(gpupool_ready{{gpuhostpool="l40"}} {ACTING})') == 1.0
            and prom.value(f'sum(gpupool_pool_current_hosts{{gpuhostpool="l40",pool="spot"}} {ACTING})')
            == 4.0
        ),
        timeout=30,
    )

    # While the hosts moved, the acting replica's scrapes saw them move, and l40 not Ready.
    window = f"{int(moving_for) + 60}s"
    ours = f'gpuhostpool="l40",instance="{acting[0]}"'
    in_flight = prom.value(f"max_over_time(gpupool_moves_in_flight{{{ours}}}[{window}])")
    assert in_flight and in_flight >= 1, f"no move in flight seen in {moving_for:.1f}s of moves"
    moving = _by(
        prom.query(f"max by (pool) (max_over_time(gpupool_pool_moving_hosts{{{ours}}}[{window}]))"), "pool"
    )
    assert moving.get("spot", 0) >= 1, moving
    assert prom.value(f"min_over_time(gpupool_ready{{{ours}}}[{window}])") == 0.0

    # The per-pool gauges say what the status and Nova say.
    current = _by(
        prom.query(f'sum by (pool) (gpupool_pool_current_hosts{{gpuhostpool="l40"}} {ACTING})'), "pool"
    )
    desired = _by(
        prom.query(f'sum by (pool) (gpupool_pool_desired_hosts{{gpuhostpool="l40"}} {ACTING})'), "pool"
    )
    moving_now = _by(
        prom.query(f'sum by (pool) (gpupool_pool_moving_hosts{{gpuhostpool="l40"}} {ACTING})'), "pool"
    )
    pools = st["pools"]
    status_pools = {"spot": pools["spot"], "runpod": pools["runpod"]}
    status_pools |= {f"contract:{c['aggregate']}": c for c in pools["contracts"]}
    for pool, aggregate in POOL_AGGREGATES.items():
        assert current[pool] == status_pools[pool]["current"] == len(nova[aggregate]), pool
        assert desired[pool] == status_pools[pool]["desired"], pool
        assert moving_now.get(pool, 0) == 0, pool
    assert current["onDemand"] == pools["onDemand"]["hosts"] == len(nova["L40-n3"]) == 12 - MOVES
    assert "onDemand" not in desired
    aggregates = {
        s["metric"]["pool"]: s["metric"]["aggregate"]
        for s in prom.query(f'gpupool_pool_current_hosts{{gpuhostpool="l40"}} {ACTING}')
    }
    assert {p: aggregates[p] for p in POOL_AGGREGATES} == POOL_AGGREGATES
    assert pools["onDemand"]["aggregates"] == ["L40-n3"] and aggregates["onDemand"] == "L40-n3"

    # GPUs: used and total for each pool, used <= total.
    gpus = prom.query(f'gpupool_pool_gpus{{gpuhostpool="l40"}} {ACTING}')
    by_pool: dict[str, dict[str, float]] = {}
    for s in gpus:
        by_pool.setdefault(s["metric"]["pool"], {})[s["metric"]["state"]] = float(s["value"][1])
    for pool in [*POOL_AGGREGATES, "onDemand"]:
        assert set(by_pool.get(pool, {})) == {"used", "total"}, (pool, by_pool)
        assert 0 <= by_pool[pool]["used"] <= by_pool[pool]["total"], (pool, by_pool)
        current = pools["onDemand"]["hosts"] if pool == "onDemand" else None
        if current is not None:
            assert by_pool[pool]["total"] == 8 * current, (pool, by_pool)
    # What Nova says: the two busy on-demand hosts run 2 GPUs each; the pools' hosts run none.
    assert by_pool["onDemand"]["used"] == 4
    assert pools["onDemand"]["gpus"] == {"used": 4, "total": 8 * pools["onDemand"]["hosts"]}
    assert all(by_pool[pool]["used"] == 0 for pool in POOL_AGGREGATES)

    # Moves: each one counted once, by result, with its duration; nothing left in flight.
    moved = [m for m in st["lastMoves"] if m["result"] == "Moved"]
    assert len(moved) == MOVES
    assert prom.value('sum(gpupool_moves_total{gpuhostpool="l40",result="Moved"})') == MOVES
    assert prom.value('sum(gpupool_move_duration_seconds_count{gpuhostpool="l40",result="Moved"})') == MOVES
    assert {s["metric"]["result"] for s in prom.query("gpupool_moves_total")} <= set(MOVE_RESULTS)
    assert prom.value(f'max(gpupool_moves_in_flight{{gpuhostpool="l40"}} {ACTING})') == 0.0
    assert prom.value(f'max(gpupool_oldest_move_in_flight_seconds{{gpuhostpool="l40"}} {ACTING})') == 0.0
    assert prom.value(f'max(gpupool_stalled{{gpuhostpool="l40"}} {ACTING})') == 0.0
    assert prom.value(f'max(gpupool_circuit_breaker_open{{gpuhostpool="l40"}} {ACTING})') == 0.0
    assert prom.query('gpupool_blockers{gpuhostpool="l40"} > 0') == []

    # Nova requests: route templates, not ids; the aggregate actions as many as novasim received.
    series = prom.query("gpupool_nova_requests_total")
    assert series
    for s in series:
        labels = s["metric"]
        assert labels["method"] in {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}, labels
        assert re.fullmatch(r"\d{3}|error", labels["code"]), labels
        assert labels["route"].startswith("/"), labels
        assert not re.search(r"/\d+(/|$)|[0-9a-f]{8}-[0-9a-f]{4}|gpu-l40|\?", labels["route"]), labels
    assert len(sim_actions(sim)) >= 2 * MOVES  # each move: remove_host, add_host
    route = 'method="POST",route="/os-aggregates/{id}/action"'
    wait_for(
        "the aggregate actions novasim answered with a 2xx, counted",
        lambda: (
            prom.value(f'sum(gpupool_nova_requests_total{{{route},code=~"2.."}})') == len(sim_actions(sim))
        ),
        timeout=30,
    )
    assert prom.value(f"sum(gpupool_nova_request_duration_seconds_count{{{route}}})") == prom.value(
        f"sum(gpupool_nova_requests_total{{{route}}})"
    )

    # The replicas: exactly one acting; rounds; the version.
    assert prom.value("sum(gpupool_acting)") == 1.0
    assert (prom.value(f'sum(gpupool_round_duration_seconds_count{{instance="{acting[0]}"}})') or 0) >= 1
    version = importlib.metadata.version("gpupool-operator")
    assert _by(prom.query("gpupool_build_info"), "version") == {version: 1.0}
    assert len(prom.query("gpupool_build_info")) == 2  # both replicas

    # Each replica's exposition: promtool's lint, and the contract.
    for target in targets:
        text = _scrape(target)
        result = testbed_prometheus.check_metrics(text)
        assert result.returncode == 0, f"{target}: {result.stdout}{result.stderr}"
        assert contract_problems(text, require_all=target == acting[0]) == [], target
        types, _ = parse(text)
        assert "process_resident_memory_bytes" in types and "python_info" in types

    # Every expression of the dashboard and the rules, against this Prometheus.
    time.sleep(2)  # two more scrapes and evaluations in the converged state
    empty = []
    for expression in dashboard_expressions():
        result = prom.query(expression.expr)  # raises if Prometheus refuses it
        if not result and expression.title not in MAY_BE_EMPTY:
            empty.append(str(expression))
    assert empty == [], f"panels without data: {empty}"
    groups = prom.wait_for_rule_evaluations()
    assert {r["name"] for g in groups for r in g["rules"]} == {e.title for e in rule_expressions()}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    for expression in rule_expressions():
        assert prom.query(expression.expr) == [], f"{expression} would fire once l40 converged"


def sim_actions(sim) -> list[dict]:
    """The aggregate actions (add_host, remove_host, set_metadata) novasim answered with a 2xx."""
    return [
        r
        for r in sim.journal()
        if r["method"] == "POST"
        and re.fullmatch(r"/compute/v2\.1/os-aggregates/\d+/action", r["path"])
        and 200 <= r["status"] < 300
    ]
