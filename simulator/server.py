"""The emulator's single loopback endpoint.

A request is identified by its SigV4 credential scope (service, region) and its protocol's
operation name. The simulator answers what moto lacks or gets wrong for the fleet; everything
else is passed to moto's WSGI app in the same process. Every call is counted, so the cost of a
poll can be read back from /__fleet__/usage.

Control endpoints (never part of any AWS API) live under /__fleet__/.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import BaseWSGIServer, make_server

from fleetwatch.clock import FakeClock
from simulator import cloudwatch, logs_insights, services, xray
from simulator.errors import ApiError
from simulator.model import FleetModel, in_mode, set_modes
from simulator.scenario import load_scenario

COST_PER_METRIC = 0.01 / 1000  # GetMetricData and GetInsightRuleReport: $0.01 per 1,000 metrics requested
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_PROVISIONED = re.compile(r"^/2019-09-30/functions/([^/]+)/provisioned-concurrency/?$")
_ALIASES = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/?$")
CODE_AGE = 30 * 86400  # how long before the scenario anchor the fleet's code was last deployed
LIST_FUNCTIONS_PAGE = 50  # Lambda ListFunctions returns at most 50 functions a page
MAX_FAULT_DELAY = 30.0
# What each service answers when it throttles: (error code, HTTP status).
THROTTLE = {
    "monitoring": ("Throttling", 400),
    "lambda": ("TooManyRequestsException", 429),
    "xray": ("ThrottledException", 429),
    "sqs": ("RequestThrottled", 400),
    "dynamodb": ("ThrottlingException", 400),
    "ses": ("Throttling", 400),
    "rds": ("Throttling", 400),
    "apigateway": ("TooManyRequestsException", 429),
    "events": ("ThrottlingException", 400),
    "sts": ("Throttling", 400),
    "logs": ("ThrottlingException", 400),
    "tagging": ("ThrottledException", 400),
}

Handler = Callable[["Call"], Any]


class Call:
    """One incoming AWS request, decoded enough to route and answer it."""

    def __init__(self, environ: dict[str, Any], body: bytes) -> None:
        self.environ = environ
        self.body = body
        self._json: dict[str, Any] | None = None
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "/")
        self.query = parse_qs(environ.get("QUERY_STRING", ""))
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        self.access_key, self.region, self.service = scope.groups() if scope else ("", "us-east-1", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        content_type = environ.get("CONTENT_TYPE", "")
        self.form: dict[str, list[str]] = {}
        if target:
            self.protocol, self.operation = "json", target.rsplit(".", 1)[-1]
        elif "x-www-form-urlencoded" in content_type:
            self.form = parse_qs(body.decode("utf-8", "replace"))
            self.protocol, self.operation = "query", self.form.get("Action", ["?"])[0]
        else:
            self.protocol, self.operation = "rest", self._rest_operation()
        self.account = self._account()

    def _rest_operation(self) -> str:
        if self.service == "lambda" and self.method == "GET":
            if self.path.rstrip("/") == "/2016-08-19/account-settings":
                return "GetAccountSettings"
            if _PROVISIONED.match(self.path):
                return "ListProvisionedConcurrencyConfigs"
            if _ALIASES.match(self.path):
                return "ListAliases"
        if self.service == "ses" and self.method == "GET" and self.path.rstrip("/") == "/v2/email/account":
            return "GetAccount"
        if self.service == "xray" and self.method == "POST":
            return {
                "/TraceSummaries": "GetTraceSummaries",
                "/Traces": "BatchGetTraces",
                "/GetTraceSegmentDestination": "GetTraceSegmentDestination",
            }.get(self.path, f"POST {self.path}")
        parts = [p for p in self.path.split("/") if p][:2]
        return f"{self.method} /{'/'.join(parts)}"

    def _account(self) -> str:
        if "MOTO_ACCOUNT_ID" in os.environ:
            return os.environ["MOTO_ACCOUNT_ID"]
        header = self.environ.get("HTTP_X_MOTO_ACCOUNT_ID")
        if header:
            return header
        from moto.iam.models import get_account_id_from  # the same mapping moto applies

        return get_account_id_from(self.access_key or "AKIAEXAMPLE")

    def json(self) -> dict[str, Any]:
        """The JSON body, parsed once (a 500-query GetMetricData body is read by the handler
        and again for billing)."""
        if self._json is None:
            try:
                data = json.loads(self.body) if self.body else {}
            except ValueError:
                raise ApiError("SerializationException", "The request body is not valid JSON.") from None
            if not isinstance(data, dict):
                raise ApiError("SerializationException", "The request body must be a JSON object.")
            self._json = data
        return self._json


class Usage:
    """What the fleet has been asked: calls by operation, and CloudWatch metrics requested."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: Counter[tuple[str, str, str, str]] = Counter()
            self.metrics: Counter[tuple[str, str]] = Counter()
            self.traces: Counter[tuple[str, str]] = Counter()
            self.scanned: Counter[tuple[str, str]] = Counter()

    def count(self, call: Call, metrics: int = 0, traces: int = 0, scanned_bytes: int = 0) -> None:
        with self._lock:
            self.calls[(call.account, call.region, call.service, call.operation)] += 1
            if metrics:
                self.metrics[(call.account, call.region)] += metrics
            if traces:
                self.traces[(call.account, call.region)] += traces
            if scanned_bytes:
                self.scanned[(call.account, call.region)] += scanned_bytes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            metrics = sum(self.metrics.values())
            return {
                "total_calls": sum(self.calls.values()),
                "calls": [
                    {"account": a, "region": r, "service": s, "operation": o, "count": n}
                    for (a, r, s, o), n in sorted(self.calls.items())
                ],
                "cloudwatch_metrics_requested": metrics,
                "cloudwatch_cost_usd": round(metrics * COST_PER_METRIC, 6),
                "xray_traces_retrieved": sum(self.traces.values()),
                "logs_insights_bytes_scanned": sum(self.scanned.values()),
                "by_place": [
                    {
                        "account": a,
                        "region": r,
                        "cloudwatch_metrics_requested": n,
                        "cloudwatch_cost_usd": round(n * COST_PER_METRIC, 6),
                    }
                    for (a, r), n in sorted(self.metrics.items())
                ],
            }


