"""`make demo`: the simulated cloud, its pools, `gpupool reconcile`, and the pools after.

Runs entirely on 127.0.0.1 with the built-in simulator; nothing here needs a real cloud.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from novasim.testing import SimProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(args: list[str], env: dict[str, str]) -> int:
    print("$ " + " ".join(args), flush=True)
    return subprocess.run(args, env=env, cwd=ROOT).returncode


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="gpupool-demo-") as tmp,
        SimProcess(ROOT / "examples" / "fleet.yaml", workdir=Path(tmp)) as sim,
    ):
        env = {**os.environ, **sim.env()}
        banner(f"novasim serving examples/fleet.yaml at {sim.auth_url}")
        banner("The pools before, as the OpenStack CLI sees them")
        run([str(BIN / "openstack"), "aggregate", "list", "--long"], env)
        banner("What gpupool would do (gpupool plan)")
        run([str(BIN / "gpupool"), "plan", "-f", "examples/pools/"], env)
        banner("Moving hosts (gpupool reconcile)")
        code = run([str(BIN / "gpupool"), "reconcile", "-f", "examples/pools/"], env)
        banner("The pools after")
        run([str(BIN / "openstack"), "aggregate", "list", "--long"], env)
        stats = sim.stats()
        banner(f"Nova requests served: {stats.get('total', '?')}")
        return code


if __name__ == "__main__":
    sys.exit(main())
