"""The planner: (spec, snapshot, moves in flight) -> the next safe moves. Pure: no I/O, no clock.

Decisions (docs/architecture.md says why at more length):

* Every move is a grow (on-demand -> pool) or a shrink (pool -> on-demand); never pool to pool.
  A host leaving a customer's pool passes through the neutral reservoir, where the next plan sees
  it again with fresh eyes (instances, exclusions), and the on-demand aggregate a host returns to
  is always one the spec names. The cost: moving a host from spot to a contract takes two moves.
* Effective membership: a move in flight counts as done (its host is in its target), and its host
  is never planned again. New moves are at most `maxConcurrentMoves - len(in_flight)`.
* Candidates leave in a fixed order: hosts without instances first (only relevant when the policy
  allows moving hosts with instances), then on-demand aggregates in the order the spec lists them
  (the first listed is drained first, so the user decides, e.g. NVLink hosts last), then by host
  name in natural order (gpu-2 before gpu-10).
* Fairness: each new move goes to the pool furthest from its goal, relatively: |desired - have| /
  max(desired, have), ties broken by the larger gap, then spec order. Pools advance in proportion,
  a big pool does not starve a small one, and no state between passes is needed.
"""

from __future__ import annotations

import collections
import difflib
import functools
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .api import GpuHostPoolSpec, TargetPool
from .intent import origin_key, parse_reason, recorded_origins
from .model import (
    AGGREGATE_MISSING,
    AGGREGATE_REFUSED,
    AVAILABILITY_ZONE_CONFLICT,
    CANNOT_SHRINK,
    EXCLUDED_HOST_UNKNOWN,
    HOST_IN_SEVERAL_POOLS,
    HOST_SHARED,
    NOT_ENOUGH_MOVABLE_HOSTS,
    ON_DEMAND_FLOOR,
    TOO_MANY_MOVES,
    Blocker,
    Move,
    Neighbours,
    OnDemandState,
    OriginRecord,
    Plan,
    PoolsState,
    PoolState,
    Snapshot,
    Triage,
    is_contract_label,
)

_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=65_536)
def natural_key(name: str) -> tuple:
    """Sort key that puts gpu-2 before gpu-10. Cached: the same names are sorted every pass."""
    # split() alternates text and digit runs, text first: ints and strs never meet at one index.
    parts = tuple(
        int(part) if odd else part for odd, part in zip(itertools.cycle((0, 1)), _DIGITS.split(name))
    )
    return (parts, name)


# Why a host cannot move, in the order reported.
EXCLUDED = "excluded"
FAILED_THIS_PASS = "failed this pass"
CHANGED = "changed since the plan"
SHARED = "shared with another GpuHostPool"
IN_SEVERAL = "in several pools"
NO_SERVICE = "without a compute service"
DOWN = "down"
DISABLED = "disabled by someone else"
UNCOUNTED = "instances unknown"
BUSY = "with instances"
IN_FLIGHT = "moving"

_REASON_WORDS = {
    EXCLUDED: ("is excluded", "are excluded"),
    FAILED_THIS_PASS: ("failed to move this pass", "failed to move this pass"),
    CHANGED: ("changed since the plan", "changed since the plan"),
    SHARED: ("is also in another GpuHostPool's aggregate", "are also in another GpuHostPool's aggregate"),
    IN_SEVERAL: ("is in several pools", "are in several pools"),
    NO_SERVICE: ("has no compute service", "have no compute service"),
    DOWN: ("is down", "are down"),
    DISABLED: ("is disabled by someone else", "are disabled by someone else"),
    UNCOUNTED: ("has an unknown instance count", "have an unknown instance count"),
    BUSY: ("has instances", "have instances"),
    IN_FLIGHT: ("is moving", "are moving"),
}


