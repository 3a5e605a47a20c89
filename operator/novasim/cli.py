"""`python -m novasim` and `gpupool sim`: serve a fleet on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Simulator

# The server (aiohttp) is imported only when it runs: `gpupool --help` and every other gpupool
# command build this subcommand's arguments, and should not pay for a web server they never start.

DEFAULT_FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet",
        default=str(DEFAULT_FLEET) if DEFAULT_FLEET.exists() else None,
        required=not DEFAULT_FLEET.exists(),
        metavar="FILE",
        help="fleet YAML: aggregates and hosts to start with (default: examples/fleet.yaml)",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--clouds-out",
        default="clouds.yaml",
        metavar="FILE",
        help="clouds.yaml to write the entry into; other entries are kept (default: ./clouds.yaml, "
        "where the openstack CLI and openstacksdk look first)",
    )
    parser.add_argument("--cloud-name", default="sim", help="name of the clouds.yaml entry (default: sim)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="random extra latency, 0..N ms")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of Nova requests answered with --error-status"
    )
    parser.add_argument("--error-status", type=int, default=503, help="status of injected errors (500, 503)")
    parser.add_argument(
        "--token-lifetime", type=float, default=None, metavar="SECONDS", help="Keystone token lifetime"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for random faults (repeatable runs)")


def run(args: argparse.Namespace) -> int:
    from .control import Faults
    from .fleet import FleetError, load_fleet
    from .server import Simulator

    try:
        fleet = load_fleet(args.fleet)
    except FleetError as exc:
        print(f"novasim: error: {exc}", file=sys.stderr)
        return 2
    if args.token_lifetime is not None:
        fleet.cloud.token_lifetime_s = args.token_lifetime
    import random

    faults = Faults(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        error_rate=args.error_rate,
        error_status=args.error_status,
        rng=random.Random(args.seed),
    )
    try:
        asyncio.run(_serve(Simulator(fleet, faults), args))
    except OSError as exc:
        print(f"novasim: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


async def _serve(sim: Simulator, args: argparse.Namespace) -> None:
    from .server import clouds_entry, write_clouds_yaml

    runner = await sim.start(port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hosts = len(sim.state.computes)
    print(
        f"novasim: serving {len(sim.state.aggregates)} aggregates and {hosts} hosts from {args.fleet} "
        f"at {sim.url} (Keystone {sim.url}/identity/v3, Nova {sim.url}/compute/v2.1, "
        f"Placement {sim.url}/placement)",
        flush=True,
    )
    if args.clouds_out:
        out = Path(args.clouds_out)
        write_clouds_yaml(out, args.cloud_name, clouds_entry(sim))
        print(
            f"novasim: wrote cloud {args.cloud_name!r} to {out}; try: "
            f"OS_CLIENT_CONFIG_FILE={out.resolve()} openstack --os-cloud {args.cloud_name} aggregate list",
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        for hold in sim.control.holds.values():
            hold.released.set()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="novasim",
        description="A simulated OpenStack cloud speaking the real Keystone v3, Nova v2.1 and Placement APIs.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
