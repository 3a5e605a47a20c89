"""SimProcess: novasim in a child process, for tests, the demo and benchmarks.

The operator under test talks to it over HTTP exactly as to a real cloud (via the clouds.yaml it
writes); the test steers it through the /_sim endpoints with the helpers below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class SimError(RuntimeError):
    pass


class SimProcess:
    def __init__(
        self,
        fleet: dict | str | Path,
        workdir: Path,
        *,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        token_lifetime_s: float | None = None,
        extra_args: Sequence[str] = (),
        cloud_name: str = "sim",
        port: int = 0,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(fleet, Path):
            self.fleet_file = fleet
        else:
            self.fleet_file = self.workdir / "fleet.yaml"
            text = fleet if isinstance(fleet, str) else yaml.safe_dump(fleet, sort_keys=False)
            self.fleet_file.write_text(text)
        self.clouds_yaml = self.workdir / "clouds.yaml"
        self.cloud_name = cloud_name
        self.log_file = self.workdir / "novasim.log"
        self.args = ["--fleet", str(self.fleet_file), "--port", str(port)]
        self.args += ["--clouds-out", str(self.clouds_yaml), "--cloud-name", cloud_name]
        if latency_ms:
            self.args += ["--latency-ms", str(latency_ms)]
        if jitter_ms:
            self.args += ["--jitter-ms", str(jitter_ms)]
        if token_lifetime_s is not None:
            self.args += ["--token-lifetime", str(token_lifetime_s)]
        self.args += list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> SimProcess:
        self.clouds_yaml.unlink(missing_ok=True)
        log = open(self.log_file, "w")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "novasim", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not (self.clouds_yaml.exists() and self.clouds_yaml.stat().st_size):
            if self.proc.poll() is not None:
                raise SimError(f"novasim exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SimError(f"novasim did not start within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        entry = yaml.safe_load(self.clouds_yaml.read_text())["clouds"][self.cloud_name]
        self.url = entry["auth"]["auth_url"].removesuffix("/identity/v3")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- what a client needs ------------------------------------------------------------------

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def env(self) -> dict[str, str]:
        return {"OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml), "OS_CLOUD": self.cloud_name}

    # -- /_sim --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/_sim{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise SimError(
                f"{method} /_sim{path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None

    def journal(self) -> list[dict]:
        """Every request in the order novasim applied it: {seq, method, path, body, status}."""
        return self._call("GET", "/journal")["requests"]

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> dict:
        return self._call("POST", "/stats/reset")

    def state(self) -> dict:
        return self._call("GET", "/state")

    def faults(
        self,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        error_rate: float | None = None,
        error_status: int | None = None,
        routes: dict[str, dict | None] | None = None,
    ) -> dict:
        body = {
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "error_rate": error_rate,
            "error_status": error_status,
            "routes": routes or {},
        }
        return self._call("POST", "/faults", body)

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/faults")

    def expire_tokens(self) -> int:
        return self._call("POST", "/tokens/expire")["expired"]

    def start_instance(
        self, host: str, name: str | None = None, status: str = "ACTIVE", extra_specs: dict | None = None
    ) -> str:
        body = {
            "status": status,
            **({"name": name} if name else {}),
            **({"extra_specs": extra_specs} if extra_specs else {}),
        }
        return self._call("POST", f"/hosts/{host}/instances", body)["started"][0]

    def delete_instances(self, host: str) -> int:
        return self._call("DELETE", f"/hosts/{host}/instances")["deleted"]

    def schedule_build(self, host: str, name: str | None = None, flavor: str | None = None) -> str:
        """A server the scheduler placed on `host` that its compute has not claimed yet: BUILD,
        listed without a host, on no hypervisor, but its allocation is on host's provider.
        Returns the instance uuid."""
        body = {k: v for k, v in (("name", name), ("flavor", flavor)) if v}
        return self._call("POST", f"/hosts/{host}/builds", body)["instance"]

    def claim_build(self, instance: str) -> str:
        """The compute claims the build: its host is set, it is ACTIVE. Returns the host."""
        return self._call("POST", f"/builds/{instance}/claim")["host"]

    def start_migration(self, instance: str, dest: str) -> str:
        """A live migration of `instance` to host `dest`, in progress (status running): the
        instance stays on its host (MIGRATING); Placement holds its allocation on `dest` and the
        migration's on the source. Returns the migration uuid."""
        return self._call("POST", "/migrations", {"instance": instance, "dest": dest})["migration"]

    def finish_migration(self, migration: str) -> None:
        """The migration completes: the instance on its destination, the source allocation gone."""
        self._call("POST", f"/migrations/{migration}/finish")

    def allocations(self, host: str) -> dict[str, dict]:
        """What Placement holds against host's provider: {consumer uuid: {kind, resources}}."""
        return next(h for h in self.state()["hosts"] if h["name"] == host)["allocations"]

    def move_host(self, host: str, source_aggregate: str, target_aggregate: str) -> None:
        self._call("POST", "/move", {"host": host, "from": source_aggregate, "to": target_aggregate})

    def set_service(
        self,
        host: str,
        state: str | None = None,
        status: str | None = None,
        disabled_reason: str | None = None,
    ) -> None:
        body = {
            k: v for k, v in (("state", state), ("status", status), ("disabled_reason", disabled_reason)) if v
        }
        self._call("POST", f"/hosts/{host}/service", body)

    def hold(self, method: str, route_template: str, body_contains: str | None = None, count: int = 1) -> int:
        body = {"method": method, "route": route_template, "body_contains": body_contains, "count": count}
        return self._call("POST", "/holds", body)["id"]

    def wait_held(self, hold_id: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            view = self._call("GET", f"/holds/{hold_id}?wait={max(0.1, min(left, 5)):.1f}", timeout=left + 10)
            if view["held"]:
                return view
            if left <= 0:
                raise SimError(f"no request matched hold {hold_id} within {timeout}s: {view}")

    def release(self, hold_id: int) -> None:
        self._call("POST", f"/holds/{hold_id}/release")

    def release_all(self) -> None:
        self._call("DELETE", "/holds")