@dataclass
class _Rules:
    """Whether a host may leave its aggregate, and why not."""

    spec: GpuHostPoolSpec
    snapshot: Snapshot
    in_flight: frozenset[str]
    in_several: frozenset[str]
    shared: frozenset[str] = frozenset()
    held_back: Mapping[str, str] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.excluded = frozenset(self.spec.policy.exclude_hosts)

    def why_not(self, name: str) -> str | None:
        if name in self.in_flight:
            return IN_FLIGHT
        if name in self.excluded:
            return EXCLUDED
        held = self.held_back.get(name)
        if held is not None:
            return held
        if name in self.shared:
            return SHARED
        if name in self.in_several:
            return IN_SEVERAL
        host = self.snapshot.hosts.get(name)
        if host is None:
            return NO_SERVICE
        if not host.is_up:
            return DOWN
        # Any disabled service is a stop sign: one with a gpupool intent is a move under way (of
        # this resource's pass, or another's), any other reason is someone else's.
        if not host.is_enabled:
            return IN_FLIGHT if parse_reason(name, host.disabled_reason) is not None else DISABLED
        if host.instances is None:
            return UNCOUNTED
        if host.instances > 0 and not self.spec.policy.move_hosts_with_instances:
            return BUSY
        return None

    def instances(self, name: str) -> int:
        host = self.snapshot.hosts.get(name)
        return (host.instances or 0) if host else 0

    def order(self, name: str) -> tuple:
        return self.instances(name), natural_key(name)


@dataclass
class _Pool:
    """A pool during planning: `have` counts moves in flight and moves planned so far."""

    target: TargetPool
    index: int
    have: int
    leaving: list[tuple[str, str]] = field(default_factory=list)  # (host, on-demand target), in order
    # Whether a host from an on-demand aggregate may join this pool's aggregate (availability
    # zones); None: any host may.
    fits: Callable[[str, str], bool] | None = None
    refused: bool = False  # Nova refused a step on this pool's aggregate this pass: leave it be

    def copy(self) -> _Pool:
        return _Pool(self.target, self.index, self.have, list(self.leaving), self.fits, self.refused)

    @property
    def gap(self) -> int:
        return abs(self.target.desired - self.have)

    def urgency(self) -> tuple:
        # A float is exact enough: equal ratios of small ints round to the same float.
        behind = self.gap / max(self.target.desired, self.have, 1)
        return (-behind, -self.gap, self.index)


