"""X-Ray traces of the fleet's Lambda invocations.

Each function samples 5% of its invocations (at least one a minute while it is invoked), and a
sampled cold start carries an `Initialization` subsegment as in real Lambda traces. A trace is
never stored: its id encodes (function, minute, index), so BatchGetTraces rebuilds it exactly.

The modes of simulator.model shape what a real account shows: an untraced function (tracing
PassThrough) has no traces; an account in Transaction Search mode sends segments to CloudWatch
Logs, so BatchGetTraces finds none of its traces (botocore xray/2016-04-12 BatchGetTraces: "You
cannot find traces through this API if Transaction Search is enabled since trace is not indexed
in X-Ray"); a function with a caller is invoked by it, so its traces hold both functions'
segments, the caller's first.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np

from simulator.errors import ApiError
from simulator.fleet import Resource
from simulator.mathx import key, norm_ppf, stochastic_round, uniform
from simulator.model import FleetModel, in_mode

SAMPLE_RATE = 0.05
PAGE_SIZE = 100
MAX_CELLS_PER_PAGE = 20_000
_SERVICE = re.compile(r'^\s*service\(\s*(?:"([^"]+)"|id\(\s*name:\s*"([^"]+)"[^)]*\))\s*\)\s*$')
_TRACE_ID = re.compile(r"^1-([0-9a-f]{8})-([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{12})$")


def _functions(model: FleetModel, account: str, region: str) -> list[Resource]:
    return model.fleet.of_kind("lambda", account, region)


def _minute_counts(model: FleetModel, fn: Resource, m: np.ndarray) -> dict[str, np.ndarray]:
    d = model.drivers(fn, m)
    u = model.noise(fn, "xray:sampled", m)
    invoked = stochastic_round(d["invocations"], model.noise(fn, "xray:invoked", m))
    sampled = np.where(invoked > 0, np.maximum(stochastic_round(invoked * SAMPLE_RATE, u), 1.0), 0.0)
    sampled = np.minimum(sampled, 9999)
    cold = np.minimum(stochastic_round(sampled * d["cold_share"], model.noise(fn, "xray:cold", m)), sampled)
    errors = np.minimum(stochastic_round(sampled * d["error_rate"], model.noise(fn, "xray:errors", m)), sampled - cold)
    return {
        "sampled": sampled,
        "cold": cold,
        "errors": errors,
        "duration_ms": d["duration_ms"],
        "init_ms": d["init_ms"],
    }


def _check(model: FleetModel, fn: Resource, minute: int, idx: int) -> int:
    return int(key(model.seed, fn.uid, minute, idx)) & 0xFFFFFFFFFFFF


def _trace(
    model: FleetModel, fn: Resource, findex: int, minute: int, idx: int, counts: dict[str, float]
) -> dict[str, Any]:
    """One sampled invocation: cold ones come first in the minute, then errors."""
    u = float(uniform(key(model.seed, fn.uid, "xray:trace", idx), np.array([minute]))[0])
    start = minute * 60 + (idx + u) * 60.0 / max(counts["sampled"], 1)
    cold = idx < counts["cold"]
    error = not cold and idx < counts["cold"] + counts["errors"]
    duration_ms = counts["duration_ms"] * math.exp(fn["duration_sigma"] * float(norm_ppf(min(max(u, 1e-6), 1 - 1e-6))))
    init_ms = counts["init_ms"] * (0.85 + 0.3 * u) if cold else 0.0
    tid = f"1-{int(start):08x}-{findex:08x}{idx:04x}{_check(model, fn, minute, idx):012x}"
    return {"id": tid, "start": start, "duration_ms": duration_ms, "init_ms": init_ms, "cold": cold, "error": error}


def _summary(fn: Resource, t: dict[str, Any]) -> dict[str, Any]:
    seconds = (t["duration_ms"] + t["init_ms"]) / 1000.0
    service = {"Name": fn.name, "Names": [fn.name], "AccountId": fn.account, "Type": "AWS::Lambda::Function"}
    return {
        "Id": t["id"],
        "StartTime": t["start"],
        "Duration": round(seconds + 0.004, 3),
        "ResponseTime": round(seconds + 0.004, 3),
        "HasFault": t["error"],
        "HasError": False,
        "HasThrottle": False,
        "IsPartial": False,
        "Http": {},
        "Annotations": {},
        "Users": [],
        "ServiceIds": [service, {**service, "Type": "AWS::Lambda"}],
        "ResourceARNs": [{"ARN": fn.arn}],
        "EntryPoint": {**service, "Type": "AWS::Lambda"},
        "Revision": 1,
        "MatchedEventTime": t["start"],
    }


def get_trace_summaries(model: FleetModel, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    start, end = body.get("StartTime"), body.get("EndTime")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or start >= end:
        raise ApiError("InvalidRequestException", "StartTime must be a timestamp before EndTime.")
    functions = _functions(model, account, region)
    expression = (body.get("FilterExpression") or "").strip()
    if expression:
        match = _SERVICE.match(expression)
        if not match:
            raise ApiError(
                "InvalidRequestException", 'The fleetwatch emulator evaluates only service("name") filter expressions.'
            )
        wanted = match.group(1) or match.group(2)
        selected = [i for i, fn in enumerate(functions) if fn.name == wanted and _traced(model, fn)]
    else:
        selected = [i for i, fn in enumerate(functions) if _traced(model, fn)]
    now = model.now()
    first_minute = int(math.ceil(start / 60))
    last_minute = int(min(end, now) // 60) - 1  # complete minutes only
    cursor = {"m": last_minute, "f": 0}
    if body.get("NextToken"):
        try:
            cursor = json.loads(base64.urlsafe_b64decode(body["NextToken"].encode()))
            cursor = {"m": int(cursor["m"]), "f": int(cursor["f"])}
        except (ValueError, KeyError, TypeError):
            raise ApiError("InvalidRequestException", "NextToken is not valid.") from None
    summaries: list[dict[str, Any]] = []
    cells = 0
    minute, f = cursor["m"], cursor["f"]
    while minute >= first_minute:
        m = np.array([minute], dtype=np.int64)
        while f < len(selected):
            if len(summaries) >= PAGE_SIZE or cells >= MAX_CELLS_PER_PAGE:
                return _summaries_page(summaries, end, {"m": minute, "f": f})
            findex = selected[f]
            fn = functions[findex]
            counts = {k: float(v[0]) for k, v in _minute_counts(model, fn, m).items()}
            for idx in range(int(counts["sampled"])):
                t = _trace(model, fn, findex, minute, idx, counts)
                if start <= t["start"] < end:
                    summaries.append(_summary(fn, t))
            cells += 1
            f += 1
        minute, f = minute - 1, 0
    return _summaries_page(summaries, end, None)


def _summaries_page(summaries: list[dict[str, Any]], end: float, cursor: dict[str, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"TraceSummaries": summaries, "ApproximateTime": end, "TracesProcessedCount": len(summaries)}
    if cursor is not None:
        out["NextToken"] = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
    return out


def batch_get_traces(model: FleetModel, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    ids = body.get("TraceIds") or []
    functions = _functions(model, account, region)
    traces, missing = [], []
    for tid in ids:
        built = None if account in model.modes["transaction_search"] else _rebuild(model, functions, tid)
        if built is None:
            missing.append(tid)
        else:
            traces.append(built)
    return {"Traces": traces, "UnprocessedTraceIds": missing}


def _rebuild(model: FleetModel, functions: list[Resource], tid: str) -> dict[str, Any] | None:
    match = _TRACE_ID.match(tid)
    if not match:
        return None
    seconds, findex, idx, check = (int(g, 16) for g in match.groups())
    if findex >= len(functions):
        return None
    fn = functions[findex]
    if not _traced(model, fn):
        return None
    minute = seconds // 60
    if _check(model, fn, minute, idx) != check or (minute + 1) * 60 > model.now():
        return None
    counts = {k: float(v[0]) for k, v in _minute_counts(model, fn, np.array([minute], dtype=np.int64)).items()}
    if idx >= counts["sampled"]:
        return None
    t = _trace(model, fn, findex, minute, idx, counts)
    caller = next((f for f in functions if f.name == model.modes["callers"].get(fn.name)), None)
    segments = _segments(fn, t, "Restore" if in_mode(model, "snap_start", fn.name) else "Initialization")
    if caller is not None:
        segments = _caller_segments(caller, t) + segments
    return {
        "Id": tid,
        "Duration": round((t["duration_ms"] + t["init_ms"]) / 1000 + 0.004, 3),
        "LimitExceeded": False,
        "Segments": segments,
    }


def _traced(model: FleetModel, fn: Resource) -> bool:
    return not in_mode(model, "untraced", fn.name)


def get_trace_segment_destination(model: FleetModel, account: str) -> dict[str, Any]:
    """botocore xray/2016-04-12 GetTraceSegmentDestinationResult: Destination XRay or
    CloudWatchLogs (Transaction Search), Status PENDING or ACTIVE."""
    destination = "CloudWatchLogs" if account in model.modes["transaction_search"] else "XRay"
    return {"Destination": destination, "Status": "ACTIVE"}


def _caller_segments(caller: Resource, t: dict[str, Any]) -> list[dict[str, str]]:
    """The calling function's own segments, warm, around the call: a trace through two
    functions holds a function segment for each (the caller's has no Initialization)."""
    s0 = t["start"] - 0.002
    end = t["start"] + (t["duration_ms"] + t["init_ms"]) / 1000 + 0.010
    sid, fid = t["id"][-16:-1] + "d", t["id"][-24:-9] + "e"
    service = {
        "id": sid,
        "name": caller.name,
        "start_time": s0,
        "end_time": end,
        "trace_id": t["id"],
        "origin": "AWS::Lambda",
        "aws": {"account_id": caller.account, "resource_names": [caller.name]},
    }
    function = {
        "id": fid,
        "name": caller.name,
        "start_time": s0,
        "end_time": end,
        "trace_id": t["id"],
        "parent_id": sid,
        "origin": "AWS::Lambda::Function",
        "resource_arn": caller.arn,
        "aws": {"account_id": caller.account},
        "subsegments": [{"id": f"{fid[:8]}0000000b", "name": "Invocation", "start_time": s0, "end_time": end}],
    }
    return [{"Id": sid, "Document": json.dumps(service)}, {"Id": fid, "Document": json.dumps(function)}]


def _segments(fn: Resource, t: dict[str, Any], start_name: str = "Initialization") -> list[dict[str, str]]:
    sid = t["id"][-16:]
    fid = t["id"][-24:-8]
    s0 = t["start"]
    init_end = s0 + t["init_ms"] / 1000
    inv_end = init_end + t["duration_ms"] / 1000
    end = inv_end + 0.004
    subsegments = []
    if t["cold"]:
        subsegments.append(
            {
                "id": f"{fid[:8]}0000000a",
                "name": start_name,
                "start_time": s0,
                "end_time": init_end,
                "aws": {"function_arn": fn.arn},
            }
        )
    subsegments.append(
        {
            "id": f"{fid[:8]}0000000b",
            "name": "Invocation",
            "start_time": init_end,
            "end_time": inv_end,
            **({"fault": True} if t["error"] else {}),
        }
    )
    subsegments.append({"id": f"{fid[:8]}0000000c", "name": "Overhead", "start_time": inv_end, "end_time": end})
    service = {
        "id": sid,
        "name": fn.name,
        "start_time": s0,
        "end_time": end,
        "trace_id": t["id"],
        "origin": "AWS::Lambda",
        "http": {"response": {"status": 200}},
        "aws": {"account_id": fn.account, "resource_names": [fn.name]},
    }
    function = {
        "id": fid,
        "name": fn.name,
        "start_time": s0,
        "end_time": end,
        "trace_id": t["id"],
        "parent_id": sid,
        "origin": "AWS::Lambda::Function",
        "resource_arn": fn.arn,
        "subsegments": subsegments,
        "aws": {"account_id": fn.account},
        **({"fault": True} if t["error"] else {}),
    }
    return [{"Id": sid, "Document": json.dumps(service)}, {"Id": fid, "Document": json.dumps(function)}]