class Emulator:
    def __init__(self, model: FleetModel, host: str = "127.0.0.1", port: int = 0, log_requests: bool = False) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        services.revise_lambda_functions()
        self.model = model
        self.registry = cloudwatch.Registry(model)
        # The last ListFunctions listing moto gave per (account, region): its later pages are cut from it.
        self._listed_functions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.usage = Usage()
        self.moto_app = DomainDispatcherApplication(create_backend_app)
        self.host, self.port = host, port
        self.log_requests = log_requests
        self.faults = Faults()
        self.queries = logs_insights.Queries()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[tuple[str, str], Handler] = {
            ("monitoring", "GetMetricData"): lambda c: cloudwatch.get_metric_data(
                self.model, self.registry, c.account, c.region, c.json()
            ),
            ("monitoring", "ListMetrics"): lambda c: cloudwatch.list_metrics(
                self.registry, c.account, c.region, c.json()
            ),
            ("monitoring", "GetInsightRuleReport"): lambda c: cloudwatch.get_insight_rule_report(
                self.model, c.account, c.region, c.json()
            ),
            ("ses", "GetAccount"): lambda c: services.sesv2_get_account(self.model, self.registry, c.account, c.region),
            ("ses", "GetSendQuota"): lambda c: services.ses_v1_xml(
                "GetSendQuota", self.model, self.registry, c.account, c.region
            ),
            ("ses", "GetAccountSendingEnabled"): lambda c: services.ses_v1_xml(
                "GetAccountSendingEnabled", self.model, self.registry, c.account, c.region
            ),
            ("lambda", "GetAccountSettings"): lambda c: services.lambda_account_settings(
                self.model, c.account, c.region
            ),
            ("lambda", "ListProvisionedConcurrencyConfigs"): lambda c: services.lambda_provisioned_configs(
                self.model, c.account, c.region, _PROVISIONED.match(c.path).group(1)
            ),  # type: ignore[union-attr]
            ("xray", "GetTraceSummaries"): lambda c: xray.get_trace_summaries(
                self.model, c.account, c.region, c.json()
            ),
            ("xray", "BatchGetTraces"): lambda c: xray.batch_get_traces(self.model, c.account, c.region, c.json()),
            ("xray", "GetTraceSegmentDestination"): lambda c: xray.get_trace_segment_destination(self.model, c.account),
            ("logs", "StartQuery"): lambda c: logs_insights.start_query(
                self.model, self.queries, c.account, c.region, c.json()
            ),
            ("logs", "GetQueryResults"): lambda c: logs_insights.get_query_results(
                self.queries, c.account, c.region, c.json()
            ),
            ("dynamodb", "DescribeContributorInsights"): lambda c: services.describe_contributor_insights(
                self.model, c.account, c.region, c.json()
            ),
            ("dynamodb", "ListContributorInsights"): lambda c: services.list_contributor_insights(
                self.model, c.account, c.region, c.json()
            ),
        }

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        quiet = not self.log_requests

        class Handler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                if not quiet:
                    super().log_request(*args, **kwargs)

        self._server = make_server(self.host, self.port, self, threaded=True, request_handler=Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fleet-emulator", daemon=True)
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        assert self._thread is not None
        self._thread.join()

    # -- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/__fleet__/"):
            status, payload = self._control(environ.get("REQUEST_METHOD", "GET"), path, body)
            return _respond(
                start_response, status, {"Content-Type": "application/json"}, json.dumps(payload, default=str).encode()
            )
        call = Call(environ, body)
        fault = self.faults.take(call)
        if fault is not None:
            self.usage.count(call)
            if fault.get("mode") == "delay":
                time.sleep(min(float(fault.get("seconds", 1.0)), MAX_FAULT_DELAY))
            else:
                return self._error(start_response, call, _fault_error(call, fault))
        handler = self._handlers.get((call.service, call.operation))
        if call.service == "monitoring" and call.protocol == "query" and handler is not None:
            self.usage.count(call)
            return self._error(
                start_response,
                call,
                ApiError(
                    "InvalidAction",
                    "The fleetwatch emulator serves CloudWatch over the AWS JSON protocol that botocore "
                    "1.37+ uses; upgrade the SDK or use boto3 from fleetwatch's environment.",
                ),
            )
        if handler is None:
            self.usage.count(call)
            return self._to_moto(environ, body, start_response, call)
        try:
            result = handler(call)
        except ApiError as exc:
            self.usage.count(call)
            return self._error(start_response, call, exc)
        self.usage.count(call, **_billable(call, result))
        if isinstance(result, str):
            return _respond(start_response, 200, {"Content-Type": "text/xml"}, result.encode())
        content_type = "application/x-amz-json-1.0" if call.protocol == "json" else "application/json"
        return _respond(start_response, 200, {"Content-Type": content_type}, json.dumps(result).encode())

    def _to_moto(
        self, environ: dict[str, Any], body: bytes, start_response: Callable[..., Any], call: Call
    ) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        list_functions = (
            call.service == "lambda" and call.method == "GET" and call.path.rstrip("/") == "/2015-03-31/functions"
        )
        list_aliases = call.service == "lambda" and call.operation == "ListAliases"
        if (
            not (call.service == "sqs" and call.operation == "GetQueueAttributes")
            and not list_functions
            and not list_aliases
        ):
            return self.moto_app(environ, start_response)
        if list_functions:
            # moto returns every function on one page and ignores Marker; AWS pages by 50.
            try:
                offset = int(call.query.get("Marker", ["0"])[0] or 0)
                size = min(int(call.query.get("MaxItems", [LIST_FUNCTIONS_PAGE])[0]), LIST_FUNCTIONS_PAGE)
            except ValueError:
                return self._error(
                    start_response,
                    call,
                    ApiError("InvalidParameterValueException", "Marker and MaxItems must be numbers."),
                )
            environ["QUERY_STRING"] = ""
        if list_functions and offset > 0 and (call.account, call.region) in self._listed_functions:
            # A later page of a listing: cut from the one moto gave for its first page, as AWS
            # pages one listing (moto serialises every function for every page: a 20,000-function
            # listing of 400 pages would be quadratic).
            return self._functions_page(
                start_response, call, self._listed_functions[(call.account, call.region)], offset, size
            )
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.moto_app(environ, capture)
        raw = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        if captured["status"].startswith("200") and list_functions:
            listed = json.loads(raw).get("Functions", [])
            self._listed_functions[(call.account, call.region)] = listed
            return self._functions_page(start_response, call, listed, offset, size)
        if captured["status"].startswith("200") and list_aliases:
            raw = json.dumps(
                services.patch_aliases(
                    self.model, call.account, call.region, _ALIASES.match(call.path).group(1), json.loads(raw)
                )
            ).encode()
        elif captured["status"].startswith("200"):
            raw = services.patch_queue_attributes(self.model, call.account, call.region, call.json(), raw)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"] + [
            ("Content-Length", str(len(raw)))
        ]
        start_response(captured["status"], headers)
        return [raw]

    def _functions_page(
        self, start_response: Callable[..., Any], call: Call, listed: list[dict[str, Any]], offset: int, size: int
    ) -> Iterable[bytes]:
        """One ListFunctions page of `listed` (moto's whole listing): AWS pages by 50, with NextMarker."""
        step = max(size, 1)
        page: dict[str, Any] = {
            "Functions": [self._observed(call, self._deployed(call, fn)) for fn in listed[offset : offset + step]]
        }
        if offset + step < len(listed):
            page["NextMarker"] = str(offset + step)
        return _respond(start_response, 200, {"Content-Type": "application/json"}, json.dumps(page).encode())

    def _deployed(self, call: Call, fn: dict[str, Any]) -> dict[str, Any]:
        """A scenario's deploy shows as AWS shows one: new CodeSha256 and LastModified."""
        res = self.model.fleet.by_uid.get(f"lambda:{fn.get('FunctionName')}")
        if res is None or res.account != call.account or res.region != call.region:
            return fn
        deploy = self.model.deployed(res, self.model.now())
        if deploy is None:
            # The fleet's functions were last changed long before the scenario, not when the
            # emulator happened to create them in moto.
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(self.model.anchor - CODE_AGE))
            return {**fn, "LastModified": stamp}
        version, when = deploy
        digest = base64.b64encode(hashlib.sha256(f"{res.name}:{version}".encode()).digest()).decode()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(when))
        return {**fn, "CodeSha256": digest, "LastModified": stamp}

    def _observed(self, call: Call, fn: dict[str, Any]) -> dict[str, Any]:
        """How the function is observed, as ListFunctions shows it (botocore lambda/2015-03-31
        FunctionConfiguration): TracingConfig, the Lambda Insights layer, LoggingConfig (AWS
        returns it for every function: Text format, /aws/lambda/<name> unless changed) and SnapStart."""
        name = str(fn.get("FunctionName"))
        res = self.model.fleet.by_uid.get(f"lambda:{name}")
        if res is None or res.account != call.account or res.region != call.region:
            return fn
        out = {
            **fn,
            "TracingConfig": {"Mode": "PassThrough" if in_mode(self.model, "untraced", name) else "Active"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": logs_insights.log_group(res)},
            "SnapStart": {
                "ApplyOn": "PublishedVersions" if in_mode(self.model, "snap_start", name) else "None",
                "OptimizationStatus": "On" if in_mode(self.model, "snap_start", name) else "Off",
            },
        }
        if in_mode(self.model, "lambda_insights", name):
            arn = f"arn:aws:lambda:{res.region}:580247275435:layer:LambdaInsightsExtension:53"
            out["Layers"] = [*(fn.get("Layers") or []), {"Arn": arn, "CodeSize": 5236034}]
        return out

    def _error(self, start_response: Callable[..., Any], call: Call, exc: ApiError) -> Iterable[bytes]:
        status, headers, body = error_reply(call, exc)
        return _respond(start_response, status, headers, body)

    # -- control ---------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        model = self.model
        by_kind: Counter[str] = Counter(r.kind for r in model.fleet.resources)
        return {
            "endpoint": self.endpoint,
            "fleet": model.fleet.name,
            "scenario": model.scenario.name,
            "description": model.scenario.description,
            "seed": model.seed,
            "anchor": model.anchor,
            "now": model.now(),
            "fake_clock": isinstance(model.clock, FakeClock),
            "accounts": [
                {
                    "id": a.id,
                    "name": a.name,
                    "regions": a.regions,
                    "concurrency_limit": a.concurrency_limit,
                    "reader_role_arn": a.reader_role_arn,
                }
                for a in model.fleet.accounts
            ],
            "resources": dict(sorted(by_kind.items())),
            "incidents": model.incident_labels(),
        }

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "body must be JSON"}
        if path == "/__fleet__/info":
            return 200, self.info()
        if path == "/__fleet__/resources":
            return 200, [
                {
                    "uid": r.uid,
                    "kind": r.kind,
                    "name": r.name,
                    "account": r.account,
                    "region": r.region,
                    "arn": r.arn,
                    "tags": r.tags,
                    "facts": r.facts,
                }
                for r in self.model.fleet.resources
            ]
        if path == "/__fleet__/faults":
            if method == "POST":
                try:
                    self.faults.set(data if isinstance(data, list) else data.get("rules", []))
                except ValueError as exc:
                    return 400, {"error": str(exc)}
            return 200, {"rules": self.faults.rules()}
        if path == "/__fleet__/modes":
            if method == "POST":
                try:
                    set_modes(self.model, data)
                except ValueError as exc:
                    return 400, {"error": str(exc)}
            return 200, self.model.modes
        if path == "/__fleet__/usage":
            if method == "POST":
                self.usage.reset()
            return 200, self.usage.snapshot()
        if path == "/__fleet__/clock":
            clock = self.model.clock
            if method == "POST":
                if not isinstance(clock, FakeClock):
                    return 409, {
                        "error": "the emulator runs on the real clock; start it with --fake-clock to move time"
                    }
                try:
                    if "advance" in data:
                        clock.advance(float(data["advance"]))
                    elif "set" in data:
                        clock.set(float(data["set"]))
                    else:
                        return 400, {"error": 'POST {"advance": seconds} or {"set": epoch_seconds}'}
                except (TypeError, ValueError) as exc:
                    return 400, {"error": str(exc)}
            return 200, {"now": clock.now()}
        if path == "/__fleet__/links":
            # CloudWatch cross-account observability: {"monitoring": id, "sources": [ids]} links
            # the source accounts to the monitoring account ([] unlinks them all).
            if method == "POST":
                monitoring, sources = data.get("monitoring"), data.get("sources", [])
                if not isinstance(monitoring, str) or not isinstance(sources, list):
                    return 400, {"error": 'POST {"monitoring": "<account id>", "sources": ["<account id>", ...]}'}
                if sources:
                    self.registry.links[monitoring] = {str(a) for a in sources}
                else:
                    self.registry.links.pop(monitoring, None)
            return 200, {m: sorted(s) for m, s in self.registry.links.items()}
        if path == "/__fleet__/scenario" and method == "POST":
            try:
                scenario = load_scenario(str(data.get("name", "")), self.model.fleet)
            except ValueError as exc:
                return 400, {"error": str(exc)}
            if scenario.fleet_name != self.model.scenario.fleet_name:
                return 400, {
                    "error": f"scenario {scenario.name} uses fleet {scenario.fleet_name}; "
                    f"this emulator serves {self.model.scenario.fleet_name}"
                }
            self.model.set_scenario(scenario, data.get("seed"))
            return 200, self.info()
        return 404, {"error": f"no control endpoint {method} {path}"}


