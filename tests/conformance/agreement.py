"""What the backends answered in the same scenario, compared once every backend has run it.

Every scenario checks each backend against real Nova 34's answers by itself. Besides, through the
`observe` fixture, it records what the backend answered (status codes, error kinds and resulting
state; messages after normalization) into the session's `Agreement`. The run that completes a
scenario (its last backend, whichever that is) compares the records in the fixture's teardown:
values that differ fail that test, messages that differ only in wording are warnings. Nothing
depends on the order the tests run in.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Comparison:
    scenario: str
    compared: int  # observations every backend recorded
    disagreements: list[str]  # "scenario / key: novasim=... realnova=..."
    wording: list[str]  # the same, for keys ending in ":message"


class Agreement:
    def __init__(self, backends: tuple[str, ...]):
        self.backends = backends
        # scenario -> backend -> key -> value
        self._observed: dict[str, dict[str, dict[str, Any]]] = {}
        self._ran: dict[str, set[str]] = {}
        self.comparisons: list[Comparison] = []

    def record(self, scenario: str, backend: str, key: str, value: Any) -> None:
        self._observed.setdefault(scenario, {}).setdefault(backend, {})[key] = value

    def finished(self, scenario: str, backend: str) -> Comparison | None:
        """The scenario ran on `backend`; compared once it has run on every backend, else None."""
        ran = self._ran.setdefault(scenario, set())
        ran.add(backend)
        if ran != set(self.backends):
            return None
        observed = self._observed.get(scenario, {})
        answers = [observed.get(b, {}) for b in self.backends]
        common = sorted(set.intersection(*(set(a) for a in answers)))
        wording, disagreements = [], []
        for key in common:
            values = [a[key] for a in answers]
            if all(v == values[0] for v in values[1:]):
                continue
            side_by_side = " ".join(f"{b}={v!r}" for b, v in zip(self.backends, values, strict=True))
            line = f"{scenario} / {key}: {side_by_side}"
            (wording if key.endswith(":message") else disagreements).append(line)
        comparison = Comparison(scenario, len(common), disagreements, wording)
        self.comparisons.append(comparison)
        return comparison

    def summary(self) -> str | None:
        """One line for the end of the session; None if nothing was recorded."""
        if not self._observed:
            return None
        compared = [c for c in self.comparisons if c.compared]
        if not compared:
            return f"{' vs '.join(self.backends)}: no scenario ran on every backend in this session"
        return (
            f"{' vs '.join(self.backends)}: {len(compared)} scenarios compared "
            f"({sum(c.compared for c in compared)} observations), "
            f"{sum(bool(c.disagreements) for c in compared)} disagree, "
            f"{sum(bool(c.wording) for c in compared)} differ in message wording"
        )
