"""Fixtures of the conformance tier: the same scenarios against novasim and against a real Nova.

`cloud` is parametrized ["novasim", "realnova"]; a test calls `cloud.deploy(FLEET)` and gets a
`Deployed` (backends.py): an openstacksdk connection built from a clouds.yaml, logical -> real
names and ids, and `normalize()` for Nova's messages. `observe(key, value)` records what the
backend answered; once a scenario has run on both backends, their answers are compared
(agreement.py) and a difference fails the run that completed the pair.

The real Nova (nova-api 34 + Keystone 30 + Placement 16, testbed/realnova/) is installed once per
machine into a cached venv and started once per session on 127.0.0.1; a failed install or start
FAILS every realnova test with the reason and the services' log tails (it is never skipped).

`realnova` is the reusable session fixture for other tiers (e.g. a `gpupool reconcile` test):
`.clouds_yaml`, `.cloud_name`, `.env()`, `.register({...})`, `.log_tails()`. It runs with gpupool's
least-privilege policy overrides (manifests/openstack/): `.env(least_privilege=True)` and
`.least_privilege["clouds"]` name the clouds.yaml entries of a user holding only the role
gpupool-operator (application credential, password) and of one without it; `.export_clouds(path,
name)` writes a clouds.yaml with only that entry. `realnova_backend` deploys fleets on the real
Nova alone (test_least_privilege.py).

Environment knobs:
  GPUPOOL_CACHE          where the real-Nova venv is cached (default ~/.cache/gpupool)
  REALNOVA_KEEP=1        keep the real Nova's state dir (configs, SQLite files, logs)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import warnings
from collections.abc import Iterator

import pytest

from testbed.realnova import RealNova, ensure_installed
from tests.conformance.agreement import Agreement
from tests.conformance.backends import Fleet, NovasimBackend, RealNovaBackend, novasim_available

BACKENDS = ("novasim", "realnova")
_install_error: list[str] = []


def pytest_collection_modifyitems(session, config, items):
    # Install (first run on a machine: one to two minutes) before any test starts, so the
    # install is not cut by a per-test timeout. A failure is reported by the fixture: every
    # realnova test fails with it.
    wanted = any("realnova" in getattr(item, "fixturenames", ()) or _realnova_param(item) for item in items)
    if not wanted:
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        try:
            ensure_installed()
        except Exception as exc:  # reported by the realnova fixture
            _install_error.append(str(exc))


def _realnova_param(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return bool(callspec and callspec.params.get("cloud") == "realnova")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def realnova(tmp_path_factory) -> Iterator:
    """A running real Nova for the session (`testbed.realnova.RealNova`)."""
    if _install_error:
        pytest.fail(f"installing the real Nova failed:\n{_install_error[0]}", pytrace=False)
    state = tmp_path_factory.mktemp("realnova")
    nova = RealNova(state)
    try:
        nova.up()
    except Exception as exc:
        tails = nova.log_tails() if nova.logs.exists() else ""
        nova.down()
        _install_error.append(f"starting the real Nova failed: {exc}")
        pytest.fail(f"starting the real Nova failed: {exc}\n{tails}", pytrace=False)
    print(f"\nreal Nova up in {nova.info.get('started_in_s')}s, {nova.memory_mb():.0f} MB, state in {state}")
    try:
        yield nova
    finally:
        nova.down()
        if os.environ.get("REALNOVA_KEEP", "") in ("", "0"):
            shutil.rmtree(state / "fernet-keys", ignore_errors=True)
            (state / "clouds.yaml").unlink(missing_ok=True)
        else:
            print(f"\nreal Nova state kept in {state}", file=sys.stderr)


_suffixes = itertools.count(1)


@pytest.fixture(scope="session")
def realnova_backend(realnova) -> RealNovaBackend:
    """The real-Nova backend alone, for scenarios novasim cannot play (Keystone roles, policy):
    `realnova_backend.materialize(Fleet.parse(FLEET))` deploys a fleet with the usual suffixes."""
    return RealNovaBackend(realnova, _suffixes)


class CloudUnderTest:
    """What a test gets: deploy a fleet on this backend; failures print the backend's logs."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.deployed = []

    def deploy(self, fleet: dict | str):
        deployed = self.backend.materialize(Fleet.parse(fleet))
        self.deployed.append(deployed)
        return deployed


@pytest.fixture(params=BACKENDS)
def cloud(request, tmp_path) -> Iterator[CloudUnderTest]:
    if request.param == "novasim":
        why = novasim_available()
        if why:
            pytest.skip(why)
        backend = NovasimBackend(tmp_path)
    else:
        backend = RealNovaBackend(request.getfixturevalue("realnova"), _suffixes)
    under_test = CloudUnderTest(backend)
    try:
        yield under_test
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for d in under_test.deployed[:1]:
                if d.log_tails:
                    print(f"\n===== {request.param} logs =====\n{d.log_tails()}")
        for d in under_test.deployed:
            with contextlib.suppress(Exception):
                d.conn.close()
        backend.close()


# -- observations, compared across backends (agreement.py) ---------------------------------------

AGREEMENT = pytest.StashKey[Agreement]()


@pytest.fixture(scope="session")
def agreement(request) -> Agreement:
    """What every backend answered in every scenario of the session (kept on the config, where the
    terminal summary reads it)."""
    return request.config.stash.setdefault(AGREEMENT, Agreement(BACKENDS))


@pytest.fixture
def observe(request, cloud, agreement) -> Iterator:
    """observe(key, value): record what this backend answered. Once the scenario has run on every
    backend, the last run's teardown compares the answers: a difference fails it."""
    # The test without its backend: "test_aggregates.py::test_add_unknown_host".
    scenario = request.node.nodeid.split("[", 1)[0].rsplit("/", 1)[-1]

    def record(key: str, value) -> None:
        agreement.record(scenario, cloud.name, key, value)

    yield record
    comparison = agreement.finished(scenario, cloud.name)
    if comparison is None:
        return
    for line in comparison.wording:
        warnings.warn(f"message wording differs: {line}", stacklevel=1)
    assert not comparison.disagreements, "novasim and real Nova disagree:\n" + "\n".join(
        comparison.disagreements
    )


def pytest_terminal_summary(terminalreporter, config):
    summary = config.stash[AGREEMENT].summary() if AGREEMENT in config.stash else None
    if summary:
        terminalreporter.write_line(summary)
