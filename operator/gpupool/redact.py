"""Credentials out of text: the `user:pass@` of a URL, its query string, and `password=...`-like
pairs. Used on every message built from a library's exception text (keystoneauth and urllib3 put
the whole auth_url, userinfo and query included, into theirs) and, through the root logger's
handlers, on every log record. Pure: no I/O, no imports from the rest of gpupool.
"""

from __future__ import annotations

import logging
import re
import traceback
from urllib.parse import urlsplit, urlunsplit

# scheme://... up to whitespace or a quote/bracket that ends it in prose and reprs.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# Punctuation that ends a sentence or a repr rather than the URL ("...: HTTPConnectionPool").
_TRAILING = ".,;:!)]}"
# A query string after a path without a scheme ("Max retries exceeded with url: /v3?password=x").
_BARE_QUERY = re.compile(r"(?<=[\w/.\-])\?[^\s'\"<>`]*=[^\s'\"<>`]*")
# key=value or "key": "value" pairs whose key names a secret.
_SECRET_KEY = r"[\w\-]*(?:pass(?:word|wd)?|secret|token|api[_\-]?key|credential)[\w\-]*"
_SECRET_PAIR = re.compile(
    rf"(?P<key>\b{_SECRET_KEY})(?P<sep>['\"]?\s*[=:]\s*['\"]?)(?P<value>[^\s'\"&,;)\]}}]+)", re.IGNORECASE
)
MASK = "***"


def redact_url(url: str) -> str:
    """The URL without userinfo, query string or fragment: `http://a:b@h:1/v3?x=y` -> `http://h:1/v3`.
    Something that does not parse as a URL comes back with anything after '@' or '?' cut off."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:  # e.g. a bad IPv6 literal: keep only what cannot be a credential
        scheme, sep, rest = url.partition("://")
        host = rest.split("/", 1)[0].rpartition("@")[2].split("?", 1)[0]
        return f"{scheme}{sep}{host}"


def _url(match: re.Match[str]) -> str:
    text = match.group(0)
    stripped = text.rstrip(_TRAILING)
    return redact_url(stripped) + text[len(stripped) :]


def _pair(match: re.Match[str]) -> str:
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def redact(text: str) -> str:
    """`text` with every URL's userinfo and query string removed and secret-named values masked."""
    text = _URL.sub(_url, text)
    text = _BARE_QUERY.sub("", text)
    return _SECRET_PAIR.sub(_pair, text)


def guard_root_handlers() -> None:
    """Put a RedactFilter on every handler of the root logger (once): whatever logger a record
    comes from (ours, kopf's, a library's), it is redacted before it is written."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())


class RedactFilter(logging.Filter):
    """A logging filter that redacts a record's message (and its traceback text) before the handler
    formats it. On a handler it covers every logger whose records reach that handler (a logger's
    own filters would see only the records logged on that very logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record: let logging report it as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True
