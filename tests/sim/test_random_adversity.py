"""Randomized adversity: seeded interleavings of what others do while `gpupool reconcile` moves hosts.

Each scenario (one seed) builds a small random fleet and spec, starts the real CLI against novasim
and, at random points of the move protocol (novasim holds the answer to one of our requests), lets
an adversary act: disable and enable services, edit gpupool's reason, start and delete instances,
move hosts between aggregates, make Nova fail or hang, SIGKILL the run. After every run it checks
the rules (`check_rules`), then runs once more with the adversary quiet and checks them again.

A failure names its seed and the command that replays it:
    GPUPOOL_RANDOM_SEEDS=17 .venv/bin/pytest tests/sim/test_random_adversity.py
Run more with GPUPOOL_RANDOM_SCENARIOS=2000 (GPUPOOL_RANDOM_BASE shifts the seeds). A scenario
replays the same adversary at the same protocol points; the threads of a run may interleave a
little differently each time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from gpupool.intent import parse_reason
from novasim.testing import SimError, SimProcess
from tests.sim.reconcile_helpers import GPUPOOL, write_spec

SCENARIOS = int(os.environ.get("GPUPOOL_RANDOM_SCENARIOS", "200"))
BASE = int(os.environ.get("GPUPOOL_RANDOM_BASE", "0"))

ACTION = "/compute/v2.1/os-aggregates/{aggregate_id}/action"
SERVICE = "/compute/v2.1/os-services/{service_id}"
HYPERVISOR = "/compute/v2.1/os-hypervisors/{hypervisor_id}"
ALLOCATIONS = "/placement/resource_providers/{uuid}/allocations"
# Points of the protocol where the adversary may act: (method, route, a piece of the body).
TRIGGERS = [
    ("GET", HYPERVISOR, None),  # check / confirm
    ("PUT", SERVICE, '"disabled"'),
    ("GET", ALLOCATIONS, None),
    ("POST", ACTION, "remove_host"),
    ("POST", ACTION, "add_host"),
    ("PUT", SERVICE, '"enabled"'),
]
POOLS = {"spot": "L40-n3-spot", "runpod": "L40-n3-runpod", "contract": "Contract-L40-C1"}
MANAGED = ("L40-n3", *POOLS.values())


@dataclass
class Scenario:
    seed: int
    rng: random.Random
    fleet: dict
    spec: dict
    hosts: list[str]
    # What the adversary did, to tell its doing from ours when checking the rules.
    disabled_by_hand: dict[str, str] = field(default_factory=dict)  # host -> reason it wrote
    moved_by_hand: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)  # hosts it started instances on
    log: list[str] = field(default_factory=list)


def make_scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    counts = {"L40-n3": rng.randint(3, 9), "spot": rng.randint(0, 3), "runpod": rng.randint(0, 2)}
    counts["contract"] = rng.randint(0, 2)
    hosts, aggregates, index = [], [], 1
    for label, aggregate in [("L40-n3", "L40-n3"), *POOLS.items()]:
        members = [f"gpu-{i:03d}" for i in range(index, index + counts[label])]
        index += counts[label]
        hosts += members
        aggregates.append({"name": aggregate, "hosts": members})
    special = []
    for host in hosts:
        roll = rng.random()
        if roll < 0.12:
            special.append({"name": host, "instances": 1})
        elif roll < 0.17:
            special.append({"name": host, "state": "down"})
        elif roll < 0.22:
            special.append(
                {"name": host, "status": "disabled", "disabled_reason": f"RMA {rng.randint(1, 99)}"}
            )
    fleet = {"aggregates": aggregates, "hosts": special}
    spec_body = {
        "gpuType": "L40",
        "cloud": "sim",
        "pools": {
            "spot": {"hosts": rng.randint(0, 5)},
            "runpod": {"hosts": rng.randint(0, 3)},
            "contracts": [{"aggregate": POOLS["contract"], "hosts": rng.randint(0, 3)}],
        },
        "policy": {"maxConcurrentMoves": rng.randint(1, 3), "allowPartial": rng.random() < 0.7},
    }
    if rng.random() < 0.08:
        spec_body[rng.choice(["paused", "dryRun"])] = True
    spec = {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "l40"},
        "spec": spec_body,
    }
    scenario = Scenario(seed, rng, fleet, spec, hosts)
    for entry in special:
        if entry.get("disabled_reason"):
            scenario.disabled_by_hand[entry["name"]] = entry["disabled_reason"]
        if entry.get("instances"):
            scenario.busy.add(entry["name"])
    return scenario


# -- what the adversary does -------------------------------------------------------------------------


def act(scenario: Scenario, sim: SimProcess, run: subprocess.Popen, held_path: str) -> bool:
    """One random act of the adversary. False when it killed the run.

    It never disables or re-labels a host whose service gpupool is reading right then (the check
    before its disable, the confirm before its enable): Nova has no compare-and-set on a service,
    and those two windows of one request each are the ones docs/architecture.md names.
    """
    rng, state = scenario.rng, sim.state()
    services = {h["name"]: h for h in state["hosts"]}
    host = rng.choice(scenario.hosts)
    kind = rng.choice(["disable", "enable", "edit", "boot", "delete", "move", "fault", "kill"])
    reason = services[host].get("disabled_reason") or ""
    being_checked = "/os-hypervisors/" in held_path and services[host]["provider"]["uuid"] in held_path
    if kind == "disable" and services[host]["status"] == "enabled" and not being_checked:
        text = f"maintenance {rng.randint(1, 999)}"
        sim.set_service(host, status="disabled", disabled_reason=text)
        scenario.disabled_by_hand[host] = text
    elif kind == "enable" and host in scenario.disabled_by_hand and not reason.startswith("gpupool:"):
        sim.set_service(host, status="enabled")
        scenario.disabled_by_hand.pop(host)
    elif kind == "edit" and reason.startswith("gpupool:") and not being_checked:
        text = f"{reason} (ask Bob)"
        sim.set_service(host, status="disabled", disabled_reason=text)
        scenario.disabled_by_hand[host] = text
    elif kind == "boot":
        sim.start_instance(host, name=f"adv-{rng.randint(1, 9999)}")
        scenario.busy.add(host)
    elif kind == "delete":
        sim.delete_instances(host)
        scenario.busy.discard(host)
    elif kind == "move" and not reason.startswith("gpupool:"):
        places = [a["name"] for a in state["aggregates"] if host in a["hosts"] and a["name"] in MANAGED]
        if len(places) == 1:
            target = rng.choice([a for a in MANAGED if a != places[0]])
            sim.move_host(host, places[0], target)
            scenario.moved_by_hand.add(host)
    elif kind == "fault":
        trigger = rng.choice(TRIGGERS)
        sim.faults(
            routes={f"{trigger[0]} {trigger[1]}": {"error_rate": rng.choice([0.5, 1.0]), "error_status": 500}}
        )
    elif kind == "kill":
        run.send_signal(signal.SIGKILL)
        scenario.log.append("kill")
        return False
    scenario.log.append(f"{kind} {host}")
    return True


# -- the rules -------------------------------------------------------------------------------------


def raced(journal: list[dict], state: dict, host: str) -> bool:
    """Whether the adversary's last change to `host`'s service fell between gpupool's read of it
    (check or confirm) and gpupool's write (disable or enable): the one-request windows Nova's lack
    of compare-and-set leaves (docs/architecture.md). The journal says who went first."""
    entry = next(h for h in state["hosts"] if h["name"] == host)
    read = f"/os-hypervisors/{entry['provider']['uuid']}"
    write = f"/os-services/{entry['service_id']}"
    ours_changed = [i for i, r in enumerate(journal) if r["path"] == f"/_sim/hosts/{host}/service"]
    if not ours_changed:
        return False
    theirs = ours_changed[-1]
    last_read = max((i for i, r in enumerate(journal[:theirs]) if r["path"].endswith(read)), default=None)
    if last_read is None:
        return False
    writes_between = [
        r for r in journal[last_read:theirs] if r["method"] == "PUT" and r["path"].endswith(write)
    ]
    write_after = any(r["method"] == "PUT" and r["path"].endswith(write) for r in journal[theirs:])
    return not writes_between and write_after


def check_rules(
    scenario: Scenario,
    before: dict,
    after: dict,
    code: int | None,
    output: dict | None,
    journal: list[dict] | None = None,
) -> None:
    where = f"seed {scenario.seed} ({'; '.join(scenario.log) or 'no adversary'})"
    journal = journal or []
    places_before = _places(before)
    places = _places(after)
    services = {h["name"]: h for h in after["hosts"]}
    for host in scenario.hosts:
        reason = services[host].get("disabled_reason") or ""
        in_pools = places.get(host, [])
        assert len(in_pools) <= 1, f"{where}: {host} is in {in_pools}"
        if not in_pools:
            # Only a half-done move (its intent in Nova: the next run finishes it) or a host someone
            # else re-labelled mid-move (left as they set it) may be in no pool.
            half_done = parse_reason(host, reason) is not None and services[host]["status"] == "disabled"
            assert half_done or reason == scenario.disabled_by_hand.get(host), (
                f"{where}: {host} is in no pool ({reason!r})"
            )
        hand = scenario.disabled_by_hand.get(host)
        if hand is not None and host not in scenario.moved_by_hand and not raced(journal, after, host):
            # Disabled by someone else before we touched it: left exactly as they set it.
            assert reason == hand, f"{where}: {host} was disabled with {hand!r}, now {reason!r}"
            assert services[host]["status"] == "disabled", f"{where}: {host} was enabled by gpupool"
            # (A killed run reports nothing: what it did is judged by the run after it.)
            if places_before.get(host) != in_pools and output is not None:
                moved_with_reason = [m for m in (output or {}).get("lastMoves", []) if m["host"] == host]
                assert moved_with_reason, f"{where}: {host}, disabled by hand, moved unreported"
        if host in scenario.busy and services[host]["instances"] and host not in scenario.moved_by_hand:
            if places_before.get(host) != in_pools and output is not None:
                told = [m for m in output.get("lastMoves", []) if m["host"] == host]
                assert told, f"{where}: {host} moved with an instance, unreported"
    ours = [h for h, s in services.items() if parse_reason(h, s.get("disabled_reason"))]
    if code == 0:
        assert not ours, f"{where}: converged (exit 0) with gpupool intents left on {ours}"
        spec = scenario.spec["spec"]
        if not spec.get("paused") and not spec.get("dryRun"):
            wanted = {
                POOLS["spot"]: spec["pools"]["spot"]["hosts"],
                POOLS["runpod"]: spec["pools"]["runpod"]["hosts"],
                POOLS["contract"]: spec["pools"]["contracts"][0]["hosts"],
            }
            have = {a["name"]: len(a["hosts"]) for a in after["aggregates"] if a["name"] in wanted}
            assert have == wanted, f"{where}: converged (exit 0) but Nova holds {have}, spec wants {wanted}"


def _places(state: dict) -> dict[str, list[str]]:
    places: dict[str, list[str]] = {}
    for aggregate in state["aggregates"]:
        if aggregate["name"] in MANAGED:
            for host in aggregate["hosts"]:
                places.setdefault(host, []).append(aggregate["name"])
    return places


# -- running it ------------------------------------------------------------------------------------


def start_run(sim: SimProcess, spec_file) -> subprocess.Popen:
    return subprocess.Popen(
        [GPUPOOL, "reconcile", "-f", str(spec_file), "-o", "json", "--max-passes", "3", "--wait", "30"],
        env={**os.environ, **sim.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(run: subprocess.Popen) -> tuple[int, dict | None, str]:
    out, err = run.communicate(timeout=240)
    try:
        output = json.loads(out)[0]["status"] if out.strip() else None
    except (ValueError, KeyError):
        output = None
    return run.returncode, output, err


def held_while_running(sim: SimProcess, hold: int, run: subprocess.Popen) -> str | None:
    """Wait until the run makes the held request (its path); None when it ends (or takes too long) first."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            view = sim.wait_held(hold, timeout=0.3)
            return view.get("path") or ""
        except SimError:
            if run.poll() is not None:
                return None
    return None


