"""OTLP in: functions instrumented with OpenTelemetry send their spans and FaaS metrics to the
agent over OTLP/HTTP, and they become the same per-minute series X-Ray and CloudWatch feed:

| from | series (namespace fleetwatch/OTel, 60 s) | read by |
|---|---|---|
| each invocation span (one with `faas.trigger`, `faas.coldstart` or `faas.invocation_id`) | `SampledInvocations`, `Invocations` (Sum) | cold starts' and error rates' denominators |
| … with `faas.coldstart = true` | `ColdStarts` (Sum) | cold-start spikes |
| … with status ERROR | `Errors` (Sum) | function error rates |
| … its duration | `Duration` (p95, p99) | latency |
| metric `faas.invocations`, `faas.coldstarts`, `faas.errors` | as above | |
| metric `faas.invoke_duration` / `faas.init_duration` (histograms) | `Duration` p95/p99 / `InitDuration` (Maximum) | |

The function is named by `cloud.resource_id` (its ARN), or by `faas.name` with `cloud.account.id`
and `cloud.region`, on the span or its resource; it must be a function fleetwatch discovered.
Spans of unknown functions are refused in the response's partial_success, with the reason.
A function that sends FaaS metrics is counted from them, not from its spans too (metrics see
every invocation; spans may be sampled). Where CloudWatch has the same series (a function's
Errors, Invocations, Duration), detectors read CloudWatch's; these fill in what X-Ray would.

Counts arrive in pieces (a batch every few seconds), so they are added to the minute they
belong to; percentiles are recomputed from the minute's durations, kept in memory for the
last few minutes and bounded per minute.
"""  # noqa: E501 - a Markdown table: its rows cannot wrap

from __future__ import annotations

import json
import logging
import random
import re
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from fleetwatch.serving import UvicornThread
from fleetwatch.store import SeriesKey, Store
from fleetwatch.store.db import OTEL_NAMESPACE

log = logging.getLogger("fleetwatch.otlp")
MAX_BODY = 8 * 1024 * 1024  # per request, compressed or not
MAX_INFLATED = 32 * 1024 * 1024
KEEP_MINUTES = 10  # durations kept in memory for percentiles: late spans rarely arrive later
MAX_DURATIONS = 2000  # per function and minute: a reservoir sample beyond that
MAX_STREAMS = 10_000  # cumulative streams remembered before the silent ones are forgotten
_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:([a-z0-9-]{1,30}):(\d{12}):function:([A-Za-z0-9_-]{1,140})(?::[A-Za-z0-9$_-]{1,129})?$"
)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
INVOCATION = ("faas.trigger", "faas.coldstart", "faas.invocation_id")
COUNTERS = {
    "faas.invocations": ("Invocations", "SampledInvocations"),
    "faas.coldstarts": ("ColdStarts",),
    "faas.errors": ("Errors",),
}
HISTOGRAMS = {"faas.invoke_duration", "faas.init_duration"}


