#!/usr/bin/env python3
"""A real Prometheus, and its promtool, on 127.0.0.1: what the monitoring tests scrape the operator
with and check the alert rules and the dashboard's queries against.

Binaries
  * `prometheus` and `promtool` from Debian's `prometheus` package (2.42 on bookworm). Looked for,
    in this order: $PROMETHEUS and $PROMTOOL, PATH (/usr/bin once the package is installed), the
    cache (${GPUPOOL_CACHE:-~/.cache/gpupool}/prometheus/<version>/usr/bin/). When none is found:
      - as root: `apt-get install -y --no-install-recommends prometheus` (`apt-get update` first
        if the package lists do not know it yet);
      - otherwise: `apt-get download prometheus` and `dpkg-deb -x` into the cache: no root needed.
  * Only the two binaries are used. The package's own service (prometheus.service on :9090,
    /etc/prometheus, /var/lib/prometheus) is neither needed nor touched: each Prometheus started
    here has its own free port, config, data dir and log, and is stopped by whoever started it.
    (In a container, Docker's policy-rc.d keeps apt from starting the packaged service; on a
    machine with systemd, apt starts it: `systemctl disable --now prometheus` if unwanted.)

Command line, from the repo root (stdlib only: any python3 >= 3.11 works, no venv needed):
  python3 -m testbed.prometheus install                  find or install the binaries, print them
  python3 -m testbed.prometheus paths                    print the binaries' paths as JSON
  python3 -m testbed.prometheus run --target HOST:PORT [--rules FILE]...
                                                         run one in the foreground until Ctrl-C
  python3 -m testbed.prometheus promtool ARGS...         run promtool

Library (`from testbed import prometheus`; the `prometheus` fixtures in tests/conftest.py use it):
  ensure_binaries() -> Binaries                 find or install; Binaries(prometheus, promtool, version)
  start(targets, rule_files=...) -> Server      start one, wait until it is ready
  Server.query(expr) -> [series]                an instant query (HTTP API); PrometheusError if refused
  Server.format_query(expr) -> str              parse only (/api/v1/format_query)
  Server.wait_for_target(instance) -> dict      until that target's last scrape succeeded
  Server.rules() / alerts() / targets()         the HTTP API's answers
  Server.stop()
  promtool(*args) / check_rules(*files) / test_rules(*files) / check_metrics(text)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.cache import cache_root, locked
from testbed.daemons import free_port, spawn, tail

HOST = "127.0.0.1"
PACKAGE = "prometheus"
MIN_VERSION = (2, 37)  # promtool's rule unit tests and the HTTP API as used here


class PrometheusError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[prometheus] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- binaries


def cache_dir() -> Path:
    return cache_root() / "prometheus"


@dataclasses.dataclass(frozen=True)
class Binaries:
    prometheus: Path
    promtool: Path
    version: str  # e.g. 2.42.0+ds


def _version_of(prometheus: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(prometheus), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"version (\d+\.\d+\.\d+\S*)", out)
    return m.group(1) if m else None


def _recent_enough(version: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)\.", version)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= MIN_VERSION


def _candidates() -> Iterable[tuple[Path, Path]]:
    if os.environ.get("PROMETHEUS") or os.environ.get("PROMTOOL"):
        prom = os.environ.get("PROMETHEUS") or shutil.which("prometheus") or "prometheus"
        tool = os.environ.get("PROMTOOL") or str(Path(prom).with_name("promtool"))
        yield Path(prom), Path(tool)
        return
    on_path, tool_on_path = shutil.which("prometheus"), shutil.which("promtool")
    if on_path and tool_on_path:
        yield Path(on_path), Path(tool_on_path)
    for d in sorted(cache_dir().glob("*/usr/bin"), reverse=True):
        yield d / "prometheus", d / "promtool"


def find_binaries() -> Binaries | None:
    """The first usable pair of binaries ($PROMETHEUS/$PROMTOOL, PATH, the cache), or None."""
    for prom, tool in _candidates():
        if not (os.access(prom, os.X_OK) and os.access(tool, os.X_OK)):
            continue
        version = _version_of(prom)
        if version and _recent_enough(version):
            return Binaries(prom, tool, version)
        _log(f"ignoring {prom}: version {version or 'unknown'} (need >= {'.'.join(map(str, MIN_VERSION))})")
    return None


def _apt_env() -> dict[str, str]:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def _run_logged(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    _log("$ " + " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True, env=_apt_env(), **kwargs)


def _apt_install() -> None:
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    proc = _run_logged(cmd)
    if proc.returncode != 0 and "Unable to locate package" in proc.stderr:
        update = _run_logged(["apt-get", "update"])
        if update.returncode != 0:
            raise PrometheusError(f"apt-get update failed:\n{update.stderr[-2000:]}")
        proc = _run_logged(cmd)
    if proc.returncode != 0:
        raise PrometheusError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def _apt_extract() -> None:
    """The package's files under the cache, without root: apt-get download + dpkg-deb -x."""
    with tempfile.TemporaryDirectory(prefix=".download-", dir=_mkdir(cache_dir())) as tmp:
        proc = _run_logged(["apt-get", "download", PACKAGE], cwd=tmp)
        if proc.returncode != 0:
            raise PrometheusError(
                f"apt-get download {PACKAGE} failed ({proc.returncode}):\n{proc.stderr[-2000:]}\n"
                "install it as root (`apt-get install -y --no-install-recommends prometheus`), or put "
                "prometheus and promtool on PATH (or set $PROMETHEUS and $PROMTOOL)"
            )
        deb = next(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        version = deb.name.split("_")[1].replace("%3a", ":")
        dest = cache_dir() / version
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
        _log(f"unpacked {deb.name} into {dest}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install_lock():
    return locked(cache_dir() / ".install.lock")


def install() -> Binaries:
    """Install Debian's package (as root) or unpack it into the cache (otherwise); return the binaries."""
    if not shutil.which("apt-get"):
        raise PrometheusError(
            "no apt-get here: install Prometheus >= 2.37 yourself and put prometheus and promtool on PATH "
            "(or set $PROMETHEUS and $PROMTOOL)"
        )
    t0 = time.monotonic()
    if os.geteuid() == 0:
        _apt_install()
    else:
        _apt_extract()
    found = find_binaries()
    if not found:
        raise PrometheusError("installed the prometheus package but found no usable prometheus and promtool")
    _log(f"prometheus {found.version} installed in {time.monotonic() - t0:.1f}s: {found.prometheus}")
    return found


def ensure_binaries() -> Binaries:
    """Found binaries, installing the package first when there are none (serialised by a file lock)."""
    found = find_binaries()
    if found:
        return found
    with _install_lock():
        return find_binaries() or install()


# --------------------------------------------------------------------------- promtool


def promtool(
    *args: str, input: str | None = None, binaries: Binaries | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run promtool; output captured, never raises on a non-zero exit (look at returncode)."""
    tool = (binaries or ensure_binaries()).promtool
    return subprocess.run([str(tool), *args], input=input, capture_output=True, text=True, timeout=timeout)


def check_rules(*files: Path | str, binaries: Binaries | None = None) -> subprocess.CompletedProcess[str]:
    return promtool("check", "rules", *map(str, files), binaries=binaries)


def test_rules(*files: Path | str, binaries: Binaries | None = None) -> subprocess.CompletedProcess[str]:
    return promtool("test", "rules", *map(str, files), binaries=binaries)


def check_metrics(text: str, binaries: Binaries | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition (its lint problems are on stderr, exit 3 or 1)."""
    return promtool("check", "metrics", input=text, binaries=binaries)


# --------------------------------------------------------------------------- the server


def config(
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path | str] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> dict:
    """A prometheus.yml (as a dict; JSON is YAML): one static job per entry of `targets`."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in targets.items()
        ],
    }


@dataclasses.dataclass
class Server:
    url: str  # http://127.0.0.1:<port>
    state_dir: Path  # prometheus.yml, data/, prometheus.log
    binaries: Binaries
    proc: subprocess.Popen = dataclasses.field(repr=False)
    temporary: bool = False

    @property
    def log_file(self) -> Path:
        return self.state_dir / "prometheus.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # -- HTTP API

    def _request(self, path: str, params: Mapping[str, str] | None = None, method: str = "GET") -> Any:
        url = f"{self.url}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
        except urllib.error.HTTPError as e:  # the API answers errors with a JSON body too
            body = e.read()
            if not body.startswith(b"{"):
                raise PrometheusError(f"{method} {path}: {e.code} {body[:500]!r}") from None
        return json.loads(body) if body.startswith(b"{") else body.decode()

    def api(self, path: str, **params: str) -> dict:
        """A /api/v1 call's whole answer: {"status": "success"|"error", "data"|"error": ...}."""
        return self._request(f"/api/v1/{path}", params)

    def _data(self, path: str, **params: str) -> Any:
        answer = self.api(path, **params)
        if answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's result: [{"metric": {...}, "value": [t, "v"]}, ...] (a vector), or the
        scalar/string as returned. PrometheusError when Prometheus refuses it."""
        params = {"query": expr, **({"time": str(at)} if at is not None else {})}
        data = self._data("query", **params)
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of a query answering one series (or a scalar); None when it answers none."""
        result = self.query(expr)
        if not result:
            return None
        if isinstance(result, list) and isinstance(result[0], dict):
            if len(result) != 1:
                raise PrometheusError(f"{expr}: {len(result)} series, expected one")
            return float(result[0]["value"][1])
        return float(result[1])  # a scalar: [t, "v"]

    def format_query(self, expr: str) -> str:
        """Parse only: Prometheus's own formatting of expr; PrometheusError if it does not parse."""
        return self._data("format_query", query=expr)

    def targets(self) -> list[dict]:
        return self._data("targets")["activeTargets"]

    def rules(self) -> list[dict]:
        """The rule groups as loaded, with each rule's health, lastError and state."""
        return self._data("rules")["groups"]

    def alerts(self) -> list[dict]:
        return self._data("alerts")["alerts"]

    def wait_for_target(
        self, instance: str | None = None, job: str | None = None, timeout: float = 30
    ) -> dict:
        """Until the target (by instance "host:port" and/or job) has been scraped successfully."""
        deadline = time.monotonic() + timeout
        last: list[dict] = []
        while time.monotonic() < deadline:
            self._check_alive()
            last = [
                t
                for t in self.targets()
                if (instance is None or t["labels"].get("instance") == instance)
                and (job is None or t["labels"].get("job") == job)
            ]
            up = [t for t in last if t["health"] == "up"]
            if up:
                return up[0]
            time.sleep(0.2)
        raise PrometheusError(
            f"target {instance or ''} {job or ''} not up after {timeout:.0f}s: "
            + json.dumps([{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in last])
        )

    def wait_for_rule_evaluations(self, timeout: float = 30) -> list[dict]:
        """Until every loaded rule has been evaluated at least once; the rule groups then."""
        deadline = time.monotonic() + timeout
        while True:
            groups = self.rules()
            pending = [
                r["name"]
                for g in groups
                for r in g["rules"]
                if r.get("lastEvaluation", "").startswith("0001-") or not r.get("lastEvaluation")
            ]
            if not pending:
                return groups
            if time.monotonic() > deadline:
                raise PrometheusError(f"rules never evaluated within {timeout:.0f}s: {pending}")
            time.sleep(0.2)

    # -- lifecycle

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{tail(self.log_file)}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, *, remove: bool | None = None) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.temporary if remove is None else remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def start(
    targets: Mapping[str, Sequence[str]] | Sequence[str] = (),
    *,
    rule_files: Sequence[Path | str] = (),
    state_dir: Path | str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    binaries: Binaries | None = None,
    timeout: float = 30,
    attempts: int = 3,
    die_with_parent: bool = True,
) -> Server:
    """Start a Prometheus on a free 127.0.0.1 port and wait until it is ready.

    targets: {job: ["host:port", ...]} or a list of "host:port" (job "targets"); rule_files are
    loaded as given (a rule file that does not load stops the start with the error). state_dir=None
    uses a fresh temporary directory, removed again by stop(). Unless die_with_parent=False (as
    `run` uses), the process is killed when the calling process dies (Linux)."""
    binaries = binaries or ensure_binaries()
    jobs = dict(targets) if isinstance(targets, Mapping) else ({"targets": list(targets)} if targets else {})
    temporary = state_dir is None
    sd = (
        Path(tempfile.mkdtemp(prefix="prometheus-"))
        if state_dir is None
        else _mkdir(Path(state_dir).resolve())
    )
    (sd / "prometheus.yml").write_text(
        json.dumps(config(jobs, rule_files, scrape_interval, evaluation_interval), indent=2) + "\n"
    )
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(sd, binaries, timeout, temporary, die_with_parent)
        except PrometheusError as e:
            # A free port taken between probing and binding is the usual reason to retry.
            if attempt == attempts or "address already in use" not in str(e):
                if temporary:
                    shutil.rmtree(sd, ignore_errors=True)
                raise
            _log("retrying start (port race)")
    raise AssertionError("unreachable")


def _start_once(sd: Path, b: Binaries, timeout: float, temporary: bool, die_with_parent: bool) -> Server:
    shutil.rmtree(sd / "data", ignore_errors=True)
    port = free_port()
    log = sd / "prometheus.log"
    cmd = [
        str(b.prometheus),
        f"--config.file={sd / 'prometheus.yml'}",
        f"--storage.tsdb.path={sd / 'data'}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={HOST}:{port}",
        "--web.enable-lifecycle",
        "--log.level=info",
    ]
    proc = spawn(cmd, log, die_with_parent=die_with_parent, append=False)
    server = Server(f"http://{HOST}:{port}", sd, b, proc, temporary)
    t0 = time.monotonic()
    try:
        while not server.ready():
            if proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {proc.returncode}; last log lines ({log}):\n{tail(log)}"
                )
            if time.monotonic() - t0 > timeout:
                raise PrometheusError(
                    f"prometheus not ready after {timeout:.0f}s; last log lines:\n{tail(log)}"
                )
            time.sleep(0.05)
    except BaseException:
        server.stop(remove=False)
        raise
    return server


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.prometheus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="find or install prometheus and promtool (Debian's package)")
    sub.add_parser("paths", help="print the binaries' paths and version as JSON")
    run = sub.add_parser("run", help="run a Prometheus in the foreground until Ctrl-C")
    run.add_argument("--target", action="append", default=[], help="HOST:PORT to scrape (repeatable)")
    run.add_argument("--rules", action="append", default=[], type=Path, help="a rule file (repeatable)")
    run.add_argument("--state-dir", type=Path, default=None, help="default: a temporary directory")
    tool = sub.add_parser("promtool", help="run promtool with the given arguments")
    tool.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install":
            b = ensure_binaries()
            print(b.prometheus)
            print(b.promtool)
        elif args.cmd == "paths":
            b = ensure_binaries()
            print(json.dumps({k: str(v) for k, v in dataclasses.asdict(b).items()}, indent=2))
        elif args.cmd == "run":
            server = start({"gpupool": args.target}, rule_files=args.rules, state_dir=args.state_dir)
            _log(f"{server.url} (state: {server.state_dir}); Ctrl-C stops it")
            try:
                server.proc.wait()
            except KeyboardInterrupt:
                pass
            finally:
                server.stop()
        elif args.cmd == "promtool":
            b = ensure_binaries()
            return subprocess.run([str(b.promtool), *args.args]).returncode
    except PrometheusError as e:
        _log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