def run_scenario(seed: int, workdir) -> None:
    """One scenario; raises AssertionError naming the seed when a rule is broken."""
    tmp_path = workdir
    scenario = make_scenario(seed)
    sim = SimProcess(scenario.fleet, tmp_path / "sim").start()
    try:
        spec_file = write_spec(tmp_path / "pools.yaml", scenario.spec)
        before = sim.state()
        run = start_run(sim, spec_file)
        alive = True
        for _ in range(scenario.rng.randint(0, 3)):
            method, route, body = scenario.rng.choice(TRIGGERS)
            hold = sim.hold(method, route, body_contains=body)
            held_path = held_while_running(sim, hold, run)
            if held_path is None:
                sim.release_all()
                break
            alive = act(scenario, sim, run, held_path)
            sim.release_all()
            if not alive:
                break
        if not alive:
            run.wait(30)
            code, output, err = None, None, ""
        else:
            code, output, err = finish(run)
        sim.clear_faults()
        assert "Traceback" not in err, f"seed {seed}: {err}"
        check_rules(scenario, before, sim.state(), code, output, sim.journal())

        if code == 0:
            return  # converged, and the rules held: a second run would find nothing to do
        # The adversary rests: a second run must leave no half-done move behind, and say the truth.
        before = sim.state()
        code, output, err = finish(start_run(sim, spec_file))
        assert code in (0, 2), f"seed {seed}: exit {code}: {err}"
        assert "Traceback" not in err, f"seed {seed}: {err}"
        after = sim.state()
        check_rules(scenario, before, after, code, output, sim.journal())
        busy = {h["name"] for h in after["hosts"] if h["instances"]}
        left = {h["name"] for h in after["hosts"] if parse_reason(h["name"], h.get("disabled_reason"))}
        assert left <= busy, (
            f"seed {seed} ({'; '.join(scenario.log)}): intents left on empty hosts {left - busy}"
        )
    finally:
        sim.stop()