class OtlpError(Exception):
    """A request that cannot be read: the HTTP status to answer and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else None


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def function_identity(attrs: dict[str, Any]) -> tuple[str | None, str | None, str] | None:
    """(account, region, function name) from OpenTelemetry resource or span attributes."""
    arn = attrs.get("cloud.resource_id") or attrs.get("faas.id")
    if isinstance(arn, str) and (m := _ARN.match(arn)):
        return m.group(2), m.group(1), m.group(3)
    name = attrs.get("faas.name")
    if isinstance(name, str) and _NAME.match(name):
        account, region = attrs.get("cloud.account.id"), attrs.get("cloud.region")
        return (account if isinstance(account, str) else None), (region if isinstance(region, str) else None), name
    return None


class Functions:
    """Which discovered Lambda function an identity names; re-read from the store now and then."""

    def __init__(self, store: Store, now: Callable[[], float], refresh: float = 60.0) -> None:
        self.store, self.now, self.refresh = store, now, refresh
        self._exact: dict[tuple[str, str, str], str] = {}
        self._by_name: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._read_at = float("-inf")

    def _load(self) -> None:
        self._exact.clear()
        self._by_name.clear()
        for r in self.store.resources(kinds=["lambda"]):
            self._exact[(r["account"], r["region"], r["name"])] = r["id"]
            self._by_name[r["name"]].append((r["account"], r["region"], r["id"]))
        self._read_at = self.now()

    def resolve(self, identity: tuple[str | None, str | None, str]) -> str | None:
        for attempt in range(2):
            if attempt or self.now() - self._read_at > self.refresh:
                if attempt and self.now() - self._read_at < 10:
                    return None  # just re-read: an unknown name does not re-read the store per span
                self._load()
            found = self._lookup(identity)
            if found is not None:
                return found
        return None

    def _lookup(self, identity: tuple[str | None, str | None, str]) -> str | None:
        account, region, name = identity
        if account and region:
            return self._exact.get((account, region, name))
        matches = [rid for a, r, rid in self._by_name.get(name, []) if (account in (None, a)) and (region in (None, r))]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Minute:
    invocations: float = 0.0
    cold: float = 0.0
    errors: float = 0.0
    init_max: float | None = None
    durations: list[float] = field(default_factory=list)
    seen: int = 0  # durations offered, for the reservoir


@dataclass
class Batch:
    """What one request adds, per (resource id, minute)."""

    minutes: dict[tuple[str, int], Minute] = field(default_factory=lambda: defaultdict(Minute))
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    accepted: int = 0

    def reject(self, n: int, reason: str) -> None:
        self.rejected += n
        if reason not in self.reasons and len(self.reasons) < 3:
            self.reasons.append(reason)


def _minute(nanos: int) -> int:
    return int(nanos // 1_000_000_000) // 60 * 60


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


class Receiver:
    """Turns decoded OTLP requests into samples. Thread-safe; one store connection of its own."""

    def __init__(
        self, store: Store, now: Callable[[], float], counter: Any = None, rng: random.Random | None = None
    ) -> None:
        self.store, self.now = store, now
        self.functions = Functions(store, now)
        self.counter = counter  # telemetry: spans and points received
        self.rng = rng or random.Random(0)
        self._lock = threading.Lock()
        self._durations: dict[tuple[str, int], Minute] = {}
        self._from_metrics: set[str] = set()
        self._cumulative: dict[Any, Any] = {}  # last report of each cumulative stream

    # -- traces -------------------------------------------------------------------------------

    def traces(self, request: ExportTraceServiceRequest) -> Batch:
        batch = Batch()
        with self._lock:
            for rs in request.resource_spans:
                res = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = attributes(span.attributes)
                        if not any(k in attrs for k in INVOCATION):
                            continue  # a span inside an invocation, not the invocation itself
                        rid = self._function({**res, **attrs}, batch, 1)
                        if rid is None or rid in self._from_metrics:
                            continue
                        m = batch.minutes[(rid, _minute(span.start_time_unix_nano))]
                        m.invocations += 1
                        m.cold += 1 if attrs.get("faas.coldstart") is True else 0
                        m.errors += 1 if span.status.code == SpanStatus.STATUS_CODE_ERROR else 0
                        m.durations.append(max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1e6)
                        batch.accepted += 1
            self._write(batch)
        if self.counter is not None:
            self.counter.add(batch.accepted, {"fleetwatch.signal": "spans"})
        return batch

    # -- metrics ------------------------------------------------------------------------------

    def metrics(self, request: ExportMetricsServiceRequest) -> Batch:
        batch = Batch()
        with self._lock:
            for rm in request.resource_metrics:
                res = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name in COUNTERS and metric.WhichOneof("data") == "sum":
                            self._counter(metric, res, batch)
                        elif metric.name in HISTOGRAMS and metric.WhichOneof("data") == "histogram":
                            self._histogram(metric, res, batch)
            self._write(batch)
        if self.counter is not None:
            self.counter.add(batch.accepted, {"fleetwatch.signal": "metric points"})
        return batch

    def _counter(self, metric: Any, res: dict[str, Any], batch: Batch) -> None:
        cumulative = metric.sum.aggregation_temporality == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
        for dp in metric.sum.data_points:
            rid = self._function({**res, **attributes(dp.attributes)}, batch, 1)
            if rid is None:
                continue
            value = float(dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double)
            if cumulative:
                value = self._delta(
                    (rid, _instance(res), metric.name, _point_key(dp)),
                    dp.start_time_unix_nano,
                    dp.time_unix_nano,
                    value,
                )
                if value is None:
                    continue
            self._from_metrics.add(rid)
            m = batch.minutes[(rid, _minute(dp.time_unix_nano))]
            if metric.name == "faas.invocations":
                m.invocations += value
            elif metric.name == "faas.coldstarts":
                m.cold += value
            else:
                m.errors += value
            batch.accepted += 1

    def _histogram(self, metric: Any, res: dict[str, Any], batch: Batch) -> None:
        scale = 1000.0 if metric.unit in ("s", "") else 1.0  # semantic conventions use seconds; ms is common too
        cumulative = metric.histogram.aggregation_temporality == 2
        for dp in metric.histogram.data_points:
            rid = self._function({**res, **attributes(dp.attributes)}, batch, 1)
            if rid is None:
                continue
            counts = [float(c) for c in dp.bucket_counts]
            if cumulative:
                delta = self._delta(
                    (rid, _instance(res), metric.name, _point_key(dp)),
                    dp.start_time_unix_nano,
                    dp.time_unix_nano,
                    counts,
                )
                if delta is None:
                    continue
                counts = delta
            self._from_metrics.add(rid)
            m = batch.minutes[(rid, _minute(dp.time_unix_nano))]
            top = dp.max * scale if dp.HasField("max") else None
            if metric.name == "faas.init_duration" and top is not None:
                m.init_max = max(m.init_max or 0.0, top)
            elif metric.name == "faas.invoke_duration":
                # Each bucket stands for its upper bound, or the largest value seen if that is lower;
                # the unbounded last bucket for the largest value (else the last bound).
                bounds = [b * scale for b in dp.explicit_bounds]
                for i, n in enumerate(counts):
                    bound = (
                        bounds[i] if i < len(bounds) else (top if top is not None else (bounds[-1] if bounds else 0.0))
                    )
                    m.durations.extend([min(bound, top) if top is not None else bound] * int(min(n, MAX_DURATIONS)))
            batch.accepted += 1

    def _delta(self, key: Any, start: int, at: int, value: Any) -> Any:
        """A cumulative stream's increase since its last report (a number, or a histogram's
        bucket counts); None for the first report of a stream that began before this agent saw
        it (its total is not all new)."""
        now = self.now()
        if len(self._cumulative) > MAX_STREAMS:
            # Execution environments come and go; a stream not heard from in an hour is gone.
            for k in [k for k, v in self._cumulative.items() if v[2] < now - 3600]:
                del self._cumulative[k]
        prev = self._cumulative.get(key)
        self._cumulative[key] = (start, value, now)
        if prev is None:
            recent = start and (at - start) <= 120 * 1_000_000_000
            return value if recent else None
        if isinstance(value, list):
            if (
                prev[0] != start
                or len(prev[1]) != len(value)
                or any(v < p for v, p in zip(value, prev[1], strict=True))
            ):
                return value  # the process restarted: counting began again
            return [v - p for v, p in zip(value, prev[1], strict=True)]
        if prev[0] != start or value < prev[1]:
            return value
        return value - prev[1]

    # -- shared -------------------------------------------------------------------------------

    def _function(self, attrs: dict[str, Any], batch: Batch, n: int) -> str | None:
        identity = function_identity(attrs)
        if identity is None:
            batch.reject(
                n,
                "no function named: set cloud.resource_id to the function's ARN, or faas.name with "
                "cloud.account.id and cloud.region",
            )
            return None
        rid = self.functions.resolve(identity)
        if rid is None:
            batch.reject(
                n,
                f"{identity[2]!r} is not a Lambda function fleetwatch discovered"
                + (
                    ""
                    if identity[0] and identity[1]
                    else " (or the name is ambiguous: add cloud.account.id and cloud.region)"
                ),
            )
        return rid

    def _write(self, batch: Batch) -> None:
        if not batch.minutes:
            return
        points: list[tuple[SeriesKey, list[tuple[int, float]], str]] = []

        def add(rid: str, metric: str, stat: str, ts: int, value: float, how: str) -> None:
            points.append((SeriesKey(rid, OTEL_NAMESPACE, metric, (), stat, 60), [(ts, value)], how))

        for (rid, ts), m in batch.minutes.items():
            if m.invocations:
                add(rid, "SampledInvocations", "Sum", ts, m.invocations, "add")
                add(rid, "Invocations", "Sum", ts, m.invocations, "add")
                add(rid, "ColdStarts", "Sum", ts, m.cold, "add")
                add(rid, "Errors", "Sum", ts, m.errors, "add")
            elif m.cold or m.errors:
                add(rid, "ColdStarts", "Sum", ts, m.cold, "add")
                add(rid, "Errors", "Sum", ts, m.errors, "add")
            if m.init_max is not None:
                add(rid, "InitDuration", "Maximum", ts, m.init_max, "max")
            if m.durations:
                kept = self._keep(rid, ts, m.durations)
                add(rid, "Duration", "p95", ts, percentile(kept, 0.95), "replace")
                add(rid, "Duration", "p99", ts, percentile(kept, 0.99), "replace")
        self.store.merge_samples(points)

    def _keep(self, rid: str, ts: int, durations: list[float]) -> list[float]:
        """The minute's durations so far (a bounded reservoir), with these added."""
        newest = max(ts, max((t for _, t in self._durations), default=ts))
        for key in [k for k in self._durations if k[1] < newest - KEEP_MINUTES * 60]:
            del self._durations[key]
        kept = self._durations.setdefault((rid, ts), Minute())
        for d in durations:
            kept.seen += 1
            if len(kept.durations) < MAX_DURATIONS:
                kept.durations.append(d)
            elif (j := self.rng.randrange(kept.seen)) < MAX_DURATIONS:
                kept.durations[j] = d
        return kept.durations


