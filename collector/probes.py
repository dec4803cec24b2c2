"""State that is not a CloudWatch metric: the SES account (SESv2 GetAccount, or SES v1 where v2
is unavailable), Lambda account limits (GetAccountSettings), live SQS depth (GetQueueAttributes),
cold starts from X-Ray traces, and the hottest keys from Contributor Insights.

Each probe returns facts to merge into a resource and samples to store; it never writes.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from collector.aws import epoch_seconds
from fleetwatch.store import SeriesKey

Clients = Callable[[str], Any]


class ProbeError(Exception):
    """A probe that found nothing it could report (every queue failed, say)."""


Points = list[tuple[SeriesKey, list[tuple[int, float]]]]
PROBE_NS = "fleetwatch/Probe"
XRAY_NS = "fleetwatch/XRay"
BATCH_GET_TRACES = 5  # X-Ray BatchGetTraces takes at most 5 trace ids
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,140}$")


@dataclass
class ProbeResult:
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # resource id -> facts to merge
    points: Points = field(default_factory=list)
    note: str = ""
    # A probe that read part of what it was asked before a call failed: what it read is stored,
    # then `stored()` runs (moving its windows on), and the source is reported with this error.
    failure: Exception | None = None
    stored: Callable[[], None] | None = None
    scanned: int = 0  # X-Ray traces GetTraceSummaries scanned (TracesProcessedCount): billed like those retrieved

    def gauge(
        self, rid: str, metric: str, ts: int, value: float, namespace: str = PROBE_NS, stat: str = "Value"
    ) -> None:
        self.points.append((SeriesKey(rid, namespace, metric, (), stat, 60), [(ts, float(value))]))


# -- SES ------------------------------------------------------------------------------------------


def ses_account(clients: Clients, rid: str, ts: int) -> ProbeResult:
    out = ProbeResult()
    try:
        acct = clients("sesv2").get_account()
        quota = acct.get("SendQuota", {})
        facts = {
            "source": "sesv2",
            "production_access": bool(acct.get("ProductionAccessEnabled")),
            "sending_enabled": bool(acct.get("SendingEnabled", True)),
            "enforcement_status": acct.get("EnforcementStatus", "HEALTHY"),
            "max_24h_send": quota.get("Max24HourSend"),
            "max_send_rate": quota.get("MaxSendRate"),
            "sent_last_24h": quota.get("SentLast24Hours"),
            "review_status": (acct.get("Details") or {}).get("ReviewDetails", {}).get("Status"),
        }
    except (ClientError, BotoCoreError) as v2_error:
        facts = _ses_v1(clients, v2_error)
    out.facts[rid] = facts
    for metric, key in (
        ("SentLast24Hours", "sent_last_24h"),
        ("Max24HourSend", "max_24h_send"),
        ("MaxSendRate", "max_send_rate"),
    ):
        if facts.get(key) is not None:
            out.gauge(rid, f"SES.{metric}", ts, facts[key])
    return out


def _ses_v1(clients: Clients, v2_error: BaseException) -> dict[str, Any]:
    """SES v1: the quota, whether sending is enabled, and two weeks of send statistics. v1 has
    no production-access flag; the sandbox's fixed quota (200 a day, 1 a second) gives it away."""
    ses = clients("ses")
    quota = ses.get_send_quota()
    try:
        enabled = bool(ses.get_account_sending_enabled().get("Enabled", True))
    except ClientError:
        enabled = None
    points = ses.get_send_statistics().get("SendDataPoints", [])
    attempts = sum(p.get("DeliveryAttempts", 0) for p in points)
    sandbox = quota.get("Max24HourSend") == 200 and quota.get("MaxSendRate") == 1
    return {
        "source": "ses-v1",
        "v2_error": str(v2_error)[:300],
        "production_access": not sandbox,
        "production_access_inferred": True,
        "sending_enabled": enabled,
        "enforcement_status": None,
        "max_24h_send": quota.get("Max24HourSend"),
        "max_send_rate": quota.get("MaxSendRate"),
        "sent_last_24h": quota.get("SentLast24Hours"),
        "bounces_14d": sum(p.get("Bounces", 0) for p in points),
        "complaints_14d": sum(p.get("Complaints", 0) for p in points),
        "delivery_attempts_14d": attempts,
        "rejects_14d": sum(p.get("Rejects", 0) for p in points),
    }