def plan(
    spec: GpuHostPoolSpec,
    snapshot: Snapshot,
    in_flight: Iterable[Move] = (),
    origins: Mapping[str, str] | None = None,
    *,
    all_moves: bool = False,
    neighbours: Neighbours | None = None,
    held_back: Mapping[str, str] | None = None,
    refusing: Mapping[str, str] | None = None,
) -> Plan:
    """The next moves toward the spec's counts, and what keeps any pool from reaching its count.

    `all_moves`: every move still needed, in the order successive plans would pick them if each
    succeeds, instead of only as many as `maxConcurrentMoves` allows to start now.
    `neighbours`: the other GpuHostPools on this cloud; a host also in one of their aggregates is
    never moved. `held_back`: {host: why} hosts a pass set aside (failed_this_pass(...), CHANGED).
    `refusing`: {aggregate: Nova's answer} aggregates that refused a step for good this pass.
    """
    in_flight = tuple(in_flight)
    origins = {**snapshot_origins(spec, snapshot), **(origins or {})}
    refusing = refusing or {}
    blockers: list[Blocker] = []

    managed = spec.managed_aggregates()
    for aggregate in managed:
        if aggregate.name not in snapshot.aggregates:
            blockers.append(
                Blocker(
                    aggregate.pool,
                    AGGREGATE_MISSING,
                    f"aggregate {aggregate.name!r} ({aggregate.field}) does not exist in the cloud: "
                    "create it or fix the spec; nothing moves into or out of it",
                )
            )
    present = [m for m in managed if m.name in snapshot.aggregates]
    members = _effective_members([m.name for m in present], snapshot, in_flight)
    moving = frozenset(m.host for m in in_flight)

    where: dict[str, list[str]] = {}
    for aggregate in present:
        for host in members[aggregate.name]:
            where.setdefault(host, []).append(aggregate.name)
    in_several = frozenset(h for h, aggs in where.items() if len(aggs) > 1 and h not in moving)
    labels = {m.name: m.pool for m in present}
    for host in sorted(in_several, key=natural_key):
        blockers.append(
            Blocker(
                labels[where[host][0]],
                HOST_IN_SEVERAL_POOLS,
                f"host {host} is in {', '.join(where[host])}: remove it from all but one; it is not moved until then",
            )
        )
    shared = _shared_hosts(where, snapshot, neighbours, moving)
    for host, (mine, theirs, owner) in sorted(shared.items(), key=lambda item: natural_key(item[0])):
        me = f"GpuHostPool {neighbours.me!r}" if neighbours else "this GpuHostPool"
        blockers.append(
            Blocker(
                labels[mine],
                HOST_SHARED,
                f"host {host} is in {mine} ({me}) and in {theirs} (GpuHostPool {owner!r}): a host two "
                "GpuHostPools see is never moved; take it out of one of the two aggregates",
            )
        )
    unknown = _unknown_exclusions(spec, snapshot)
    if unknown:
        blockers.append(
            Blocker("-", EXCLUDED_HOST_UNKNOWN, "; ".join(unknown) + ". Nothing moves until then")
        )
    for refused, answer in sorted(refusing.items()):
        if refused in labels:
            blockers.append(
                Blocker(
                    labels[refused],
                    AGGREGATE_REFUSED,
                    f"Nova refused a move {'into or out of'} {refused}: {answer}; not tried again until the next round",
                )
            )

    rules = _Rules(spec, snapshot, moving, in_several, frozenset(shared), dict(held_back or {}))
    zones = _Zones(snapshot)
    on_demand = [name for name in spec.on_demand_aggregates() if name in snapshot.aggregates]
    supply = _on_demand_candidates(on_demand, members, rules)
    # The floor: pools never take the last policy.minOnDemandHosts hosts of on-demand.
    reservoir = len(set().union(*(members[name] for name in on_demand))) if on_demand else 0
    room = max(0, reservoir - spec.policy.min_on_demand_hosts)
    floor_held = max(0, len(supply) - room)
    supply = supply[:room]
    pools = [
        _Pool(target, index, have=len(members[target.aggregate]))
        for index, target in enumerate(spec.target_pools())
        if target.aggregate in snapshot.aggregates
    ]
    for pool in pools:
        pool.fits = zones.fits_for(pool.target.aggregate)
        pool.refused = pool.target.aggregate in refusing
        if pool.have > pool.target.desired and on_demand:
            pool.leaving = _leaving(pool, members, rules, on_demand, origins, zones)

    # Without the concurrency bound, on copies: where every pool would end up, to explain shortfalls.
    unbounded = [p.copy() for p in pools]
    eventual = _schedule(unbounded, supply, None)
    shortfalls = (
        _shortfalls(unbounded, eventual, on_demand, members, rules, in_flight, zones, floor_held, spec)
        if on_demand
        else []
    )
    blockers.extend(shortfalls)
    guard = _guard_rails(spec, eventual, shortfalls, present, managed)
    if guard is not None:
        reason, why = guard
        if reason == TOO_MANY_MOVES:
            blockers.append(Blocker("-", TOO_MANY_MOVES, why))
        else:  # said where the unreachable counts are explained
            blockers = [
                replace(b, message=f"{b.message}. {why}") if b.reason in _UNREACHABLE else b for b in blockers
            ]
    budget = None if all_moves else max(0, spec.policy.max_concurrent_moves - len(in_flight))
    moves = [] if unknown or guard is not None else _schedule(pools, supply, budget)

    listed = spec.on_demand_aggregates()
    return Plan(
        moves=tuple(with_origin_record(move, listed, snapshot) for move in moves),
        blockers=tuple(blockers),
        pools=_pools_state(spec, snapshot, rules, supply),
    )


