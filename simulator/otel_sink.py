"""An OTLP/HTTP receiver on loopback that keeps what it is sent: the stand-in for an
OpenTelemetry Collector in the tests and the demo, where the agent's own traces and metrics go.

It speaks the protocol the SDK's exporters speak (POST /v1/traces and /v1/metrics, protobuf or
gzip-compressed protobuf) and answers as a collector does, so the agent's real exporter runs.
"""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector.otlp_in import attributes

MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: int


@dataclass(frozen=True)
class ReceivedPoint:
    metric: str
    attributes: dict[str, Any]
    value: float  # a sum's or gauge's value, a histogram's count
    resource: dict[str, Any]


class OtelSink:
    """`with OtelSink() as sink:`; point OTEL_EXPORTER_OTLP_ENDPOINT at `sink.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self.requests: Counter[str] = Counter()
        self.bodies: list[bytes] = []  # every export as received (decompressed), for tests that search all of it
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                with sink._lock:
                    sink.bodies.append(body)
                if self.path == "/v1/traces":
                    req, resp = ExportTraceServiceRequest(), ExportTraceServiceResponse()
                    req.ParseFromString(body)
                    sink._take_spans(req)
                elif self.path == "/v1/metrics":
                    req, resp = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
                    req.ParseFromString(body)
                    sink._take_points(req)
                else:
                    self.send_error(404)
                    return
                data = resp.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def _take_spans(self, req: Any) -> None:
        got = []
        for rs in req.resource_spans:
            res = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            attributes(s.attributes),
                            res,
                            s.status.code,
                        )
                    )
        with self._lock:
            self._spans.extend(got)
            self.requests["traces"] += 1

    def _take_points(self, req: Any) -> None:
        got = []
        for rm in req.resource_metrics:
            res = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    for dp in getattr(m, kind).data_points:
                        if kind in ("sum", "gauge"):
                            value = float(dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double)
                        else:
                            value = float(dp.count)
                        got.append(ReceivedPoint(m.name, attributes(dp.attributes), value, res))
        with self._lock:
            self._points.extend(got)
            self.requests["metrics"] += 1

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def points(self) -> list[ReceivedPoint]:
        with self._lock:
            return list(self._points)

    def summary(self) -> str:
        spans, points = Counter(s.name for s in self.spans()), Counter(p.metric for p in self.points())
        top = ", ".join(f"{name} {n}" for name, n in spans.most_common(6))
        return (
            f"{sum(spans.values())} spans ({top}) and {sum(points.values())} metric points of {len(points)} metrics "
            f"({', '.join(sorted(points))})"
        )

    def __enter__(self) -> OtelSink:
        self._thread = threading.Thread(target=self.server.serve_forever, name="otel-sink", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
