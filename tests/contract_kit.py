"""Contract checks against botocore's service models, for tests/test_contract.py.

`Contract` wraps botocore's `BaseClient._make_api_call` (what every client method and every
paginator page goes through, whatever sent the answer: the emulator over HTTP or a Stubber)
and, for each answer:

- validates it against the operation's output shape with botocore's own validator, exactly as
  `botocore.stub.Stubber` validates a stubbed response (`Stubber._validate_operation_response`,
  i.e. `botocore.validate.validate_parameters(response, operation_model.output_shape)`):
  required members present, types right, no member the model does not define. botocore's
  rest-json parser coerces scalars (`"yes"` for a boolean parses as True), so an answer over
  HTTP from a rest-json service (Lambda, SESv2, X-Ray, API Gateway) is also read again, as
  served, by botocore's JSON-protocol parser (which coerces nothing) and validated that way;
- checks every string value with an `enum` in the model is one of the model's values
  (botocore's validator does not look at enums);
- hands the caller a copy whose dictionaries record every key read (`[]`, `.get`, `in`), so a
  key the collector reads that the output shape does not define is reported: against real
  AWS such a read is always empty.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel, Shape
from botocore.parsers import JSONParser, RestJSONParser
from botocore.stub import Stubber

# Keys botocore itself adds to every parsed answer, outside the model.
BOTOCORE_KEYS = {"ResponseMetadata"}
# Where real AWS answers outside a constraint of botocore's model (constraints written for
# requests), as AWS's own documentation shows: (service, text of botocore's validation report).
DOCUMENTED_EXCEPTIONS = [
    # botocore dynamodb model: ProvisionedThroughputDescription.NumberOfDecreasesToday is a
    # PositiveLongObject (min 1), yet a table never decreased today answers 0: AWS CLI reference,
    # https://docs.aws.amazon.com/cli/latest/reference/dynamodb/describe-table.html (example output,
    # "NumberOfDecreasesToday": 0).
    ("dynamodb", "NumberOfDecreasesToday, value: 0, valid min value: 1"),
]


class Contract:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # "service.Operation" -> answers checked
        self.problems: list[str] = []

    def report(self, problem: str) -> None:
        with self._lock:
            self.problems.append(problem)

    def validate(self, client: Any, operation: str, answer: dict[str, Any], how: str = "") -> None:
        service = client.meta.service_model.service_name
        try:
            # botocore's own response validation, as a Stubber applies it to a stubbed answer.
            Stubber(client)._validate_operation_response(operation, answer)
        except ParamValidationError as exc:
            lines = [
                line
                for line in str(exc.kwargs.get("report", exc)).splitlines()
                if not any(service == s and text in line for s, text in DOCUMENTED_EXCEPTIONS)
            ]
            if lines:
                self.report(
                    f"{service}.{operation}{how}: the answer does not match the output shape: " + "; ".join(lines)
                )

    def served(self, client: Any, model: OperationModel, http: Any) -> None:
        """The answer as the emulator served it over HTTP, before rest-json's coercion."""
        shape = model.output_shape
        if (
            http.status_code >= 300
            or shape is None
            or not isinstance(client._response_parser, RestJSONParser)
            or shape.serialization.get("payload")
            or any(m.serialization.get("location") for m in shape.members.values())
        ):
            return  # JSON and query protocols are parsed without coercion already; located members need the REST parser
        raw = JSONParser().parse(
            {"status_code": http.status_code, "headers": dict(http.headers), "body": http.content}, shape
        )
        raw.pop("ResponseMetadata", None)
        self.validate(client, model.name, raw, " (as served)")

    def check(self, client: Any, operation: str, parsed: dict[str, Any]) -> Any:
        where = f"{client.meta.service_model.service_name}.{operation}"
        with self._lock:
            self.calls[where] += 1
        self.validate(client, operation, parsed)
        shape = client.meta.service_model.operation_model(operation).output_shape
        if shape is None:
            return parsed
        return _Tracked(parsed, shape, self, where, top=True)

    @contextmanager
    def installed(self) -> Iterator[Contract]:
        original, request = BaseClient._make_api_call, BaseClient._make_request
        contract = self

        def checked(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            return contract.check(client, operation_name, original(client, operation_name, api_params))

        def sent(client: Any, operation_model: OperationModel, request_dict: Any, request_context: Any) -> Any:
            http, parsed = request(client, operation_model, request_dict, request_context)
            contract.served(client, operation_model, http)
            return http, parsed

        BaseClient._make_api_call, BaseClient._make_request = checked, sent  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call, BaseClient._make_request = original, request  # type: ignore[method-assign]


def _wrap(value: Any, shape: Shape | None, contract: Contract, path: str) -> Any:
    if shape is None:
        return value
    if isinstance(value, dict) and shape.type_name in ("structure", "map"):
        return _Tracked(value, shape, contract, path)
    if isinstance(value, list) and shape.type_name == "list":
        return [_wrap(v, shape.member, contract, f"{path}[]") for v in value]
    if isinstance(value, str) and shape.type_name == "string" and shape.enum and value not in shape.enum:
        contract.report(f"{path}: {value!r} is not one of the model's values {shape.enum}")
    return value


class _Tracked(dict):  # type: ignore[type-arg]
    """A parsed answer's dictionary that reports reads of keys its shape does not define."""

    def __init__(self, data: dict[str, Any], shape: Shape, contract: Contract, path: str, top: bool = False) -> None:
        self._shape, self._contract, self._path, self._top = shape, contract, path, top
        if shape.type_name == "structure":
            members = shape.members
            super().__init__({k: _wrap(v, members.get(k), contract, f"{path}.{k}") for k, v in data.items()})
        else:  # a map: its values all have the value shape
            super().__init__({k: _wrap(v, shape.value, contract, f"{path}[{k}]") for k, v in data.items()})

    def _read(self, key: Any) -> None:
        if self._top and key in BOTOCORE_KEYS:
            return
        shape = self._shape
        if shape.type_name == "structure":
            if key not in shape.members:
                self._contract.report(
                    f"{self._path}: the collector reads {key!r}, which the output shape "
                    f"{shape.name} does not define (members: {sorted(shape.members)})"
                )
        elif shape.key is not None and shape.key.enum and key not in shape.key.enum:
            self._contract.report(
                f"{self._path}: the collector reads map key {key!r}, not one of {shape.key.name}'s "
                f"values {shape.key.enum}"
            )

    def __getitem__(self, key: Any) -> Any:
        self._read(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._read(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return super().__contains__(key)


def every_call(fleet: Any, store: Any, account: str = "123456789012") -> int:
    """Make every call the collector makes against the emulated fleet: a discovery and a poll of
    every tier with the state probes, the SES v1 fallback, and the detail probes as a trigger
    calls them (hot keys, X-Ray and Logs Insights cold starts). Returns the traces read."""
    from collector import coldstart_sources, probes
    from collector.aws import Place
    from tests.conftest import ANCHOR, control, make_collector

    collector = make_collector(fleet, store)
    collector.poll()
    control(
        fleet,
        "/__fleet__/faults",
        [{"operation": "GetAccount", "mode": "error", "code": "UnknownOperationException", "status": 404}],
    )
    try:
        collector.poll(tiers=("fast",))  # the SES v1 fallback
    finally:
        control(fleet, "/__fleet__/faults", [])
    place = Place(account, "us-east-1")
    clients = lambda svc: collector.aws.client(place, svc)  # noqa: E731
    posts = store.resource(f"dynamodb/{account}/us-east-1/posts")
    rule = next(r for r in posts["facts"]["contributor_insights_rules"] if "-PKT-" in r)
    probes.hot_keys(clients, [(posts["id"], rule)], ANCHOR - 900, ANCHOR)
    feed = f"lambda/{account}/us-east-1/feed-fn"
    _, traces = probes.cold_starts(clients, [(feed, "feed-fn")], ANCHOR - 300, ANCHOR, 10)
    coldstart_sources.segment_destination(clients)
    coldstart_sources.report_lines(
        clients,
        [(feed, "/aws/lambda/feed-fn")],
        ANCHOR - 300,
        ANCHOR,
        now=fleet.model.clock.now,
        wait=fleet.model.clock.sleep,
        timeout=30,
    )
    return traces
