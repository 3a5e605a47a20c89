"""The two clouds of the conformance tier, behind one interface.

A scenario declares a small fleet in novasim's fleet-file shape (aggregates with metadata and
hosts, hosts with service state, status, reason and instances). Each backend materialises it:

- novasim: a fresh `python -m novasim --fleet FLEET.yaml --port 0 --clouds-out clouds.yaml`;
- realnova: one real Nova per session (testbed/realnova); each scenario's hosts and aggregates
  get a unique suffix (`-c<N>`), hosts are registered through nova's objects, aggregates are
  created and filled through the Nova API, then instances are registered.

Tests speak in the fleet's *logical* names; `Deployed.host()` / `.agg()` give the real names and
ids, and `Deployed.normalize()` turns real names and ids in Nova's messages back into logical
ones (`Aggregate 7 already has host gpu-l40-001-c3.` -> `Aggregate <L40-n3> already has host
gpu-l40-001.`), so the two backends' answers can be compared text for text.

What happens in a cloud between API calls (a build the scheduler placed but the compute has not
claimed, a live migration in progress) is made to happen by `Deployed.actions`: novasim's /_sim
controls, or testbed/realnova/register.py writing what the conductor, scheduler and compute
would write into the real Nova's database and Placement.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openstack
import openstack.config
import openstack.connection
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]

# -- fleets -------------------------------------------------------------------------------------

_RANGE = re.compile(r"^(?P<prefix>.*)\[(?P<lo>\d+)-(?P<hi>\d+)\](?P<suffix>.*)$")


def expand(name: str) -> list[str]:
    """`gpu-l40-[002-004]` -> gpu-l40-002, gpu-l40-003, gpu-l40-004 (width kept)."""
    m = _RANGE.match(name)
    if not m:
        return [name]
    width = len(m["lo"])
    return [f"{m['prefix']}{i:0{width}d}{m['suffix']}" for i in range(int(m["lo"]), int(m["hi"]) + 1)]


@dataclasses.dataclass
class HostSpec:
    name: str
    state: str = "up"
    status: str = "enabled"
    disabled_reason: str | None = None
    instances: int | list[dict] = 0

    @property
    def instance_count(self) -> int:
        return self.instances if isinstance(self.instances, int) else len(self.instances)


@dataclasses.dataclass
class AggregateSpec:
    name: str
    metadata: dict[str, str]
    hosts: list[str]


@dataclasses.dataclass
class Fleet:
    aggregates: list[AggregateSpec]
    hosts: dict[str, HostSpec]

    @classmethod
    def parse(cls, data: dict | str) -> Fleet:
        if isinstance(data, str):
            data = yaml.safe_load(data)
        aggregates = [
            AggregateSpec(
                name=a["name"],
                metadata={k: str(v) for k, v in (a.get("metadata") or {}).items()},
                hosts=[h for pattern in a.get("hosts") or [] for h in expand(pattern)],
            )
            for a in data.get("aggregates") or []
        ]
        hosts: dict[str, HostSpec] = {}
        for agg in aggregates:
            for h in agg.hosts:
                hosts.setdefault(h, HostSpec(h))
        for h in data.get("hosts") or []:
            for name in expand(h["name"]):
                spec = hosts.setdefault(name, HostSpec(name))
                spec.state = h.get("state", spec.state)
                spec.status = h.get("status", spec.status)
                spec.disabled_reason = h.get("disabled_reason", spec.disabled_reason)
                spec.instances = h.get("instances", spec.instances)
        return cls(aggregates, hosts)

    def to_yaml_dict(self, rename=lambda n: n) -> dict:
        return {
            "aggregates": [
                {"name": rename(a.name), "metadata": dict(a.metadata), "hosts": [rename(h) for h in a.hosts]}
                for a in self.aggregates
            ],
            "hosts": [
                {
                    "name": rename(h.name),
                    "state": h.state,
                    "status": h.status,
                    **({"disabled_reason": h.disabled_reason} if h.disabled_reason is not None else {}),
                    "instances": _rename_instances(h.instances, rename),
                }
                for h in self.hosts.values()
            ],
        }


def _rename_instances(instances, rename):
    if isinstance(instances, int):
        return instances
    return [{**i, "name": rename(i["name"])} for i in instances]


# -- a materialised fleet ---------------------------------------------------------------------


@dataclasses.dataclass
class Deployed:
    """One scenario's fleet, live in one backend."""

    backend: str
    conn: openstack.connection.Connection
    clouds_yaml: Path
    cloud_name: str
    names: dict[str, str]  # logical -> real (hosts, aggregates, instances)
    agg_ids: dict[str, int]  # logical aggregate name -> real id
    log_tails: Any = None  # () -> str, for failure reports
    suffix: str = ""  # what the backend appends to logical names ("" for novasim)
    actions: Any = None  # schedule_build / claim_build / start_migration / finish_migration

    def alias(self, logical: str) -> str:
        """A real name for a new logical name (an aggregate a test creates or renames)."""
        return self.names.setdefault(logical, logical + self.suffix)

    def host(self, logical: str) -> str:
        return self.names.get(logical, logical)

    def agg(self, logical: str) -> int:
        return self.agg_ids[logical]

    def name(self, logical: str) -> str:
        return self.names.get(logical, logical)

    def logical(self, real: str) -> str:
        for logical, r in self.names.items():
            if r == real:
                return logical
        return real

    def track_aggregate(self, logical: str, real_id: int) -> None:
        self.agg_ids[logical] = int(real_id)

    def normalize(self, text: str | None) -> str | None:
        """Real ids and names in a message -> logical ones."""
        if text is None:
            return None
        by_id = {str(i): n for n, i in self.agg_ids.items()}

        def agg(m: re.Match) -> str:
            return f"{m[1]}{'<' + by_id[m[2]] + '>' if m[2] in by_id else m[2]}"

        text = re.sub(r"(\b[Aa]ggregate )(\d+)\b", agg, text)
        for logical, real in sorted(self.names.items(), key=lambda kv: -len(kv[1])):
            if logical != real:
                text = text.replace(real, logical)
        return text

    # raw HTTP, for status codes and error bodies
    def request(self, method: str, path: str, body: dict | None = None, microversion: str | None = None):
        """One Nova request; returns (status, json-or-None). Does not raise on 4xx/5xx."""
        kwargs: dict[str, Any] = {"microversion": microversion, "raise_exc": False}
        if body is not None:
            kwargs["json"] = body
        resp = self.conn.compute.request(path, method, **kwargs)
        try:
            data = resp.json()
        except ValueError:
            data = None
        return resp.status_code, data

    def placement(self, method: str, path: str, microversion: str | None = None, headers: dict | None = None):
        """One Placement request (catalog type placement); returns (status, json-or-None, headers)."""
        resp = self.conn.placement.request(
            path, method, microversion=microversion, raise_exc=False, headers=headers or {}
        )
        try:
            data = resp.json()
        except ValueError:
            data = None
        return resp.status_code, data, resp.headers

    def hypervisor_ids(self, logical_hosts: list[str]) -> dict[str, str]:
        """{logical host: hypervisor id (uuid)} from GET /os-hypervisors/detail at 2.87."""
        wanted = {self.host(h): h for h in logical_hosts}
        ids: dict[str, str] = {}
        path = "/os-hypervisors/detail"
        while path:
            code, body = self.request("GET", path, microversion="2.87")
            assert code == 200, body
            for hyp in body["hypervisors"]:
                if hyp["hypervisor_hostname"] in wanted:
                    ids[wanted[hyp["hypervisor_hostname"]]] = hyp["id"]
            links = body.get("hypervisors_links") or []
            path = links[0]["href"].split("/v2.1", 1)[1] if links else None
        assert set(ids) == set(logical_hosts), (
            f"{self.backend}: no hypervisor for {set(logical_hosts) - set(ids)}"
        )
        return ids

    def servers_on(self, logical_host: str) -> list[str]:
        """Instance uuids Nova lists on a host (GET /servers?all_tenants=1&host=H)."""
        code, body = self.request("GET", f"/servers?all_tenants=1&host={self.host(logical_host)}")
        assert code == 200, body
        return [s["id"] for s in body["servers"]]


