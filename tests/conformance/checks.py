"""Assertions shared by the conformance scenarios."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

GPUPOOL = str(Path(sys.executable).parent / "gpupool")

# Nova's error body: {"<kind>": {"code": N, "message": "..."}}, kind by status.
KIND = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest"}


def check_error(d, observe, key: str, response, *, status: int, text: str, meaning: list[str]) -> str:
    """An error answer: exact status, Nova's body shape, message = `text` on real Nova (after
    normalizing ids and names), and matching every `meaning` pattern on both backends."""
    code, body = response
    kind = next(iter(body)) if isinstance(body, dict) and len(body) == 1 else None
    message = body[kind].get("message") if kind and isinstance(body[kind], dict) else None
    normalized = d.normalize(message)
    observe(key, {"status": code, "kind": kind, "code": body[kind].get("code") if kind else None})
    observe(f"{key}:message", normalized)
    assert code == status, f"{d.backend}: expected {status}, got {code}: {body}"
    assert kind == KIND[status], f"{d.backend}: error body {body!r} is not {{{KIND[status]!r}: {{...}}}}"
    assert body[kind].get("code") == status, f"{d.backend}: body code {body[kind].get('code')} != {status}"
    assert isinstance(message, str) and message, f"{d.backend}: no message in {body}"
    if d.backend == "realnova":
        assert normalized == text, f"real Nova says {normalized!r} (test expects {text!r})"
    for pattern in meaning:
        assert re.search(pattern, normalized), f"{d.backend}: {normalized!r} does not say /{pattern}/"
    return normalized


def aggregate_state(d, logical_names: list[str]) -> dict:
    """{logical aggregate: {"hosts": sorted logical hosts, "metadata": {...}}} via the API."""
    by_id = {int(a.id): a for a in d.conn.compute.aggregates()}
    state = {}
    for name in logical_names:
        agg = by_id.get(d.agg(name))
        if agg is None:
            state[name] = None
            continue
        state[name] = {
            "name": d.logical(agg.name),
            "hosts": sorted(d.logical(h) for h in agg.hosts or []),
            "metadata": dict(agg.metadata or {}),
            "availability_zone": agg.availability_zone,
        }
    return state


def service_state(d, host: str) -> dict:
    services = list(d.conn.compute.services(host=d.host(host), binary="nova-compute"))
    assert len(services) == 1, f"{d.backend}: {len(services)} nova-compute services on {host}"
    s = services[0]
    return {
        "host": d.logical(s.host),
        "binary": s.binary,
        "state": s.state,
        "status": s.status,
        "disabled_reason": s.disabled_reason,
        "zone": s.availability_zone,
    }


def run_reconcile(d, spec: dict, tmp_path: Path) -> dict:
    """Run the real `gpupool reconcile` CLI on `d`'s cloud; assert it converged (exit 0) and
    return its JSON report of that one spec."""
    (tmp_path / "pools.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(d.clouds_yaml)}
    env.pop("OS_CLOUD", None)
    result = subprocess.run(
        [GPUPOOL, "reconcile", "-f", str(tmp_path / "pools.yaml"), "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"{d.backend}: exit {result.returncode}: {result.stderr}"
    (report,) = json.loads(result.stdout)  # always a list, one item per spec
    return report
