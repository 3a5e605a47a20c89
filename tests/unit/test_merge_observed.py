"""Nova's answers to our own add/remove show aggregates changed behind our back (pure)."""

from __future__ import annotations

from gpupool.model import Aggregate, Host, Move, MoveResult, Observed, Outcome, Snapshot
from gpupool.reconciler import merge_observed


def snapshot(**members) -> Snapshot:
    hosts = {h: Host(h, h, "up", "enabled", None, 0) for hs in members.values() for h in hs}
    aggs = {
        name.replace("_", "-"): Aggregate(i, name.replace("_", "-"), frozenset(hs), {})
        for i, (name, hs) in enumerate(members.items())
    }
    return Snapshot(aggregates=aggs, hosts=hosts)


def result(host, source, target, *observed) -> MoveResult:
    return MoveResult(Move(host, source, target, "spot"), Outcome.MOVED, "", tuple(observed))


def test_a_host_added_by_someone_else_is_learned():
    snap = snapshot(od=["h1", "h2", "h3"], spot=["h1"])  # h1 already moved (applied) by us
    seen = Observed("spot", frozenset({"h1", "h3"}), at=10.0)
    merged = merge_observed(snap, result("h1", "od", "spot", seen), touched={"h1"}, seen_at={})
    assert merged.aggregates["spot"].hosts == {"h1", "h3"}


def test_our_own_moves_win_over_older_answers():
    snap = snapshot(od=["h3"], spot=["h1", "h2"])  # h1 and h2 moved by this pass
    stale = Observed("spot", frozenset({"h1"}), at=5.0)  # answered before h2's add
    merged = merge_observed(snap, result("h1", "od", "spot", stale), touched={"h1", "h2"}, seen_at={})
    assert merged.aggregates["spot"].hosts == {"h1", "h2"}


def test_an_older_answer_never_overrides_a_newer_one():
    snap = snapshot(od=["h2", "h3"], spot=["h1"])
    seen_at = {"spot": 20.0}
    older = Observed("spot", frozenset({"h1", "h3"}), at=10.0)
    merged = merge_observed(snap, result("h1", "od", "spot", older), touched={"h1"}, seen_at=seen_at)
    assert merged.aggregates["spot"].hosts == {"h1"}
