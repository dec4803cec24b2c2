"""CloudWatch Logs Insights over the fleet's Lambda log groups (moto's start_query keeps the
query and returns no results for it).

Every invocation of a simulated function writes START, END and REPORT lines to its log group,
/aws/lambda/<name>, as Lambda does. A REPORT line is AWS's text format ("Using the Lambda
monitoring ... REPORT" in the Lambda developer guide, e.g. .../lambda/latest/dg/python-logging.html):

    REPORT RequestId: <id>\tDuration: 2.75 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 37 MB\tInit Duration: 124.99 ms

`Init Duration` only on a cold start; a SnapStart function's new environment is restored
instead and its REPORT carries `Restore Duration` and `Billed Restore Duration`, no Init Duration
(.../lambda/latest/dg/snapstart-monitoring.html). The counts agree with the AWS/Lambda metrics:
a minute's REPORT lines are its Invocations Sum.

The query language is a subset of Logs Insights QL, enough for the questions asked of REPORT
lines: `filter` (=, !=, like, joined by and), `parse @message /regex/`, `stats` with count,
max, min, sum and avg by bin(...) and fields, and `limit`. Discovered fields follow AWS's
"Supported logs and discovered fields" (@message, @timestamp, @log = account-id:log-group-name,
@logStream, and for REPORT lines @type, @requestId, @duration, @billedDuration, @initDuration).
START and END lines are counted in the scan statistics but not materialised, so a query must
begin with `filter @type = "REPORT"`. A query answers Running on its first GetQueryResults and
Complete after (or the status the `logs_query_status` mode names), with recordsScanned and
bytesScanned as Logs Insights bills them.
"""  # noqa: E501 - the REPORT line is quoted verbatim from AWS

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np

from simulator.errors import ApiError
from simulator.fleet import Resource
from simulator.mathx import key, stochastic_round, uniform
from simulator.model import FleetModel, in_mode

MAX_LOG_GROUPS = 50  # botocore logs/2014-03-28 StartQueryRequest.logGroupNames: "up to 50 log groups"
MAX_CONCURRENT = 100  # StartQuery: "up to 100 concurrent CloudWatch Logs insights queries"
MAX_LIMIT = 10_000  # events returned by one GetQueryResults call
KEPT = 1000  # finished queries remembered


def log_group(fn: Resource) -> str:
    return f"/aws/lambda/{fn.name}"


# -- the lines ------------------------------------------------------------------------------------


def _request_ids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
    out = []
    for a, b in raw:
        h = f"{int(a):016x}{int(b):016x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}")
    return out


def minute_lines(model: FleetModel, fn: Resource, minute: int) -> tuple[list[tuple[float, str, str]], int, int]:
    """(timestamp, log stream, REPORT line) for each invocation in one minute, and the START
    and END lines' count and bytes, which are scanned but never match a REPORT query."""
    m = np.array([minute], dtype=np.int64)
    d = model.drivers(fn, m)
    # The rounding noise of the AWS/Lambda metrics: as many REPORT lines as Invocations.
    n = int(stochastic_round(d["invocations"], uniform(model.noise_key(fn, "round"), m))[0])
    if n <= 0:
        return [], 0, 0
    cold = min(int(stochastic_round(d["invocations"] * d["cold_share"], model.noise(fn, "logs:cold", m))[0]), n)
    rng = np.random.default_rng(int(key(model.seed, fn.uid, "logs", minute)) & 0x7FFFFFFFFFFFFFFF)
    offsets = np.sort(rng.uniform(0.0, 60.0, n))
    durations = float(d["duration_ms"][0]) * np.exp(fn["duration_sigma"] * rng.standard_normal(n))
    init = float(d["init_ms"][0]) * rng.uniform(0.85, 1.15, n)
    used = np.minimum(fn["memory"], np.round(fn["memory"] * rng.uniform(0.2, 0.5, n)))
    ids = _request_ids(rng, n)
    snap = in_mode(model, "snap_start", fn.name)
    lines = []
    for i in range(n):
        dur = round(float(durations[i]), 2)
        line = (
            f"REPORT RequestId: {ids[i]}\tDuration: {dur:.2f} ms\tBilled Duration: {math.ceil(dur)} ms\t"
            f"Memory Size: {fn['memory']} MB\tMax Memory Used: {int(used[i])} MB"
        )
        if i < cold and snap:
            restore = round(float(init[i]) * 0.2, 2)  # a restore is much faster than the init it replaces
            line += f"\tRestore Duration: {restore:.2f} ms\tBilled Restore Duration: {math.ceil(restore * 0.6)} ms"
        elif i < cold:
            line += f"\tInit Duration: {float(init[i]):.2f} ms"
        stream = (
            f"{time.strftime('%Y/%m/%d', time.gmtime(minute * 60))}/[$LATEST]{ids[i % min(n, 4)].replace('-', '')[:32]}"
        )
        lines.append((minute * 60 + float(offsets[i]), stream, line + "\t"))
    # START RequestId: <id> Version: $LATEST, and END RequestId: <id>, per invocation.
    other_bytes = n * (len("START RequestId: ") + 36 + len(" Version: $LATEST") + len("END RequestId: ") + 36)
    return lines, 2 * n, other_bytes


