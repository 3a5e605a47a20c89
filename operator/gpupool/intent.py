"""The durable record of a move in flight, kept in Nova itself.

While a host moves, its nova-compute service is disabled with a reason that says so. That reason
is the intent: written before the first aggregate change, read back on start-up to finish the
move after a crash, and it tells everyone looking at `openstack compute service list` why the
host is disabled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "gpupool: moving "
# Nova stores disabled_reason in a String(255) column.
MAX_REASON_LENGTH = 255
_PATTERN = re.compile(r"^gpupool: moving (?P<source>.+?) -> (?P<target>.+)$")


@dataclass(frozen=True)
class MoveIntent:
    source: str
    target: str

    def reason(self) -> str:
        text = f"{PREFIX}{self.source} -> {self.target}"
        if len(text) > MAX_REASON_LENGTH:
            raise ValueError(
                f"aggregate names {self.source!r} and {self.target!r} are too long to record a move "
                f"in Nova's {MAX_REASON_LENGTH}-character disabled_reason"
            )
        return text


def parse_reason(reason: str | None) -> MoveIntent | None:
    """The intent recorded in a disabled_reason, or None when someone else disabled the service."""
    if not reason:
        return None
    match = _PATTERN.match(reason.strip())
    if not match:
        return None
    return MoveIntent(source=match["source"], target=match["target"])


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
