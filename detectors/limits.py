"""Account limits that reject work: the SES sandbox, quota and reputation; Lambda account
concurrency. Thresholds from SIGNALS.md §5 and §1."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.base import (
    CRITICAL,
    INFO,
    WARNING,
    Approach,
    Finding,
    Inputs,
    NoData,
    Resource,
    Series,
    count_text,
    detector,
    evidence,
    imminent,
    pct,
    reaching,
)

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {
    ("SES.SentLast24Hours", "Value"),
    ("Reject", "Sum"),
    ("Reputation.BounceRate", "Maximum"),
    ("Reputation.ComplaintRate", "Maximum"),
    ("ClaimedAccountConcurrency", "Maximum"),
    ("Throttles", "Sum"),
    ("ConcurrentExecutions", "Maximum"),
    ("Errors", "Sum"),
    ("Send", "Sum"),
    ("Invocations", "Sum"),
    ("ApproximateAgeOfOldestMessage", "Maximum"),
}
TOP = 3  # consumers of account concurrency named in a finding

RECENT = 5 * 60
HOLDERS_WINDOW = 15 * 60
QUOTA_WARN, QUOTA_CRIT = 0.80, 0.95
BOUNCE_WARN, BOUNCE_REVIEW, BOUNCE_PAUSE = 0.025, 0.05, 0.10
COMPLAINT_WARN, COMPLAINT_REVIEW, COMPLAINT_PAUSE = 0.0005, 0.001, 0.005
DEFAULT_CONCURRENCY = 1000
HEADROOM_WARN, HEADROOM_CRIT = 0.80, 0.90
# A concurrency storm: the account's claimed concurrency has climbed at least STORM_RISE of its
# limit in each of its last three one-minute points, to STORM_LEVEL of it or more and STORM_FACTOR
# times what it was before those three minutes. At that pace the rest is used up within
# (1 - STORM_LEVEL) / STORM_RISE = 5 minutes, and nothing on AWS's side slows the climb before the
# limit: "every 10 seconds, Lambda can allocate at most 1,000 additional execution environment
# instances ... to each of your functions", and while a function keeps receiving more requests
# Lambda keeps scaling it at that rate up to the account's concurrency limit (AWS Lambda Developer
# Guide, "Lambda scaling behavior", https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html).
# So the shared NEAR (60 %) and IMMINENT (150 s) of detectors/base.py cost the minute in which the
# account goes from half its limit to throttling. The pace alone cannot tell a flood from a busy
# account whose traffic triples (20 % -> 60 % in three minutes is the same ~3 minutes from the
# limit as 2 % -> 53 %); the multiple can: a surge of traffic scales the account's concurrency
# by what the traffic grew (3x), a flood (a fan-out, a retry storm, a backlog replayed) from next
# to nothing. A climb that levels off (its slowest recent rise is what counts) stays below
# STORM_RISE; a burst that stops under half the limit stays below STORM_LEVEL. Figures: in the
# lambda-concurrency scenario the account goes 2 % -> 20 % -> 36 % -> 53 % of its limit in the
# first three minutes (+16 % a minute, x26); the shared rule fired a minute later, at 69 %.
STORM_LEVEL, STORM_RISE, STORM_FACTOR = 0.50, 0.10, 5.0
RECENT_MAIL, MIN_MAIL_ERRORS = 15 * 60, 3
# SES's maximum send rate: "the maximum number of emails that Amazon SES can accept from the
# user's account per second" (GetSendQuota MaxSendRate, SES API Reference; sesv2 GetAccount
# SendQuota.MaxSendRate). A send above it is refused with a ThrottlingException "Maximum sending
# rate exceeded", and SES asks the sender to wait and retry (SES Developer Guide, "Errors related
# to the sending quotas", https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html).
# SES publishes no metric for refused sends: its CloudWatch metrics (Send, Delivery, Bounce,
# Complaint, Reject, ...) count mail it accepted. What fleetwatch sees is the accepted sends pressed
# against the cap (AWS/SES Send, a sum a period, over the period's seconds: RATE_CAPPED of
# MaxSendRate or more — "the rate at which Amazon SES accepts the user's messages might be less than
# the maximum send rate", so not all of it) while the functions that send through SES fail (the
# refused sends raised and retried) or the mail queue behind them waits MAIL_DELAY and longer.
# Sending at the cap with nothing failing and nothing waiting is a sender pacing itself: quiet.
RATE_CAPPED, RATE_RECENT = 0.8, 5 * 60
MAIL_DELAY = 5 * 60  # seconds the oldest mail of a sender's queue has waited, and still rising
# A sender failing because SES throttles it fails a share of its sends, not a few: at 750 mails a
# minute a healthy sender's 0.1 % of errors is ~11 in 15 minutes (lookalike-ses-campaign paged on
# MIN_MAIL_ERRORS alone). THROTTLED_SHARE of its invocations, twenty times that.
THROTTLED_SHARE = 0.02
# How far back from `now` these detectors look (incremental pass; `imminent`'s three periods are
# added per series by the pass).
HORIZONS = frozenset({RECENT, HOLDERS_WINDOW, RECENT_MAIL, RATE_RECENT, 600, 3600})  # 600: a mail queue's age

PRODUCTION_FIX = (
    "Request production access for SES in this region (SES console → Account dashboard → Request "
    "production access); until then only verified recipients and 200 mails a day are allowed."
)


@detector("ses_account")
def ses_account(inp: Inputs) -> Iterator[Finding | NoData]:
    for res in inp.due("ses"):
        f = res.facts
        if f.get("max_24h_send") is None:
            yield NoData(res.id, "the SES account has not been probed yet")
            continue
        where = f"SES {res.region} ({res.account})"
        sandbox = f.get("production_access") is False
        sent, quota = float(f.get("sent_last_24h") or 0), float(f["max_24h_send"] or 0)
        used = sent / quota if quota else 0.0
        sent_series = inp.get(res.id, "SES.SentLast24Hours", "Value")
        if used >= QUOTA_WARN:
            severity = CRITICAL if used >= QUOTA_CRIT or sandbox else WARNING
            title = f"{where}: {sent:.0f} of {quota:.0f} daily sends used ({pct(used)})" + (
                " — still in the SES sandbox" if sandbox else ""
            )
            yield Finding(
                "ses_account",
                res.id,
                severity,
                title,
                sent_series.run_start(reaching(QUOTA_WARN, of=quota)) or inp.now,
                evidence(limit=quota, sent_last_24h=sent_series),
                cause="the account never left the SES sandbox" if sandbox else "sending volume near the 24-hour quota",
                fix=PRODUCTION_FIX if sandbox else "Ask AWS for a higher sending quota, or spread sends over the day.",
                key="quota",
                limit=True,
            )
        yield from _virus_rejects(inp, res, where)
        status = f.get("enforcement_status")
        if status and status != "HEALTHY":
            yield Finding(
                "ses_account",
                res.id,
                CRITICAL,
                f"{where}: account {status.lower()} (enforcement status {status})",
                inp.now,
                evidence(),
                cause="AWS placed the account under review or paused sending",
                fix="Open the SES reputation dashboard, find the cause (bounces, complaints) and answer AWS's case.",
                key="enforcement",
            )
        if f.get("sending_enabled") is False:
            yield Finding(
                "ses_account",
                res.id,
                CRITICAL,
                f"{where}: sending is disabled",
                inp.now,
                evidence(),
                cause="sending was paused for the account",
                fix="Re-enable sending once the cause is fixed.",
                key="disabled",
            )
        failing = _mail_failing(inp, res)
        # The sandbox is read from the account (GetAccount ProductionAccessEnabled) and the
        # senders' failures (SendEmail answers MessageRejected for unverified recipients), never
        # from the Reject metric: Reject counts mail with a virus (see _virus_rejects).
        if sandbox and failing and used < QUOTA_WARN:
            names = ", ".join(f"{fn.name} ({count_text(n)} errors)" for fn, n in failing)
            yield Finding(
                "ses_account",
                res.id,
                CRITICAL,
                f"{where}: still in the SES sandbox ({count_text(sent)} of {count_text(quota)} daily sends used) "
                f"while {names} "
                f"fail to send in 15 min",
                inp.now - RECENT_MAIL,
                evidence(limit=quota, sent_last_24h=sent_series),
                cause="the SES sandbox accepts only verified recipients: mail to customers is refused",
                fix=PRODUCTION_FIX,
                key="sandbox-refusing",
                limit=True,
            )
        yield from _send_rate(inp, res, where)
        yield from _reputation(inp, res.id, where)


def send_rate(inp: Inputs, ses: Resource) -> tuple[float, float] | None:
    """(mails SES accepted a second in the busiest period of the last RATE_RECENT, the account's
    MaxSendRate) when that is at least RATE_CAPPED of it; None otherwise. The busiest period, not
    the newest: the newest may be a period still filling."""
    cap = float(ses.facts.get("max_send_rate") or 0)
    sends = inp.get(ses.id, "Send", "Sum").since(inp.now - RATE_RECENT)
    if cap <= 0 or not sends:
        return None
    rate = max(v for _, v in sends.points) / sends.period
    return (rate, cap) if rate >= RATE_CAPPED * cap else None


def _send_rate(inp: Inputs, res: Resource, where: str) -> Iterator[Finding]:
    """Mail held back by SES's maximum send rate (see RATE_CAPPED): sends at the cap while the
    senders fail or their queue's mail waits."""
    capped = send_rate(inp, res)
    if capped is None:
        return
    rate, cap = capped
    failing = [
        (fn, n)
        for fn, n in _mail_failing(inp, res)
        if n >= THROTTLED_SHARE * inp.get(fn.id, "Invocations", "Sum").since(inp.now - RECENT_MAIL).sum()
    ]
    waiting = _mail_waiting(inp, res)
    if not failing and not waiting:
        return
    sends = inp.get(res.id, "Send", "Sum").since(inp.now - 3600)
    felt = [f"{q.name}'s oldest mail waiting {age / 60:.0f} min" for q, age in waiting]
    felt += [f"{fn.name} failing ({count_text(n)} errors in 15 min)" for fn, n in failing]
    yield Finding(
        "ses_account",
        res.id,
        CRITICAL,
        f"{where}: mail delayed at SES's maximum send rate ({rate:.1f} of {cap:g} mails a second) — " + "; ".join(felt),
        sends.run_start(reaching(RATE_CAPPED, of=cap * sends.period)) or inp.now,
        evidence(limit=cap * sends.period, sends=sends, units={"sends": "count", "limit": "count"}),
        cause=f"SES refuses sends above the account's maximum send rate of {cap:g} a second "
        "(Throttling: Maximum sending rate exceeded); the refused mail is retried and waits",
        fix="Ask AWS for a higher maximum send rate (SES console → Account dashboard → Request a sending quota "
        "increase), and pace the senders at or under it (the SDK's retry with backoff, or fewer consumers).",
        key="send-rate",
        limit=True,
    )