class Faults:
    """Injected failures, for chaos and resilience tests: each rule matches calls by service,
    operation, account and region (all optional) and answers `times` of them (or all, if
    absent) with a throttle, an error, or a delay before the normal answer."""

    MODES = ("throttle", "error", "delay")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[dict[str, Any]] = []

    def set(self, rules: list[dict[str, Any]]) -> None:
        checked = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict) or rule.get("mode") not in self.MODES:
                raise ValueError(f"fault rule {i}: mode must be one of {', '.join(self.MODES)}")
            unknown = set(rule) - {
                "service",
                "operation",
                "account",
                "region",
                "mode",
                "times",
                "code",
                "status",
                "message",
                "seconds",
            }
            if unknown:
                raise ValueError(f"fault rule {i}: unknown keys {sorted(unknown)}")
            checked.append(dict(rule))
        with self._lock:
            self._rules = checked

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._rules]

    def take(self, call: Call) -> dict[str, Any] | None:
        with self._lock:
            for rule in self._rules:
                if all(rule.get(k) in (None, getattr(call, k)) for k in ("service", "operation", "account", "region")):
                    if rule.get("times") is not None:
                        if rule["times"] <= 0:
                            continue
                        rule["times"] -= 1
                    return dict(rule)
        return None


def throttle_error(call: Call, message: str = "Rate exceeded") -> ApiError:
    """The error the call's service answers when it throttles, with its HTTP status."""
    code, status = THROTTLE.get(call.service, ("ThrottlingException", 400))
    return ApiError(code, message, status)