_REPORT = re.compile(
    r"^REPORT RequestId: (?P<requestId>\S+)\tDuration: (?P<duration>[\d.]+) ms\t"
    r"Billed Duration: (?P<billedDuration>\d+) ms.*?(?:\tInit Duration: (?P<initDuration>[\d.]+) ms)?\t?$"
)


def _event(account: str, group: str, ts: float, stream: str, message: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"@message": message, "@timestamp": ts, "@log": f"{account}:{group}", "@logStream": stream}
    match = _REPORT.match(message)
    if match:
        ev["@type"] = "REPORT"
        for name, value in match.groupdict().items():
            if value is not None:
                ev[f"@{name}"] = value if name == "requestId" else float(value)
    return ev


# -- the query language ---------------------------------------------------------------------------

_COND = re.compile(r'^\s*(@?[\w.]+)\s*(=|!=|like)\s*(?:"([^"]*)"|\'([^\']*)\'|/((?:[^/\\]|\\.)*)/|([\d.]+))\s*$')
_AGG = re.compile(r"^\s*(count|max|min|sum|avg)\(\s*(\*|@?[\w.]+)?\s*\)(?:\s+as\s+(\w+))?\s*$", re.I)
_BIN = re.compile(r"^\s*bin\(\s*(\d+)\s*(s|m|h)\s*\)\s*$")


def _malformed(message: str) -> ApiError:
    return ApiError("MalformedQueryException", message)


def _split(query: str) -> list[str]:
    """Commands separated by | outside quotes and /regex/."""
    out, cur, quote = [], [], ""
    for ch in query:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'/":
            quote = ch
            cur.append(ch)
        elif ch == "|":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [c for c in out if c]


def _condition(text: str) -> Any:
    parts = re.split(r"\s+and\s+", text, flags=re.I)
    tests = []
    for part in parts:
        m = _COND.match(part)
        if not m:
            raise _malformed(f"The fleetwatch emulator cannot evaluate the filter {part.strip()!r}.")
        field, op, dq, sq, rx, num = m.groups()
        if op == "like":
            pattern = re.compile(rx if rx is not None else re.escape(dq or sq or ""))
            tests.append(lambda ev, f=field, p=pattern: isinstance(ev.get(f), str) and bool(p.search(ev[f])))
        else:
            want: Any = float(num) if num is not None else (dq if dq is not None else sq)
            tests.append(lambda ev, f=field, w=want, eq=(op == "="): (ev.get(f) == w) == eq)
    return lambda ev: all(t(ev) for t in tests)


