#!/usr/bin/env python3
"""What Flux and Argo CD make of Kubernetes objects: kstatus and an Argo CD Lua health check, run
by the real libraries (a small Go program, testbed/gitops-health/).

For each object: kstatus's Status and message (`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`,
as Flux's `wait: true` and `healthChecks` use it) and, given a health.lua, the script's answer as
Argo CD computes it (gopher-lua with the libraries Argo CD opens: those of an argocd-cm
customization, and those of a built-in one) and what Argo CD's application controller shows.

Binary
  Built from testbed/gitops-health (the versions its go.mod pins) once per machine and module
  content, into ${GPUPOOL_CACHE:-~/.cache/gpupool}/gitops-health/<key>/, where <key> is a hash of
  go.mod, go.sum and the Go sources. Needs Go the first time (and the Go module proxy).

Command line, from the repo root (stdlib only, like testbed.localkube):
  python3 -m testbed.gitops_health build [--force]     build/cache the binary, print its path
  python3 -m testbed.gitops_health eval [--lua F] [-o json] FILE...
                                                        kstatus and Argo CD health per object
                                                        (--lua defaults to gpupool's health.lua)

Library (`from testbed import gitops_health`):
  ensure_binary() -> Path                              build if missing, return the binary's path
  evaluate(objects, health_lua_path=HEALTH_LUA) -> list[dict]
      objects: dicts (Kubernetes objects) and/or paths of YAML/JSON files (a List counts as its
      items); one dict per object, in order:
      {"source", "apiVersion", "kind", "name", "generation",
       "kstatus": {"status", "message"},
       "lua": {"argocd-cm": {"status", "message"}, "builtin": {...}},
       "argocd": {"status", "message"}}
      (a result that could not be computed is {"error": "..."}).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from testbed.cache import GoBuildFailed, cache_root, find_go, go_build_into, locked

REPO = Path(__file__).resolve().parent.parent
GO_MODULE = Path(__file__).resolve().parent / "gitops-health"
HEALTH_LUA = REPO / "manifests" / "argocd" / "gpupool.io" / "GpuHostPool" / "health.lua"
BINARY_NAME = "gitops-health"


class GitopsHealthError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[gitops-health] {msg}", file=sys.stderr, flush=True)


def module_key() -> str:
    """What the binary is built from: go.mod, go.sum and the Go sources, hashed."""
    digest = hashlib.sha256()
    for path in sorted([GO_MODULE / "go.mod", GO_MODULE / "go.sum", *GO_MODULE.glob("*.go")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def binary_dir(key: str | None = None) -> Path:
    return cache_root() / "gitops-health" / (key or module_key())


def _go() -> str:
    go = find_go()
    if go:
        return go
    raise GitopsHealthError(
        "Go is needed once per machine to build the kstatus/Argo CD health harness "
        "(https://go.dev/dl/, >= the version in testbed/gitops-health/go.mod); set $GO or put `go` on PATH"
    )


def build_binary(key: str | None = None) -> Path:
    """Build the harness into the cache (unconditionally); returns the binary's path."""
    key = key or module_key()
    dest = binary_dir(key)
    go = _go()
    _log(f"building the kstatus/Argo CD health harness ({key}; first time on this machine: ~1-2 min) ...")
    try:
        seconds = go_build_into(
            dest,
            GO_MODULE,
            lambda out: [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / BINARY_NAME), "."],
            lambda out: {"key": key, "versions": json.loads(_run_versions(out / BINARY_NAME))},
            goflags=os.environ.get("GITOPS_HEALTH_GOFLAGS", "-mod=readonly"),
        )
    except GoBuildFailed as e:
        raise GitopsHealthError(str(e)) from e
    _log(f"built into {dest} in {seconds:.0f}s")
    return dest / BINARY_NAME


def _run_versions(binary: Path) -> str:
    """The module versions the harness was built with (kstatus, gopher-lua), as it reports them."""
    return subprocess.run([str(binary), "-versions"], capture_output=True, text=True, check=True).stdout


def _build_lock(key: str):
    return locked(cache_root() / "gitops-health" / f".{key}.lock")


def ensure_binary(*, force: bool = False) -> Path:
    """The cached binary, built first if missing (serialised by a file lock)."""
    key = module_key()
    binary = binary_dir(key) / BINARY_NAME
    if force or not os.access(binary, os.X_OK):
        with _build_lock(key):
            if force or not os.access(binary, os.X_OK):
                build_binary(key)
    return binary


def evaluate(
    objects: Iterable[dict[str, Any] | str | Path], health_lua_path: str | Path | None = HEALTH_LUA
) -> list[dict[str, Any]]:
    """kstatus's and Argo CD's verdicts on each object (see the module's docstring), in the order
    given. Files only: the harness reads them (each result's "source" names its file); with dicts
    among them, everything goes to it as one YAML stream on stdin ("-#N"). health_lua_path=None
    computes kstatus only."""
    items = list(objects)
    cmd = [str(ensure_binary())]
    if health_lua_path is not None:
        cmd += ["-lua", str(health_lua_path)]
    stdin = None
    if all(not isinstance(item, dict) for item in items):
        cmd += [str(item) for item in items]
    else:
        docs = [json.dumps(item) if isinstance(item, dict) else Path(item).read_text() for item in items]
        cmd.append("-")
        stdin = "\n---\n".join(docs)
    if not items:
        return []
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise GitopsHealthError(f"gitops-health failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def _table(results: list[dict[str, Any]]) -> str:
    def show(verdict: dict[str, Any] | None) -> str:
        if not verdict:
            return "-"
        if "error" in verdict:
            return f"error: {verdict['error']}"
        return f"{verdict.get('status', '')}: {verdict.get('message', '')}".rstrip(": ")

    lines = []
    for r in results:
        lines.append(f"{r['kind']}/{r['name']} (generation {r['generation']}, {r['source']})")
        lines.append(f"  kstatus  {show(r['kstatus'])}")
        lua = r.get("lua") or {}
        for mode in sorted(lua):
            lines.append(f"  lua ({mode})  {show(lua[mode])}")
        if r.get("argocd"):
            lines.append(f"  Argo CD shows  {show(r['argocd'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.gitops_health", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build and cache the harness (once per machine and go.mod)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    e = sub.add_parser("eval", help="kstatus and Argo CD health of each object in the files")
    e.add_argument("files", nargs="+", type=Path)
    e.add_argument("--lua", type=Path, default=HEALTH_LUA, help="the health.lua (default: gpupool's)")
    e.add_argument("-o", "--output", choices=("table", "json"), default="table")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            print(ensure_binary(force=args.force))
        else:
            results = evaluate(args.files, args.lua)
            print(json.dumps(results, indent=2) if args.output == "json" else _table(results))
    except GitopsHealthError as err:
        _log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