def _connect(clouds_yaml: Path, cloud_name: str) -> openstack.connection.Connection:
    """What the operator does, with an explicit clouds.yaml path instead of the environment."""
    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
    region = config.get_one(cloud=cloud_name)
    return openstack.connection.Connection(config=region, api_timeout=60)


# -- novasim ----------------------------------------------------------------------------------


def novasim_available() -> str | None:
    """None if `python -m novasim` exists, else why not."""
    main = REPO / "operator" / "novasim" / "__main__.py"
    if not main.exists():
        return f"novasim has no {main.relative_to(REPO)} yet (the simulator is not built)"
    return None


class NovasimBackend:
    name = "novasim"

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._procs: list[tuple[subprocess.Popen, Path]] = []
        self._count = itertools.count(1)

    def materialize(self, fleet: Fleet) -> Deployed:
        n = next(self._count)
        workdir = self.tmp / f"novasim-{n}"
        workdir.mkdir(parents=True)
        fleet_file = workdir / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(fleet.to_yaml_dict(), sort_keys=False))
        clouds = workdir / "clouds.yaml"
        log = workdir / "novasim.log"
        cmd = [sys.executable, "-m", "novasim", "--fleet", str(fleet_file), "--port", "0"]
        cmd += ["--clouds-out", str(clouds), "--cloud-name", "sim"]
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._procs.append((proc, log))
        deadline = time.monotonic() + 30
        while not (clouds.exists() and clouds.stat().st_size > 0):
            if proc.poll() is not None:
                raise RuntimeError(f"novasim exited {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"novasim wrote no {clouds} within 30s:\n{_tail(log)}")
            time.sleep(0.05)
        conn = _connect(clouds, "sim")
        agg_ids = {a.name: int(a.id) for a in conn.compute.aggregates()}
        auth_url = yaml.safe_load(clouds.read_text())["clouds"]["sim"]["auth"]["auth_url"]
        return Deployed(
            backend=self.name,
            conn=conn,
            clouds_yaml=clouds,
            cloud_name="sim",
            names={},
            agg_ids=agg_ids,
            log_tails=lambda: f"----- novasim.log -----\n{_tail(log)}",
            actions=_SimActions(auth_url.removesuffix("/identity/v3")),
        )

    def close(self) -> None:
        for proc, _ in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()


# -- real Nova --------------------------------------------------------------------------------


class RealNovaBackend:
    """Scenarios on the session's real Nova. Names get a per-scenario suffix (`-c<N>`)."""

    name = "realnova"

    def __init__(self, realnova, counter: itertools.count):
        self.nova = realnova  # testbed.realnova.RealNova, running
        self._count = counter

    def materialize(self, fleet: Fleet) -> Deployed:
        suffix = f"-c{next(self._count)}"
        names: dict[str, str] = {}
        for h in fleet.hosts.values():
            names[h.name] = h.name + suffix
            if not isinstance(h.instances, int):
                for i in h.instances:
                    names[i["name"]] = i["name"] + suffix
        for a in fleet.aggregates:
            names[a.name] = a.name + suffix
        # 1. hosts, as booting nova-computes would register them
        self.nova.register(
            {
                "hosts": [
                    {
                        "name": names[h.name],
                        "state": h.state,
                        "status": h.status,
                        "disabled_reason": h.disabled_reason,
                    }
                    for h in fleet.hosts.values()
                ]
            }
        )
        conn = _connect(self.nova.clouds_yaml, self.nova.cloud_name)
        # 2. aggregates, through the API as an operator would
        agg_ids: dict[str, int] = {}
        for a in fleet.aggregates:
            meta = dict(a.metadata)
            az = meta.pop("availability_zone", None)
            created = conn.compute.create_aggregate(name=names[a.name], availability_zone=az)
            agg_ids[a.name] = int(created.id)
            if meta:
                conn.compute.set_aggregate_metadata(created, meta)
            for h in a.hosts:
                conn.compute.add_host_to_aggregate(created, names[h])
        # 3. instances, once the hosts sit in their availability zones
        instances = {
            names[h.name]: _rename_instances(h.instances, lambda n: names.get(n, n))
            for h in fleet.hosts.values()
            if h.instance_count
        }
        if instances:
            self.nova.register({"instances": instances})
        return Deployed(
            backend=self.name,
            conn=conn,
            clouds_yaml=self.nova.clouds_yaml,
            cloud_name=self.nova.cloud_name,
            names=names,
            agg_ids=agg_ids,
            log_tails=self.nova.log_tails,
            suffix=suffix,
            actions=_RealActions(self.nova, names, suffix),
        )

    def close(self) -> None:
        pass


# -- what happens between API calls ------------------------------------------------------------


class _SimActions:
    """novasim's /_sim controls (the same endpoints novasim.testing.SimProcess wraps)."""

    def __init__(self, url: str):
        self.url = url

    def _post(self, path: str, body: dict | None = None) -> dict:
        resp = requests.post(f"{self.url}/_sim{path}", json=body or {}, timeout=30)
        assert resp.status_code in (200, 201), f"/_sim{path}: {resp.status_code} {resp.text}"
        return resp.json()

    def schedule_build(self, host: str, name: str) -> str:
        return self._post(f"/hosts/{host}/builds", {"name": name})["instance"]

    def claim_build(self, instance: str) -> None:
        self._post(f"/builds/{instance}/claim")

    def start_migration(self, instance: str, dest: str) -> str:
        return self._post("/migrations", {"instance": instance, "dest": dest})["migration"]

    def finish_migration(self, migration: str) -> None:
        self._post(f"/migrations/{migration}/finish")


class _RealActions:
    """register.py, as the conductor, scheduler and compute would leave the databases."""

    def __init__(self, realnova, names: dict[str, str], suffix: str):
        self.nova = realnova
        self.names = names
        self.suffix = suffix

    def schedule_build(self, host: str, name: str) -> str:
        real = self.names.setdefault(name, name + self.suffix)
        return self.nova.register({"builds": {self.names[host]: [{"name": real}]}})["builds"][
            self.names[host]
        ][0]

    def claim_build(self, instance: str) -> None:
        self.nova.register({"claims": [instance]})

    def start_migration(self, instance: str, dest: str) -> str:
        return self.nova.register({"migrations": [{"instance": instance, "dest": self.names[dest]}]})[
            "migrations"
        ][0]

    def finish_migration(self, migration: str) -> None:
        self.nova.register({"finish_migrations": [migration]})


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
