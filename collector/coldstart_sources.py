"""Cold starts from every source a real fleet has, best first, into the series the cold-start
detector reads (per function and minute: `ColdStarts` Sum, `SampledInvocations` Sum — the
invocations the count is out of — and `InitDuration` Maximum, in milliseconds):

1. Lambda Insights, where the extension layer is installed: `init_duration` (namespace
   LambdaInsights, dimension function_name, milliseconds — AWS, "Metrics collected by Lambda
   Insights", .../AmazonCloudWatch/latest/monitoring/Lambda-Insights-metrics.html, and the
   example event, .../Lambda-Insights-example-event.html) against AWS/Lambda `Invocations`.
   [Unconfirmed] that init_duration is emitted only by invocations that initialised: checked at
   run time (a minute whose Minimum is 0 counted warm invocations too, so that function's count
   is not used and it falls to the next source).
2. CloudWatch Logs Insights over the functions' REPORT lines: every invocation writes one, with
   `Init Duration` on a cold start (Logs Insights discovers it as @initDuration) and, for
   SnapStart, `Restore Duration` instead (.../lambda/latest/dg/snapstart-monitoring.html).
   Unsampled; up to 50 log groups a query (botocore logs/2014-03-28 StartQueryRequest
   .logGroupNames); billed per GB scanned, so bounded by a daily budget.
3. X-Ray, only for functions with active tracing (TracingConfig.Mode Active) in accounts whose
   segments go to X-Ray: with Transaction Search (GetTraceSegmentDestination: CloudWatchLogs)
   BatchGetTraces finds nothing (botocore xray/2016-04-12 BatchGetTraces). Sampled.

OpenTelemetry spans sent to the agent (collector/otlp_in.py) feed the same series under
fleetwatch/OTel, and the store prefers them to these when both exist.
"""

from __future__ import annotations

import calendar
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from collector import probes
from collector.aws import CallLog, Place
from collector.catalog import DETAIL
from collector.plan import MAX_QUERIES, Query
from collector.probes import Clients, ProbeError, ProbeResult
from fleetwatch.clock import Clock
from fleetwatch.store import SeriesKey

LOGS_NS = "fleetwatch/Logs"
INSIGHTS_NS = "fleetwatch/LambdaInsights"
SOURCES = ("lambda_insights", "logs", "xray")
XRAY_NS = probes.XRAY_NS
MAX_LOG_GROUPS = 50  # StartQuery: "You can include up to 50 log groups"
MAX_ROWS = 10_000  # GetQueryResults returns at most 10,000 rows a call; a query is sized below it
# Logs Insights is billed per GB of log data scanned: $0.005 per GB in US East (Amazon
# CloudWatch pricing, "Logs Insights"; SIGNALS.md); 5 GB a month are in the free tier.
PRICE_PER_GB_SCANNED = 0.005
GB = 1_000_000_000
# GetQueryResults statuses (botocore logs QueryStatus): Scheduled and Running go on; Complete
# is read; Failed, Cancelled, Timeout and Unknown end the query without an answer.
WAITING = ("Scheduled", "Running")
QUERY = (
    'filter @type = "REPORT"\n'
    "| parse @message /Restore Duration: (?<restoreMs>[0-9.]+) ms/\n"
    "| stats count(*) as invocations, count(@initDuration) as inits, max(@initDuration) as initMax,"
    " count(restoreMs) as restores, max(restoreMs) as restoreMax by bin(1m), @log"
)


