"""The agent's own traces and metrics, through the OpenTelemetry SDK and its OTLP exporters.

Configured only by the standard OTEL_* environment variables, and off unless one of them asks
for an export: an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, or the per-signal
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / ..._METRICS_ENDPOINT) or an exporter named in
OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER ('otlp', 'console', 'none'). OTEL_SDK_DISABLED=true
turns both off. The protocol is OTEL_EXPORTER_OTLP_PROTOCOL (or per signal): 'http/protobuf', the
default, or 'grpc'. Headers, timeouts, compression and certificates are read by the exporters
themselves from their usual variables; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the
agent; OTEL_METRIC_EXPORT_INTERVAL sets how often metrics are sent (60 s by default).

Off, every instrument is the API's no-op: instrumented code never checks whether it is on.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace

from fleetwatch import __version__

SCOPE = "fleetwatch"
EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")


class TelemetryError(Exception):
    """An OTEL_* variable fleetwatch cannot honour; the message names it and the fix."""


@dataclass(frozen=True)
class Plan:
    """What the environment asks for: exporter and protocol per signal (None: off)."""

    traces: str | None = None
    metrics: str | None = None
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    service_name: str = SCOPE
    export_interval_ms: int = 60_000

    @property
    def on(self) -> bool:
        return bool(self.traces or self.metrics)

    def describe(self) -> str:
        if not self.on:
            return "off (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_*_EXPORTER set)"
        parts = []
        for name, exporter, proto, endpoint in (
            ("traces", self.traces, self.traces_protocol, self.traces_endpoint),
            ("metrics", self.metrics, self.metrics_protocol, self.metrics_endpoint),
        ):
            if exporter == "otlp":
                parts.append(f"{name} via OTLP {proto} to {endpoint or 'the default endpoint'}")
            elif exporter:
                parts.append(f"{name} to the {exporter}")
        return "; ".join(parts)


def plan(environ: Mapping[str, str]) -> Plan:
    env = {k: v.strip() for k, v in environ.items() if k.startswith("OTEL_")}
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return Plan()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    chosen: dict[str, Any] = {}
    for signal, path in (("traces", "v1/traces"), ("metrics", "v1/metrics")):
        upper = signal.upper()
        named = env.get(f"OTEL_{upper}_EXPORTER", "")
        own = env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "")
        protocol = (
            env.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        )
        if protocol not in PROTOCOLS:
            raise TelemetryError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported by the OpenTelemetry Python "
                f"exporter; set it to one of {', '.join(PROTOCOLS)}"
            )
        exporters = [e.strip() for e in named.split(",") if e.strip()]
        for e in exporters:
            if e not in EXPORTERS:
                raise TelemetryError(
                    f"OTEL_{upper}_EXPORTER={named!r}: {e!r} is not an exporter fleetwatch has; "
                    f"use {', '.join(EXPORTERS)}"
                )
        exporter = exporters[0] if exporters else ("otlp" if own or base else None)
        if exporter == "none":
            exporter = None
        if own:
            endpoint = own
        elif base:
            endpoint = base if protocol == "grpc" else f"{base.rstrip('/')}/{path}"
        else:
            endpoint = None  # the exporter's default (localhost:4318 or :4317)
        chosen[signal], chosen[f"{signal}_protocol"], chosen[f"{signal}_endpoint"] = exporter, protocol, endpoint
    try:
        interval = int(env.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
    except ValueError:
        raise TelemetryError(
            f"OTEL_METRIC_EXPORT_INTERVAL={env['OTEL_METRIC_EXPORT_INTERVAL']!r} is not a number of "
            "milliseconds such as 60000"
        ) from None
    return Plan(**chosen, service_name=env.get("OTEL_SERVICE_NAME") or SCOPE, export_interval_ms=max(interval, 100))


@dataclass
class Telemetry:
    """The agent's tracer and instruments. `Telemetry.off()` is all no-ops."""

    tracer: trace.Tracer
    meter: metrics.Meter
    plan: Plan = field(default_factory=Plan)
    _providers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.meter
        self.poll_duration = m.create_histogram("fleetwatch.poll.duration", unit="s", description="time one poll took")
        self.poll_lag = m.create_histogram(
            "fleetwatch.poll.lag", unit="s", description="how late a poll started after it was due"
        )
        self.overruns = m.create_counter(
            "fleetwatch.poll.overruns", description="polls that ran past the next one's start"
        )
        self.api_calls = m.create_counter(
            "fleetwatch.aws.calls", unit="{call}", description="AWS API calls, by IAM action"
        )
        self.api_retries = m.create_counter(
            "fleetwatch.aws.retries", unit="{attempt}", description="HTTP attempts beyond the first"
        )
        self.cost = m.create_counter(
            "fleetwatch.cloudwatch.cost", unit="USD", description="GetMetricData cost of the polls"
        )
        self.samples = m.create_counter(
            "fleetwatch.samples.stored", unit="{sample}", description="samples written to the store"
        )
        self.source_errors = m.create_counter(
            "fleetwatch.poll.source_errors", description="sources that failed in a poll"
        )
        self.findings = m.create_gauge(
            "fleetwatch.findings", description="findings of the last detection pass, by detector"
        )
        self.open_incidents = m.create_gauge("fleetwatch.incidents.open", description="open incidents, by detector")
        self.notifications = m.create_counter("fleetwatch.notifications.sent", description="notifications delivered")
        self.notification_failures = m.create_counter(
            "fleetwatch.notifications.failed", description="notifications that failed after their retries"
        )
        self.otlp_received = m.create_counter(
            "fleetwatch.otlp.received", description="spans and data points received over OTLP"
        )

    @classmethod
    def off(cls) -> Telemetry:
        return cls(trace.NoOpTracer(), metrics.NoOpMeter(SCOPE))

    # -- what the agent records ----------------------------------------------------------------

    def record_poll(self, report: Any, lag: float) -> None:
        self.poll_duration.record(report.seconds)
        self.poll_lag.record(max(lag, 0.0))
        calls: Counter[tuple[str, str, str]] = Counter()
        for s in report.sources:
            for action, n in s.tally.calls.items():
                calls[(action, s.place.account, s.place.region)] += n
            if s.tally.attempts > s.tally.total:
                self.api_retries.add(s.tally.attempts - s.tally.total, {"fleetwatch.source": s.source})
            if s.status != "ok":
                self.source_errors.add(
                    1,
                    {
                        "fleetwatch.source": s.source,
                        "cloud.account.id": s.place.account,
                        "cloud.region": s.place.region,
                    },
                )
        for (action, account, region), n in calls.items():
            self.api_calls.add(n, {"aws.operation": action, "cloud.account.id": account, "cloud.region": region})
        self.cost.add(report.cost)
        self.samples.add(report.samples)

    def record_detection(self, detectors: Iterable[str], findings: Counter[str], incidents: Counter[str]) -> None:
        for name in detectors:
            self.findings.set(findings.get(name, 0), {"fleetwatch.detector": name})
            self.open_incidents.set(incidents.get(name, 0), {"fleetwatch.detector": name})

    def record_delivery(self, outcomes: Iterable[Any]) -> None:
        for o in outcomes:
            attrs = {"fleetwatch.channel": o.target.partition(":")[0], "fleetwatch.kind": o.kind}
            (self.notifications if o.ok else self.notification_failures).add(1, attrs)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Flush and stop the exporters, waiting at most `timeout` seconds: an unreachable
        collector must not hold up a SIGTERM."""
        providers, self._providers = self._providers, []

        def close() -> None:
            for p in providers:
                try:
                    p.shutdown()
                except Exception:  # noqa: BLE001 - exporters report, never raise, at shutdown
                    pass

        worker = threading.Thread(target=close, name="telemetry-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)


def from_environ(environ: Mapping[str, str]) -> Telemetry:
    """Telemetry as the OTEL_* variables ask for; `Telemetry.off()` when they ask for nothing."""
    chosen = plan(environ)
    if not chosen.on:
        return Telemetry.off()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({SERVICE_NAME: chosen.service_name, SERVICE_VERSION: __version__})
    providers: list[Any] = []
    tracer: trace.Tracer = trace.NoOpTracer()
    meter: metrics.Meter = metrics.NoOpMeter(SCOPE)
    if chosen.traces:
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(
            BatchSpanProcessor(
                ConsoleSpanExporter()
                if chosen.traces == "console"
                else _span_exporter(chosen.traces_protocol, chosen.traces_endpoint)
            )
        )
        tracer = tp.get_tracer(SCOPE, __version__)
        providers.append(tp)
    if chosen.metrics:
        exporter = (
            ConsoleMetricExporter()
            if chosen.metrics == "console"
            else _metric_exporter(chosen.metrics_protocol, chosen.metrics_endpoint)
        )
        mp = MeterProvider(
            resource=resource,
            metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=chosen.export_interval_ms)],
        )
        meter = mp.get_meter(SCOPE, __version__)
        providers.append(mp)
    return Telemetry(tracer, meter, chosen, providers)


def _span_exporter(protocol: str, endpoint: str | None) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def _metric_exporter(protocol: str, endpoint: str | None) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint)
