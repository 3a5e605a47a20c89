"""How many aggregate lists per second novasim serves for 500 aggregates and 10,000 hosts.

    .venv/bin/python -m bench.novasim_rps [--seconds 5] [--clients 4]

Baseline, measured in the same run against the same server: the cheapest authenticated Nova
request (GET /compute/v2.1/os-services?host=<one host>, a few hundred bytes). The aggregate list
(about 250 KB of JSON) is reported as requests per second and as a ratio to that baseline, both
with raw HTTP keep-alive clients and through openstacksdk (`conn.compute.aggregates()`), which is
how the operator asks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import openstack
import openstack.config
import requests

from novasim.testing import SimProcess


def fleet(aggregates: int = 500, hosts: int = 10_000) -> dict:
    per = hosts // aggregates
    return {
        "aggregates": [
            {
                "name": f"GPU{a:03d}-n3",
                "metadata": {"gpu": f"GPU{a:03d}"},
                "hosts": [f"gpu{a:03d}-[{1:04d}-{per:04d}]"],
            }
            for a in range(aggregates)
        ]
    }


def token(sim: SimProcess) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "password": "secret"}},
            },
            "scope": {"project": {"name": "admin"}},
        }
    }
    return requests.post(f"{sim.auth_url}/auth/tokens", json=body, timeout=30).headers["X-Subject-Token"]


def hammer(url: str, headers: dict, seconds: float, clients: int) -> tuple[float, float]:
    """(requests per second, median latency in ms) of `clients` keep-alive clients for `seconds`."""
    counts, latencies = [0] * clients, [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            response = session.get(url, headers=headers, timeout=30)
            response.raise_for_status()
            response.content  # noqa: B018 - read the whole body, as a client must
            latencies[i].append(time.perf_counter() - t0)
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return sum(counts) / elapsed, 1000 * statistics.median([x for lat in latencies for x in lat])


def sdk_rate(sim: SimProcess, seconds: float) -> float:
    config = openstack.config.OpenStackConfig(config_files=[str(sim.clouds_yaml)], load_envvars=False)
    conn = openstack.connection.Connection(config=config.get_one(cloud=sim.cloud_name))
    list(conn.compute.aggregates())  # discovery and token outside the measurement
    n, stop, start = 0, time.monotonic() + seconds, time.monotonic()
    while time.monotonic() < stop:
        assert len(list(conn.compute.aggregates())) == 500
        n += 1
    return n / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SimProcess(fleet(), Path(tmp)) as sim:
        headers = {"X-Auth-Token": token(sim), "OpenStack-API-Version": "compute 2.81"}
        base = f"{sim.url}/compute/v2.1"
        size = len(requests.get(f"{base}/os-aggregates", headers=headers, timeout=30).content)
        small_rps, small_ms = hammer(
            f"{base}/os-services?host=gpu000-0001", headers, args.seconds, args.clients
        )
        list_rps, list_ms = hammer(f"{base}/os-aggregates", headers, args.seconds, args.clients)
        sdk_rps = sdk_rate(sim, args.seconds)
    print(
        f"novasim, 500 aggregates / 10,000 hosts, {args.clients} keep-alive clients, {args.seconds:.0f} s each"
    )
    print(f"  baseline  GET os-services?host=H     {small_rps:8.0f} req/s   median {small_ms:6.1f} ms")
    print(
        f"  aggregate list ({size / 1024:.0f} KB JSON)     {list_rps:8.0f} req/s   median {list_ms:6.1f} ms"
        f"   = {list_rps / small_rps:.2f}x baseline"
    )
    print(
        f"  aggregate list via openstacksdk  {sdk_rps:8.1f} req/s (1 client)   = {sdk_rps / small_rps:.3f}x baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
