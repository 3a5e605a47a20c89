"""A real OpenStack Nova (nova-api + Keystone + Placement) on 127.0.0.1, for the conformance tier.

Stdlib only: runs with any Python >= 3.10 and is imported by tests/conformance/conftest.py
(`from testbed.realnova import RealNova, ensure_installed`). From the repo root:

    python -m testbed.realnova install              # once per machine (cached venv)
    python -m testbed.realnova up --state-dir DIR   # start; prints the export line
    python -m testbed.realnova register --state-dir DIR < fleet.json
    python -m testbed.realnova down --state-dir DIR

What runs: Keystone (fernet tokens), Placement and nova-api, each under gunicorn with SQLite
databases, plus a stub network service that answers empty lists (netstub.py). No nova-compute:
register.py writes compute services, compute nodes, host mappings, Placement resource providers
and inventories, instances and their allocations, builds and live migrations through nova's own
objects and report client, as a booting nova-compute, the scheduler and the conductor would.
Nova and Placement run with gpupool's least-privilege policy overrides (manifests/openstack/), and
Keystone holds a role `gpupool-operator`, a project `gpupool`, a user holding only that role, an
application credential restricted to it and a user without it: clouds.yaml has an entry for each
(`realnova-gpupool`, `realnova-gpupool-password`, `realnova-norole`) beside the admin's (`realnova`).
The PyPI packages live in a venv under ${GPUPOOL_CACHE:-~/.cache/gpupool}/realnova-<versions>/,
built once and reused (stamp file); constraints.txt pins every dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from testbed.cache import cache_root
from testbed.daemons import free_port

# The package directory: the service configs, and the scripts the real-Nova venv runs by path.
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
# gpupool's least-privilege policy overrides, as shipped (docs/openstack-access.md).
POLICIES = HERE.parents[1] / "manifests" / "openstack"
CONSTRAINTS = HERE / "constraints.txt"

NOVA_VERSION = "34.0.0"
KEYSTONE_VERSION = "30.0.0"
PLACEMENT_VERSION = "16.0.0"
REQUIREMENTS = [
    f"nova=={NOVA_VERSION}",
    f"keystone=={KEYSTONE_VERSION}",
    f"openstack-placement=={PLACEMENT_VERSION}",
    "gunicorn",
]
CLOUD_NAME = "realnova"
# Least privilege (docs/openstack-access.md): what RealNova.up() creates in Keystone at each start.
LP_ROLE = "gpupool-operator"
LP_PROJECT = "gpupool"
LP_USER = "gpupool"  # holds LP_ROLE on LP_PROJECT, nothing else
LP_APP_CRED = "gpupool"  # LP_USER's application credential, restricted to LP_ROLE
NOROLE_USER = "gpupool-norole"  # holds `member` on LP_PROJECT, not LP_ROLE
NOROLE_ROLE = "member"
CLOUD_GPUPOOL = "realnova-gpupool"  # v3applicationcredential: LP_APP_CRED
CLOUD_GPUPOOL_PASSWORD = "realnova-gpupool-password"  # password: LP_USER
CLOUD_NOROLE = "realnova-norole"  # password: NOROLE_USER
REGION = "RegionOne"
START_TIMEOUT = 180.0


class RealNovaError(Exception):
    """Installing or starting the real Nova failed; the message says where to look."""


# -- install ----------------------------------------------------------------------------------


def venv_dir(root: Path | None = None) -> Path:
    root = root or cache_root()
    digest = hashlib.sha256()
    digest.update("\n".join(REQUIREMENTS).encode())
    digest.update(CONSTRAINTS.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    name = f"realnova-nova{NOVA_VERSION}-keystone{KEYSTONE_VERSION}-placement{PLACEMENT_VERSION}"
    return root / f"{name}-{digest.hexdigest()[:10]}"


def ensure_installed(log=print) -> Path:
    """The venv with nova, keystone and placement: built once (about a minute), then reused."""
    venv = venv_dir()
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".realnova.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel install waits, then finds the stamp
        if stamp.exists():
            return venv
        log(
            f"realnova: installing nova {NOVA_VERSION}, keystone {KEYSTONE_VERSION}, placement "
            f"{PLACEMENT_VERSION} into {venv} (once per machine, about a minute)"
        )
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        install_log = venv.parent / f"{venv.name}.install.log"
        with open(install_log, "w") as out:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(CONSTRAINTS), *REQUIREMENTS],
            ]
            for cmd in steps:
                rc = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                ).returncode
                if rc != 0:
                    raise RealNovaError(
                        f"installing the real Nova failed ({' '.join(cmd[:3])} ... exited {rc}); "
                        f"log: {install_log}\n{_tail(install_log, 30)}"
                    )
        stamp.write_text("\n".join(REQUIREMENTS) + "\n")
        log(f"realnova: installed in {time.monotonic() - started:.0f}s")
    return venv


# -- the running services -------------------------------------------------------------------


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _render(name: str, dest: Path, values: dict[str, str]) -> None:
    text = string.Template((TEMPLATES / name).read_text()).substitute(values)
    dest.write_text(text)
    dest.chmod(0o600)


class RealNova:
    """One real Nova deployment in a state directory: configs, databases, logs, pids."""

    def __init__(self, state_dir: str | Path, venv: Path | None = None):
        self.state = Path(state_dir).resolve()
        self.logs = self.state / "logs"
        self.venv = venv
        self.info: dict = {}
        self._register_worker: subprocess.Popen | None = None
        self._register_lock = threading.Lock()
        state_file = self.state / "state.json"
        if state_file.exists():
            self.info = json.loads(state_file.read_text())
            self.venv = self.venv or Path(self.info["venv"])

    # paths and facts
    @property
    def clouds_yaml(self) -> Path:
        return self.state / "clouds.yaml"

    @property
    def cloud_name(self) -> str:
        return CLOUD_NAME

    def env(self, cloud: str | None = None, *, least_privilege: bool = False) -> dict[str, str]:
        """Environment for an openstack client (the operator, `openstack`) to reach this cloud:
        as admin (`realnova`), or with `least_privilege` as gpupool's application credential
        (`realnova-gpupool`: the role gpupool-operator only), or as any clouds.yaml entry."""
        name = cloud or (CLOUD_GPUPOOL if least_privilege else CLOUD_NAME)
        return {"OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml), "OS_CLOUD": name}

    @property
    def least_privilege(self) -> dict:
        """What ensure_least_privilege() created: role, project, users and ids (no secrets)."""
        return dict(self.info.get("least_privilege") or {})

    def export_clouds(self, dest: str | Path, *names: str) -> Path:
        """Write a clouds.yaml holding only the named entries (mode 0600): a client given it
        cannot fall back to any other credentials, the admin's in particular."""
        clouds = json.loads(self.clouds_yaml.read_text())["clouds"]
        missing = [n for n in names if n not in clouds]
        if missing:
            raise RealNovaError(f"no clouds.yaml entry {missing} (has {sorted(clouds)})")
        dest = Path(dest)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"clouds": {n: clouds[n] for n in names}}, out, indent=2)
        return dest

    def _bin(self, name: str) -> str:
        assert self.venv is not None
        return str(self.venv / "bin" / name)

    def _conf(self, service: str) -> list[str]:
        return ["--config-file", str(self.state / f"{service}.conf")]

    def _svc_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("OS_")]:
            del env[key]
        env.update(
            OS_NOVA_CONFIG_DIR=str(self.state),
            OS_PLACEMENT_CONFIG_DIR=str(self.state),
            OS_KEYSTONE_CONFIG_DIR=str(self.state),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _run(self, logname: str, *cmd: str, extra_env: dict[str, str] | None = None) -> None:
        env = self._svc_env()
        env.update(extra_env or {})
        log = self.logs / f"{logname}.log"
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            rc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.state
            ).returncode
        if rc != 0:
            raise RealNovaError(f"{' '.join(cmd[:3])} exited {rc}; log {log}:\n{_tail(log, 30)}")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = self.logs / f"{name}.log"
        out = open(log, "a")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._svc_env(),
            start_new_session=True,
            cwd=self.state,
        )
        out.close()
        self.info.setdefault("pids", {})[name] = proc.pid
        self._save()

    def _save(self) -> None:
        (self.state / "state.json").write_text(json.dumps(self.info, indent=2))

    def _wait_http(self, name: str, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pid = self.info["pids"][name]
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except (urllib.error.URLError, OSError):
                pass
            if not _alive(pid):
                raise RealNovaError(
                    f"{name} exited while starting; log {self.logs / name}.log:\n"
                    f"{_tail(self.logs / f'{name}.log', 40)}"
                )
            time.sleep(0.2)
        raise RealNovaError(
            f"{name} did not answer {url} within {START_TIMEOUT:.0f}s; log:\n"
            f"{_tail(self.logs / f'{name}.log', 40)}"
        )

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"----- {log.name} (last {lines} lines) -----\n{_tail(log, lines)}")
        return "\n".join(parts)

    # lifecycle
    def up(self) -> None:
        if self.venv is None:
            self.venv = ensure_installed()
        started = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        (self.state / "lock").mkdir(exist_ok=True)
        ports = {name: free_port() for name in ("keystone", "placement", "nova", "network")}
        template = _load_template(self.venv)
        password = template["password"] if template else secrets.token_urlsafe(24)
        keystone_url = f"http://127.0.0.1:{ports['keystone']}"
        self.info = {
            "venv": str(self.venv),
            "ports": ports,
            "keystone_url": keystone_url,
            "compute_url": f"http://127.0.0.1:{ports['nova']}/v2.1",
            "pids": {},
        }
        self._save()
        values = {"state": str(self.state), "keystone_url": keystone_url, "password": password}
        for name in ("keystone.conf", "placement.conf", "nova.conf"):
            _render(name, self.state / name, values)
        # gpupool's policy overrides, installed both ways docs/openstack-access.md describes:
        # Nova's as [oslo_policy] policy_file, Placement's as a policy.d drop-in.
        shutil.copy(POLICIES / "nova-policy.yaml", self.state / "nova-policy.yaml")
        (self.state / "placement-policy.d").mkdir(exist_ok=True)
        shutil.copy(POLICIES / "placement-policy.yaml", self.state / "placement-policy.d" / "gpupool.yaml")
        shutil.copy(self.venv / "etc" / "nova" / "api-paste.ini", self.state / "api-paste.ini")
        self._write_clouds_yaml(keystone_url, password)

        errors: list[BaseException] = []

        def guarded(fn):
            def run():
                try:
                    fn()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            return threading.Thread(target=run)

        def keystone():
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            self._run("keystone-manage", self._bin("keystone-manage"), *self._conf("keystone"), "db_sync")
            for key_setup in ("fernet_setup", "credential_setup"):
                self._run(
                    "keystone-manage",
                    self._bin("keystone-manage"),
                    *self._conf("keystone"),
                    key_setup,
                    "--keystone-user",
                    user,
                    "--keystone-group",
                    group,
                )
            self._run(
                "keystone-manage",
                self._bin("keystone-manage"),
                *self._conf("keystone"),
                "bootstrap",
                "--bootstrap-admin-url",
                f"{keystone_url}/v3",
                "--bootstrap-internal-url",
                f"{keystone_url}/v3",
                "--bootstrap-public-url",
                f"{keystone_url}/v3",
                "--bootstrap-region-id",
                REGION,
                extra_env={"OS_BOOTSTRAP_PASSWORD": password},
            )
            _wal(self.state / "keystone.db")

        def placement():
            self._run(
                "placement-manage", self._bin("placement-manage"), *self._conf("placement"), "db", "sync"
            )
            _wal(self.state / "placement.db")

        def nova():
            manage = self._bin("nova-manage")
            conf = self._conf("nova")
            self._run("nova-manage", manage, *conf, "api_db", "sync")
            self._run(
                "nova-manage",
                manage,
                *conf,
                "cell_v2",
                "map_cell0",
                "--database_connection",
                f"sqlite:///{self.state}/nova_cell0.db",
            )
            self._run("nova-manage", manage, *conf, "cell_v2", "create_cell", "--name", "cell1", "--verbose")
            self._run("nova-manage", manage, *conf, "db", "sync")
            for db in ("nova_api.db", "nova.db", "nova_cell0.db"):
                _wal(self.state / db)

        if template:
            # Databases initialised once per machine: copied, then their paths and ports fixed.
            self._restore_template(template, keystone_url)
        else:
            threads = [guarded(fn) for fn in (keystone, placement, nova)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            self._save_template(keystone_url, password)

        self._spawn("keystone", self._gunicorn(ports["keystone"], "keystone.wsgi.api:application", threads=4))
        self._wait_http("keystone", f"{keystone_url}/v3")
        token = _keystone_token(keystone_url, password)
        self._register_catalog(keystone_url, token, ports)
        # gpupool's least-privilege role, project, users and application credential: Keystone
        # requests only, made while Placement and nova-api start (they need none of it). Not at
        # the same time as the catalog: Keystone's SQLite database takes one writer at a time.
        least_privilege: list = []  # [(info, clouds), seconds]
        lp_started = time.monotonic()

        def create_least_privilege() -> None:
            least_privilege.append(_create_least_privilege(keystone_url, token))
            least_privilege.append(round(time.monotonic() - lp_started, 1))  # not self.info: _save() reads it

        lp_thread = guarded(create_least_privilege)
        lp_thread.daemon = True  # a failed start does not wait for it
        lp_thread.start()

        # Placement runs single-threaded: SQLite and concurrent writers do not mix.
        self._spawn(
            "placement", self._gunicorn(ports["placement"], "placement.wsgi.api:application", threads=1)
        )
        self._spawn(
            "network", [self._bin("python"), str(HERE / "netstub.py"), "--port", str(ports["network"])]
        )
        self._spawn(
            "nova-api", self._gunicorn(ports["nova"], "nova.wsgi.osapi_compute:application", threads=4)
        )
        self._wait_http("placement", f"http://127.0.0.1:{ports['placement']}/")
        self._wait_http("network", f"http://127.0.0.1:{ports['network']}/")
        self._wait_http("nova-api", f"http://127.0.0.1:{ports['nova']}/")
        lp_thread.join()
        if errors:
            exc = errors[0]
            said = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else ""
            raise RealNovaError(
                f"creating gpupool's least-privilege role and users in Keystone failed: {exc!r} {said}\n"
                f"{_tail(self.logs / 'keystone.log', 30)}"
            )
        (lp_info, lp_clouds), self.info["least_privilege_s"] = least_privilege
        self._apply_least_privilege(lp_info, lp_clouds)
        self.info["started_in_s"] = round(time.monotonic() - started, 1)
        self._save()

    _TEMPLATE_FILES = ("keystone.db", "placement.db", "nova_api.db", "nova.db", "nova_cell0.db")
    _TEMPLATE_DIRS = ("fernet-keys", "credential-keys")

    def _save_template(self, keystone_url: str, password: str) -> None:
        """Keep the freshly initialised databases (before any service ran) for the next start."""
        assert self.venv is not None
        final = _template_dir(self.venv)
        if final.exists():
            return
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700, parents=True)
        for name in self._TEMPLATE_FILES:
            with contextlib.closing(sqlite3.connect(self.state / name)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copy2(self.state / name, tmp / name)
        for name in self._TEMPLATE_DIRS:
            shutil.copytree(self.state / name, tmp / name)
        meta = {"state": str(self.state), "keystone_url": keystone_url, "password": password}
        fd = os.open(tmp / "template.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(meta, out)
        try:
            tmp.rename(final)
        except OSError:  # another session saved one first
            shutil.rmtree(tmp, ignore_errors=True)

    def _restore_template(self, template: dict, keystone_url: str) -> None:
        src = Path(template["dir"])
        for name in self._TEMPLATE_FILES:
            shutil.copy2(src / name, self.state / name)
        for name in self._TEMPLATE_DIRS:
            shutil.copytree(src / name, self.state / name)
            os.chmod(self.state / name, 0o700)
        with contextlib.closing(sqlite3.connect(self.state / "keystone.db")) as conn:
            conn.execute(
                "UPDATE endpoint SET url = replace(url, ?, ?)", (template["keystone_url"], keystone_url)
            )
            conn.commit()
        with contextlib.closing(sqlite3.connect(self.state / "nova_api.db")) as conn:
            conn.execute(
                "UPDATE cell_mappings SET database_connection = replace(database_connection, ?, ?)",
                (template["state"], str(self.state)),
            )
            conn.commit()
        for name in self._TEMPLATE_FILES:
            _wal(self.state / name)

    def _gunicorn(self, port: int, app: str, threads: int) -> list[str]:
        return [
            self._bin("python"),
            str(HERE / "serve.py"),
            "--port",
            str(port),
            "--threads",
            str(threads),
            app,
        ]

    def _write_clouds_yaml(self, keystone_url: str, password: str, extra: dict | None = None) -> None:
        # JSON is YAML: no YAML library needed here.
        clouds = {
            "clouds": {
                CLOUD_NAME: _cloud_entry(
                    keystone_url,
                    {
                        "username": "admin",
                        "password": password,
                        "project_name": "admin",
                        "user_domain_name": "Default",
                        "project_domain_name": "Default",
                    },
                ),
                **(extra or {}),
            }
        }
        fd = os.open(self.clouds_yaml, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(clouds, out, indent=2)

    def ensure_least_privilege(self, admin_token: str | None = None) -> dict:
        """Create, idempotently, what docs/openstack-access.md tells an operator to create: the
        role gpupool-operator, a project gpupool, a user gpupool holding only that role there, its
        application credential restricted to the role, and a user gpupool-norole holding only
        `member` there; then add their clouds.yaml entries (up() does this by itself). Run again,
        it finds what exists, resets the two users' passwords and replaces the application
        credential (Keystone shows a secret only when it creates it)."""
        url = self.info["keystone_url"]
        admin_password = json.loads(self.clouds_yaml.read_text())["clouds"][CLOUD_NAME]["auth"]["password"]
        info, clouds = _create_least_privilege(url, admin_token or _keystone_token(url, admin_password))
        self._apply_least_privilege(info, clouds)
        return self.least_privilege

    def _apply_least_privilege(self, info: dict, clouds: dict) -> None:
        admin_password = json.loads(self.clouds_yaml.read_text())["clouds"][CLOUD_NAME]["auth"]["password"]
        self._write_clouds_yaml(self.info["keystone_url"], admin_password, clouds)
        self.info["least_privilege"] = info
        self._save()

    def _register_catalog(self, keystone_url: str, token: str, ports: dict[str, int]) -> None:
        services = [
            ("placement", "placement", f"http://127.0.0.1:{ports['placement']}"),
            ("nova", "compute", f"http://127.0.0.1:{ports['nova']}/v2.1"),
            ("neutron", "network", f"http://127.0.0.1:{ports['network']}"),
        ]
        for name, kind, url in services:
            svc = _post(keystone_url + "/v3/services", token, {"service": {"name": name, "type": kind}})
            for interface in ("public", "internal", "admin"):
                _post(
                    keystone_url + "/v3/endpoints",
                    token,
                    {
                        "endpoint": {
                            "service_id": svc["service"]["id"],
                            "interface": interface,
                            "url": url,
                            "region_id": REGION,
                        }
                    },
                )
        self.info["project_id"] = _keystone_project_id(keystone_url, token)
        self._save()

    def down(self) -> None:
        self.close_register_worker()
        for name, pid in (self.info.get("pids") or {}).items():
            _stop(pid, name)
        self.info["pids"] = {}
        if self.state.exists():
            self._save()

    def memory_mb(self) -> float:
        """Resident memory of all our processes (and their workers), in MB."""
        total = 0
        for pid in (self.info.get("pids") or {}).values():
            for p in _process_tree(pid):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{p}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
        return total / 1024

    # registering hosts and instances (register.py, inside nova's venv)
    def register(self, fleet: dict) -> dict:
        """Register hosts (services, compute nodes, host mappings, resource providers with their
        inventory) and instances (with their Placement allocations), builds scheduled but not
        claimed, their claims, and live migrations, through one long-lived register.py worker in
        nova's venv: {"hosts": [{name, state, status, disabled_reason}], "instances": {host:
        count | [..]}, "builds": {host: count | [..]}, "claims": [uuid], "migrations": [{instance,
        dest}], "finish_migrations": [uuid]} (register.py's docstring has the details)."""
        payload = dict(fleet)
        payload.setdefault("project_id", self.info.get("project_id"))
        with self._register_lock:
            worker = self._register_worker
            if worker is None or worker.poll() is not None:
                err = open(self.logs / "register.log", "a")  # noqa: SIM115 (the child keeps it)
                worker = subprocess.Popen(
                    [self._bin("python"), str(HERE / "register.py"), "--serve"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    env=self._svc_env(),
                    cwd=self.state,
                )
                err.close()
                self._register_worker = worker
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(json.dumps(payload) + "\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
        if not line:
            raise RealNovaError(
                f"register.py exited {worker.wait()}:\n{_tail(self.logs / 'register.log', 40)}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RealNovaError(
                f"registering {payload} failed: {answer['error']}\n{answer.get('traceback', '')}"
            )
        return answer["ok"]

    def close_register_worker(self) -> None:
        worker, self._register_worker = self._register_worker, None
        if worker is not None and worker.poll() is None:
            assert worker.stdin is not None
            worker.stdin.close()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _template_dir(venv: Path) -> Path:
    return venv.with_name(venv.name + ".template")


def _load_template(venv: Path) -> dict | None:
    meta = _template_dir(venv) / "template.json"
    try:
        template = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    template["dir"] = str(meta.parent)
    return template


def _wal(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _request(url: str, token: str | None, body: dict | None, method: str = "POST"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    return urllib.request.urlopen(req, timeout=30)


def _post(url: str, token: str, body: dict) -> dict:
    with _request(url, token, body) as resp:
        return json.loads(resp.read())


def _keystone_token(keystone_url: str, password: str, user: str = "admin", project: str = "admin") -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    with _request(keystone_url + "/v3/auth/tokens", None, body) as resp:
        return resp.headers["X-Subject-Token"]


def _create_least_privilege(url: str, token: str) -> tuple[dict, dict]:
    """Keystone requests only (safe in a thread): ({ids, names}, {cloud name: clouds.yaml entry}).

    Create first, look up on 409: from a fresh database (every start) that is 9 requests, 0.7-0.9 s
    on the 2-core machine, which up() spends while nova-api and Placement start. Cheap bcrypt
    hashes for the new users and the application credential (keystone.conf:
    password_hash_rounds = 4)."""
    role_id, _ = _ensure(url, token, "roles", {"name": LP_ROLE, "description": "gpupool-operator"})
    member_id = _find(url, token, "roles", NOROLE_ROLE)
    if member_id is None:
        raise RealNovaError(f"Keystone has no role {NOROLE_ROLE!r} (keystone-manage bootstrap makes it)")
    project_id, _ = _ensure(
        url,
        token,
        "projects",
        {"name": LP_PROJECT, "domain_id": "default", "description": "gpupool-operator"},
    )
    users: dict[str, tuple[str, str, bool]] = {}
    for user, role in ((LP_USER, role_id), (NOROLE_USER, member_id)):
        password = secrets.token_urlsafe(24)
        fields = {
            "name": user,
            "domain_id": "default",
            "default_project_id": project_id,
            "password": password,
        }
        user_id, created = _ensure(url, token, "users", fields, update={"password": password})
        # PUT is idempotent: 204 whether or not the user held the role already.
        with _request(
            f"{url}/v3/projects/{project_id}/users/{user_id}/roles/{role}", token, None, method="PUT"
        ):
            pass
        users[user] = (user_id, password, created)
    # An application credential belongs to its user, who creates it (Keystone's default policy:
    # rule:owner) with a token scoped to the project; it is restricted to the one role.
    lp_id, lp_password, lp_created = users[LP_USER]
    if not all(created for *_, created in users.values()):
        # A new password revokes the user's tokens issued up to that second, a token issued in
        # the same second included: wait for the next one (only when run again).
        time.sleep(1.1)
    lp_token = _keystone_token(url, lp_password, user=LP_USER, project=LP_PROJECT)
    creds_url = f"{url}/v3/users/{lp_id}/application_credentials"
    if not lp_created:  # a user that existed may hold one of that name, whose secret is lost
        with _request(f"{creds_url}?name={LP_APP_CRED}", lp_token, None, method="GET") as resp:
            for old in json.loads(resp.read())["application_credentials"]:
                with _request(f"{creds_url}/{old['id']}", lp_token, None, method="DELETE"):
                    pass
    body = {
        "application_credential": {
            "name": LP_APP_CRED,
            "description": "gpupool reconcile / the gpupool operator",
            "roles": [{"name": LP_ROLE}],
        }
    }
    for attempt in range(3):
        try:
            app_cred = _post(creds_url, lp_token, body)["application_credential"]
            break
        except urllib.error.HTTPError as exc:
            # Seen once, while the catalog was registered at the same time (up() no longer does
            # that): the new token did not carry the role assigned just before ("Cannot create an
            # application credential with unassigned role", 400). A fresh token a moment later does.
            if exc.code != 400 or attempt == 2:
                raise
            time.sleep(0.5)
            lp_token = _keystone_token(url, lp_password, user=LP_USER, project=LP_PROJECT)

    def password_auth(user: str, password: str) -> dict:
        return {
            "username": user,
            "password": password,
            "project_name": LP_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        }

    clouds = {
        CLOUD_GPUPOOL: _cloud_entry(
            url,
            {
                "application_credential_id": app_cred["id"],
                "application_credential_secret": app_cred["secret"],
            },
            auth_type="v3applicationcredential",
        ),
        CLOUD_GPUPOOL_PASSWORD: _cloud_entry(url, password_auth(LP_USER, lp_password)),
        CLOUD_NOROLE: _cloud_entry(url, password_auth(NOROLE_USER, users[NOROLE_USER][1])),
    }
    info = {
        "role": LP_ROLE,
        "role_id": role_id,
        "project": LP_PROJECT,
        "project_id": project_id,
        "user": LP_USER,
        "user_id": lp_id,
        "application_credential": LP_APP_CRED,
        "application_credential_id": app_cred["id"],
        "norole_user": NOROLE_USER,
        "norole_role": NOROLE_ROLE,
        "norole_user_id": users[NOROLE_USER][0],
        "clouds": {
            "app_credential": CLOUD_GPUPOOL,
            "password": CLOUD_GPUPOOL_PASSWORD,
            "norole": CLOUD_NOROLE,
        },
    }
    return info, clouds


def _find(keystone_url: str, token: str, collection: str, name: str) -> str | None:
    """The id of the role / project / user of that name in the Default domain, or None."""
    query = f"name={urllib.parse.quote(name)}"
    if collection != "roles":
        query += "&domain_id=default"
    with _request(f"{keystone_url}/v3/{collection}?{query}", token, None, method="GET") as resp:
        found = json.loads(resp.read())[collection]
    return found[0]["id"] if found else None


def _ensure(
    keystone_url: str, token: str, collection: str, fields: dict, update: dict | None = None
) -> tuple[str, bool]:
    """(id, created): create the role / project / user, or find the one of that name (409) and
    PATCH `update` into it."""
    kind = collection.removesuffix("s")
    try:
        return _post(f"{keystone_url}/v3/{collection}", token, {kind: fields})[kind]["id"], True
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    found = _find(keystone_url, token, collection, fields["name"])
    if found is None:
        raise RealNovaError(f"Keystone says a {kind} {fields['name']!r} exists but lists none")
    if update:
        with _request(f"{keystone_url}/v3/{collection}/{found}", token, {kind: update}, method="PATCH"):
            pass
    return found, False


def _cloud_entry(keystone_url: str, auth: dict, auth_type: str | None = None) -> dict:
    entry: dict = {
        "auth": {"auth_url": f"{keystone_url}/v3", **auth},
        "region_name": REGION,
        "interface": "public",
        "identity_api_version": 3,
    }
    if auth_type:
        entry["auth_type"] = auth_type
    return entry


def _keystone_project_id(keystone_url: str, token: str) -> str:
    with _request(keystone_url + "/v3/projects?name=admin", token, None, method="GET") as resp:
        return json.loads(resp.read())["projects"][0]["id"]


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _process_tree(pid: int) -> list[int]:
    found = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            found += _process_tree(int(child))
    return found


def _stop(pid: int, name: str) -> None:
    """Stop one process we started (it leads its own process group: gunicorn and its worker)."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


# -- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.realnova",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="build the cached venv (once per machine)")
    sub.add_parser("venv", help="print the cached venv's path")
    for name in ("up", "down", "env", "register", "status"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "install":
        print(ensure_installed())
        return 0
    if args.cmd == "venv":
        print(venv_dir())
        return 0
    nova = RealNova(args.state_dir)
    if args.cmd == "up":
        if nova.info.get("pids") and all(_alive(p) for p in nova.info["pids"].values()):
            print(f"# already running in {nova.state}", file=sys.stderr)
        else:
            nova.down()
            shutil.rmtree(nova.state, ignore_errors=True)
            nova = RealNova(args.state_dir)
            try:
                nova.up()
            except BaseException:
                if nova.logs.exists():
                    print(nova.log_tails(), file=sys.stderr)
                nova.down()
                raise
            print(
                f"# real Nova up in {nova.info['started_in_s']}s, {nova.memory_mb():.0f} MB; logs in {nova.logs}",
                file=sys.stderr,
            )
        args.cmd = "env"
    if args.cmd == "env":
        for key, value in nova.env().items():
            print(f"export {key}={value}")
        print(
            f"# least privilege (docs/openstack-access.md): OS_CLOUD={CLOUD_GPUPOOL} (application credential, "
            f"role {LP_ROLE} only), {CLOUD_GPUPOOL_PASSWORD} (user {LP_USER}), {CLOUD_NOROLE} (user "
            f"{NOROLE_USER}, {NOROLE_ROLE} only)",
            file=sys.stderr,
        )
        return 0
    if args.cmd == "status":
        pids = nova.info.get("pids") or {}
        for name, pid in pids.items():
            print(f"{name}: pid {pid} {'running' if _alive(pid) else 'stopped'}")
        print(f"memory: {nova.memory_mb():.0f} MB")
        return 0 if pids and all(_alive(p) for p in pids.values()) else 1
    if args.cmd == "down":
        nova.down()
        return 0
    if args.cmd == "register":
        print(json.dumps(nova.register(json.load(sys.stdin)), indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
