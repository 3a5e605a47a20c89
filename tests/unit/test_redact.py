"""redact.py: no credential of a URL (userinfo, query string) or secret-named pair survives."""

from __future__ import annotations

import logging

import pytest

from gpupool.redact import RedactFilter, redact, redact_url

SECRETS = ("S3cret", "QuerySecret", "hunter2")


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("http://admin:S3cret@127.0.0.1:5000/identity/v3", "http://127.0.0.1:5000/identity/v3"),
        ("https://keystone.example/v3?password=QuerySecret", "https://keystone.example/v3"),
        ("http://admin:S3cret@[::1]:5000/v3?password=QuerySecret#frag", "http://[::1]:5000/v3"),
        ("http://u:p%40S3cret@host/v3", "http://host/v3"),
        ("http://host:5000/identity/v3", "http://host:5000/identity/v3"),
        ("http://admin:S3cret@[::1/v3?password=QuerySecret", "http://[::1"),  # does not parse
    ],
)
def test_redact_url(url, clean):
    assert redact_url(url) == clean


def test_keystoneauth_discovery_failure_text():
    text = (
        "Could not find versioned identity endpoints when attempting to authenticate. Please check "
        "that your auth_url is correct. Unable to establish connection to "
        "http://admin:S3cretInUrl2@127.0.0.1:1/identity/v3?password=QuerySecret2: "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
        '/identity/v3?password=QuerySecret2 (Caused by NewConnectionError("HTTPConnection(host='
        "'127.0.0.1', port=1): Failed to establish a new connection: [Errno 111] Connection refused\"))"
    )
    clean = redact(text)
    assert not any(s in clean for s in SECRETS), clean
    assert "Unable to establish connection to http://127.0.0.1:1/identity/v3: HTTPConnectionPool" in clean
    assert "with url: /identity/v3 (Caused by" in clean
    assert "Connection refused" in clean


@pytest.mark.parametrize(
    "text",
    [
        "see 'http://admin:hunter2@h/v3'.",
        "(http://h/v3?token=hunter2&x=1)",
        "body: password=hunter2&user=admin",
        '{"password": "hunter2", "user": "admin"}',
        "X-Auth-Token: hunter2",
        "application_credential_secret=hunter2",
    ],
)
def test_secrets_in_prose(text):
    clean = redact(text)
    assert "hunter2" not in clean, clean


def test_plain_text_is_kept():
    text = "list aggregates: Nova answered 409: Aggregate L40-n3 already has host gpu-l40-001 (what?)"
    assert redact(text) == text
    assert redact("auth_type 'passwordd' is not known") == "auth_type 'passwordd' is not known"


def test_filter_redacts_message_args_and_traceback():
    record = logging.LogRecord(
        "keystoneauth.x",
        logging.WARNING,
        __file__,
        1,
        "contacting %s failed",
        ("http://a:S3cret@h/v3",),
        None,
    )
    try:
        raise ValueError("http://h/v3?password=QuerySecret")
    except ValueError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert RedactFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "contacting http://h/v3 failed" in formatted
    assert "ValueError: http://h/v3" in formatted
    assert not any(s in formatted for s in SECRETS), formatted


def test_every_root_handler_redacts_whatever_logger_writes(caplog):
    import io
    import logging

    from gpupool.redact import guard_root_handlers

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        guard_root_handlers()
        guard_root_handlers()  # twice: still one filter
        assert len(handler.filters) == 1
        logging.getLogger("some.library").warning(
            "contacting %s", "http://admin:S3cret@keystone:5000/v3?password=Q"
        )
    finally:
        root.removeHandler(handler)
    assert "S3cret" not in out.getvalue() and "password=Q" not in out.getvalue()
    assert "keystone:5000/v3" in out.getvalue()
