"""Record the Argo CD health check's testdata from a live operator.

    .venv/bin/python -m tests.gitops.record_testdata [--out DIR]      (make gitops-testdata)

Starts a local etcd + kube-apiserver (testbed.localkube), novasim with a small fleet of several
GPU types, and `gpupool run`; applies one GpuHostPool per scenario, waits until the operator has
written what the scenario shows, and saves `kubectl get ghp NAME -o yaml` (as Argo CD asks of a
health check's testdata) into manifests/argocd/gpupool.io/GpuHostPool/testdata/. Nothing is edited
afterwards: every file is what kubectl printed, with the comment line above it saying how it came
about. Two scenarios need the operator not to answer, so it is stopped for them: `no_status` (a
resource applied while no operator runs) and `stale_generation` (a converged resource whose spec
was changed while no operator runs). At the end it prints what kstatus and the health check make
of each file (testbed.gitops_health), to compare with health_test.yaml.

Lives with the tests, not in testbed/: it needs the venv (novasim, the e2e helpers).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from novasim.testing import SimProcess
from testbed import gitops_health, localkube
from tests.e2e.conftest import Kube
from tests.e2e.operator_helpers import REPO, OperatorProcess, condition, ghp, new_peering, status, wait_for

TESTDATA = REPO / "manifests" / "argocd" / "gpupool.io" / "GpuHostPool" / "testdata"


def gpu(kind: str, prefix: str, hosts: int = 6, busy: int = 0) -> tuple[list[dict], list[dict]]:
    """One GPU type: `hosts` on-demand hosts (the first `busy` of them run an instance), empty spot
    and RunPod aggregates."""
    aggregates = [
        {
            "name": f"{kind}-n3",
            "metadata": {"availability_zone": "nova"},
            "hosts": [f"gpu-{prefix}-[001-{hosts:03d}]"],
        },
        {"name": f"{kind}-n3-spot", "hosts": []},
        {"name": f"{kind}-n3-runpod", "hosts": []},
    ]
    instances = [{"name": f"gpu-{prefix}-[001-{busy:03d}]", "instances": 1}] if busy else []
    return aggregates, instances


def fleet() -> dict:
    aggregates: list[dict] = []
    hosts: list[dict] = []
    for kind, prefix, busy in (
        ("L40", "l40", 0),
        ("A100", "a100", 0),
        ("H100", "h100", 2),
        ("L4", "l4", 0),
        ("RTX-A6000", "a6000", 0),
        ("A40", "a40", 0),
        ("T4", "t4", 0),
        ("V100", "v100", 0),
        ("A10", "a10", 0),
    ):
        a, h = gpu(kind, prefix, busy=busy)
        aggregates += a
        hosts += h
    return {"aggregates": aggregates, "hosts": hosts}


class Recorder:
    def __init__(self, kube: Kube, out: Path):
        self.kube = kube
        self.out = out
        self.saved: list[Path] = []

    def save(self, file: str, name: str, how: str) -> None:
        text = self.kube.kubectl("get", "ghp", name, "-o", "yaml").stdout
        path = self.out / f"{file}.yaml"
        path.write_text(
            f"# {how}\n# Recorded by tests/gitops/record_testdata.py: `kubectl get ghp {name} -o yaml`.\n{text}"
        )
        self.saved.append(path)
        print(f"saved {path}", file=sys.stderr)


def ready_reason(kube: Kube, name: str) -> tuple[str, str]:
    found = condition(kube, name)
    return found.get("status", ""), found.get("reason", "")


def wait(what: str, predicate: Callable[[], object], timeout: float = 60) -> object:
    return wait_for(what, predicate, timeout=timeout, every=0.1)


def record(out: Path, workdir: Path) -> list[Path]:
    cp = localkube.start()
    sim = operator = None
    try:
        kube = Kube(
            kubeconfig=cp.kubeconfig,
            kubectl_path=cp.kubectl,
            env=cp.env(),
            server=cp.server,
            token=cp.token,
            ca_file=cp.ca_file,
            version=cp.version,
            state_dir=cp.state_dir,
        )
        kube.kubectl("apply", "-f", str(REPO / "crds"))
        kube.wait_established("gpuhostpools.gpupool.io")
        sim = SimProcess(fleet(), workdir / "sim").start()
        peering = new_peering()

        def start_operator(identity: str) -> OperatorProcess:
            return OperatorProcess(kube, sim, workdir, interval=2, peering=peering, identity=identity)

        operator = start_operator("recorder")
        rec = Recorder(kube, out)

        # healthy: converged.
        kube.apply(
            ghp("l40", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 2}, "runpod": {"hosts": 1}})
        )
        wait("l40 Ready", lambda: ready_reason(kube, "l40") == ("True", "Converged"))
        rec.save("healthy", "l40", "Converged: every pool holds its desired hosts.")

        # conflict: a second resource managing l40's aggregates; the younger one waits.
        kube.apply(ghp("l40-team-b", gpuType="L40", cloud="sim", pools={"spot": {"hosts": 3}}))
        wait("l40-team-b Conflict", lambda: ready_reason(kube, "l40-team-b") == ("False", "Conflict"))
        rec.save(
            "conflict", "l40-team-b", "Conflict: L40's aggregates are already managed by GpuHostPool l40."
        )

        # blocked: 6 H100 hosts, 2 with an instance: 4 movable, 5 asked for.
        kube.apply(ghp("h100", gpuType="H100", cloud="sim", pools={"spot": {"hosts": 5}}))
        wait("h100 Stalled", lambda: condition(kube, "h100", "Stalled").get("status") == "True")
        rec.save("blocked", "h100", "Stalled (NotEnoughMovableHosts): 5 spot hosts asked for, 4 movable.")

        # invalid spec: valid for the API server, not for a move's record in Nova.
        kube.apply(
            ghp(
                "l4-long-contract",
                gpuType="L4",
                cloud="sim",
                pools={"contracts": [{"aggregate": "Contract-" + "x" * 230, "hosts": 1}]},
            )
        )
        wait("InvalidSpec", lambda: ready_reason(kube, "l4-long-contract") == ("False", "InvalidSpec"))
        rec.save(
            "invalid_spec", "l4-long-contract", "InvalidSpec: a contract aggregate's name too long for Nova."
        )

        # paused and dry run: created so, with moves to make.
        kube.apply(
            ghp("rtx-a6000", gpuType="RTX-A6000", cloud="sim", pools={"spot": {"hosts": 2}}, paused=True)
        )
        wait("rtx-a6000 Paused", lambda: condition(kube, "rtx-a6000", "Paused").get("reason") == "Paused")
        rec.save("paused", "rtx-a6000", "Paused: spec.paused is true, 2 moves needed.")
        kube.apply(ghp("a40", gpuType="A40", cloud="sim", pools={"spot": {"hosts": 2}}, dryRun=True))
        wait("a40 planned", lambda: status(kube, "a40").get("plannedMoves"))
        rec.save("dry_run", "a40", "DryRun: spec.dryRun is true, 2 moves planned and listed, none made.")

        # moving: Nova holds the first host's removal from its source, mid-move.
        hold = sim.hold(
            "POST", "/compute/v2.1/os-aggregates/{aggregate_id}/action", body_contains="remove_host"
        )
        kube.apply(
            ghp(
                "a100",
                gpuType="A100",
                cloud="sim",
                pools={"spot": {"hosts": 3}},
                policy={"maxConcurrentMoves": 1},
            )
        )
        sim.wait_held(hold, timeout=60)
        wait("a100 in flight", lambda: status(kube, "a100").get("inFlight"))
        rec.save("moving", "a100", "Moving: 3 spot hosts asked for, one move at a time, the first in flight.")
        sim.release_all()
        wait("a100 Ready", lambda: ready_reason(kube, "a100") == ("True", "Converged"))

        # being deleted: ReturnToOnDemand; Nova holds the first host's way back.
        kube.apply(
            ghp(
                "a10",
                gpuType="A10",
                cloud="sim",
                pools={"runpod": {"hosts": 2}},
                deletionPolicy="ReturnToOnDemand",
                policy={"maxConcurrentMoves": 1},
            )
        )
        wait("a10 Ready", lambda: ready_reason(kube, "a10") == ("True", "Converged"))
        hold = sim.hold(
            "POST", "/compute/v2.1/os-aggregates/{aggregate_id}/action", body_contains="remove_host"
        )
        kube.kubectl("delete", "ghp", "a10", "--wait=false")
        sim.wait_held(hold, timeout=60)
        wait("a10 returning", lambda: status(kube, "a10").get("inFlight"))
        rec.save(
            "deleting",
            "a10",
            "Being deleted (deletionPolicy ReturnToOnDemand): the finalizer holds it while the hosts go back.",
        )
        sim.release_all()
        wait("a10 gone", lambda: kube.kubectl("get", "ghp", "a10", check=False).returncode != 0)

        # stale generation: t4 converged, then its spec changed while no operator runs.
        kube.apply(ghp("t4", gpuType="T4", cloud="sim", pools={"spot": {"hosts": 1}}))
        wait("t4 Ready", lambda: ready_reason(kube, "t4") == ("True", "Converged"))
        operator.stop()
        kube.apply(ghp("t4", gpuType="T4", cloud="sim", pools={"spot": {"hosts": 2}}))
        rec.save(
            "stale_generation",
            "t4",
            "Spec changed (generation 2) while no operator ran: the status is still generation 1's.",
        )

        # no status: applied while no operator runs.
        kube.apply(ghp("v100", gpuType="V100", cloud="sim", pools={"spot": {"hosts": 1}}))
        rec.save("no_status", "v100", "Applied while no operator ran: no status yet.")
        return rec.saved
    finally:
        if operator is not None:
            operator.stop()
            print(
                "----- operator log (tail) -----\n" + "\n".join(operator.log().splitlines()[-15:]),
                file=sys.stderr,
            )
        if sim is not None:
            sim.stop()
        cp.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.gitops.record_testdata", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--out", type=Path, default=TESTDATA, help="where to write the files (default: %(default)s)"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gitops-testdata-") as work:
        saved = record(args.out, Path(work))
    print(f"recorded {len(saved)} files in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    for path, found in zip(saved, gitops_health.evaluate(saved), strict=True):
        print(json.dumps({"file": path.name, **{k: found[k] for k in ("name", "kstatus", "lua")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