def _virus_rejects(inp: Inputs, res: Resource, where: str) -> Iterator[Finding]:
    """SES's `Reject` is mail SES accepted and then refused to send because it found a virus in
    it — not a sandbox refusal (a send to an unverified recipient fails at the API with
    MessageRejected and publishes no event). AWS: "REJECT - SES accepted the email, but determined
    that it contained a virus and didn't attempt to deliver it to the recipient's mail server"
    (SES API v2 EventDestination.MatchingEventTypes,
    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_EventDestination.html)."""
    rejects = inp.get(res.id, "Reject", "Sum").since(inp.now - 3600)
    if rejects.sum() <= 0:
        return
    yield Finding(
        "ses_account",
        res.id,
        WARNING,
        f"{where}: {count_text(rejects.sum())} mails rejected in the last hour: virus detected",
        rejects.points[0][0],
        evidence(reject=rejects, units={"reject": "count"}),
        cause="SES found a virus in mail it accepted and did not send it",
        fix="Find which sender attaches these files (the Reject events of its configuration set name the message) "
        "and stop it: a compromised upload or a sender forwarding user files unscanned.",
        key="rejects-virus",
    )


def _mail_failing(inp: Inputs, ses: Resource) -> list[tuple[Resource, float]]:
    """Functions in the SES account's place that send mail through it (`uses`, from their
    environment) and failed at least MIN_MAIL_ERRORS times in the last 15 minutes."""
    out = []
    for fn in inp.of_kind("lambda"):
        if (
            fn.account != ses.account
            or fn.region != ses.region
            or not any(str(u).startswith("ses:") for u in fn.facts.get("uses") or [])
        ):
            continue
        errors = inp.get(fn.id, "Errors", "Sum").since(inp.now - RECENT_MAIL).sum()
        if errors >= MIN_MAIL_ERRORS:
            out.append((fn, errors))
    return out


