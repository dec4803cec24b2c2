"""The polling cost every surface states (collector.pollreport.polling_cost) reads whole hours
from poll_hours, the poll log's hourly sums the store keeps as it writes and prunes the log,
and must state exactly what summing the log itself states, on both backends."""

from __future__ import annotations

from typing import Any

from collector.pollreport import PollingCost, polling_cost
from fleetwatch.store import open_store

T0 = 1_800_000_000 // 3600 * 3600 - 7 * 86400  # an hour boundary, a week before the anchor


def _from_the_log(db: Any, end: int, window: int = 7 * 86400) -> PollingCost:
    """What polling_cost stated before poll_hours: one sum over the log's rows."""
    usd, calls, polls, since = db.execute(
        "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), "
        "COUNT(DISTINCT COALESCE(poll_id, 'row' || id)), MIN(started_at) FROM poll_log "
        "WHERE started_at >= ? AND started_at < ?",
        [end - window, end],
    ).fetchone()
    return PollingCost(float(usd), int(calls), int(polls), int(since) if since is not None else end, end)


def _same(a: PollingCost, b: PollingCost) -> bool:
    return (round(a.usd, 9), a.api_calls, a.polls, a.since, a.end) == (
        round(b.usd, 9),
        b.api_calls,
        b.polls,
        b.since,
        b.end,
    ) and a.sentence() == b.sentence()


def _polls(start: int, count: int, every: int = 700) -> list[list[dict[str, Any]]]:
    """`count` polls `every` seconds from `start` (not on hour boundaries), three sources each;
    every fifth row is an old-style row without a poll_id."""
    out = []
    for n in range(count):
        at = start + n * every
        out.append(
            [
                {
                    "poll_id": None if (n + k) % 5 == 0 else f"poll-{n}",
                    "started_at": at,
                    "finished_at": at + 4,
                    "source": source,
                    "account": "123456789012",
                    "region": "us-east-1",
                    "status": "ok",
                    "api_calls": 1 + k,
                    "cost_usd": round(0.00001 * (n % 7 + k + 1), 6),
                }
                for k, source in enumerate(("cloudwatch", "discovery", "sqs"))
            ]
        )
    return out


def test_polling_cost_from_hourly_sums_equals_the_log_summed(store_target: Any) -> None:
    with open_store(store_target) as store:
        assert polling_cost(store.db, T0).polls == 0 and polling_cost(store.db, T0).since == T0
        for rows in _polls(T0 + 123, 1000):  # ~8 days of polls, one each 700 s
            store.record_polls(rows)
        assert store.db.execute("SELECT COUNT(*) FROM poll_hours").fetchone()[0] > 7 * 24
        # Windows ending on and off hour boundaries, before the first poll, mid-log, after the
        # last, and shorter than an hour (no whole hour inside: the log alone is read).
        for end in (
            T0,
            T0 + 500,
            T0 + 3600,
            T0 + 2 * 86400 + 1234,
            T0 + 7 * 86400,
            T0 + 8 * 86400 + 3599,
            T0 + 9 * 86400,
        ):
            for window in (7 * 86400, 86400, 1800, 3600):
                got, want = polling_cost(store.db, end, window), _from_the_log(store.db, end, window)
                assert _same(got, want), (end, window, got, want)
        assert polling_cost(store.db, T0 + 8 * 86400).polls > 800

        # Pruning the log prunes its sums: hours wholly before the cut go, the hour the cut falls
        # in is summed again from the rows left.
        cut_now = T0 + 9 * 86400 + 1800
        store.prune_history(cut_now, 4 * 86400 + 1000, 400 * 86400, 400 * 86400)
        cut = cut_now - (4 * 86400 + 1000)
        assert store.db.execute("SELECT MIN(started_at) FROM poll_log").fetchone()[0] >= cut
        assert store.db.execute("SELECT MIN(hour) FROM poll_hours").fetchone()[0] == cut // 3600 * 3600
        for end in (cut, cut + 1, T0 + 8 * 86400, cut_now):
            got, want = polling_cost(store.db, end), _from_the_log(store.db, end)
            assert _same(got, want), (end, got, want)
            assert got.since >= cut or got.polls == 0