def _parse(text: str) -> Any:
    m = re.match(r"^parse\s+(@?\w+)\s+/(.*)/\s*$", text, re.S)
    if not m:
        raise _malformed(
            "The fleetwatch emulator evaluates parse only as: parse @field /regex with (?<name>...) groups/."
        )
    field, rx = m.groups()
    pattern = re.compile(rx.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!"))

    def apply(ev: dict[str, Any]) -> None:
        found = pattern.search(str(ev.get(field, "")))
        if found:
            ev.update({k: v for k, v in found.groupdict().items() if v is not None})

    return apply


def _stats(text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, Any]]]:
    m = re.match(r"^stats\s+(.*?)(?:\s+by\s+(.*))?$", text, re.S | re.I)
    if not m:
        raise _malformed("stats needs at least one aggregate")
    aggs = []
    for part in m.group(1).split(","):
        a = _AGG.match(part)
        if not a:
            raise _malformed(f"The fleetwatch emulator cannot evaluate the aggregate {part.strip()!r}.")
        fn, arg, alias = a.group(1).lower(), a.group(2) or "*", a.group(3)
        aggs.append((alias or f"{fn}({arg})", fn, arg))
    groups: list[tuple[str, Any]] = []
    for part in (m.group(2) or "").split(","):
        part = part.strip()
        if not part:
            continue
        b = _BIN.match(part)
        if b:
            size = int(b.group(1)) * {"s": 1, "m": 60, "h": 3600}[b.group(2)]
            groups.append(
                (
                    part.replace(" ", ""),
                    lambda ev, s=size: time.strftime(
                        "%Y-%m-%d %H:%M:%S.000", time.gmtime(int(ev["@timestamp"]) // s * s)
                    ),
                )
            )
        elif re.match(r"^@?[\w.]+$", part):
            groups.append((part, lambda ev, f=part: ev.get(f)))
        else:
            raise _malformed(f"The fleetwatch emulator cannot group by {part!r}.")
    return aggs, groups


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def evaluate(query: str, events: list[dict[str, Any]], limit: int) -> list[list[dict[str, str]]]:
    commands = _split(query)
    if not commands or not re.match(r'^filter\s+@type\s*=\s*"REPORT"', commands[0]):
        raise _malformed(
            'The fleetwatch emulator holds REPORT lines only: begin the query with filter @type = "REPORT".'
        )
    stats = None
    for command in commands:
        verb = command.split(None, 1)[0].lower()
        if verb == "filter":
            keep = _condition(command[len("filter") :])
            events = [ev for ev in events if keep(ev)]
        elif verb == "parse":
            apply = _parse(command)
            events = [dict(ev) for ev in events]
            for ev in events:
                apply(ev)
        elif verb == "stats":
            stats = _stats(command)
        elif verb == "limit":
            try:
                limit = min(limit, int(command.split()[1]))
            except (IndexError, ValueError):
                raise _malformed("limit takes a number") from None
        else:
            raise _malformed(
                f"The fleetwatch emulator does not evaluate {verb!r}; it evaluates filter, parse, stats and limit."
            )
    if stats is None:
        rows = [
            [{"field": k, "value": str(v)} for k, v in ev.items() if k in ("@timestamp", "@message", "@log")]
            for ev in events
        ]
        return rows[:limit]
    aggs, groups = stats
    buckets: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = OrderedDict()
    for ev in sorted(events, key=lambda e: e["@timestamp"]):
        buckets.setdefault(tuple(g(ev) for _, g in groups), []).append(ev)
    rows = []
    for group_values, members in buckets.items():
        row = [
            {"field": name, "value": str(v)} for (name, _), v in zip(groups, group_values, strict=True) if v is not None
        ]
        for name, fn, arg in aggs:
            if fn == "count":
                value: float | None = float(
                    len(members) if arg == "*" else sum(1 for ev in members if ev.get(arg) is not None)
                )
            else:
                nums = [x for x in (_number(ev.get(arg)) for ev in members) if x is not None]
                value = (
                    None
                    if not nums
                    else max(nums)
                    if fn == "max"
                    else min(nums)
                    if fn == "min"
                    else sum(nums)
                    if fn == "sum"
                    else sum(nums) / len(nums)
                )
            if value is not None:
                row.append({"field": name, "value": _format(value)})
        rows.append(row)
    return rows[:limit]


# -- the API --------------------------------------------------------------------------------------


class Queries:
    """Queries started, by id, and what each answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, account: str, region: str, answer: dict[str, Any], status: str) -> str:
        with self._lock:
            running = sum(
                1
                for q in self._queries.values()
                if q["account"] == account and q["region"] == region and q["polls"] == 0
            )
            if running >= MAX_CONCURRENT:
                raise ApiError(
                    "LimitExceededException", f"Account has reached the limit of {MAX_CONCURRENT} concurrent queries."
                )
            qid = str(uuid.uuid4())
            self._queries[qid] = {"account": account, "region": region, "answer": answer, "status": status, "polls": 0}
            while len(self._queries) > KEPT:
                self._queries.popitem(last=False)
            return qid

    def poll(self, account: str, region: str, qid: str) -> dict[str, Any]:
        with self._lock:
            q = self._queries.get(qid)
            if q is None or q["account"] != account or q["region"] != region:
                raise ApiError("ResourceNotFoundException", f"Query {qid} does not exist.")
            q["polls"] += 1
            if q["polls"] == 1:
                return {
                    "status": "Running",
                    "results": [],
                    "statistics": {"recordsMatched": 0.0, "recordsScanned": 0.0, "bytesScanned": 0.0},
                }
            if q["status"] != "Complete":
                return {"status": q["status"], "results": [], "statistics": q["answer"]["statistics"]}
            return {"status": "Complete", **q["answer"]}


def start_query(model: FleetModel, queries: Queries, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    named = [k for k in ("logGroupName", "logGroupNames", "logGroupIdentifiers") if body.get(k)]
    if len(named) != 1:
        raise ApiError(
            "InvalidParameterException", "Specify exactly one of logGroupName, logGroupNames or logGroupIdentifiers."
        )
    wanted = [body[named[0]]] if named[0] == "logGroupName" else list(body[named[0]])
    if len(wanted) > MAX_LOG_GROUPS:
        raise ApiError("InvalidParameterException", f"A query can name at most {MAX_LOG_GROUPS} log groups.")
    start, end = body.get("startTime"), body.get("endTime")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or start > end:
        raise ApiError(
            "InvalidParameterException", "startTime and endTime are epoch seconds, startTime not after endTime."
        )
    start, end = int(start), int(end)
    limit = int(body.get("limit") or 10_000)
    groups = {log_group(fn): fn for fn in model.fleet.of_kind("lambda", account, region)}
    for name in wanted:
        name = name.split(":log-group:", 1)[-1].removesuffix(":*")  # an ARN names the group too
        if name not in groups:
            raise ApiError(
                "ResourceNotFoundException", f"Log group '{name}' does not exist for account ID '{account}'."
            )
    events, scanned, scanned_bytes = [], 0, 0
    last = min(end, int(model.now()) - 1)  # nothing is written after now
    for name in wanted:
        name = name.split(":log-group:", 1)[-1].removesuffix(":*")
        fn = groups[name]
        for minute in range(start // 60, last // 60 + 1):
            lines, others, other_bytes = minute_lines(model, fn, minute)
            kept = [(ts, stream, line) for ts, stream, line in lines if start <= ts <= last + 0.999]
            share = len(kept) / max(len(lines), 1)
            scanned += len(kept) + round(others * share)
            scanned_bytes += sum(len(line) for _, _, line in kept) + round(other_bytes * share)
            events.extend(_event(account, name, ts, stream, line) for ts, stream, line in kept)
    results = evaluate(str(body.get("queryString") or ""), events, min(limit, MAX_LIMIT))
    matched = sum(1 for ev in events if ev.get("@type") == "REPORT")
    answer = {
        "results": results,
        "statistics": {
            "recordsMatched": float(matched),
            "recordsScanned": float(scanned),
            "bytesScanned": float(scanned_bytes),
            "logGroupsScanned": float(len(wanted)),
        },
    }
    return {"queryId": queries.add(account, region, answer, model.modes.get("logs_query_status") or "Complete")}


def get_query_results(queries: Queries, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    return queries.poll(account, region, str(body.get("queryId", "")))