def _mail_waiting(inp: Inputs, ses: Resource) -> list[tuple[Resource, float]]:
    """Queues in the SES account's place consumed by a function that sends mail through it, whose
    oldest message has waited MAIL_DELAY or more and rose in each of its last three minutes: mail
    users wait for. (queue, age in seconds)."""
    senders = {
        fn.name
        for fn in inp.of_kind("lambda")
        if fn.account == ses.account
        and fn.region == ses.region
        and any(str(u).startswith("ses:") for u in fn.facts.get("uses") or [])
    }
    out = []
    for q in inp.of_kind("sqs"):
        if q.account != ses.account or q.region != ses.region or not senders & set(q.facts.get("consumers") or []):
            continue
        age = inp.get(q.id, "ApproximateAgeOfOldestMessage", "Maximum").since(inp.now - 600)
        latest = age.latest
        if latest is not None and latest[1] >= MAIL_DELAY and age.rising_to(latest[1] + 1) is not None:
            out.append((q, latest[1]))
    return out


# SES publishes Reputation.BounceRate / Reputation.ComplaintRate only once the account has
# mail that bounced / drew complaints (issue 17 item 13). AWS, "Creating reputation monitoring
# alarms using CloudWatch" (https://docs.aws.amazon.com/ses/latest/DeveloperGuide/
# reputationdashboard-cloudwatch-alarm.html): "The reputation metrics might not appear in
# CloudWatch if your account hasn't had any bounces or complaints"; their values are "decimal
# numbers between 0 and 1". Their absence is neither missing data nor an alarm, and not a rate of
# 0 % either. What the dashboard and digest show instead:
REPUTATION_ABSENT = {
    "Reputation.BounceRate": "not published (no bounces yet)",
    "Reputation.ComplaintRate": "not published (no complaints yet)",
}


