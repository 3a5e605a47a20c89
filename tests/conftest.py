"""Fixtures every tier may use: a real Prometheus (testbed/prometheus.py).

prometheus_binaries   prometheus and promtool, found or installed once (`make prometheus` does it
                      before pytest starts)
prometheus            one Prometheus for the session, scraping nothing: parses and evaluates queries
start_prometheus      start_prometheus(targets, rule_files=...) -> a Prometheus of the test's own,
                      stopped after it (state kept on failure with PROMETHEUS_KEEP=1)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from testbed import prometheus as testbed_prometheus

PROMETHEUS_FIXTURES = {"prometheus_binaries", "prometheus", "start_prometheus"}


def pytest_collection_modifyitems(session, config, items):
    # Install before any test starts (apt takes ~15 s), not under a test's timeout.
    if not any(PROMETHEUS_FIXTURES & set(getattr(item, "fixturenames", ())) for item in items):
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        testbed_prometheus.ensure_binaries()


@pytest.fixture(scope="session")
def prometheus_binaries() -> testbed_prometheus.Binaries:
    return testbed_prometheus.ensure_binaries()


@pytest.fixture(scope="session")
def prometheus(prometheus_binaries) -> Iterator[testbed_prometheus.Server]:
    server = testbed_prometheus.start(binaries=prometheus_binaries)
    yield server
    server.stop()


@pytest.fixture
def start_prometheus(prometheus_binaries) -> Iterator:
    started: list[testbed_prometheus.Server] = []

    def start(targets=(), **kwargs) -> testbed_prometheus.Server:
        server = testbed_prometheus.start(targets, binaries=prometheus_binaries, **kwargs)
        started.append(server)
        return server

    yield start
    keep = os.environ.get("PROMETHEUS_KEEP", "") not in ("", "0")
    for server in started:
        server.stop(remove=not keep)
        if keep:
            print(f"\nprometheus state kept in {server.state_dir}")
