"""Silent queue growth (SIGNALS.md §4): a backlog that grows with no error anywhere, the age of
the oldest message against the retention period (older messages are deleted: lost), a consumer
that stopped, a DLQ that received messages, and a DLQ that expires messages before its source.

SQS publishes metrics only while a queue is active, so absent datapoints mean an idle queue,
never a depth of zero. A queue that wakes publishes its first metrics up to 15 minutes late
(SQS Developer Guide, "Monitoring Amazon SQS queues using CloudWatch",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html,
read in its zh_TW edition at docs.aws.haqm.com: a queue inactive for more than six hours is
considered asleep and stops delivering metrics; its notes say CloudWatch metrics are delayed by up
to 15 minutes when a queue is activated from an inactive state, and that a GetQueueAttributes
request activates a queue; SIGNALS.md §4): while CloudWatch is silent, the live depth the collector
reads with GetQueueAttributes (fleetwatch/Probe SQS.ApproximateNumberOfMessages) decides, and that
read itself keeps the queue active, so CloudWatch resumes publishing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from detectors.base import (
    CRITICAL,
    INFO,
    WARNING,
    Finding,
    Inputs,
    NoData,
    Resource,
    Series,
    count_text,
    detector,
    evidence,
    pct,
    series_evidence,
)
from detectors.limits import send_rate

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {
    ("ApproximateNumberOfMessagesVisible", "Maximum"),
    ("ApproximateAgeOfOldestMessage", "Maximum"),
    ("NumberOfMessagesSent", "Sum"),
    ("NumberOfMessagesDeleted", "Sum"),
    ("Errors", "Sum"),
    ("Throttles", "Sum"),
    ("SQS.ApproximateNumberOfMessages", "Value"),
    # The SES account's quota gauges (GetAccount SendQuota, stored by the collector's SES probe on
    # every poll): whether SES was refusing mail in the last minutes, after its facts have changed.
    ("SES.SentLast24Hours", "Value"),
    ("SES.Max24HourSend", "Value"),
    ("Send", "Sum"),  # SES's accepted sends against its maximum send rate (limits.send_rate)
}
LIVE = ("SQS.ApproximateNumberOfMessages", "Value")  # GetQueueAttributes, stored by the collector's SQS probe

TREND = 15 * 60
STOPPED = 15 * 60  # three slow-tier (5-minute) points of sends and deletes
LOSS_WARN, LOSS_CRIT = 0.5, 0.8
MIN_BACKLOG = 20  # messages: below this a "growing" backlog is noise
MIN_AGE = 120  # seconds: a backlog whose oldest message is younger is being worked through
MIN_R2 = 0.6
LEAK = 60 * 60
LEAK_SPANS = (LEAK, 30 * 60)  # a slow leak: the longest span that shows it (30 min once an hour is not loaded)
MIN_LEAK = 30  # messages the backlog grew by over the span
DRAINING = 5 * 60
DRAIN_FROM = 10 * 60
SURGE, KEEPING_UP = 1.5, 0.97  # sends up half again; deletes within SQS's count noise of sends
SES_QUOTA_USED = 0.95


def _fmt_duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


@detector("queues")
def queues(inp: Inputs) -> Iterator[Finding | NoData]:
    for q in inp.due("sqs"):
        visible = inp.get(q.id, "ApproximateNumberOfMessagesVisible", "Maximum")
        age = inp.get(q.id, "ApproximateAgeOfOldestMessage", "Maximum")
        retention = float(q.facts.get("retention") or 345600)
        # FIFO DLQs restart the clock when a message moves in, so their retention need not
        # outlive the source's (SQS "Setting-up dead-letter queue retention").
        if q.facts.get("retention_shorter_than_source") and not q.facts.get("fifo"):
            sources = ", ".join(q.facts.get("dlq_of", []))
            yield Finding(
                "queues",
                q.id,
                INFO,
                f"{q.name}: DLQ keeps messages {_fmt_duration(retention)}, no longer than its "
                f"source {sources} — messages can expire before anyone looks",
                inp.now,
                evidence(limit=retention),
                cause="DLQ expiry counts from the original enqueue time",
                fix=f"Set {q.name}'s MessageRetentionPeriod longer than its sources' (up to 14 days).",
                key="dlq-retention",
            )
        if not visible.since(inp.now - TREND) and not age.since(inp.now - TREND):
            live = _live(inp, q)
            if not live.latest or live.latest[1] <= 0:
                yield NoData(q.id, "no datapoints: an inactive queue (SQS publishes nothing while idle)")
            elif q.facts.get("is_dlq"):
                # Waking: CloudWatch's first points are still to come; the live depth says it holds messages.
                yield from _dlq(
                    inp,
                    q,
                    live,
                    source="live depth (GetQueueAttributes; "
                    "CloudWatch publishes a waking queue's metrics up to 15 min late)",
                )
            continue
        yield from _loss_risk(inp, q, age, retention, _spent_before(inp, q))
        if q.facts.get("is_dlq"):
            yield from _dlq(inp, q, visible)
        else:
            yield from _growth(inp, q, visible, age)


def _live(inp: Inputs, q: Resource) -> Series:
    """The live depth (GetQueueAttributes ApproximateNumberOfMessages) of the last hour: the
    probe's stored points plus its latest reading from the queue's facts (a pass run at the
    poll's own second does not load a point stamped that second)."""
    stored = inp.get(q.id, *LIVE).since(inp.now - 3600)
    at, value = q.facts.get("live_at"), q.facts.get("live_messages")
    if (
        at is None
        or value is None
        or not inp.now - TREND <= int(at) <= inp.now
        or any(t == int(at) for t, _ in stored.points)
    ):
        return stored
    return Series(tuple(sorted((*stored.points, (int(at), float(value))))), stored.period or 60)


def _spent_before(inp: Inputs, q: Resource) -> tuple[float, float] | None:
    """For a standard DLQ, how long its messages had already lived in their source queue when
    they moved in, as (at least, at most) seconds; None for any other queue.

    SQS ("Setting-up dead-letter queue retention", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html):
    for standard queues "the expiration of a message is always based on its original enqueue
    timestamp. When a message is moved to a dead-letter queue, the enqueue timestamp is
    unchanged. The ApproximateAgeOfOldestMessage metric indicates when the message moved to the
    dead-letter queue" — so a DLQ's age undercounts by the time spent in the source. For FIFO
    queues "the enqueue timestamp resets when the message is moved": the age is the whole story.
    At least: maxReceiveCount receives, each hiding the message for the source's visibility
    timeout before it came back (unless its consumer shortened that with ChangeMessageVisibility);
    at most: the source's retention (it would have expired there)."""
    if not q.facts.get("is_dlq") or q.facts.get("fifo"):
        return None
    names = set(q.facts.get("dlq_of") or [])
    sources = inp.named("sqs", q.account, q.region, names)
    if not sources:
        return 0.0, 345600.0  # sources not known: SQS's default retention (4 days) as the bound
    least = min(
        float(s.facts.get("max_receive_count") or 1) * float(s.facts.get("visibility_timeout") or 30) for s in sources
    )
    most = max(float(s.facts.get("retention") or 345600) for s in sources)
    return least, max(least, most)


def _loss_risk(
    inp: Inputs, q: Resource, age: Series, retention: float, spent: tuple[float, float] | None = None
) -> Iterator[Finding]:
    """The oldest message against the retention period. A standard DLQ's messages expire from
    their first enqueue in the source (`spent`: see _spent_before), so what is known to have
    been spent there counts too and the earliest deletion is named; a FIFO DLQ's from the move."""
    latest = age.latest
    least, most = spent or (0.0, 0.0)
    if latest is None or latest[0] < inp.now - TREND or latest[1] + least < retention * LOSS_WARN:
        return
    lived = latest[1] + least
    share = lived / retention
    rising = age.since(inp.now - TREND).slope_per_minute()[0] > 0
    left = retention - lived
    if spent is None:
        title = (
            f"{q.name}: oldest message is {_fmt_duration(latest[1])} old, {pct(share)} of the "
            f"{_fmt_duration(retention)} retention — messages are deleted in ~{_fmt_duration(left)}"
        )
    else:
        soonest = max(0.0, retention - latest[1] - most)
        title = (
            f"{q.name}: oldest message {_fmt_duration(latest[1])} in this DLQ plus at least {_fmt_duration(least)} in "
            f"{', '.join(q.facts.get('dlq_of') or []) or 'its source'} before, {pct(share)} of the "
            f"{_fmt_duration(retention)} retention counted from when it was first sent — deleted in "
            f"{_fmt_duration(soonest)} to {_fmt_duration(left)}"
        )
    ev = evidence(limit=retention, age=age, units={"age": "s", "limit": "s"})
    if spent is not None:
        ev["spent_in_source_s"] = {"at_least": least, "at_most": most}
    yield Finding(
        "queues",
        q.id,
        CRITICAL if share >= LOSS_CRIT else WARNING,
        title,
        age.run_start(lambda v: v + least >= retention * LOSS_WARN) or latest[0],
        ev,
        cause="messages are not being consumed fast enough" if rising else "old messages stuck in the queue",
        fix=f"Drain {q.name} now (scale the consumer, fix its errors), or raise its retention to buy time.",
        key="loss-risk",
    )


MIN_CONSUMER_ERRORS = 3  # failed invocations in the window that make a consumer "failing", not "stopped"


def _consumers(inp: Inputs, q: Resource) -> list[Resource]:
    names = set(q.facts.get("consumers") or [])
    return inp.named("lambda", q.account, q.region, names)


def _ses_refusing(inp: Inputs, q: Resource, consumers: list[Resource]) -> tuple[str, str] | None:
    """(cause, fix) when a consumer sends mail through SES (its `uses`, from its environment)
    and the SES account in its place refuses mail: the sandbox (only verified recipients, 200 a
    day — SES "Request production access" docs), the daily quota used up, sending disabled or
    paused. Then the backlog is SES's doing, not a consumer that stopped."""
    senders = [c for c in consumers if any(str(u).startswith("ses:") for u in c.facts.get("uses") or [])]
    ses = next((r for r in inp.of_kind("ses") if r.account == q.account and r.region == q.region), None)
    if not senders or ses is None:
        return None
    f = ses.facts
    quota, sent = float(f.get("max_24h_send") or 0), float(f.get("sent_last_24h") or 0)
    why = []
    if f.get("production_access") is False:
        why.append("still in the SES sandbox (verified recipients only)")
    if quota and sent / quota >= SES_QUOTA_USED:
        why.append(f"{count_text(sent)} of {count_text(quota)} daily sends used")
    if f.get("sending_enabled") is False or f.get("enforcement_status") == "SHUTDOWN":
        why.append("sending paused for the account")
    capped = send_rate(inp, ses)
    if capped is not None:
        why.append(
            f"sending at its maximum send rate ({capped[0]:.1f} of {capped[1]:g} mails a second): "
            "SES throttles the rest"
        )
    names = ", ".join(c.name for c in senders)
    if not why:
        until = _ses_refused_until(inp, ses)
        if until is None:
            return None
        # SES stopped refusing minutes ago (production access came, or the quota was raised), but
        # the queue's sends and deletes land a slow-tier poll late and still read "none deleted":
        # the backlog is still SES's doing, and the consumer is draining it now.
        ago = max(0, (inp.now - until) // 60)
        return (
            f"SES {ses.region} refused {names}'s mail until {ago} min ago (sandbox or daily quota); it accepts mail "
            f"now ({count_text(quota)} a day) and the backlog drains as {names} retries",
            f"Nothing to do on {names}: it is working. Watch {q.name} drain; if it does not within "
            f"{STOPPED // 60} min, read {names}'s errors for SES refusals.",
        )
    errors = sum(
        inp.get(c.id, "Errors", "Sum").since(inp.now - TREND).sum()
        + inp.get(c.id, "Throttles", "Sum").since(inp.now - TREND).sum()
        for c in senders
    )
    failing = f" ({count_text(errors)} failed invocations in 15 min)" if errors else ""
    return (
        f"SES {ses.region} refuses {names}'s mail{failing}: " + "; ".join(why),
        (
            f"Ask AWS for a higher maximum send rate for this region and pace {names} at or under it; the queue "
            f"drains at the rate SES accepts. Do not scale {names} up: more senders are throttled more."
            if capped is not None and len(why) == 1
            else "Request SES production access (or a higher sending quota) for this region; the queue drains once "
            f"mail is accepted. Do not re-enable or scale {names}: it is working."
        ),
    )


# The SES sandbox: "You can send a maximum of 200 messages per 24-hour period", to verified
# addresses only (SES Developer Guide, "Request production access",
# https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html). A quota gauge at or
# under it reads as the sandbox; production quotas are larger.
SANDBOX_QUOTA = 200
SES_RECENT = STOPPED + 5 * 60  # the stopped window, plus the slow tier's lag on sends and deletes
# How far back from `now` a queue's evaluation looks (incremental pass), and the one time in its
# facts it holds against `now` (the live depth's reading, used for TREND after it).
HORIZONS = frozenset({TREND, STOPPED, 3600, SES_RECENT, *LEAK_SPANS, DRAINING, DRAIN_FROM})
FACT_TIMES = {"sqs": lambda facts: [int(facts["live_at"])] if facts.get("live_at") is not None else []}


def _ses_refused_until(inp: Inputs, ses: Resource) -> int | None:
    """When SES last refused mail in the last SES_RECENT seconds, from its stored quota gauges:
    the sandbox's quota, or the daily quota used up (SES_QUOTA_USED); None if it did not."""
    since = inp.now - SES_RECENT
    quota = dict(inp.get(ses.id, "SES.Max24HourSend", "Value").since(since).points)
    sent = dict(inp.get(ses.id, "SES.SentLast24Hours", "Value").since(since).points)
    refused = [
        t for t, q in quota.items() if 0 < q <= SANDBOX_QUOTA or (q > 0 and sent.get(t, 0.0) / q >= SES_QUOTA_USED)
    ]
    return max(refused) if refused else None


def _trend(vis: Series, age: Series, span: int, now: int) -> tuple[float, float] | None:
    """(slope per minute, R²) of a backlog rising steadily over the last `span` seconds, with the
    age of its oldest message rising too; None when it is not (too few points, falling, or
    draining in its newest minutes)."""
    v = vis.since(now - span)
    if len(v) < 3 or v.points[-1][0] - v.points[0][0] < span * 0.8:
        return None
    slope, r2 = v.slope_per_minute()
    a = age.since(now - span)
    age_slope, _ = a.slope_per_minute()
    # Draining now: the newest five minutes fall, whatever the window's trend says.
    newest = v.since(now - DRAINING)
    if slope <= 0 or r2 < MIN_R2 or age_slope <= 0 or (len(newest) >= 3 and newest.slope_per_minute()[0] < 0):
        return None
    return slope, r2


def _per_minute(series: Series, start: int, end: int) -> float | None:
    part = Series(tuple(p for p in series.points if start <= p[0] < end), series.period)
    if not part:
        return None
    return part.sum() / (len(part) * part.period / 60)


def _traffic_driven(sent: Series, deleted: Series, now: int) -> bool:
    """A backlog from a surge in traffic that the consumer is keeping pace with: sends up at least
    half again on the half hour before, and deletes up with them (within the ±few % that SQS's
    service-side counts wobble by). It drains when the surge ends."""
    before = _per_minute(sent, now - LEAK, now - TREND)
    s_now, d_now = _per_minute(sent, now - TREND, now), _per_minute(deleted, now - TREND, now)
    return bool(before and s_now and d_now is not None and s_now >= SURGE * before and d_now >= KEEPING_UP * s_now)


def _drain(vis: Series, now: int) -> str:
    """Time to drain from what the backlog itself did in its newest minutes (sent and deleted
    counts include retries — SQS docs: do not use them for the queue's state)."""
    recent = vis.since(now - DRAINING)
    if len(recent) < 3:
        recent = vis.since(now - DRAIN_FROM)
    slope, _ = recent.slope_per_minute()
    latest = recent.latest
    if latest is None:
        return "unknown"
    if slope >= 0:
        return "never at this rate"
    return f"~{_fmt_duration(latest[1] / -slope * 60)}"


def _growth(inp: Inputs, q: Resource, visible: Series, age: Series) -> Iterator[Finding]:
    start = inp.now - TREND
    vis = visible.since(start)
    sent_all = inp.get(q.id, "NumberOfMessagesSent", "Sum")
    deleted_all = inp.get(q.id, "NumberOfMessagesDeleted", "Sum")
    sent, deleted = sent_all.since(start), deleted_all.since(start)
    latest = vis.latest
    if latest is None:
        return
    consumers = _consumers(inp, q)
    ses = _ses_refusing(inp, q, consumers)
    stopped_window = inp.now - STOPPED
    recent_sent = sent.since(stopped_window).sum()
    recent_deleted = deleted.since(stopped_window)
    if recent_sent > 0 and len(recent_deleted) >= 2 and recent_deleted.sum() == 0 and latest[1] > 0:
        who = ", ".join(c.name for c in consumers) or "its consumer"
        if ses is not None:
            title = (
                f"{q.name}: {count_text(recent_sent)} messages sent and none "
                f"deleted in 15 min — {ses[0]}; {count_text(latest[1])} waiting"
            )
            cause, fix = ses
        else:
            # Invocations that fail are a consumer at work, not one that stopped (the mail queue
            # behind SES, the minutes after production access came, still reads none deleted).
            failing = sum(inp.get(c.id, "Errors", "Sum").since(stopped_window).sum() for c in consumers)
            doing = (
                f"failing ({count_text(failing)} errors in 15 min)"
                if failing >= MIN_CONSUMER_ERRORS
                else "stopped consuming"
            )
            title = (
                f"{q.name}: {count_text(recent_sent)} messages sent and none "
                f"deleted in 15 min — {who} {doing}; {count_text(latest[1])} waiting"
            )
            cause = f"{who} is not deleting messages (disabled trigger, crashed poller, or every batch failing)"
            fix = f"Check {who}'s event source mapping state and errors; re-enable or fix it."
        yield Finding(
            "queues",
            q.id,
            CRITICAL,
            title,
            recent_deleted.points[0][0],
            _ev(sent=sent, deleted=deleted, visible=vis),
            cause=cause,
            fix=fix,
            key="stopped",
        )
        return
    # A sustained leak over the long window (inflow above outflow summed over it), else fast
    # growth over the short one unless a traffic surge the consumer keeps pace with explains it.
    found = None
    for span in LEAK_SPANS:
        trend = _trend(visible, age, span, inp.now)
        if trend is None:
            continue
        s_in, s_out = sent_all.since(inp.now - span).sum(), deleted_all.since(inp.now - span).sum()
        grew = trend[0] * span / 60
        if (not sent_all or not deleted_all or s_in > s_out) and grew >= MIN_LEAK:
            found = (span, trend)
            break
    if found is None:
        trend = _trend(visible, age, TREND, inp.now)
        old = age.latest[1] if age.latest else 0.0
        if (
            trend is None
            or len(vis) < 8
            or latest[1] < MIN_BACKLOG
            or old < MIN_AGE
            or _traffic_driven(sent_all, deleted_all, inp.now)
        ):
            return
        if sent and deleted and deleted.sum() >= sent.sum() * KEEPING_UP and ses is None:
            return  # deletes keep pace with sends (within SQS's count noise): a burst the metrics lag
        found = (TREND, trend)
    span, (slope, _) = found
    window = visible.since(inp.now - span)
    errors = sum(inp.get(c.id, "Errors", "Sum").since(inp.now - span).sum() for c in consumers)
    if ses is not None:
        cause, fix = ses
    else:
        cause = (
            f"consumer {', '.join(c.name for c in consumers)} erroring ({errors:.0f} errors in {span // 60} min)"
            if errors > 0
            else "inflow above outflow with no errors anywhere: the consumer is too slow or too few"
        )
        fix = f"Scale {q.name}'s consumer (batch size, concurrency) or fix what slows it."
    oldest = _fmt_duration(age.latest[1]) if age.latest else "?"
    # Behind SES, what users feel is their mail arriving late: the title says so first.
    felt = f"mail delayed, oldest waiting {oldest}: " if ses is not None else ""
    yield Finding(
        "queues",
        q.id,
        WARNING,
        f"{q.name}: {felt}backlog {count_text(latest[1])} and rising {slope:.1f}/min for {span // 60} min"
        + ("" if felt else f", oldest message {oldest}")
        + f"; time to drain {_drain(visible, inp.now)}",
        window.run_start(lambda v: v >= window.points[0][1]) or window.points[0][0],
        _ev(
            visible=window,
            age=age.since(inp.now - span),
            sent=sent_all.since(inp.now - span),
            deleted=deleted_all.since(inp.now - span),
        ),
        cause=cause,
        fix=fix,
        key="growth",
    )


def _ev(**series: Series) -> dict[str, Any]:
    units = {"age": "s", "visible": "count", "sent": "count", "deleted": "count"}
    return series_evidence(series, units={k: v for k, v in units.items() if k in series})


def _dlq(inp: Inputs, q: Resource, visible: Series, source: str = "") -> Iterator[Finding]:
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
    yield Finding(
        "queues",
        q.id,
        CRITICAL if latest[1] >= 10_000 else WARNING,
        f"{q.name}: {count_text(grew)} messages dead-lettered from {sources} in 15 min "
        f"({count_text(latest[1])} waiting)" + (f", read from its {source}" if source else ""),
        window.run_start(lambda v: v > baseline) or latest[0],
        _ev(visible=visible.since(inp.now - 3600)) | ({"source": source} if source else {}),
        cause=f"{sources}'s consumer keeps failing on these messages",
        key="dlq",
        fix=f"Find why {sources}'s consumer fails (its errors, a sample message), fix it, then redrive {q.name}.",
    )
