"""GetMetricData windows and calls: the plan's queries cut into windows short enough to come back
without NextToken pages (merged across source accounts in monitoring-account mode), and one call
with its answer checked, not trusted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from collector import plan, probes
from collector.aws import Place, epoch_seconds
from collector.catalog import DETAIL
from fleetwatch.store import SeriesKey

MAX_PAGES = 100  # GetMetricData pages for one request; real answers need a handful
# CloudWatch refuses to store values whose magnitude is above this (PutMetricData's documented
# range), so a larger one in an answer is not a real datapoint.
CLOUDWATCH_MAX = 1.174271e108


@dataclass
class Chunk:
    start: int
    end: int
    items: list[tuple[Place, plan.Query]]  # one place's, or a Region's places' in monitoring-account mode
    reread: bool = False  # series asked again after an incomplete answer: no cursor moves

    @property
    def queries(self) -> list[plan.Query]:
        return [q for _, q in self.items]

    @property
    def advances(self) -> list[tuple[Place, str]]:
        """The (place, cursor) rows (a tier's, or a slow-tier slice's) this window moves once
        stored (detail has no cursor; a
        re-read covers a few series only and never moves their tier's cursor)."""
        if self.reread:
            return []
        return sorted({(p, q.cursor) for p, q in self.items if q.tier != DETAIL}, key=lambda pt: (str(pt[0]), pt[1]))


def windows(by_start: dict[tuple[int, bool], list[tuple[Place, plan.Query]]], end: int) -> list[Chunk]:
    """Cut each (start, re-read) group's queries into windows short enough to come back without
    NextToken pages."""
    out = []
    for (start, reread), items in sorted(by_start.items(), key=lambda kv: kv[0]):
        step = plan.chunk_minutes(min(len(items), plan.MAX_QUERIES)) * 60
        t = start
        while t < end:
            out.append(Chunk(t, min(t + step, end), items, reread))
            t = min(t + step, end)
    return out


def linked_chunks(plans: dict[Place, list[Chunk]], end: int) -> dict[str, list[Chunk]]:
    """Monitoring-account mode: per Region, every place's queries with the same window start
    merged, then cut again, so one GetMetricData call carries up to 500 queries of several
    source accounts."""
    by_region: dict[str, dict[tuple[int, bool], list[tuple[Place, plan.Query]]]] = {}
    for place, chunks in plans.items():
        # A place's chunks share their start's queries: take each start's once.
        firsts: dict[tuple[int, bool], list[tuple[Place, plan.Query]]] = {}
        for c in chunks:
            firsts.setdefault((_start_of(chunks, c), c.reread), c.items)
        for start, items in firsts.items():
            by_region.setdefault(place.region, {}).setdefault(start, []).extend(items)
    return {region: windows(by_start, end) for region, by_start in by_region.items()}


def _start_of(chunks: list[Chunk], chunk: Chunk) -> int:
    """The window start a chunk was cut from: the earliest chunk carrying the same queries."""
    return min(c.start for c in chunks if c.items is chunk.items)


def fetch(
    cw: Any,
    queries: list[plan.Query],
    start: int,
    end: int,
    incomplete: set[SeriesKey] | None = None,
    accounts: list[str] | None = None,
) -> tuple[list[tuple[SeriesKey, list[tuple[int, float]]]], list[str]]:
    """One GetMetricData call (plus NextToken pages) for up to 500 queries. Datapoints that are
    missing stay missing: a series with no data in the window gets no samples at all.

    The answer is checked, not trusted: a datapoint outside the window asked for, or not a
    finite number within what CloudWatch can hold, is dropped and counted in the problems; a
    result whose timestamps and values do not pair up is dropped whole; an answer that leaves a
    query out altogether, or pages without end, raises ProbeError, so the window is not counted
    as read and is asked again next poll.

    A result whose last StatusCode is not Complete (InternalError: "an error occurred. Retry your
    request"; PartialData with no page left; Forbidden) has its key added to `incomplete`: what it
    did return is kept, and the caller asks that series' window again (botocore cloudwatch
    2010-08-01 service-2.json, MetricDataResult.StatusCode)."""
    requests = [q.request(f"q{i}", accounts[i] if accounts else "") for i, q in enumerate(queries)]
    asked = {f"q{i}": i for i in range(len(queries))}
    collected: dict[str, list[tuple[int, float]]] = {}
    problems: list[str] = []
    dropped = 0
    status: dict[str, str] = {}
    token, tokens = None, set()
    for _ in range(MAX_PAGES):
        args: dict[str, Any] = {
            "MetricDataQueries": requests,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            args["NextToken"] = token
        page = cw.get_metric_data(**args)
        for r in page.get("MetricDataResults") or []:
            idx = asked.get(r.get("Id"))
            if idx is None:
                problems.append(f"an answer for a query not asked ({str(r.get('Id'))[:40]!r}) was ignored")
                continue
            got = collected.setdefault(r["Id"], [])
            status[r["Id"]] = str(r.get("StatusCode"))
            stamps, values = r.get("Timestamps") or [], r.get("Values") or []
            if len(stamps) != len(values):
                problems.append(
                    f"{queries[idx].key.metric}: {len(stamps)} timestamps for {len(values)} values; dropped"
                )
                continue
            for ts, v in zip(stamps, values, strict=True):
                point = _point(ts, v, start, end)
                if point is None:
                    dropped += 1
                else:
                    got.append(point)
            if r.get("StatusCode") not in ("Complete", "PartialData"):
                msg = "; ".join(str(m.get("Value", "")) for m in r.get("Messages") or [] if isinstance(m, dict))
                problems.append(f"{queries[idx].key.metric} {str(r.get('StatusCode'))[:40]}: {msg[:200]}")
        token = page.get("NextToken")
        if not token:
            break
        if token in tokens:
            raise probes.ProbeError(
                "GetMetricData: the same NextToken came back twice; "
                "the answer was not used and is asked again next poll"
            )
        tokens.add(token)
    else:
        raise probes.ProbeError(
            f"GetMetricData: more than {MAX_PAGES} pages for one request; "
            "the answer was not used and is asked again next poll"
        )
    missing = len(asked) - len(collected)
    if missing:
        raise probes.ProbeError(
            f"GetMetricData: the answer left out {missing} of {len(asked)} "
            "queries; it was not used and is asked again next poll"
        )
    if dropped:
        problems.append(f"{dropped} datapoints outside the window or not finite numbers were dropped")
    if incomplete is not None:
        incomplete.update(queries[asked[qid]].key for qid, code in status.items() if code != "Complete")
    return [(queries[asked[qid]].key, pts) for qid, pts in collected.items() if pts], problems


def _point(ts: Any, value: Any, start: int, end: int) -> tuple[int, float] | None:
    try:
        t, v = epoch_seconds(ts), float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not start <= t <= end or not math.isfinite(v) or abs(v) > CLOUDWATCH_MAX:
        return None
    return t, v
