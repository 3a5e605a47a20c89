"""The monitoring tier: alert rules, dashboard and manifests, checked with the real promtool,
Prometheus (tests/conftest.py) and kubectl's kustomize."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from testbed import localkube


def pytest_collection_modifyitems(session, config, items):
    # kubectl comes with the local control plane's binaries, built once per machine (`make
    # kube-binaries`, before pytest); build them before any test starts, not under its timeout.
    if not any("kubectl_path" in getattr(item, "fixturenames", ()) for item in items):
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        localkube.ensure_binaries()


@pytest.fixture(scope="session")
def kubectl_path() -> Path:
    return localkube.ensure_binaries().kubectl