def _reputation(inp: Inputs, rid: str, where: str) -> Iterator[Finding]:
    """Bounce and complaint rates against SES's review and pause levels. An absent rate is not
    published yet (REPUTATION_ABSENT): no finding and no NoData for it."""
    for metric, warn, review, pause, label in (
        ("Reputation.BounceRate", BOUNCE_WARN, BOUNCE_REVIEW, BOUNCE_PAUSE, "bounce"),
        ("Reputation.ComplaintRate", COMPLAINT_WARN, COMPLAINT_REVIEW, COMPLAINT_PAUSE, "complaint"),
    ):
        series = inp.get(rid, metric, "Maximum").since(inp.now - 3600)
        latest = series.latest
        if latest is None or latest[1] < warn:
            continue
        rate = latest[1]
        severity = CRITICAL if rate >= review else WARNING
        since = series.run_start(reaching(warn)) or latest[0]
        yield Finding(
            "ses_account",
            rid,
            severity,
            f"{where}: {label} rate {pct(rate)} (review at {pct(review)}, sending paused at {pct(pause)})",
            since,
            evidence(limit=review, rate=series),
            cause=f"{label}s above what AWS tolerates",
            fix=(
                "Stop sending to addresses that bounced (use the suppression list) and clean the list."
                if label == "bounce"
                else "Send only to people who asked for the mail; make unsubscribing easy."
            ),
            key=label,
        )


@detector("lambda_account")
def lambda_account(inp: Inputs) -> Iterator[Finding | NoData]:
    for res in inp.due("lambda_account"):
        limit = res.facts.get("concurrency_limit")
        claimed = inp.get(res.id, "ClaimedAccountConcurrency", "Maximum").since(inp.now - 3600)
        if not limit:
            yield NoData(res.id, "the Lambda account settings have not been probed yet")
            continue
        where = f"Lambda {res.region} ({res.account})"
        recent = claimed.since(inp.now - RECENT)
        peak = recent.max()
        climb = imminent(claimed, limit, inp.now) or _storm(claimed, limit, inp.now)
        hot = peak is not None and (peak / limit >= HEADROOM_WARN or climb is not None)
        throttles = _unreserved_throttles(inp, res)
        # Who holds it: every function's concurrency read, so only when a finding names them.
        holders = _holders(inp, res, peak) if hot or throttles > 0 else []
        held_by = " — held by " + ", ".join(holders) if holders else ""
        if peak is not None and hot:
            severity = CRITICAL if peak / limit >= HEADROOM_CRIT or climb else WARNING
            rising = climb.told("used up") if climb and peak / limit < HEADROOM_CRIT else ""
            yield Finding(
                "lambda_account",
                res.id,
                severity,
                f"{where}: {count_text(peak)} of {count_text(limit)} account concurrency claimed "
                f"({pct(peak / limit)}){rising}{held_by}",
                min(claimed.run_start(reaching(HEADROOM_WARN, of=limit)) or inp.now, climb.since if climb else inp.now),
                evidence(limit=limit, claimed=claimed),
                cause="account concurrency nearly used up" + (f" by {holders[0].split(' ')[0]}" if holders else ""),
                fix="Request a higher concurrent-executions quota (Service Quotas, L-B99A9384), or cap the "
                "busiest functions with reserved concurrency.",
                key="headroom",
                limit=True,
                sustained=climb is not None,
            )
        if throttles > 0:
            yield Finding(
                "lambda_account",
                res.id,
                CRITICAL,
                f"{where}: {count_text(throttles)} invocations throttled in 5 min{held_by}",
                inp.now - RECENT,
                evidence(
                    limit=limit, claimed=claimed, throttles=inp.get(res.id, "Throttles", "Sum").since(inp.now - 3600)
                ),
                cause="the account's concurrency is exhausted",
                key="throttles",
                limit=True,
                fix="Raise the account's concurrency quota, or reserve concurrency for critical functions.",
            )
        if limit < DEFAULT_CONCURRENCY:
            yield Finding(
                "lambda_account",
                res.id,
                INFO,
                f"{where}: account concurrency limit is {count_text(limit)}, "
                f"far below the default {count_text(DEFAULT_CONCURRENCY)}",
                inp.now,
                evidence(limit=limit, claimed=claimed),
                cause="a new account's low default quota",
                fix="Request the default 1,000 (Service Quotas, L-B99A9384).",
                key="low-limit",
            )