# -- Lambda account -------------------------------------------------------------------------------

HOLDERS = 5


def lambda_account(
    clients: Clients,
    rid: str,
    ts: int,
    concurrency: dict[str, tuple[str, int | None, list[tuple[int, float]]]] | None = None,
) -> ProbeResult:
    """The account's limits (GetAccountSettings) and, from the ConcurrentExecutions (Maximum)
    already stored for its functions — `concurrency`: function id -> (name, reserved, points) —
    the functions holding the most of it now, so an account-level cause is joined through them."""
    out = ProbeResult()
    got = clients("lambda").get_account_settings()
    limit, usage = got.get("AccountLimit", {}), got.get("AccountUsage", {})
    out.facts[rid] = {
        "concurrency_limit": limit.get("ConcurrentExecutions"),
        "unreserved_concurrency_limit": limit.get("UnreservedConcurrentExecutions"),
        "function_count": usage.get("FunctionCount"),
        "total_code_size": usage.get("TotalCodeSize"),
        "code_size_limit": limit.get("TotalCodeSize"),
    }
    if concurrency is not None:
        peaks = sorted(
            ((max(v for _, v in pts), name, reserved) for name, reserved, pts in concurrency.values() if pts),
            key=lambda x: (-x[0], x[1]),
        )
        out.facts[rid]["concurrency_holders"] = [
            {"name": n, "peak": p, "reserved": r} for p, n, r in peaks[:HOLDERS] if p > 0
        ]
    for metric, value in (
        ("AccountLimit.ConcurrentExecutions", limit.get("ConcurrentExecutions")),
        ("AccountLimit.UnreservedConcurrentExecutions", limit.get("UnreservedConcurrentExecutions")),
    ):
        if value is not None:
            out.gauge(rid, metric, ts, value)
    return out


# -- deploys ---------------------------------------------------------------------------------------


