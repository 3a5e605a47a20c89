"""What the testbed's parts share: the per-machine cache, a lock that serialises one-time set-up
across processes, and finding Go for the parts built from Go modules. Standard library only."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
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
