"""Who acts among peered replicas: kopf's rule on the ClusterKopfPeering records, seniority priorities."""

from __future__ import annotations

import datetime as dt
import random

from gpupool.peering import (
    PeeringLeadership,
    outranking_peers,
    parse_records,
    seniority_priority,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)


def record(priority: int, seconds_ago: float = 0, lifetime: int = 15) -> dict:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


class FakeKube:
    identity = "me"


def leadership(priority: int = 10, settle_s: float = 3.0) -> PeeringLeadership:
    return PeeringLeadership(FakeKube(), "gpupool-operator", priority, 15, poll_s=1.0, settle_s=settle_s)


def test_an_earlier_start_outranks_a_later_one_and_ties_are_broken():
    rng = random.Random(1)
    assert seniority_priority(1000.0, rng) > seniority_priority(1000.002, rng)
    same_moment = {seniority_priority(1000.0, random.Random(seed)) for seed in range(20)}
    assert len(same_moment) > 1
    assert seniority_priority(4_000_000_000.0) < 2**53  # JSON-safe, even in 2096


def test_records_are_read_as_kopf_writes_them():
    records = parse_records({"a": record(5, seconds_ago=20), "b": record(3), "junk": "x"})
    by_id = {r.identity: r for r in records}
    assert set(by_id) == {"a", "b"}
    assert not by_id["a"].live(NOW) and by_id["b"].live(NOW)
    assert parse_records(None) == []


def test_higher_or_equal_live_priorities_outrank_dead_ones_do_not():
    records = parse_records(
        {"me": record(10), "equal": record(10), "higher-dead": record(99, 60), "lower": record(1)}
    )
    assert outranking_peers("me", 10, records, NOW) == ["equal"]


def test_leads_only_after_its_own_record_has_settled_and_nobody_outranks_it():
    lead = leadership(settle_s=3.0)
    assert not lead.observe(None, NOW, clock=0.0)  # no peering object
    assert not lead.observe(parse_records({}), NOW, clock=0.0)  # kopf has not written our record
    alone = parse_records({"me": record(10)})
    assert not lead.observe(alone, NOW, clock=1.0)  # settling
    assert not lead.leading.is_set()
    assert lead.observe(alone, NOW, clock=4.5)
    assert lead.leading.is_set()
    older = parse_records({"me": record(10), "older": record(11)})
    assert not lead.observe(older, NOW, clock=5.0)
    assert not lead.leading.is_set()
    older_died = parse_records({"me": record(10), "older": record(11, seconds_ago=16)})
    assert lead.observe(older_died, NOW, clock=6.0)


def test_a_younger_peer_never_takes_over():
    lead = leadership(priority=10, settle_s=0)
    assert lead.observe(parse_records({"me": record(10), "younger": record(9)}), NOW, clock=0.0)


def test_a_record_kopf_stops_renewing_while_the_api_answers_breaks_the_replica():
    """kopf's keep-alive can die without ending kopf.run: the watchdog turns that into an exit."""
    lead = leadership(priority=10, settle_s=0.0)
    start = lead._started
    mine = parse_records({"me": record(10)})
    assert lead.observe(mine, NOW, start + 1)
    assert not lead.broken.is_set()
    stale = parse_records({"me": record(10, seconds_ago=3600)})  # kopf stopped writing it
    assert not lead.observe(stale, NOW, start + 30)
    assert not lead.broken.is_set()  # not yet: within the watchdog's bound (60 s here)
    assert not lead.observe(stale, NOW, start + 1 + lead.watchdog_s + 1)
    assert lead.broken.is_set() and "has not renewed this replica's peering record" in lead.why_broken
    assert not lead.leading.is_set()