def _seeds() -> list[int]:
    chosen = os.environ.get("GPUPOOL_RANDOM_SEEDS")
    if chosen:
        return [int(seed) for seed in chosen.split(",")]
    return list(range(BASE, BASE + SCENARIOS))


SEEDS = _seeds()
BATCH = 10
# Scenarios are independent (a novasim each); most of a run's time is waiting for its requests,
# so a few run side by side.
WORKERS = 3


@pytest.mark.parametrize(
    "first",
    range(0, len(SEEDS), BATCH),
    ids=lambda i: f"seeds-{SEEDS[i]}-{SEEDS[min(i + BATCH, len(SEEDS)) - 1]}",
)
def test_rules_hold(first, tmp_path):
    seeds = SEEDS[first : first + BATCH]

    def one(seed: int) -> str | None:
        try:
            run_scenario(seed, tmp_path / f"seed-{seed}")
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its seed
            return f"seed {seed}: {type(exc).__name__}: {exc}"
        return None

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [failure for failure in pool.map(one, seeds) if failure]
    failed = ",".join(f.split(":")[0].split()[1] for f in failures)
    assert not failures, (
        "\n".join(failures) + f"\nreplay: GPUPOOL_RANDOM_SEEDS={failed} .venv/bin/pytest {__file__}"
    )