def modified_at(stamp: str) -> int | None:
    """Epoch seconds of Lambda's LastModified ("2026-11-18T14:15:00.000+0000", or moto's
    "...Z" with nanoseconds); the first 19 characters are the UTC time to the second."""
    import calendar
    import time as _time

    try:
        return calendar.timegm(_time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        return None


def deploys(
    clients: Clients,
    known: dict[str, tuple[str, str]],
    aliased: dict[str, tuple[str, dict[str, Any]]] | None = None,
    now: int = 0,
    budget: int = 0,
    wait: Callable[[], None] = lambda: None,
) -> ProbeResult:
    """Updates since discovery: ListFunctions (50 a page) against the stored LastModified of
    each function, so a deploy is seen within a slow poll, not an hour later. `known` maps
    function name to (resource id, last modified).

    Then alias-based releases: ListAliases for the functions whose code just changed and for up
    to `budget` of the `aliased` ones (name -> (resource id, stored facts); functions discovery
    found aliases on, i.e. with published versions), a canary in progress first, then the most
    recently deployed, then the longest unchecked, each after `wait` (its pacing). An alias moved to another version, or
    weighted towards one, is a deploy seen at `now` (AliasConfiguration has no time stamp)."""
    out = ProbeResult()
    changed, released = [], []
    client = clients("lambda")
    for page in client.get_paginator("list_functions").paginate():
        for fn in page.get("Functions", []):
            rid, last = known.get(fn["FunctionName"], ("", ""))
            if rid and fn.get("LastModified") and fn["LastModified"] != last:
                out.facts[rid] = {
                    "code_sha256": fn["CodeSha256"],
                    "last_modified": fn.get("LastModified", ""),
                    "deployed_at": modified_at(fn.get("LastModified", "")),
                }
                changed.append(fn["FunctionName"])
    aliased = aliased or {}
    fresh = now - 60  # read in the last minute (by this poll's discovery): not again
    due = sorted(
        (n for n in aliased if int(aliased[n][1].get(ALIASES_AT) or 0) <= fresh),
        key=lambda n: _alias_priority(aliased[n][1]),
    )[: max(budget, 0)]
    for name in [*(n for n in changed if n not in due), *due]:
        rid, facts = aliased.get(name) or (known[name][0], {})
        wait()
        now_aliases = alias_state(_paged(client, "list_aliases", "Aliases", FunctionName=name))
        patch = release_facts(facts.get(ALIASES), now_aliases, now)
        if RELEASE in patch:
            released.append(f"{name} ({describe_release(patch[RELEASE])})")
        out.facts.setdefault(rid, {}).update(patch)
    notes = ([f"deployed: {', '.join(changed)}"] if changed else []) + (
        [f"released: {', '.join(released)}"] if released else []
    )
    out.note = "; ".join(notes)
    return out


# -- alias-based releases ---------------------------------------------------------------------------

# Many teams release by moving an alias (SAM AutoPublishAlias, CodeDeploy, the Serverless
# framework): the code is published as a version, then the alias the callers invoke is pointed at
# it, at once or weighted (a canary: "The second version, and the percentage of traffic that's
# routed to it", botocore lambda 2015-03-31, AliasRoutingConfiguration.AdditionalVersionWeights;
# "Implement Lambda canary deployments using a weighted alias", .../lambda/latest/dg/
# configuration-aliases.html). A rollback or a promotion moves no LastModified at all.
ALIASES, ALIASES_AT, RELEASE = "aliases", "aliases_at", "release"
ALIAS_CHECKS = 60  # ListAliases a slow poll at most, beyond the functions just deployed: 0.2/s on average
# ...released at most 1.5 a second (a tenth of Lambda's 15/s control-plane quota, collector/pacing.py):
# with discovery's 40 %, half of the quota is left for the account's own deploys.
ALIAS_FRACTION = 0.1


def _paged(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    return [item for page in client.get_paginator(operation).paginate(**params) for item in page.get(key, [])]


def alias_state(aliases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alias name -> the version it invokes and the weights of any other (ListAliases'
    AliasConfiguration: Name, FunctionVersion, RoutingConfig.AdditionalVersionWeights)."""
    return {
        str(a["Name"]): {
            "version": str(a.get("FunctionVersion", "")),
            "weights": {
                str(v): float(w)
                for v, w in ((a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}).items()
            },
        }
        for a in aliases
        if a.get("Name")
    }


def release_facts(before: dict[str, Any] | None, after: dict[str, dict[str, Any]], at: int) -> dict[str, Any]:
    """The facts an alias reading gives: the aliases, when read, and — when an alias known before
    now invokes another version or routes other weights — the release, which is a deploy at `at`.
    Nothing was known before the first reading, so the first is never a release."""
    out: dict[str, Any] = {ALIASES: after, ALIASES_AT: at}
    known = before or {}  # None before the first reading: no alias was known, so none moved
    for name, now in sorted((after or {}).items()):
        was = known.get(name)
        if was is None or (was.get("version"), was.get("weights") or {}) == (now["version"], now["weights"]):
            continue
        canary = max(now["weights"].items(), key=lambda vw: vw[1]) if now["weights"] else None
        if canary is None and now["version"] == was.get("version"):
            continue  # a canary called off: its traffic goes back to the warm environments
        out[RELEASE] = {
            "alias": name,
            "from": was.get("version"),
            "to": canary[0] if canary else now["version"],
            "weight": canary[1] if canary else 1.0,
            "at": at,
        }
        out[RELEASE]["text"] = describe_release(out[RELEASE])
        out["deployed_at"] = at
        break
    return out


def describe_release(release: dict[str, Any]) -> str:
    if float(release.get("weight", 1.0)) < 1.0:
        return (
            f"canary on alias {release['alias']}: {release['weight'] * 100:.0f} % of its traffic to version "
            f"{release['to']} (the rest on {release['from']})"
        )
    return f"alias {release['alias']} moved from version {release['from']} to {release['to']}"


def deploy_facts(found: dict[str, Any], stored: dict[str, Any], at: int) -> dict[str, Any]:
    """A discovered function's deploy facts: LastModified moves on every code or configuration
    update (both recycle its environments, so both are a deploy), and an alias that moved since
    the stored reading is a release seen at `at`; the later of the two, and the last release, stay."""
    patch: dict[str, Any] = {"deployed_at": modified_at(str(found.get("last_modified", "")))}
    if ALIASES in found and int(found.get(ALIASES_AT) or 0) > int(stored.get(ALIASES_AT) or 0):
        patch.update(release_facts(stored.get(ALIASES), found[ALIASES], at))
    elif ALIASES in stored:  # a probe read them after this discovery did (discovery off the poll thread)
        patch.update({ALIASES: stored[ALIASES], ALIASES_AT: stored.get(ALIASES_AT)})
    release = patch.get(RELEASE) or stored.get(RELEASE)
    if release:
        patch[RELEASE] = release
        patch["deployed_at"] = max(int(patch["deployed_at"] or 0), int(release.get("at") or 0)) or None
    return patch


def _alias_priority(facts: dict[str, Any]) -> tuple[int, int, int]:
    canary = any(a.get("weights") for a in (facts.get(ALIASES) or {}).values())
    return (0 if canary else 1, -int(facts.get("deployed_at") or 0), int(facts.get(ALIASES_AT) or 0))


# -- SQS live depth -------------------------------------------------------------------------------

LIVE_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


# CloudWatch's backlog and age per queue, which decide whose live depth is read.
RISING_READS = ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
RISING_WINDOW = 15 * 60  # seconds of stored points compared
# Below these a rise is noise, as the queue detector judges it (detectors/queues.py MIN_BACKLOG,
# MIN_AGE): a busy queue's backlog of a few messages moves up and down every minute.
RISING_FLOOR = {"ApproximateNumberOfMessagesVisible": 20.0, "ApproximateAgeOfOldestMessage": 120.0}


def queues_to_probe(
    queues: list[tuple[str, str]],
    facts: dict[str, dict[str, Any]],
    recent: dict[tuple[str, str, str], list[tuple[int, float]]],
) -> list[tuple[str, str]]:
    """The queues whose live depth (one GetQueueAttributes each) is worth reading this poll, out of
    `queues` (resource id, URL), from their facts and their stored CloudWatch backlog and age of
    the last RISING_WINDOW (`recent`, by (id, metric, "Maximum")): those

    - never read yet (a first reading for each);
    - whose backlog or oldest message's age is rising (the latest point above the window's first,
      and above RISING_FLOOR);
    - that CloudWatch is silent about while their last live reading held messages: a queue that
      wakes publishes its metrics up to 15 minutes late (SQS Developer Guide, "Monitoring Amazon
      SQS queues using CloudWatch"), and a waking DLQ is judged on its live depth meanwhile.

    A fleet of steady or idle queues is not read queue by queue every slow poll (at 8,000 queues,
    8,000 calls each time)."""
    out = []
    for rid, url in queues:
        f = facts.get(rid) or {}
        series = {metric: recent.get((rid, metric, "Maximum")) or [] for metric in RISING_READS}
        rising = any(
            len(pts) >= 2 and pts[-1][1] > pts[0][1] and pts[-1][1] >= RISING_FLOOR[m] for m, pts in series.items()
        )
        silent = not any(series.values())
        if f.get("live_at") is None or rising or (silent and float(f.get("live_messages") or 0) > 0):
            out.append((rid, url))
    return out


def queue_depth(clients: Clients, queues: list[tuple[str, str]], ts: int) -> tuple[ProbeResult, list[str]]:
    """Live depth per queue, without CloudWatch's lag. A queue that fails is reported and skipped."""
    out, errors = ProbeResult(), []
    sqs = clients("sqs")
    for rid, url in queues:
        try:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(LIVE_ATTRIBUTES))["Attributes"]
        except (ClientError, BotoCoreError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        for name in LIVE_ATTRIBUTES:
            if name in attrs:
                out.gauge(rid, f"SQS.{name}", ts, float(attrs[name]))
        if "ApproximateNumberOfMessages" in attrs:  # the latest reading, for a pass run at this very second
            out.facts[rid] = {"live_messages": float(attrs["ApproximateNumberOfMessages"]), "live_at": ts}
    return out, errors


# -- X-Ray cold starts ----------------------------------------------------------------------------

SUMMARIES_PER_TRACE = 20  # summaries scanned per trace read, at most


def cold_starts(
    clients: Clients, functions: list[tuple[str, str]], start: int, end: int, max_traces: int
) -> tuple[ProbeResult, int]:
    """Per function and minute: sampled invocations read, cold starts among them, and the
    longest Initialization. At most `max_traces` traces are read per function, spread evenly
    over the window's summaries (so the cold share stays unbiased when a busy function has more);
    if even the summaries had to stop early, the oldest minute reached is dropped as partly read.
    Returns (result, traces read)."""
    out, read = ProbeResult(), 0
    xray = clients("xray")
    for rid, name in functions:
        if not _FUNCTION_NAME.match(name):
            continue  # not a Lambda function name; never put it into a filter expression
        ids: list[str] = []
        truncated = False
        for page in xray.get_paginator("get_trace_summaries").paginate(
            StartTime=start, EndTime=end, FilterExpression=f'service("{name}")', Sampling=False
        ):
            ids.extend(s["Id"] for s in page.get("TraceSummaries", []))
            # "The total number of traces processed, including traces that did not match the
            # specified filter expression" (botocore xray 2016-04-12, GetTraceSummariesResult.TracesProcessedCount)
            out.scanned += int(page.get("TracesProcessedCount") or len(page.get("TraceSummaries", [])))
            if len(ids) >= max_traces * SUMMARIES_PER_TRACE:
                truncated = True
                break
        step = max(1, -(-len(ids) // max_traces))  # ceil: an even spread of at most max_traces
        # From an offset that varies with the window: a fixed stride from the first summary reads
        # the same position of every minute, and where order follows coldness (environments
        # started first are cold) that reads cold starts far above their share.
        offset = zlib.crc32(f"{name}:{start}:{end}".encode()) % step
        chosen = ids[offset::step][:max_traces]
        per_minute: dict[int, list[float]] = defaultdict(list)  # minute -> init durations (0 for warm)
        for i in range(0, len(chosen), BATCH_GET_TRACES):
            for trace in xray.batch_get_traces(TraceIds=chosen[i : i + BATCH_GET_TRACES]).get("Traces", []):
                minute, init = function_segment(trace, name)
                if minute is not None:
                    per_minute[minute].append(init)
        read += len(chosen)
        if truncated and len(per_minute) > 1:
            per_minute.pop(min(per_minute))
        rows = sorted(per_minute.items())
        out.points.append(
            (SeriesKey(rid, XRAY_NS, "SampledInvocations", (), "Sum", 60), [(m, float(len(v))) for m, v in rows])
        )
        out.points.append(
            (
                SeriesKey(rid, XRAY_NS, "ColdStarts", (), "Sum", 60),
                [(m, float(sum(1 for x in v if x > 0))) for m, v in rows],
            )
        )
        out.points.append(
            (SeriesKey(rid, XRAY_NS, "InitDuration", (), "Maximum", 60), [(m, max(v)) for m, v in rows if max(v) > 0])
        )
    return out, read


# A new environment's start: `Initialization`, or `Restore` for a SnapStart function, whose
# environments are restored from a snapshot instead (AWS, "Monitoring for Lambda SnapStart",
# .../lambda/latest/dg/snapstart-monitoring.html, X-Ray section).
STARTS = ("Initialization", "Restore")


def function_segment(trace: dict[str, Any], name: str) -> tuple[int | None, float]:
    """(minute of the invocation, start-up milliseconds or 0) from the function segment of
    `name` in a trace's documents. A trace holds a function segment (origin
    AWS::Lambda::Function, named after the function) for every function the request went
    through; another function's segment says nothing about this one's start."""
    for seg in trace.get("Segments", []):
        try:
            doc = json.loads(seg["Document"])
        except (KeyError, ValueError, TypeError):
            continue
        if doc.get("origin") != "AWS::Lambda::Function" or doc.get("name") != name:
            continue
        minute = int(float(doc["start_time"]) // 60 * 60)
        for sub in doc.get("subsegments", []):
            if sub.get("name") in STARTS:
                return minute, (float(sub["end_time"]) - float(sub["start_time"])) * 1000.0
        return minute, 0.0
    return None, 0.0


STILL_COLD_WINDOW = 10 * 60
STILL_COLD_SHARE = 0.02  # twice the cold-start detector's 1 % floor: a normal function stays well below
STILL_COLD_MIN = 3


def still_cold(cold: list[tuple[int, float]], sampled: list[tuple[int, float]], now: int) -> bool:
    """Whether the traces read in the last 10 minutes still show an elevated cold-start share,
    so they go on being read while an episode lasts (a trigger such as "concurrency jumped"
    holds for one poll; the spike it started can last much longer)."""
    since = now - STILL_COLD_WINDOW
    c = sum(v for t, v in cold if t >= since)
    n = sum(v for t, v in sampled if t >= since)
    return c >= STILL_COLD_MIN and n > 0 and c / n >= STILL_COLD_SHARE


# -- Contributor Insights -------------------------------------------------------------------------


def hot_keys(clients: Clients, rules: list[tuple[str, str]], start: int, end: int) -> ProbeResult:
    """The most throttled partition keys of tables whose key-range throttles fired."""
    out = ProbeResult()
    cw = clients("cloudwatch")
    for rid, rule in rules:
        report = cw.get_insight_rule_report(
            RuleName=rule,
            StartTime=start,
            EndTime=end,
            Period=60,
            MaxContributorCount=5,
            Metrics=["MaxContributorValue", "UniqueContributors"],
            OrderBy="Sum",
        )
        keys = [
            {"key": "|".join(c.get("Keys", [])), "value": c.get("ApproximateAggregateValue")}
            for c in report.get("Contributors", [])
        ]
        out.facts.setdefault(rid, {})["hot_keys"] = {"rule": rule, "window": [start, end], "top": keys}
        out.points.append(
            (
                SeriesKey(
                    rid, "fleetwatch/ContributorInsights", "MaxContributorValue", (("Rule", rule),), "Maximum", 60
                ),
                [
                    (epoch_seconds(d["Timestamp"]), float(d["MaxContributorValue"]))
                    for d in report.get("MetricDatapoints", [])
                    if "MaxContributorValue" in d
                ],
            )
        )
    return out


def account_alias(clients: Clients) -> str | None:
    """IAM ListAccountAliases: AccountAliases, a list of at most one (botocore iam model
    2010-05-08, ListAccountAliasesResponse.AccountAliases: "Amazon Web Services supports only one
    alias per account"). A role without iam:ListAccountAliases (AccessDenied) or any other
    refusal leaves the account named by its id; discovery goes on."""
    try:
        aliases = clients("iam").list_account_aliases().get("AccountAliases") or []
    except (ClientError, BotoCoreError):
        return None
    return str(aliases[0]) if aliases else None
