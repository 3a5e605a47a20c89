"""The durable record of a move in flight, kept in Nova itself.

While a host moves, its nova-compute service is disabled with a reason that says so. That reason
is the intent: written before the first aggregate change, read back on start-up to finish (or roll
back) the move after a crash, and it tells everyone looking at `openstack compute service list`
why the host is disabled:

    gpupool: moving L40-n3 -> L40-n3-spot [5e7d2a3f9a1c07]

The bracketed token is the move's id (six random hex digits: Events and history name the move by
it, whichever process finishes it) and a digest of the id, the host and both aggregate names. A
reason is gpupool's only when it is exactly this text, token included: a note appended by a person, a hand-written reason
that merely looks like ours, or ours copied onto another host all fail the check, so gpupool
treats them as "disabled by someone else" and never touches the host. Aggregate names containing
the separator are refused when a spec loads (api.py), so the text always splits one way.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "gpupool: moving "
SEPARATOR = " -> "
# Nova stores disabled_reason in a String(255) column.
MAX_REASON_LENGTH = 255
# The token: the move's id (random, shared by every process that finishes the move: Events are
# named after it) and a digest that binds it to the host and both names.
_ID_LENGTH = 6
_CHECK_LENGTH = 8
_TOKEN_LENGTH = _ID_LENGTH + _CHECK_LENGTH
# What the two names may take up together: the reason less the prefix, separator and " [token]".
MAX_NAMES_LENGTH = MAX_REASON_LENGTH - len(PREFIX) - len(SEPARATOR) - len(" []") - _TOKEN_LENGTH
_PATTERN = re.compile(
    rf"^gpupool: moving (?P<source>.+) -> (?P<target>.+) \[(?P<id>[0-9a-f]{{{_ID_LENGTH}}})"
    rf"(?P<check>[0-9a-f]{{{_CHECK_LENGTH}}})\]$"
)


def _check(host: str, source: str, target: str, move_id: str) -> str:
    digest = hashlib.sha256(f"{host}\0{source}\0{target}\0{move_id}".encode()).hexdigest()
    return digest[:_CHECK_LENGTH]


def new_move_id() -> str:
    return secrets.token_hex(_ID_LENGTH // 2)


@dataclass(frozen=True)
class MoveIntent:
    host: str
    source: str
    target: str
    move_id: str = ""

    def reason(self) -> str:
        if len(self.source) + len(self.target) > MAX_NAMES_LENGTH:
            # Specs are checked when they load (api.py); reaching this is a bug, not bad input.
            raise ValueError(
                f"aggregate names {self.source!r} and {self.target!r} are too long together for a "
                f"{MAX_REASON_LENGTH}-character disabled_reason"
            )
        if len(self.move_id) != _ID_LENGTH:
            raise ValueError(f"a move id is {_ID_LENGTH} hex digits, not {self.move_id!r}")
        check = _check(self.host, self.source, self.target, self.move_id)
        return f"{PREFIX}{self.source}{SEPARATOR}{self.target} [{self.move_id}{check}]"

    def same_move(self, host: str, source: str, target: str) -> bool:
        return (self.host, self.source, self.target) == (host, source, target)


def parse_reason(host: str, reason: str | None) -> MoveIntent | None:
    """The intent recorded in `host`'s disabled_reason, or None when it is not exactly gpupool's."""
    if not reason:
        return None
    match = _PATTERN.match(reason)
    if not match or SEPARATOR in match["source"] or SEPARATOR in match["target"]:
        return None
    intent = MoveIntent(host, match["source"], match["target"], match["id"])
    return intent if match["check"] == _check(host, intent.source, intent.target, intent.move_id) else None


def names_fit(source: str, target: str) -> bool:
    """Whether a move between these aggregates can be recorded in one disabled_reason."""
    return len(source) + len(target) <= MAX_NAMES_LENGTH and SEPARATOR not in source + target


# The cloud's move lock (movelock.py): an empty aggregate of this name. No spec may manage it.
LOCK_AGGREGATE = "gpupool-lock"
# The cloud's kill switch: while an aggregate of this name exists, no gpupool process (CLI or
# operator) starts a move on that cloud. `gpupool stop` creates it, `gpupool resume` deletes it;
# `openstack aggregate create gpupool-stop` works as well. Its metadata may say why.
STOP_AGGREGATE = "gpupool-stop"
STOP_REASON_KEY = "reason"


def stop_reason(aggregates) -> str | None:
    """Why moves are stopped on this cloud (its kill switch is on), or None."""
    marker = aggregates.get(STOP_AGGREGATE)
    if marker is None:
        return None
    why = (marker.metadata or {}).get(STOP_REASON_KEY) or "no reason given"
    return (
        f"the kill switch is on (aggregate {STOP_AGGREGATE!r} exists: {why}); `gpupool resume` turns it off"
    )


# Where a host came from, kept in Nova too: a host that left a second on-demand aggregate (say
# L40-n3-NVLink) for a pool carries a metadata key on that pool's aggregate naming it, so that it
# goes back there, not into the first one listed, whoever shrinks the pool later (any replica, the
# CLI). Hosts from the first listed on-demand aggregate need no record: that is where a host without
# one returns. Nova's aggregate metadata keys match this pattern (nova/api/validation).
ORIGIN_PREFIX = "gpupool.origin."
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")


def origin_key(host: str) -> str | None:
    """The metadata key recording `host`'s origin, None when Nova would not accept it as a key."""
    key = f"{ORIGIN_PREFIX}{host}"
    return key if _METADATA_KEY.match(key) else None


def recorded_origins(metadata: dict[str, str], hosts) -> dict[str, str]:
    """{host: on-demand aggregate it came from} for the members of an aggregate with a record."""
    if not any(key.startswith(ORIGIN_PREFIX) for key in metadata):
        return {}
    return {
        host: metadata[key] for host in hosts if (key := origin_key(host)) is not None and key in metadata
    }