def triage_resumed(
    spec: GpuHostPoolSpec, snapshot: Snapshot, resumed: Sequence[Move], neighbours: Neighbours | None = None
) -> Triage:
    """Finish the half-done moves the spec still needs; roll the others back.

    Finishing a move the plan would then undo would put the host in the wrong pool, enabled, for a
    while (its customers could land on it); rolling it back costs no more. A move is needed while
    its pool is short of its count: each pool is counted without the hosts of half-done moves, and
    those are let in one by one, the ones furthest along first. A move into or out of an aggregate
    the spec no longer manages is not needed (a pool dropped from the spec keeps its hosts, and
    gets no more), nor is a move of a host the spec now excludes.
    """
    desired = {t.aggregate: t.desired for t in spec.target_pools()}
    moving = {m.host for m in resumed}
    have = {
        name: len(snapshot.aggregates[name].hosts - moving) for name in desired if name in snapshot.aggregates
    }
    excluded = set(spec.policy.exclude_hosts)
    pools = {m.name for m in spec.managed_aggregates()} | set(neighbours.others if neighbours else ())
    finish: list[Move] = []
    back: list[tuple[Move, str]] = []
    release: list[tuple[Move, str]] = []
    stage = {"target": 0, "both": 1, "neither": 2, "source": 3}
    for move in sorted(resumed, key=lambda m: (stage[position(m, snapshot)], natural_key(m.host))):
        elsewhere = [
            name
            for name in sorted(pools - {move.source, move.target})
            if name in snapshot.aggregates and move.host in snapshot.aggregates[name].hosts
        ]
        if elsewhere:
            release.append((move, f"was put into {', '.join(elsewhere)} by someone else mid-move"))
        elif move.host in excluded:
            back.append((move, f"was cancelled: {move.host} is in policy.excludeHosts now"))
        elif move.target in have:  # a grow into a pool the spec manages
            if have[move.target] < desired[move.target]:
                finish.append(move)
                have[move.target] += 1
            else:
                back.append(
                    (move, f"is no longer needed: {move.target} holds its {desired[move.target]} host(s)")
                )
        elif move.source in have:  # a shrink: going back keeps the host in its pool
            if have[move.source] < desired[move.source]:
                back.append(
                    (move, f"is no longer needed: {move.source} wants {desired[move.source]} host(s)")
                )
                have[move.source] += 1
            else:
                finish.append(move)
        elif move.target in desired or move.source in desired:
            finish.append(move)  # the pool's aggregate is gone: the mover takes the host where it can
        else:
            back.append((move, "is no longer needed: the spec does not manage that pool any more"))
    return Triage(tuple(finish), tuple(back), tuple(release))


def position(move: Move, snapshot: Snapshot) -> str:
    """Where a move's host is: "source", "target", "both" or "neither"."""
    source = snapshot.aggregates.get(move.source)
    target = snapshot.aggregates.get(move.target)
    in_source = source is not None and move.host in source.hosts
    in_target = target is not None and move.host in target.hosts
    return (
        "both" if in_source and in_target else "source" if in_source else "target" if in_target else "neither"
    )


def snapshot_origins(spec: GpuHostPoolSpec, snapshot: Snapshot) -> dict[str, str]:
    """The on-demand aggregate each pool host came from, as recorded in its pool aggregate."""
    origins: dict[str, str] = {}
    for target in spec.target_pools():
        aggregate = snapshot.aggregates.get(target.aggregate)
        if aggregate is not None and aggregate.metadata:
            origins.update(recorded_origins(dict(aggregate.metadata), aggregate.hosts))
    return origins


def with_origin_record(move: Move, on_demand: Sequence[str], snapshot: Snapshot) -> Move:
    """The move with the origin record change it needs, if any (see intent.ORIGIN_PREFIX).

    A shrink forgets the record the pool it leaves holds; a grow records where the host came from,
    unless that is the first on-demand aggregate listed (the default), and clears a stale record.
    """
    key = origin_key(move.host)
    source = snapshot.aggregates.get(move.source)
    target = snapshot.aggregates.get(move.target)
    if key is None or not on_demand or source is None or target is None:
        return move
    if move.target in on_demand:
        record = OriginRecord(source.name, key, None) if key in source.metadata else None
    elif move.source in on_demand:
        wanted = move.source if move.source != on_demand[0] else None
        record = OriginRecord(target.name, key, wanted) if target.metadata.get(key) != wanted else None
    else:
        record = None
    return replace(move, origin=record) if record != move.origin else move


def _effective_members(names: Sequence[str], snapshot: Snapshot, in_flight: Sequence) -> dict[str, set[str]]:
    """Hosts of each managed aggregate, counting every move in flight as done."""
    members = {name: set(snapshot.aggregates[name].hosts) for name in names}
    for move in sorted(in_flight, key=lambda m: (m.host, m.source, m.target)):
        if move.source in members:
            members[move.source].discard(move.host)
    for move in in_flight:
        if move.target in members:
            members[move.target].add(move.host)
    return members


def _on_demand_candidates(
    on_demand: Sequence[str], members: dict[str, set[str]], rules: _Rules
) -> list[tuple[str, str]]:
    """(host, on-demand aggregate) of the hosts that may leave on-demand, best first.

    Plain tuples, not Moves: at 10,000 hosts most candidates are never taken, and building an
    object for each was a third of the planner's time.
    """
    why_not, instances = rules.why_not, rules.instances
    candidates = [
        (instances(host), index, natural_key(host), host, aggregate)
        for index, aggregate in enumerate(on_demand)
        for host in members[aggregate]
        if why_not(host) is None
    ]
    candidates.sort()
    return [(c[3], c[4]) for c in candidates]


