"""What the testbed's parts share: the per-machine cache, a lock that serialises one-time set-up
across processes, and finding Go and building with it for the parts built from Go modules.
Standard library only."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    """${GPUPOOL_CACHE:-~/.cache/gpupool}: builds and installs kept per machine, outside the clone."""
    env = os.environ.get("GPUPOOL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gpupool"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on PATH (created if missing): one process builds, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def find_go() -> str | None:
    """$GO, `go` on PATH, or Go's usual install places; None when there is none."""
    go = os.environ.get("GO") or shutil.which("go")
    if go:
        return go
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class GoBuildFailed(Exception):
    """`go build` exited non-zero; the message names the command and the module."""


def go_build_into(
    dest: Path,
    module: Path,
    build_args: Callable[[Path], list[str]],
    info: Callable[[Path], dict],
    goflags: str = "-mod=readonly",
) -> float:
    """Build into a fresh directory beside DEST, then swap it in whole: a build killed half-way
    never leaves a cache entry that looks complete. BUILD_INFO records INFO(the built directory)
    plus when the build ran and how long it took. Returns the seconds the build took.
    GOFLAGS defaults to -mod=readonly: go.sum is the record of what we build from."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-build-", dir=dest.parent))
    cmd = build_args(tmp)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS=goflags)
    t0 = time.monotonic()
    try:
        subprocess.run(cmd, cwd=module, env=env, check=True)
        seconds = round(time.monotonic() - t0, 1)
        record = {
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": seconds,
            **info(tmp),
        }
        (tmp / "BUILD_INFO").write_text(json.dumps(record, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    except subprocess.CalledProcessError as e:
        raise GoBuildFailed(f"go build failed ({e.returncode}): {' '.join(cmd)} in {module}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seconds
