"""What a place's next owner needs, kept in the store (issue 20, stage 1): when a place changes
hands (its agent killed, another joining), the agent that takes it over has none of the old
owner's memory. The series still to be read again (an answer that was not Complete) and when the
place last read its full re-read window are in the store, so it resumes with no gap."""

from __future__ import annotations

from typing import Any

from collector.catalog import ALIGN
from fleetwatch.store import SeriesKey, open_store
from simulator.faultproxy import FaultProxy, Rule, json_rewrite
from tests.conftest import ANCHOR, make_collector, set_clock

PROD = "123456789012"


def test_a_new_owner_reads_again_what_the_old_owner_still_owed(fleet: Any, store_target: Any) -> None:
    """Agent A's answer for one series comes back PartialData (botocore cloudwatch 2010-08-01
    service-2.json, MetricDataResult.StatusCode: "PartialData means that an incomplete set of data
    points were returned"); A dies. Agent B, a new collector with nothing in memory, takes the
    place two hours later (far past the trailing re-read) and reads that hour again: no gap."""

    def spoil(call: Any, body: dict[str, Any]) -> None:
        for r in body.get("MetricDataResults", []):
            if r.get("Label") == "ClaimedAccountConcurrency":
                r.update(
                    StatusCode="PartialData", Timestamps=[], Values=[], Messages=[{"Code": "PartialData", "Value": "x"}]
                )

    rid = f"lambda_account/{PROD}/us-east-1/account"
    spoilt = SeriesKey(rid, "AWS/Lambda", "ClaimedAccountConcurrency", (), "Maximum", 60)
    with open_store(store_target) as a_store, FaultProxy(fleet.endpoint) as proxy:
        proxy.set_rules(
            [Rule(mode="rewrite", service="monitoring", operation="GetMetricData", rewrite=json_rewrite(spoil))]
        )
        a = make_collector(fleet, a_store, regions=["us-east-1"], roles=[], endpoint=proxy.endpoint, backfill=3600)
        a.poll()
        assert proxy.stats().get("injected", 0) >= 1
        assert a_store.series_samples(spoilt, ANCHOR - 3600, ANCHOR) == []
        assert a_store.cursor(PROD, "us-east-1", "fast") == ANCHOR  # the other series moved on
        assert a_store.rereads(PROD, "us-east-1") == {spoilt.key: ANCHOR - 3600}
        assert a_store.cursor(PROD, "us-east-1", "full") == ANCHOR  # the first poll read the full window
        # A is gone (nothing of it is used again): only the store remains.
    set_clock(fleet, ANCHOR + 7200)
    with open_store(store_target) as b_store:
        b = make_collector(fleet, b_store, regions=["us-east-1"], roles=[], backfill=3600)
        b.poll()
        stamps = [ts for ts, _ in b_store.series_samples(spoilt, ANCHOR - 3600, ANCHOR + 7200 - 300)]
        assert stamps == list(range(ANCHOR - 3600, ANCHOR + 7200 - 300, 60)), "B read A's owed hour again"
        assert b_store.rereads(PROD, "us-east-1") == {}, "settled once answered Complete"


def test_a_new_owner_keeps_the_place_s_full_re_read_rhythm(fleet: Any, store_target: Any) -> None:
    """The full re-read window comes once every poll.slow_interval for the place, whoever polls
    it: B, taking the place a minute after A read the full window, reads the short one."""
    with open_store(store_target) as store:
        a = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], backfill=900, lookback=900, short_lookback=180
        )
        a.poll()
        assert store.cursor(PROD, "us-east-1", "full") == ANCHOR
        set_clock(fleet, ANCHOR + 60)
        b = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], backfill=900, lookback=900, short_lookback=180
        )
        (pp, chunks) = b._plan(next(p for p in b.aws.places() if p.account == PROD), ANCHOR + 60, None)
        # (the full window would start 15 minutes back)
        assert pp.full_end is None and min(c.start for c in chunks) == (ANCHOR + 60 - 180) // ALIGN * ALIGN, [
            (c.start, c.end) for c in chunks
        ]
        set_clock(fleet, ANCHOR + a.slow_interval)
        (pp, _) = b._plan(next(p for p in b.aws.places() if p.account == PROD), ANCHOR + a.slow_interval, None)
        assert pp.full_end == ANCHOR + a.slow_interval, "a slow interval after A's full read, B reads the full window"