def _instance(res: dict[str, Any]) -> str:
    """Which process reported: concurrent execution environments of one function each keep
    their own cumulative totals."""
    return str(res.get("faas.instance") or res.get("service.instance.id") or "")


def _point_key(dp: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in attributes(dp.attributes).items() if isinstance(v, (str, bool, int, float))))


# -- the wire ---------------------------------------------------------------------------------

SIGNALS: dict[str, tuple[type[Message], type[Message], str]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, "rejected_spans"),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, "rejected_data_points"),
}
_IDS = {"traceId", "spanId", "parentSpanId"}  # hex in OTLP/JSON, base64 in protobuf's JSON mapping; unused here


def _without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k not in _IDS}
    if isinstance(node, list):
        return [_without_ids(v) for v in node]
    return node


def decode(path: str, body: bytes, content_type: str, encoding: str) -> tuple[Any, bool]:
    """(request message, whether it was JSON) from an OTLP/HTTP body; OtlpError when unreadable."""
    if path not in SIGNALS:
        raise OtlpError(404, f"{path} is not an OTLP/HTTP path: send traces to /v1/traces and metrics to /v1/metrics")
    if len(body) > MAX_BODY:
        raise OtlpError(413, f"request body over {MAX_BODY // (1024 * 1024)} MiB: export smaller batches")
    if encoding.strip().lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_INFLATED)
        except zlib.error as exc:
            raise OtlpError(400, f"Content-Encoding gzip but the body is not gzip: {exc}") from None
        if inflater.unconsumed_tail:
            raise OtlpError(
                413, f"request body inflates to over {MAX_INFLATED // (1024 * 1024)} MiB: export smaller batches"
            )
    elif encoding.strip() not in ("", "identity"):
        raise OtlpError(415, f"Content-Encoding {encoding!r} is not supported: use gzip or none")
    kind = content_type.split(";")[0].strip().lower()
    message = SIGNALS[path][0]()
    if kind == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(400, f"the body is not an OTLP protobuf message: {exc}") from None
        return message, False
    if kind == "application/json":
        try:
            json_format.ParseDict(_without_ids(json.loads(body)), message, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError, RecursionError) as exc:
            raise OtlpError(400, f"the body is not OTLP JSON: {str(exc)[:200]}") from None
        return message, True
    raise OtlpError(415, f"Content-Type {content_type!r} is not OTLP: use application/x-protobuf or application/json")