def error_reply(call: Call, exc: ApiError) -> tuple[int, dict[str, str], bytes]:
    """An AWS error as the call's protocol carries it: (HTTP status, headers, body)."""
    request_id = str(uuid.uuid4())
    if call.protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{exc.code}</Code><Message>{_xml(exc.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return exc.status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body
    headers = {
        "Content-Type": "application/x-amz-json-1.0" if call.protocol == "json" else "application/json",
        "x-amzn-ErrorType": exc.code,
        "x-amzn-RequestId": request_id,
    }
    if call.service in ("monitoring", "sqs"):
        headers["x-amzn-query-error"] = f"{exc.code};Sender"  # CloudWatch's and SQS's JSON is query-compatible
    return exc.status, headers, json.dumps({"__type": exc.code, "message": exc.message}).encode()


def _fault_error(call: Call, fault: dict[str, Any]) -> ApiError:
    if fault["mode"] == "throttle":
        return throttle_error(call, fault.get("message", "Rate exceeded"))
    return ApiError(
        fault.get("code", "InternalFailure"), fault.get("message", "injected failure"), int(fault.get("status", 500))
    )


def _billable(call: Call, result: Any) -> dict[str, int]:
    """What a successful call is billed by: CloudWatch metrics requested, X-Ray traces retrieved."""
    if call.operation == "GetMetricData":
        return {"metrics": sum(1 for q in call.json()["MetricDataQueries"] if "MetricStat" in q)}
    if call.operation == "GetInsightRuleReport":
        return {"metrics": 1}
    if call.operation == "GetQueryResults" and isinstance(result, dict) and result.get("status") == "Complete":
        return {"scanned_bytes": int(result["statistics"]["bytesScanned"])}  # a query is billed once, by bytes scanned
    if call.service == "xray" and isinstance(result, dict):
        return {"traces": len(result.get("TraceSummaries", result.get("Traces", [])))}
    return {}


def _respond(start_response: Callable[..., Any], status: int, headers: dict[str, str], body: bytes) -> list[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(status, "")
    start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
    return [body]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