def _leaving(
    pool: _Pool,
    members: dict[str, set[str]],
    rules: _Rules,
    on_demand: Sequence[str],
    origins: Mapping[str, str],
    zones: _Zones,
) -> list[tuple[str, str]]:
    """Hosts that may leave an oversized pool, best first, with the on-demand aggregate each returns to."""
    hosts = sorted((h for h in members[pool.target.aggregate] if rules.why_not(h) is None), key=rules.order)
    homes = [(h, origins[h] if origins.get(h) in on_demand else on_demand[0]) for h in hosts]
    return [(h, home) for h, home in homes if zones.conflict(h, pool.target.aggregate, home) is None]


def _schedule(pools: Sequence[_Pool], supply: Sequence[tuple[str, str]], budget: int | None) -> list[Move]:
    """Hand out moves one at a time to the pool furthest behind. Updates each pool's `have`."""
    moves: list[Move] = []
    free = collections.deque(supply)
    shrinking = {id(p): collections.deque(p.leaving) for p in pools}
    exhausted: set[int] = {id(p) for p in pools if p.refused}
    while budget is None or len(moves) < budget:
        ready = [
            p
            for p in pools
            if id(p) not in exhausted
            and ((p.have > p.target.desired and shrinking[id(p)]) or (p.have < p.target.desired and free))
        ]
        if not ready:
            break
        pool = min(ready, key=_Pool.urgency)
        if pool.have > pool.target.desired:
            host, home = shrinking[id(pool)].popleft()
            moves.append(Move(host, pool.target.aggregate, home, pool.target.label))
            pool.have -= 1
        else:
            taken = _take(free, pool.fits)
            if taken is None:  # every host left is in another availability zone
                exhausted.add(id(pool))
                continue
            host, source = taken
            moves.append(Move(host, source, pool.target.aggregate, pool.target.label))
            pool.have += 1
    return moves


def _take(
    free: collections.deque[tuple[str, str]], fits: Callable[[str, str], bool] | None
) -> tuple[str, str] | None:
    """The best free host that may join the pool (the first one, unless zones get in the way)."""
    if fits is None:
        return free.popleft()
    for index, (host, source) in enumerate(free):
        if fits(host, source):
            del free[index]
            return host, source
    return None


class _Zones:
    """Nova's availability-zone rule for adding a host to an aggregate, read from the snapshot.

    Nova refuses to add a host to an aggregate with an availability_zone when another aggregate
    of the host names a different zone (nova/compute/api.py, is_safe_to_update_az). A move
    removes the host from its source first, so the source does not count.
    """

    def __init__(self, snapshot: Snapshot):
        self._snapshot = snapshot
        self._zoned: dict[str, list[tuple[str, str]]] = {}  # host -> [(aggregate, zone)]
        for aggregate in snapshot.aggregates.values():
            zone = aggregate.availability_zone
            if zone:
                for host in aggregate.hosts:
                    self._zoned.setdefault(host, []).append((aggregate.name, zone))

    def conflict(self, host: str, source: str, target: str) -> tuple[str, str] | None:
        """(aggregate, zone) of the host that keeps it out of `target`, or None."""
        aggregate = self._snapshot.aggregates.get(target)
        wanted = aggregate.availability_zone if aggregate is not None else None
        if not wanted:
            return None
        for name, zone in self._zoned.get(host, ()):
            if name not in (source, target) and zone != wanted:
                return name, zone
        return None

    def fits_for(self, target: str) -> Callable[[str, str], bool] | None:
        aggregate = self._snapshot.aggregates.get(target)
        if aggregate is None or not aggregate.availability_zone or not self._zoned:
            return None
        return lambda host, source: self.conflict(host, source, target) is None