def respond(path: str, batch: Batch, as_json: bool) -> tuple[bytes, str]:
    response = SIGNALS[path][1]()
    if batch.rejected:
        setattr(response.partial_success, SIGNALS[path][2], batch.rejected)
        response.partial_success.error_message = "; ".join(batch.reasons)
    if as_json:
        return json_format.MessageToJson(response, indent=None).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


def app(receiver: Receiver) -> Any:
    """A Starlette app serving POST /v1/traces and /v1/metrics."""
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def export(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                break
        try:
            message, as_json = decode(
                request.url.path,
                body,
                request.headers.get("content-type", ""),
                request.headers.get("content-encoding", ""),
            )
            handle = receiver.traces if request.url.path == "/v1/traces" else receiver.metrics
            batch = await anyio.to_thread.run_sync(handle, message)
        except OtlpError as exc:
            return Response(
                json.dumps({"code": exc.status, "message": str(exc)}), exc.status, media_type="application/json"
            )
        except Exception as exc:  # noqa: BLE001 - the store failing (a full disk) is the sender's 503: it retries
            log.error("OTLP request could not be stored: %s", exc)
            return Response(
                json.dumps({"code": 503, "message": f"could not store it: {exc}"}),
                503,
                media_type="application/json",
                headers={"Retry-After": "30"},
            )
        if batch.rejected:
            log.warning("OTLP %s: %d refused: %s", request.url.path, batch.rejected, "; ".join(batch.reasons))
        content, media = respond(request.url.path, batch, as_json)
        return Response(content, 200, media_type=media)

    return Starlette(
        routes=[Route("/v1/traces", export, methods=["POST"]), Route("/v1/metrics", export, methods=["POST"])]
    )


class OtlpServer(UvicornThread):
    """The receiver served on its own port, like the dashboard."""

    def __init__(self, store: Store, now: Callable[[], float], host: str, port: int, counter: Any = None) -> None:
        self.receiver = Receiver(store, now, counter)
        super().__init__(app(self.receiver), host, port, name="OTLP receiver", setting="otlp.port", grace=2)
