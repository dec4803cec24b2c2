"""OTLP out and in. Out: `fleetwatch run` exports its own spans and metrics with the SDK's OTLP
exporter, configured only by OTEL_* variables, into a receiver on loopback. In: the SDK's own
OTLP exporters send a function's spans and FaaS metrics to the agent's receiver, and they
become the cold-start, error and latency series the detectors read."""

from __future__ import annotations

import gzip
import json
import sqlite3
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector.otlp_in import OtlpServer
from detectors import REGISTRY
from fleetwatch.agent.detection import detect
from fleetwatch.clock import FakeClock
from fleetwatch.store import open_store
from fleetwatch.telemetry import TelemetryError, plan
from simulator.otel_sink import OtelSink
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests.agent_kit import agent_env, spawn_run
from tests.conftest import control, set_clock

# -- configuration by OTEL_* -------------------------------------------------------------------------


def test_telemetry_is_off_unless_an_otel_variable_asks_for_it() -> None:
    assert not plan({}).on
    assert not plan({"OTEL_SERVICE_NAME": "x", "FLEETWATCH_STORE_PATH": "y"}).on
    both = plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"})
    assert both.traces == both.metrics == "otlp"
    assert (
        both.traces_endpoint == "http://127.0.0.1:4318/v1/traces"
        and both.metrics_endpoint == "http://127.0.0.1:4318/v1/metrics"
    )
    only = plan({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert only.traces == "otlp" and only.metrics is None
    grpc = plan(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    assert grpc.traces_endpoint == "http://c:4317" and grpc.traces_protocol == "grpc" and grpc.metrics is None
    assert not plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}).on
    assert plan({"OTEL_TRACES_EXPORTER": "console"}).traces == "console"
    with pytest.raises(TelemetryError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'.*http/protobuf, grpc"):
        plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(TelemetryError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        plan({"OTEL_TRACES_EXPORTER": "zipkin"})


# -- OTLP out --------------------------------------------------------------------------------------------


def test_the_agent_sends_its_spans_and_metrics_to_an_otlp_receiver(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = fleet.model.incident_labels()
    set_clock(fleet, int(label["start"]) + 4 * 60)
    db = tmp_path / "fw.db"
    # One throttled GetMetricData: botocore retries it, and its span says so.
    control(
        fleet,
        "/__fleet__/faults",
        [{"service": "monitoring", "operation": "GetMetricData", "mode": "throttle", "times": 1}],
    )
    try:
        with SlackStandIn() as slack, OtelSink() as sink:
            env = agent_env(
                fleet,
                db,
                FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
                FLEETWATCH_SLACK_API_URL=slack.api_url,
                FLEETWATCH_SLACK_CHANNEL="C0OTEL",
                OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
                OTEL_METRIC_EXPORT_INTERVAL="600000",
            )
            proc = spawn_run(env, "--emulated-clock", "--polls", "5", "--no-dashboard")
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            spans, points = sink.spans(), sink.points()
    finally:
        control(fleet, "/__fleet__/faults", [])
    conn = sqlite3.connect(db)
    poll_ids = {r[0] for r in conn.execute("SELECT poll_id FROM agent_cycles")}
    conn.close()
    by_name = Counter(s.name for s in spans)
    polls = [s for s in spans if s.name == "fleetwatch.poll"]
    assert {s.attributes["fleetwatch.poll.id"] for s in polls} == poll_ids and len(polls) == 5
    assert all(s.resource["service.name"] == "fleetwatch" and s.resource["service.version"] for s in spans)
    poll_of = {s.span_id: s for s in polls}
    # A span per AWS call, the poll's child, named and attributed as the AWS SDK conventions say.
    calls = [s for s in spans if s.attributes.get("rpc.system") == "aws-api"]
    assert {"CloudWatch.GetMetricData", "STS.GetCallerIdentity"} <= {s.name for s in calls}
    metric_calls = [s for s in calls if s.name == "CloudWatch.GetMetricData"]
    assert all(s.parent_id in poll_of and s.trace_id == poll_of[s.parent_id].trace_id for s in metric_calls)
    assert all(
        s.attributes["rpc.method"] == "GetMetricData"
        and s.attributes["cloud.account.id"] == "123456789012"
        and s.attributes["cloud.region"] == "us-east-1"
        for s in metric_calls
    )
    assert (
        sorted(s.attributes["aws.retries"] for s in metric_calls)[-1] == 1
        and sum(s.attributes["aws.retries"] for s in metric_calls) == 1
    )
    # A span per detection pass, per detector, and per notification.
    detects = [s for s in spans if s.name == "fleetwatch.detect"]
    assert len(detects) == 5 and all(s.parent_id in poll_of for s in detects)
    assert by_name["fleetwatch.detector"] == 5 * len(REGISTRY)
    notify = [s for s in spans if s.name == "fleetwatch.notify"]
    assert notify and all(s.attributes["fleetwatch.target"] == "slack:C0OTEL" for s in notify)

    names = {p.metric for p in points}
    assert {
        "fleetwatch.poll.duration",
        "fleetwatch.poll.lag",
        "fleetwatch.aws.calls",
        "fleetwatch.aws.retries",
        "fleetwatch.cloudwatch.cost",
        "fleetwatch.samples.stored",
        "fleetwatch.findings",
        "fleetwatch.incidents.open",
        "fleetwatch.notifications.sent",
    } <= names

    def one(metric: str, **attrs: Any) -> float:
        return sum(
            p.value for p in points if p.metric == metric and all(p.attributes.get(k) == v for k, v in attrs.items())
        )

    assert one("fleetwatch.poll.duration") == 5  # a histogram's count: one per poll
    assert one("fleetwatch.aws.calls", **{"aws.operation": "cloudwatch:GetMetricData"}) == len(metric_calls)
    assert one("fleetwatch.aws.retries") == 1
    assert one("fleetwatch.samples.stored") > 0 and one("fleetwatch.cloudwatch.cost") > 0
    assert {p.attributes["fleetwatch.detector"] for p in points if p.metric == "fleetwatch.findings"} == set(REGISTRY)
    assert one("fleetwatch.incidents.open", **{"fleetwatch.detector": "connections"}) >= 1
    assert one("fleetwatch.notifications.sent") == len(notify)
    # The logs carry the trace of the poll they were written in.
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    finished = [e for e in logged if e["message"].startswith("poll finished")]
    assert {e["trace_id"] for e in finished} == {s.trace_id for s in polls}


# -- OTLP in ---------------------------------------------------------------------------------------------

T0 = 1_800_000_000 // 60 * 60
FN = "lambda/123456789012/us-east-1/checkout-fn"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:checkout-fn"


def _store_with_function(path: Path) -> Any:
    store = open_store(path)
    store.upsert_resources(
        [
            {
                "id": FN,
                "account": "123456789012",
                "region": "us-east-1",
                "kind": "lambda",
                "name": "checkout-fn",
                "arn": ARN,
                "facts": {"memory": 1024},
                "tags": {},
            }
        ],
        T0,
    )
    return store


@pytest.fixture()
def receiver(tmp_path: Path) -> Any:
    store = _store_with_function(tmp_path / "fw.db")
    server = OtlpServer(open_store(tmp_path / "fw.db"), FakeClock(T0).now, "127.0.0.1", 0).start()
    yield {"store": store, "url": server.url, "server": server}
    server.stop()
    server.receiver.store.close()
    store.close()


def _function_tracer(url: str, **resource: Any) -> tuple[Any, Any]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout-fn", "cloud.provider": "aws", **resource})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    return provider, provider.get_tracer("checkout")


def _invoke(tracer: Any, at: int, cold: bool = False, error: bool = False, ms: float = 120.0) -> None:
    span = tracer.start_span(
        "checkout-fn",
        kind=SpanKind.SERVER,
        start_time=at * 10**9,
        attributes={"faas.trigger": "http", "faas.coldstart": cold},
    )
    with tracer.start_as_current_span("query orders-db", start_time=at * 10**9 + 1000):
        pass  # a child span: not an invocation, and not counted as one
    if error:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=at * 10**9 + int(ms * 10**6))


def test_function_spans_exported_by_the_sdk_become_cold_start_error_and_latency_series(
    receiver: dict[str, Any],
) -> None:
    provider, tracer = _function_tracer(receiver["url"], **{"cloud.resource_id": ARN})
    # 40 quiet minutes (1 cold start in 50 invocations), then 5 minutes of a scale-out (20 in 50).
    for minute in range(45):
        spike = minute >= 40
        for i in range(50):
            _invoke(
                tracer,
                T0 + minute * 60 + i,
                cold=i < (20 if spike else 1),
                error=spike and i % 5 == 0,
                ms=2500.0 if spike and i < 20 else 100.0 + i,
            )
        assert provider.force_flush()  # a batch a minute, as a function exporting on a timer sends them
    provider.shutdown()
    store = receiver["store"]
    end = T0 + 45 * 60
    points, _ = store.window(
        end,
        {
            ("ColdStarts", "Sum"): T0,
            ("SampledInvocations", "Sum"): T0,
            ("Errors", "Sum"): T0,
            ("Duration", "p99"): T0,
            ("Invocations", "Sum"): T0,
        },
    )
    cold = dict(points[(FN, "ColdStarts", "Sum")])
    assert cold[T0] == 1 and cold[T0 + 40 * 60] == 20 and sum(cold.values()) == 40 + 5 * 20
    assert set(dict(points[(FN, "SampledInvocations", "Sum")]).values()) == {50.0}
    assert sum(dict(points[(FN, "Invocations", "Sum")]).values()) == 45 * 50, "child spans are not invocations"
    assert sum(dict(points[(FN, "Errors", "Sum")]).values()) == 5 * 10
    p99 = dict(points[(FN, "Duration", "p99")])
    assert p99[T0] == pytest.approx(149, abs=1) and p99[T0 + 44 * 60] == pytest.approx(2500, abs=1)
    # The cold-start detector finds the spike from these series alone: no X-Ray anywhere.
    assert not store.db.execute("SELECT 1 FROM series WHERE namespace = 'fleetwatch/XRay'").fetchall()
    found = detect(store, end, names=["coldstarts"]).findings
    assert [(f.detector, f.resource_id) for f in found] == [("coldstarts", FN)]
    assert "40%" in found[0].title


def test_faas_metrics_count_once_and_replace_that_functions_span_counts(receiver: dict[str, Any]) -> None:
    resource = Resource.create(
        {
            "service.name": "checkout-fn",
            "faas.name": "checkout-fn",
            "cloud.account.id": "123456789012",
            "cloud.region": "us-east-1",
        }
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{receiver['url']}/v1/metrics"), export_interval_millis=3_600_000
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("checkout")
    invocations, cold, errors = (
        meter.create_counter(n) for n in ("faas.invocations", "faas.coldstarts", "faas.errors")
    )
    duration = meter.create_histogram(
        "faas.invoke_duration",
        unit="s",
        explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    )
    invocations.add(10)
    cold.add(3)
    errors.add(2)
    for _ in range(10):
        duration.record(0.2)
    provider.force_flush()  # cumulative totals: 10, 3, 2
    invocations.add(5)
    provider.force_flush()  # cumulative 15: only the 5 are new
    provider.shutdown()
    # Spans of the same function are not counted on top of its metrics.
    tprov, tracer = _function_tracer(receiver["url"], **{"cloud.resource_id": ARN})
    _invoke(tracer, T0, cold=True)
    tprov.shutdown()
    rows = dict(
        receiver["store"]
        .db.execute(
            "SELECT s.metric || ' ' || s.stat, SUM(m.value) FROM series s JOIN samples m ON m.series_id = s.id "
            "WHERE s.namespace = 'fleetwatch/OTel' GROUP BY s.metric, s.stat"
        )
        .fetchall()
    )
    assert rows["Invocations Sum"] == 15 and rows["SampledInvocations Sum"] == 15
    assert rows["ColdStarts Sum"] == 3 and rows["Errors Sum"] == 2
    assert rows["Duration p95"] == pytest.approx(200)  # the (0.1, 0.25] bucket, capped by the largest value seen


def _post(url: str, body: bytes, content_type: str, encoding: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _json_spans(resource: dict[str, str], n: int = 1) -> bytes:
    kvs = [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]
    spans = [
        {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": f"eee19b7ec3c1b17{i}",
            "name": "fn",
            "kind": 2,
            "startTimeUnixNano": str(T0 * 10**9),
            "endTimeUnixNano": str(T0 * 10**9 + 5 * 10**6),
            "attributes": [
                {"key": "faas.coldstart", "value": {"boolValue": True}},
                {"key": "faas.trigger", "value": {"stringValue": "http"}},
            ],
        }
        for i in range(n)
    ]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": kvs}, "scopeSpans": [{"spans": spans}]}]}).encode()


def test_the_receiver_reads_otlp_json_and_gzip_and_says_what_it_refused(receiver: dict[str, Any]) -> None:
    url = receiver["url"] + "/v1/traces"
    status, body = _post(url, gzip.compress(_json_spans({"cloud.resource_id": ARN}, 3)), "application/json", "gzip")
    assert status == 200 and json.loads(body) == {}
    cold = (
        receiver["store"]
        .db.execute("SELECT m.value FROM series s JOIN samples m ON m.series_id = s.id WHERE s.metric = 'ColdStarts'")
        .fetchall()
    )
    assert cold == [(3.0,)]
    status, body = _post(url, _json_spans({"faas.name": "not-ours"}, 2), "application/json")
    refused = json.loads(body)["partialSuccess"]
    assert (
        status == 200
        and refused["rejectedSpans"] == "2"
        and "'not-ours' is not a Lambda function fleetwatch discovered" in refused["errorMessage"]
    )
    status, body = _post(url, _json_spans({"service.name": "x"}), "application/json")
    assert "set cloud.resource_id to the function's ARN" in json.loads(body)["partialSuccess"]["errorMessage"]
    hostile = _json_spans(
        {"cloud.resource_id": "arn:aws:lambda:us-east-1:123456789012:function:x'); DROP TABLE samples;--"}
    )
    assert json.loads(_post(url, hostile, "application/json")[1])["partialSuccess"]["rejectedSpans"] == "1"


@pytest.mark.parametrize(
    ("path", "body", "content_type", "encoding", "status", "says"),
    [
        ("/v1/traces", b"\xff\xfe not protobuf", "application/x-protobuf", "", 400, "not an OTLP protobuf message"),
        ("/v1/traces", b"{not json", "application/json", "", 400, "not OTLP JSON"),
        ("/v1/traces", b"hello", "text/plain", "", 415, "use application/x-protobuf or application/json"),
        ("/v1/traces", b"hello", "application/json", "gzip", 400, "not gzip"),
        ("/v1/traces", b"x", "application/json", "br", 415, "use gzip or none"),
        # mtime=0: the same bytes (so the same test id) in every pytest-xdist worker that collects it.
        (
            "/v1/traces",
            gzip.compress(b"\0" * (40 * 1024 * 1024), mtime=0),
            "application/x-protobuf",
            "gzip",
            413,
            "inflates to over 32 MiB",
        ),
        ("/v1/logs", b"", "application/x-protobuf", "", 404, None),
    ],
)
def test_the_receiver_refuses_what_it_cannot_read_with_the_reason(
    receiver: dict[str, Any], path: str, body: bytes, content_type: str, encoding: str, status: int, says: str | None
) -> None:
    got, answer = _post(receiver["url"] + path, body, content_type, encoding)
    assert got == status
    if says:
        assert says in json.loads(answer)["message"]
    assert receiver["store"].db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_execution_environments_keep_their_own_cumulative_totals(receiver: dict[str, Any]) -> None:
    providers = []
    for env_id in ("2026/11/22/[$LATEST]aaaa", "2026/11/22/[$LATEST]bbbb"):
        resource = Resource.create({"cloud.resource_id": ARN, "faas.instance": env_id})
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{receiver['url']}/v1/metrics"), export_interval_millis=3_600_000
        )
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        providers.append((provider, provider.get_meter("checkout").create_counter("faas.invocations")))
    for step in (10, 1, 1):  # interleaved reports from both environments: 12 each
        for provider, counter in providers:
            counter.add(step)
            provider.force_flush()
    for provider, _ in providers:
        provider.shutdown()
    total = (
        receiver["store"]
        .db.execute(
            "SELECT SUM(m.value) FROM series s JOIN samples m ON m.series_id = s.id WHERE s.metric = 'Invocations'"
        )
        .fetchone()[0]
    )
    assert total == 24
