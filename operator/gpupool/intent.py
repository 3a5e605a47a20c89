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