def assign(functions: list[dict[str, Any]], order: tuple[str, ...] | list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each function to the first source in `order` it has: Lambda Insights if the extension is
    installed, Logs Insights if its logs are in text format (JSON-format REPORT records are not
    parsed here), X-Ray if it is actively traced. Those with none go under "none"."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in (*SOURCES, "none")}
    for fn in functions:
        facts = fn.get("facts") or {}
        for source in order:
            if eligible(source, facts):
                out[source].append(fn)
                break
        else:
            out["none"].append(fn)
    return out


def eligible(source: str, facts: dict[str, Any]) -> bool:
    if source == "lambda_insights":
        return bool(facts.get("lambda_insights"))
    if source == "logs":
        return str(facts.get("log_format") or "Text") == "Text"
    if source == "xray":
        # Discovered before the tracing mode was read: assume traced until the next discovery.
        return facts.get("tracing", "Active") == "Active"
    return False


def segment_destination(clients: Clients) -> str:
    """Where the account's trace segments go: "XRay", or "CloudWatchLogs" under Transaction
    Search (botocore xray GetTraceSegmentDestinationResult.Destination)."""
    return str(clients("xray").get_trace_segment_destination().get("Destination") or "XRay")


# -- Logs Insights --------------------------------------------------------------------------------


def batches(groups: list[tuple[str, str]], start: int, end: int) -> list[list[tuple[str, str]]]:
    """Log groups in batches a query can take: at most 50, and few enough that one row per
    group and minute stays under the rows one GetQueryResults call returns."""
    minutes = max(1, (end - start) // 60)
    size = max(1, min(MAX_LOG_GROUPS, MAX_ROWS // minutes - 1))
    return [groups[i : i + size] for i in range(0, len(groups), size)]


def report_lines(
    clients: Clients,
    groups: list[tuple[str, str]],
    start: int,
    end: int,
    *,
    now: Callable[[], float],
    wait: Callable[[float], None],
    timeout: float,
) -> tuple[ProbeResult, int]:
    """Cold starts per function and minute in [start, end) from the REPORT lines of `groups`
    ((resource id, log group) pairs, one query for all of them). Waits for the answer on the
    injected clock, at most `timeout` seconds; a query that fails, is cancelled, times out or
    does not finish in time raises ProbeError, so its window is asked again next poll.
    Returns (result, bytes scanned)."""
    logs = clients("logs")
    by_group = {group: rid for rid, group in groups}
    # endTime is inclusive (StartQueryRequest.endTime): the last second of the window.
    qid = logs.start_query(
        logGroupNames=[g for _, g in groups], startTime=start, endTime=end - 1, queryString=QUERY, limit=MAX_ROWS
    )["queryId"]
    deadline, pause = now() + timeout, 0.5
    while True:
        got = logs.get_query_results(queryId=qid)
        status = str(got.get("status"))
        if status not in WAITING:
            break
        if now() + pause > deadline:
            raise ProbeError(
                f"Logs Insights query {qid} was still {status} after {timeout:.0f} s; "
                "its window is asked again next poll (raise poll.logs_query_timeout if this repeats)"
            )
        wait(pause)
        pause = min(pause * 2, 8.0)
    scanned = int(float((got.get("statistics") or {}).get("bytesScanned") or 0))
    if status != "Complete":
        raise ProbeError(f"Logs Insights query {qid} ended {status}; its window is asked again next poll")
    rows = got.get("results") or []
    if len(rows) >= MAX_ROWS:
        raise ProbeError(
            f"Logs Insights query {qid} returned {len(rows)} rows, the most one answer holds; "
            "its window is asked again next poll in smaller batches"
        )
    per: dict[str, dict[int, list[float]]] = defaultdict(dict)  # rid -> minute -> [invocations, cold, init max]
    for row in rows:
        cells = {c.get("field"): c.get("value") for c in row}
        group = str(cells.get("@log", "")).split(":", 1)[-1]
        minute = _bin(cells.get("bin(1m)"))
        rid = by_group.get(group)
        if rid is None or minute is None or not start <= minute < end:
            continue
        init = max(_num(cells.get("initMax")), _num(cells.get("restoreMax")))
        per[rid][minute] = [
            _num(cells.get("invocations")),
            _num(cells.get("inits")) + _num(cells.get("restores")),
            init,
        ]
    out = ProbeResult()
    for rid, minutes in per.items():
        rows_ = sorted(minutes.items())
        out.points.append((SeriesKey(rid, LOGS_NS, "SampledInvocations", (), "Sum", 60), [(m, v[0]) for m, v in rows_]))
        out.points.append((SeriesKey(rid, LOGS_NS, "ColdStarts", (), "Sum", 60), [(m, v[1]) for m, v in rows_]))
        out.points.append(
            (SeriesKey(rid, LOGS_NS, "InitDuration", (), "Maximum", 60), [(m, v[2]) for m, v in rows_ if v[1] > 0])
        )
    return out, scanned


def _bin(value: Any) -> int | None:
    """bin(1m)'s value, "2026-11-18 14:15:00.000" (UTC), as epoch seconds."""
    try:
        return calendar.timegm(time.strptime(str(value)[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class ScanBudget:
    """Bytes Logs Insights scanned over the last 24 hours, against a daily budget."""

    def __init__(self, gb_per_day: float) -> None:
        self.limit = int(gb_per_day * GB)
        self._spent: list[tuple[float, int]] = []

    def spent(self, now: float) -> int:
        self._spent = [(t, n) for t, n in self._spent if t > now - 86400]
        return sum(n for _, n in self._spent)

    def left(self, now: float) -> int:
        return self.limit - self.spent(now)

    def add(self, now: float, scanned: int) -> None:
        self._spent.append((now, scanned))


def monthly_cost(gb_per_day: float) -> float:
    """The most Logs Insights can cost a month under the budget."""
    return gb_per_day * 30 * PRICE_PER_GB_SCANNED


# -- Lambda Insights ------------------------------------------------------------------------------


def insights_keys(functions: list[tuple[str, str]]) -> list[SeriesKey]:
    """The GetMetricData series for each function: init_duration SampleCount (cold starts),
    Minimum (the run-time check) and Maximum, and AWS/Lambda Invocations Sum."""
    out = []
    for rid, name in functions:
        dims = (("function_name", name),)
        out += [
            SeriesKey(rid, "LambdaInsights", "init_duration", dims, stat, 60)
            for stat in ("SampleCount", "Minimum", "Maximum")
        ]
        out.append(SeriesKey(rid, "AWS/Lambda", "Invocations", (("FunctionName", name),), "Sum", 60))
    return out


def insights_points(points: list[tuple[SeriesKey, list[tuple[int, float]]]]) -> tuple[ProbeResult, list[str]]:
    """The detector's series from the Lambda Insights answer, and the functions whose
    init_duration counted warm invocations too (not used: they fall to the next source)."""
    got: dict[tuple[str, str, str], dict[int, float]] = {}
    for key, pts in points:
        assert key.resource_id is not None  # the keys asked for are insights_keys', each a function's
        got[(key.resource_id, key.metric, key.stat)] = dict(pts)
    out, unusable = ProbeResult(), []
    for rid in sorted({k[0] for k in got}):
        invocations = got.get((rid, "Invocations", "Sum"), {})
        count = got.get((rid, "init_duration", "SampleCount"), {})
        if any(v == 0 for v in got.get((rid, "init_duration", "Minimum"), {}).values()):
            unusable.append(rid)
            continue
        minutes = sorted(t for t, v in invocations.items() if v > 0)
        out.points.append(
            (SeriesKey(rid, INSIGHTS_NS, "SampledInvocations", (), "Sum", 60), [(t, invocations[t]) for t in minutes])
        )
        out.points.append(
            (SeriesKey(rid, INSIGHTS_NS, "ColdStarts", (), "Sum", 60), [(t, count.get(t, 0.0)) for t in minutes])
        )
        peak = got.get((rid, "init_duration", "Maximum"), {})
        out.points.append((SeriesKey(rid, INSIGHTS_NS, "InitDuration", (), "Maximum", 60), sorted(peak.items())))
    return out, unusable


# -- reading them, poll by poll -------------------------------------------------------------------

Chosen = dict[str, list[dict[str, Any]]]
Fetch = Callable[[Any, list[Any], int, int], tuple[list[tuple[SeriesKey, list[tuple[int, float]]]], list[str]]]
READ_FAILURES = (ClientError, BotoCoreError, ProbeError)


class Reader:
    """The cold-start probes of a collector: which source reads each function asked for, each
    function's window (from the end of its last read, at most `lookback`; it moves on only once
    the minutes read are stored), the Logs Insights budget and each place's X-Ray destination."""

    def __init__(
        self,
        *,
        clock: Clock,
        log: CallLog,
        lookback: int,
        sources: tuple[str, ...] | list[str],
        gb_per_day: float,
        query_timeout: float,
        xray_max_traces: int,
        destination_ttl: int,
        fetch: Fetch,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.clock, self.log, self.lookback = clock, log, lookback
        self.coldstart_sources = tuple(sources)
        self.scan_budget = ScanBudget(gb_per_day)
        self.logs_query_timeout = query_timeout
        self.xray_max_traces = xray_max_traces
        self.destination_ttl = destination_ttl
        self.fetch = fetch
        # Waiting for a Logs Insights answer: on the injected clock where it can sleep (a fake
        # clock moves on instead), else on the wall clock.
        self.sleep = sleep or getattr(clock, "sleep", None) or time.sleep
        self._coldstart_until: dict[str, int] = {}  # function -> end of its last read (cold starts do not settle)
        self._destinations: dict[Place, tuple[int, str]] = {}  # X-Ray segment destination, and when it was read

    def probes(
        self, place: Place, clients: Clients, functions: list[dict[str, Any]], end: int
    ) -> list[tuple[str, Callable[[], ProbeResult]]]:
        """(source name, probe) for each source some of `functions` use; run in this order, a
        source hands the functions it could not read to the next."""
        chosen = assign(functions, self.coldstart_sources)
        runners = {
            "lambda_insights": lambda: self._insights(clients, chosen, end),
            "logs": lambda: self._logs(place, clients, chosen, end),
            "xray": lambda: self._xray(place, clients, chosen, end),
        }
        names = {"lambda_insights": "coldstarts:lambda_insights", "logs": "coldstarts:logs", "xray": "xray"}
        out: list[tuple[str, Callable[[], ProbeResult]]] = []
        earlier: list[dict[str, Any]] = []
        for source in self.coldstart_sources:
            # A source runs for its own functions, and for those an earlier one may hand on.
            if chosen[source] or any(eligible(source, f["facts"]) for f in earlier):
                out.append((names[source], runners[source]))
            earlier += chosen[source]
        return out

    def _since(self, rid: str, end: int) -> int:
        return max(end - self.lookback, self._coldstart_until.get(rid, 0))

    def _fall_back(self, chosen: dict[str, list[dict[str, Any]]], source: str, fns: list[dict[str, Any]]) -> None:
        """Functions a source could not read go to the next source they have."""
        order = self.coldstart_sources
        later = order[order.index(source) + 1 :] if source in order else ()
        for fn in fns:
            nxt = next((s for s in later if eligible(s, fn["facts"])), "none")
            chosen[nxt].append(fn)

    def _insights(self, clients: Any, chosen: dict[str, list[dict[str, Any]]], end: int) -> ProbeResult:
        fns = {f["id"]: f for f in chosen["lambda_insights"]}
        by_start: dict[int, list[tuple[str, str]]] = {}
        for rid, fn in fns.items():
            if self._since(rid, end) < end:
                by_start.setdefault(self._since(rid, end), []).append((rid, fn["name"]))
        got, done, unusable = ProbeResult(), [], []
        cw = clients("cloudwatch")
        for start, batch in sorted(by_start.items()):
            queries = [Query(k, DETAIL) for k in insights_keys(batch)]
            for i in range(0, len(queries), MAX_QUERIES):
                points, _ = self.fetch(cw, queries[i : i + MAX_QUERIES], start, end)
                one, bad = insights_points(points)
                got.points.extend(one.points)
                unusable += bad
            done += [rid for rid, _ in batch if rid not in unusable]
        self._fall_back(chosen, "lambda_insights", [fns[rid] for rid in unusable])
        got.stored = lambda: self._coldstart_until.update({rid: end for rid in done})
        got.note = f"{len(done)} function(s) from Lambda Insights init_duration"
        if unusable:
            got.note += (
                f"; {len(unusable)} whose init_duration also counts warm invocations (Minimum 0) "
                "fall back to the next source"
            )
        return got

    def _logs(self, place: Place, clients: Any, chosen: dict[str, list[dict[str, Any]]], end: int) -> ProbeResult:
        """One Logs Insights query per batch of up to 50 log groups with the same window, one
        at a time (StartQuery allows 100 running an account, the customer's own included)."""
        fns = {f["id"]: f for f in chosen["logs"]}
        by_start: dict[int, list[tuple[str, str]]] = {}
        for rid, fn in fns.items():
            if self._since(rid, end) < end:
                group = str(fn["facts"].get("log_group") or f"/aws/lambda/{fn['name']}")
                by_start.setdefault(self._since(rid, end), []).append((rid, group))
        got, done, over_budget, missing = ProbeResult(), [], [], []
        scanned = 0
        pending = [
            (start, batch) for start, groups in sorted(by_start.items()) for batch in batches(groups, start, end)
        ]
        while pending:
            start, batch = pending.pop(0)
            if self.scan_budget.left(self.clock.now()) <= 0:
                over_budget += [rid for rid, _ in batch]
                continue
            try:
                one, n = report_lines(
                    clients, batch, start, end, now=self.clock.now, wait=self.sleep, timeout=self.logs_query_timeout
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") != "ResourceNotFoundException":
                    got.failure = exc  # this batch is asked again next poll; the others go on
                    continue
                if len(batch) > 1:  # a log group not there (never invoked, or logging elsewhere): find which
                    pending[:0] = [(start, [g]) for g in batch]
                else:
                    missing.append(batch[0][1])
                continue
            except ProbeError as exc:
                got.failure = exc
                continue
            self.scan_budget.add(self.clock.now(), n)
            self.log.scanned(place, n)
            scanned += n
            got.points.extend(one.points)
            done += [rid for rid, _ in batch]
        self._fall_back(chosen, "logs", [fns[rid] for rid in over_budget])
        got.stored = lambda: self._coldstart_until.update({rid: end for rid in done})
        left = max(self.scan_budget.left(self.clock.now()), 0) / GB
        got.note = (
            f"{len(done)} of {len(fns)} function(s) from their REPORT lines, {scanned / 1e6:.1f} MB scanned; "
            f"{left:.2f} of {self.scan_budget.limit / GB:g} GB of today's budget left"
        )
        if over_budget:
            got.note += (
                f"; {len(over_budget)} not read: the Logs Insights budget (poll.logs_insights_gb_per_day) is spent"
            )
        if missing:
            got.note += f"; no log group {', '.join(missing[:3])}"
        return got

    def _destination(self, place: Place, clients: Any) -> str:
        now = int(self.clock.now())
        seen = self._destinations.get(place)
        if seen is None or now - seen[0] >= self.destination_ttl:
            seen = self._destinations[place] = (now, segment_destination(clients))
        return seen[1]

    def _xray(self, place: Place, clients: Any, chosen: dict[str, list[dict[str, Any]]], end: int) -> ProbeResult:
        got = ProbeResult()
        functions = [(f["id"], f["name"]) for f in chosen["xray"]]
        if not functions:
            got.note = "no function left for X-Ray"
            return got
        destination = self._destination(place, clients)
        if destination != "XRay":
            got.note = (
                f"Transaction Search is on (trace segments go to {destination}): X-Ray does not index traces, so "
                f"{len(functions)} function(s) have no cold-start source; keep their logs in text format or "
                "install Lambda Insights"
            )
            return got
        read, scanned, done = 0, 0, []
        for rid, name in functions:
            start = self._since(rid, end)
            if start >= end:
                continue
            try:
                one, n = probes.cold_starts(clients, [(rid, name)], start, end, self.xray_max_traces)
            except READ_FAILURES as exc:
                got.failure = exc  # the functions read so far are kept; this one and the rest are read next poll
                break
            got.points.extend(one.points)
            read, scanned = read + n, scanned + one.scanned
            done.append(rid)
        # A function's window moves on only once its minutes are stored.
        got.stored = lambda: self._coldstart_until.update({rid: end for rid in done})
        self.log.traces(place, read + scanned)  # X-Ray bills traces retrieved and scanned alike
        got.note = f"{read} traces of {len(done)} of {len(functions)} function(s) ({scanned} scanned)"
        return got