def _shared_hosts(
    where: Mapping[str, list[str]], snapshot: Snapshot, neighbours: Neighbours | None, moving: frozenset[str]
) -> dict[str, tuple[str, str, str]]:
    """{host: (our aggregate, their aggregate, their resource)} for hosts another GpuHostPool sees too."""
    if neighbours is None or not neighbours.others:
        return {}
    shared = {}
    for name, owner in sorted(neighbours.others.items()):
        aggregate = snapshot.aggregates.get(name)
        if aggregate is None:
            continue
        for host in aggregate.hosts:
            if host in where and host not in moving and host not in shared:
                shared[host] = (where[host][0], name, owner)
    return shared


def _unknown_exclusions(spec: GpuHostPoolSpec, snapshot: Snapshot) -> list[str]:
    """One line per excludeHosts entry that names no host of the cloud, with a did-you-mean."""
    entries = spec.policy.exclude_hosts
    if not entries:
        return []
    known = set(snapshot.hosts)
    for aggregate in snapshot.aggregates.values():
        known |= aggregate.hosts
    lowered = {name.lower(): name for name in known}
    lines = []
    for index, entry in enumerate(entries):
        if entry in known:
            continue
        close = difflib.get_close_matches(entry.lower(), list(lowered), n=1, cutoff=0.6)
        hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
        lines.append(
            f"policy.excludeHosts[{index}] {entry!r} matches no compute host{hint}: fix the name, so that "
            "the host it means is protected"
        )
    return lines


# Blockers that say a count cannot be reached.
_UNREACHABLE = frozenset(
    {AGGREGATE_MISSING, NOT_ENOUGH_MOVABLE_HOSTS, CANNOT_SHRINK, AVAILABILITY_ZONE_CONFLICT, ON_DEMAND_FLOOR}
)


def _guard_rails(
    spec: GpuHostPoolSpec,
    eventual: Sequence[Move],
    shortfalls: Sequence[Blocker],
    present: Sequence,
    managed: Sequence,
) -> tuple[str, str] | None:
    """(reason, why) no new move may start at all, or None. A change that needs more moves than
    policy.maxMovesPerChange, or that cannot reach every count (unless policy.allowPartial), moves
    nothing: a typo (200 for 20 hosts) must not empty on-demand before anyone reads the status."""
    limit = spec.policy.max_moves_per_change
    if len(eventual) > limit:
        return TOO_MANY_MOVES, (
            f"this change needs {len(eventual)} moves and policy.maxMovesPerChange is {limit}: nothing "
            "moves; raise the limit if you mean it, or change the counts in smaller steps"
        )
    unreachable = bool(shortfalls) or len(present) < len(managed)
    if unreachable and not spec.policy.allow_partial:
        return "Unreachable", (
            "Nothing moves until every count can be reached (policy.allowPartial: true moves what it can)"
        )
    return None


def _shortfalls(
    pools: Sequence[_Pool],
    moves: Sequence[Move],
    on_demand: Sequence[str],
    members: dict[str, set[str]],
    rules: _Rules,
    in_flight: Sequence,
    zones: _Zones,
    floor_held: int,
    spec: GpuHostPoolSpec,
) -> list[Blocker]:
    """Blockers for pools that miss their count even after `moves`, planned without a concurrency bound."""
    blockers = []
    # Hosts on their way back to on-demand will be free again for growing pools in later passes.
    returning = sum(1 for m in (*moves, *in_flight) if m.target in on_demand)
    short = [p for p in pools if p.have < p.target.desired and not p.refused]
    if short and sum(p.target.desired - p.have for p in short) > returning:
        reservoir = [(h, name) for name in on_demand for h in members[name]]
        held = _explain(rules, (h for h, _ in reservoir))
        for pool in short:
            others = [p.target.label for p in short if p is not pool]
            shared = f" (also wanted by {', '.join(others)})" if others else ""
            reason, why = NOT_ENOUGH_MOVABLE_HOSTS, held
            zoned = _zone_conflicts(zones, pool.target.aggregate, rules, reservoir)
            if zoned:
                reason = AVAILABILITY_ZONE_CONFLICT
                why = ", ".join(x for x in (zoned, held) if x)
            if floor_held:
                reason = ON_DEMAND_FLOOR
                floor = (
                    f"policy.minOnDemandHosts keeps {spec.policy.min_on_demand_hosts} hosts for on-demand "
                    f"({floor_held} movable ones among them)"
                )
                why = ", ".join(x for x in (floor, why) if x)
            blockers.append(
                Blocker(
                    pool.target.label,
                    reason,
                    f"{pool.target.label} wants {pool.target.desired} hosts and can reach {pool.have}: "
                    f"no movable host left in {', '.join(on_demand)}{shared}{': ' + why if why else ''}",
                )
            )
    for pool in pools:
        if pool.have > pool.target.desired and not pool.refused:
            stuck = _explain(rules, members[pool.target.aggregate])
            blockers.append(
                Blocker(
                    pool.target.label,
                    CANNOT_SHRINK,
                    f"{pool.target.label} wants {pool.target.desired} hosts and would still hold {pool.have}: "
                    f"hosts that cannot leave {pool.target.aggregate}: {stuck}",
                )
            )
    return blockers


