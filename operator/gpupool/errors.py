"""Every error the engine tells apart, in one place: Nova's answers by kind (not by status codes and
message patterns at each call site), and the two the engine raises itself (Fenced, StatusConflict).

The messages say what went wrong and what to do; none carries a secret.
"""

from __future__ import annotations

import re


class CloudError(Exception):
    """Something about the cloud went wrong. The message says what, and what to do."""


class CloudConfigError(CloudError):
    """The clouds.yaml entry is missing or unusable."""


class CloudAuthError(CloudError):
    """Keystone refused the credentials."""


class CloudUnreachable(CloudError):
    """The cloud did not answer, even after retries."""


class NovaRequestError(CloudError):
    """Nova (or Placement) refused a request, or kept failing."""

    def __init__(self, message: str, status_code: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status_code = status_code
        self.attempts = attempts  # how many times it was sent: after a retry, "done" may be our own doing

    @property
    def refused(self) -> bool:
        """A refusal for good (4xx): asking again will get the same answer."""
        return self.status_code is not None and 400 <= self.status_code < 500


class NotFound(NovaRequestError):
    """404: what the request names does not exist (an aggregate, a service, a host)."""


class NotAMember(NotFound):
    """Nova's answer to removing a host that is not in the aggregate."""


class Conflict(NovaRequestError):
    """409: the request conflicts with the current state (a name taken, a host already there)."""


class AlreadyAMember(Conflict):
    """Nova's answer to adding a host that is in the aggregate already."""


class HostNotInAggregate(CloudError):
    """The host was not in the aggregate we were removing it from, and our own earlier try cannot
    explain it: someone else changed its membership since we looked."""


class Fenced(CloudError):
    """This process may no longer write: it lost the cloud's move lock (or cannot prove it holds it)."""


class StatusConflict(Exception):
    """The resource changed since we read it (another writer, e.g. a new leader): re-read, rebuild."""


# Nova answers both "no such aggregate" and "host not in aggregate" with a 404, and "name taken" and
# "host already there" with a 409: only the message tells them apart (nova/compute/api.py,
# AggregateHostNotFound and AggregateHostExists, unchanged since 2012).
_NOT_A_MEMBER = re.compile(r"Cannot remove host .* in aggregate", re.IGNORECASE)
_ALREADY_A_MEMBER = re.compile(r"already has host", re.IGNORECASE)


def nova_error(message: str, status_code: int | None, attempts: int = 1) -> NovaRequestError:
    """The error class for Nova's answer."""
    kind: type[NovaRequestError] = NovaRequestError
    if status_code == 404:
        kind = NotAMember if _NOT_A_MEMBER.search(message) else NotFound
    elif status_code == 409:
        kind = AlreadyAMember if _ALREADY_A_MEMBER.search(message) else Conflict
    return kind(message, status_code, attempts)
