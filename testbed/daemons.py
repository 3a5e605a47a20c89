"""Starting the testbed's long-running processes (etcd, kube-apiserver, Prometheus) the same way:
out of the terminal's reach, logging to a file, and (on Linux) dying with the process that started
them, so a killed test run leaves nothing behind. Standard library only."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGKILL when the starting process dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def spawn(cmd: list[str], log: Path, *, die_with_parent: bool, append: bool = True) -> subprocess.Popen:
    """Start CMD with stdout and stderr into LOG; stopped explicitly, never by the terminal's Ctrl-C."""
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        )


def tail(path: Path, n: int = 40) -> str:
    """The last N lines of a log, for an error message; empty when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, for a daemon (or the operator under test) to take."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