def _zone_conflicts(zones: _Zones, target: str, rules: _Rules, reservoir: Sequence[tuple[str, str]]) -> str:
    """ "2 are in availability zone 'az2' (aggregate az2-hosts), not 'nova' of L40-n3-spot", or ""."""
    found: Counter[tuple[str, str]] = Counter()
    for host, source in reservoir:
        if rules.why_not(host) is None:
            conflict = zones.conflict(host, source, target)
            if conflict is not None:
                found[conflict] += 1
    if not found:
        return ""
    aggregate = zones._snapshot.aggregates[target]
    parts = [
        f"{count} {'is' if count == 1 else 'are'} in availability zone {zone!r} (aggregate {name})"
        for (name, zone), count in sorted(found.items())
    ]
    return f"{', '.join(parts)}, not {aggregate.availability_zone!r} of {target}, so Nova would refuse them"


# Hosts named per reason in a blocker: enough to act on, short enough for a condition message.
NAMED_PER_REASON = 3


def _explain(rules: _Rules, hosts: Iterable[str]) -> str:
    """ "3 have instances (gpu-1, gpu-2, gpu-7), 1 is excluded (gpu-9)": why these hosts cannot move
    (movable ones are not counted), naming the first few of each."""
    held: dict[str, list[str]] = {}
    for host in hosts:
        reason = rules.why_not(host)
        if reason is not None:
            held.setdefault(reason, []).append(host)
    # Most common reason first; ties in a fixed order, so the message is stable.
    order = list(_REASON_WORDS)
    ordered = sorted(
        held.items(),
        key=lambda item: (-len(item[1]), order.index(item[0]) if item[0] in order else len(order)),
    )
    return ", ".join(
        f"{len(names)} {_words(reason, len(names))} ({_named(names)})" for reason, names in ordered
    )


def _named(hosts: list[str]) -> str:
    first = sorted(hosts, key=natural_key)[:NAMED_PER_REASON]
    more = len(hosts) - len(first)
    return ", ".join(first) + (f", +{more} more" if more else "")


def _words(reason: str, count: int) -> str:
    words = _REASON_WORDS.get(reason)
    if words is not None:
        return words[count != 1]
    return reason  # a phrase of the pass's own, e.g. failed_this_pass(...) with Nova's answer


def failed_this_pass(message: str) -> str:
    """Why a host the pass could not move is held back, with Nova's answer (shortened)."""
    short = message if len(message) <= 160 else message[:157] + "..."
    return f"{_REASON_WORDS[FAILED_THIS_PASS][0]} ({short})"


def _pools_state(
    spec: GpuHostPoolSpec, snapshot: Snapshot, rules: _Rules, supply: Sequence[tuple[str, str]]
) -> PoolsState:
    def state(target: TargetPool) -> PoolState:
        aggregate = snapshot.aggregates.get(target.aggregate)
        hosts = tuple(sorted(aggregate.hosts, key=natural_key)) if aggregate else ()
        return PoolState(
            target.label, target.aggregate, target.desired, len(hosts), hosts, aggregate is not None
        )

    targets = {t.label: state(t) for t in spec.target_pools()}
    on_demand_hosts: set[str] = set()
    for name in spec.on_demand_aggregates():
        if name in snapshot.aggregates:
            on_demand_hosts |= snapshot.aggregates[name].hosts
    return PoolsState(
        spot=targets.get("spot"),
        runpod=targets.get("runpod"),
        contracts=tuple(s for label, s in targets.items() if is_contract_label(label)),
        on_demand=OnDemandState(
            tuple(spec.on_demand_aggregates()),
            len(on_demand_hosts),
            len(supply),
            tuple(sorted(on_demand_hosts, key=natural_key)),
        ),
    )