def _storm(claimed: Series, limit: float, now: int) -> Approach | None:
    """The climb of the account's claimed concurrency if it is a storm (see STORM_LEVEL,
    STORM_RISE, STORM_FACTOR): at least half the limit claimed, each of the last three minutes up
    a tenth of it or more, five times what it was before them; None otherwise, or if the newest
    point is more than a few minutes old."""
    latest = claimed.latest
    if latest is None or latest[0] < now - 3 * claimed.period or latest[1] < STORM_LEVEL * limit:
        return None
    climb = claimed.rising_to(limit)
    if climb is None or climb.per_minute < STORM_RISE * limit:
        return None
    before = dict(claimed.points)[climb.since]
    return climb if latest[1] >= STORM_FACTOR * max(before, 1.0) else None


def _holders(inp: Inputs, account: Resource, claimed: float | None = None) -> list[str]:
    """The TOP functions holding the most concurrency in the last 5 minutes (ConcurrentExecutions,
    Maximum — Lambda "Concurrency metrics" docs: use MAX), each with its reservation, e.g.
    "thumbnail-fn 860 (unreserved)", "report-fn 5 (reserved 5)". None while the functions' points
    account for under a tenth of what the account claims: their slow-tier points have not caught
    up with a flood, and "held by checkout-fn 2, feed-fn 2" would name the wrong ones."""
    peaks = []
    for fn in inp.of_kind("lambda"):
        if fn.account != account.account or fn.region != account.region:
            continue
        # Per-function concurrency is a slow-tier series (5-minute points). While the account's
        # concurrency is high or climbing the collector reads the top functions' every fast poll
        # (collector/plan.py, `_holders_to_read`): their newest bucket holds the minutes so far.
        # Outside that set, the last five minutes may hold none of it yet.
        peak = inp.get(fn.id, "ConcurrentExecutions", "Maximum").since(inp.now - HOLDERS_WINDOW).max()
        if peak:
            peaks.append((peak, fn))
    peaks.sort(key=lambda x: (-x[0], x[1].name))
    if claimed and sum(p for p, _ in peaks) < 0.1 * claimed:
        return []
    out = []
    for peak, fn in peaks[:TOP]:
        reserved = fn.facts.get("reserved_concurrency")
        out.append(f"{fn.name} {count_text(peak)} ({f'reserved {reserved}' if reserved else 'unreserved'})")
    return out


def _unreserved_throttles(inp: Inputs, res: Resource) -> float:
    """Account-wide throttles in the last 5 minutes, less those of functions that have reserved
    concurrency (they throttle inside their own reservation, by design)."""
    total = inp.get(res.id, "Throttles", "Sum").since(inp.now - RECENT).sum()
    reserved = sum(
        inp.get(fn.id, "Throttles", "Sum").since(inp.now - RECENT).sum()
        for fn in inp.of_kind("lambda")
        if fn.account == res.account and fn.region == res.region and fn.facts.get("reserved_concurrency")
    )
    return total - reserved
