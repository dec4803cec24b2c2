"""Silent queue growth (SIGNALS.md §4): a backlog that grows with no error anywhere, the age of
the oldest message against the retention period (older messages are deleted: lost), a consumer
that stopped, a DLQ that received messages, and a DLQ that expires messages before its source.

SQS publishes metrics only while a queue is active, so absent datapoints mean an idle queue,
never a depth of zero."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.base import CRITICAL, INFO, WARNING, Finding, Inputs, NoData, Resource, Series, detector, evidence, pct

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {("ApproximateNumberOfMessagesVisible", "Maximum"), ("ApproximateAgeOfOldestMessage", "Maximum"),
         ("NumberOfMessagesSent", "Sum"), ("NumberOfMessagesDeleted", "Sum"), ("Errors", "Sum")}

TREND = 15 * 60
STOPPED = 15 * 60  # three slow-tier (5-minute) points of sends and deletes
LOSS_WARN, LOSS_CRIT = 0.5, 0.8
MIN_BACKLOG = 20  # messages: below this a "growing" backlog is noise


def _fmt_duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


@detector("queues")
def queues(inp: Inputs) -> Iterator[Finding | NoData]:
    for q in inp.of_kind("sqs"):
        visible = inp.get(q.id, "ApproximateNumberOfMessagesVisible", "Maximum")
        age = inp.get(q.id, "ApproximateAgeOfOldestMessage", "Maximum")
        retention = float(q.facts.get("retention") or 345600)
        if q.facts.get("retention_shorter_than_source"):
            sources = ", ".join(q.facts.get("dlq_of", []))
            yield Finding("queues", q.id, INFO, f"{q.name}: DLQ keeps messages {_fmt_duration(retention)}, no longer than its "
                          f"source {sources} — messages can expire before anyone looks", inp.now, evidence(limit=retention),
                          cause="DLQ expiry counts from the original enqueue time",
                          fix=f"Set {q.name}'s MessageRetentionPeriod longer than its sources' (up to 14 days).", key="dlq-retention")
        if not visible.since(inp.now - TREND) and not age.since(inp.now - TREND):
            yield NoData(q.id, "no datapoints: an inactive queue (SQS publishes nothing while idle)")
            continue
        yield from _loss_risk(inp, q, age, retention)
        if q.facts.get("is_dlq"):
            yield from _dlq(inp, q, visible)
        else:
            yield from _growth(inp, q, visible, age)


def _loss_risk(inp: Inputs, q: Resource, age: Series, retention: float) -> Iterator[Finding]:
    latest = age.latest
    if latest is None or latest[0] < inp.now - TREND or latest[1] < retention * LOSS_WARN:
        return
    share = latest[1] / retention
    rising = age.since(inp.now - TREND).slope_per_minute()[0] > 0
    left = retention - latest[1]
    yield Finding("queues", q.id, CRITICAL if share >= LOSS_CRIT else WARNING,
                  f"{q.name}: oldest message is {_fmt_duration(latest[1])} old, {pct(share)} of the "
                  f"{_fmt_duration(retention)} retention — messages are deleted in ~{_fmt_duration(left)}",
                  age.run_start(lambda v: v >= retention * LOSS_WARN) or latest[0], evidence(limit=retention, age=age),
                  cause="messages are not being consumed fast enough" if rising else "old messages stuck in the queue",
                  fix=f"Drain {q.name} now (scale the consumer, fix its errors), or raise its retention to buy time.",
                  key="loss-risk")


def _consumers(inp: Inputs, q: Resource) -> list[Resource]:
    names = set(q.facts.get("consumers") or [])
    return [r for r in inp.of_kind("lambda") if r.name in names and r.account == q.account and r.region == q.region]


def _growth(inp: Inputs, q: Resource, visible: Series, age: Series) -> Iterator[Finding]:
    start = inp.now - TREND
    vis = visible.since(start)
    sent = inp.get(q.id, "NumberOfMessagesSent", "Sum").since(start)
    deleted = inp.get(q.id, "NumberOfMessagesDeleted", "Sum").since(start)
    latest = vis.latest
    if latest is None:
        return
    consumers = _consumers(inp, q)
    stopped_window = inp.now - STOPPED
    recent_sent = sent.since(stopped_window).sum()
    recent_deleted = deleted.since(stopped_window)
    if recent_sent > 0 and len(recent_deleted) >= 2 and recent_deleted.sum() == 0 and latest[1] > 0:
        who = ", ".join(c.name for c in consumers) or "its consumer"
        yield Finding("queues", q.id, CRITICAL,
                      f"{q.name}: {recent_sent:.0f} messages sent and none deleted in 15 min — {who} stopped consuming; "
                      f"{latest[1]:.0f} waiting", recent_deleted.points[0][0], evidence(sent=sent, deleted=deleted, visible=vis),
                      cause=f"{who} is not deleting messages (disabled trigger, crashed poller, or every batch failing)",
                      fix=f"Check {who}'s event source mapping state and errors; re-enable or fix it.", key="stopped")
        return
    slope, r2 = vis.slope_per_minute()
    age_slope, _ = age.since(start).slope_per_minute()
    inflow, outflow = sent.sum(), deleted.sum()
    if len(vis) < 8 or slope <= 0 or r2 < 0.6 or latest[1] < MIN_BACKLOG or age_slope <= 0:
        return
    if sent and deleted and outflow >= inflow:
        return  # bursty but draining
    net = (outflow - inflow) / (TREND / 60)  # messages a minute
    drain = "never at this rate" if net <= 0 else f"~{_fmt_duration(latest[1] / net * 60)}"
    errors = sum(inp.get(c.id, "Errors", "Sum").since(start).sum() for c in consumers)
    cause = (f"consumer {', '.join(c.name for c in consumers)} erroring ({errors:.0f} errors in 15 min)" if errors > 0
             else "inflow above outflow with no errors anywhere: the consumer is too slow or too few")
    yield Finding("queues", q.id, WARNING,
                  f"{q.name}: backlog {latest[1]:.0f} and rising {slope:.1f}/min for 15 min, oldest message "
                  f"{_fmt_duration(age.latest[1]) if age.latest else '?'}; time to drain {drain}",
                  vis.points[0][0], evidence(visible=vis, age=age.since(start), sent=sent, deleted=deleted),
                  cause=cause, fix=f"Scale {q.name}'s consumer (batch size, concurrency) or fix what slows it.", key="growth")


def _dlq(inp: Inputs, q: Resource, visible: Series) -> Iterator[Finding]:
    window = visible.since(inp.now - TREND)
    latest = window.latest
    if latest is None or latest[1] <= 0:
        return
    earlier = visible.before(window.points[0][0])
    baseline = earlier.latest[1] if earlier.latest else 0.0  # inactive before: it was empty
    grew = latest[1] - min([baseline, *window.values])
    if grew <= 0:
        return
    sources = ", ".join(q.facts.get("dlq_of", [])) or "its source"
    yield Finding("queues", q.id, CRITICAL if latest[1] >= 10_000 else WARNING,
                  f"{q.name}: {grew:.0f} messages dead-lettered from {sources} in 15 min ({latest[1]:.0f} waiting)",
                  window.run_start(lambda v: v > baseline) or latest[0], evidence(visible=visible.since(inp.now - 3600)),
                  cause=f"{sources}'s consumer keeps failing on these messages", key="dlq",
                  fix=f"Find why {sources}'s consumer fails (its errors, a sample message), fix it, then redrive {q.name}.")
