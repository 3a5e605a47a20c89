"""The real `gpupool plan` against novasim with clouds.yaml entries that are wrong in the ways users
get them wrong: no secret of a URL is ever printed (with and without -v, Keystone answering or
not), and each mistake gives one line that names the cloud (or file) and what to fix, no traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from gpupool.cloud import Cloud
from novasim.testing import SimProcess
from tests.conformance.checks import GPUPOOL

pytestmark = pytest.mark.conformance

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "pools" / "l40.yaml"
SECRETS = ("S3cretInUrl", "QuerySecret", "AppSecretXYZ", "hunter2")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cloud-config-errors")
    with SimProcess(ROOT / "examples" / "fleet.yaml", workdir) as sim:
        good = yaml.safe_load(sim.clouds_yaml.read_text())["clouds"]["sim"]
        auth = good["auth"]
        port = sim.url.rsplit(":", 1)[1]

        def entry(**changes) -> dict:
            return {**good, **changes}

        clouds = {
            "leaky": entry(
                auth={
                    **auth,
                    "auth_url": f"http://admin:S3cretInUrl@127.0.0.1:{port}/identity/v3?password=QuerySecret",
                }
            ),
            "leaky-gone": entry(
                auth={
                    **auth,
                    "auth_url": "http://admin:S3cretInUrl@127.0.0.1:1/identity/v3?password=QuerySecret",
                }
            ),
            "tls": entry(auth={**auth, "auth_url": f"https://127.0.0.1:{port}/identity/v3"}),
            "noauthurl": entry(auth={k: v for k, v in auth.items() if k != "auth_url"}),
            "badauthtype": entry(auth_type="passwordd"),
            "strauth": entry(auth="password=hunter2"),
            "hello": "hello",
            "appcred": {
                "auth_type": "v3applicationcredential",
                "auth": {
                    "auth_url": auth["auth_url"],
                    "application_credential_id": "nope",
                    "application_credential_secret": "AppSecretXYZ",
                },
            },
            "tokenauth": {
                "auth_type": "v3token",
                "auth": {
                    "auth_url": auth["auth_url"],
                    "token": "hunter2",
                    "project_name": "admin",
                    "project_domain_name": "Default",
                },
            },
            "noproject": entry(
                auth={k: v for k, v in auth.items() if k not in ("project_name", "project_domain_name")}
            ),
            "badregion": entry(region_name="Nowhere"),
            "timeout2": entry(api_timeout=2),
        }
        path = workdir / "bad-clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": clouds}))
        yield sim, path


def plan(clouds: Path | str, cloud: str | None = "sim", *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    env.pop("OS_CLOUD", None)
    args = [GPUPOOL, *options, "plan", "-f", str(SPEC)] + (["--os-cloud", cloud] if cloud else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Exit 1, no traceback, and one line on stderr (besides the one naming the cloud acted on)."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("gpupool plan: error: ")]
    assert len(errors) == 1 and all(
        line.startswith("gpupool plan: cloud ") for line in lines if line not in errors
    ), result.stderr
    return errors[0]


def no_secret(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert not any(secret in output for secret in SECRETS), output


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_credentials_in_auth_url_are_never_printed(sim, verbose):
    _, clouds = sim
    options = ("-v",) if verbose else ()

    answered = plan(clouds, "leaky", *options)
    no_secret(answered)
    assert answered.returncode == 0, answered.stderr
    port = sim[0].url.rsplit(":", 1)[1]
    assert f"Keystone http://127.0.0.1:{port}/identity/v3\n" in answered.stderr

    gone = plan(clouds, "leaky-gone", *options)
    no_secret(gone)
    if verbose:  # keystoneauth's own warning is there, redacted
        assert "contacting http://127.0.0.1:1/identity/v3." in gone.stderr
    else:
        message = one_error_line(gone)
        assert "cloud 'leaky-gone' did not answer after 5 attempts (ConnectFailure)" in message
        assert "check auth_url (http://127.0.0.1:1/identity/v3)" in message


@pytest.mark.parametrize(
    ("cloud", "expected"),
    [
        ("noauthurl", "cloud 'noauthurl' in {clouds} lacks auth.auth_url: add it under auth:"),
        ("badauthtype", "auth_type 'passwordd' is not a keystoneauth plugin; did you mean 'password'?"),
        ("strauth", "cloud 'strauth' in {clouds}: auth must be a mapping"),
        ("hello", "cloud 'hello' in {clouds}: its settings must be a mapping"),
        ("appcred", "(auth_type v3applicationcredential); check application_credential_id"),
        ("tokenauth", "(auth_type v3token); the token may have expired"),
        ("noproject", "empty service catalog: the credentials are not scoped to a project; set project_name"),
        ("badregion", "(public endpoint for compute service in Nowhere region not found); check region_name"),
        ("tls", "no TLS connection to cloud 'tls' after 5 attempts (SSLError); check http or https"),
    ],
)
def test_a_wrong_entry_is_one_line_saying_what_to_fix(sim, cloud, expected):
    _, clouds = sim
    result = plan(clouds, cloud)
    message = one_error_line(result)
    assert expected.format(clouds=clouds) in message, message
    assert "username, password" not in message or cloud not in ("appcred", "tokenauth")
    no_secret(result)


def test_clouds_that_is_not_a_mapping(tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: [a, b]\n")
    message = one_error_line(plan(clouds))
    assert f"{clouds}: 'clouds' must map each cloud's name to its settings, not be a list" in message


def test_the_file_os_client_config_file_names_is_missing_or_broken(tmp_path):
    missing = tmp_path / "nowhere" / "clouds.yaml"
    message = one_error_line(plan(missing))
    assert f"OS_CLIENT_CONFIG_FILE is {missing}, which does not exist" in message
    assert "no clouds.yaml was found" not in message

    broken = tmp_path / "clouds.yaml"
    broken.write_text("clouds:\n  sim:\n    auth: {auth_url: x, password: hunter2\n")
    result = plan(broken)
    message = one_error_line(result)
    assert f"{broken}:4: not valid YAML" in message and "OS_CLIENT_CONFIG_FILE" in message
    assert "no clouds.yaml was found" not in message and "Skipping config file" not in result.stderr
    no_secret(result)


def test_api_timeout_of_the_entry_wins_over_the_default(sim, monkeypatch):
    _, clouds = sim
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    own, default = Cloud("timeout2"), Cloud("leaky", timeout=7)
    try:
        assert own._conn.config.config["api_timeout"] == 2
        assert default._conn.config.config["api_timeout"] == 7
        assert default.auth_url.endswith(":" + sim[0].url.rsplit(":", 1)[1] + "/identity/v3")
        assert "@" not in default.auth_url and "?" not in default.auth_url
    finally:
        own.close()
        default.close()
