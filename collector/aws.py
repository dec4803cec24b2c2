"""Sessions and clients for every account and region in scope, and the record of every call.

Clients are created here and handed to discovery, polling and probes (never created deep
inside them). Each one has connect and read timeouts and botocore's adaptive retry mode, so
throttling slows fleetwatch down instead of failing a poll. Every call is recorded by its IAM
action, which is what the poll summary, the cost figures and the least-privilege test read.

Timestamps that AWS sends as epoch numbers (the JSON protocols: CloudWatch, X-Ray, DynamoDB)
are kept as numbers rather than turned into datetime objects; ISO strings (the XML protocols,
e.g. STS credentials' Expiration) still become datetimes. A full poll of a 1,000-function fleet
returns ~100,000 timestamps, and building a datetime for each was half the poll's CPU, only for
the store to turn it back into an integer.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.utils import parse_timestamp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from fleetwatch import __version__

_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")
# IAM's prefix where it differs from the SDK's signing name.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
SESSION_NAME = "fleetwatch"
# Keys in botocore's per-request context: the call's span and its HTTP attempts (retries + 1).
SPAN, ATTEMPTS = "fleetwatch_span", "fleetwatch_attempts"

# Called with (account, region, iam_action) for every call any collector client makes; the
# test suite registers one to check every call against the shipped IAM policy.
OBSERVERS: list[Callable[[str, str, str], None]] = []


def _timestamp(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return parse_timestamp(value)


def epoch_seconds(value: Any) -> int:
    """A timestamp from a response, number or datetime, as whole epoch seconds."""
    return int(value) if isinstance(value, (int, float)) else int(value.timestamp())


def _keep_epoch_numbers(core: botocore.session.Session) -> None:
    # botocore's documented hook for how its parsers read timestamps (the AWS CLI uses it too).
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)


def iam_action(signing_name: str, operation: str, http_method: str) -> str:
    if signing_name == "apigateway":
        return f"apigateway:{http_method}"  # API Gateway's IAM actions are HTTP verbs on paths
    return f"{_IAM_PREFIX.get(signing_name, signing_name)}:{operation}"


@dataclass(frozen=True)
class Place:
    account: str
    region: str

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@dataclass
class CallTally:
    """The calls made since the tally was started: by IAM action, HTTP attempts (retries
    included), CloudWatch metrics requested and X-Ray traces retrieved."""

    calls: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    metrics: int = 0
    traces: int = 0
    scanned_bytes: int = 0  # Logs Insights, billed per GB scanned

    def add(self, other: CallTally) -> None:
        self.calls.update(other.calls)
        self.attempts += other.attempts
        self.metrics += other.metrics
        self.traces += other.traces
        self.scanned_bytes += other.scanned_bytes

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class CallLog:
    """Thread-safe tallies per (place, source); the source is whatever the calling context set
    with `source()` (a context variable, so a thread pool run through `pacing.in_context` counts
    its calls under its caller's source). `take()` hands over what was counted and starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_place: dict[tuple[Place, str], CallTally] = {}
        self._source: contextvars.ContextVar[str] = contextvars.ContextVar(f"fleetwatch_source_{id(self)}", default="")

    @contextlib.contextmanager
    def source(self, name: str) -> Iterator[None]:
        token = self._source.set(name)
        try:
            yield
        finally:
            self._source.reset(token)

    def _tally(self, place: Place) -> CallTally:
        return self._by_place.setdefault((place, self._source.get()), CallTally())

    def call(self, place: Place, action: str, metrics: int = 0) -> None:
        with self._lock:
            t = self._tally(place)
            t.calls[action] += 1
            t.metrics += metrics
        for observer in list(OBSERVERS):
            observer(place.account, place.region, action)

    def attempt(self, place: Place) -> None:
        with self._lock:
            self._tally(place).attempts += 1

    def traces(self, place: Place, n: int) -> None:
        with self._lock:
            self._tally(place).traces += n

    def scanned(self, place: Place, n: int) -> None:
        with self._lock:
            self._tally(place).scanned_bytes += n

    def take(self) -> dict[tuple[Place, str], CallTally]:
        with self._lock:
            out, self._by_place = self._by_place, {}
        return out


class AssumeRoleError(Exception):
    pass


# boto3's credential chain (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html):
# environment variables, the shared credentials and config files (a profile, SSO, credential_process),
# then container and instance roles. Said wherever "no credentials" is the error.
NO_CREDENTIALS = (
    "no AWS credentials found. Give fleetwatch some as for any AWS tool: a profile (set aws.profile, "
    "FLEETWATCH_AWS_PROFILE or AWS_PROFILE to a profile in ~/.aws/config, e.g. after `aws configure` or "
    "`aws sso login`), environment variables (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with "
    "AWS_SESSION_TOKEN for temporary keys), or an instance role where it runs (EC2 instance profile, ECS "
    "task role, EKS pod identity)"
)


def credentials_problem(profile: str = "") -> str:
    """'' when boto3's credential chain finds credentials (no AWS call is made), else what to do."""
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        found = boto3.session.Session(profile_name=profile or None).get_credentials()
    except ProfileNotFound:
        return (
            f"the AWS profile {profile!r} (aws.profile) is in neither ~/.aws/config nor ~/.aws/credentials: "
            "create it (`aws configure --profile NAME`) or set aws.profile to one that exists"
        )
    except BotoCoreError as exc:  # a broken credentials file, a credential_process that fails
        return f"the AWS credentials cannot be read: {exc}"
    return "" if found is not None else NO_CREDENTIALS


class Aws:
    """boto3 clients per (place, service), built once and shared by threads (boto3 clients are
    thread-safe; sessions are not, so they are only touched under the lock)."""

    def __init__(
        self,
        *,
        regions: list[str],
        role_arns: list[str],
        endpoint_url: str = "",
        profile: str = "",
        connect_timeout: int = 5,
        read_timeout: int = 30,
        max_attempts: int = 5,
        log: CallLog | None = None,
        session: boto3.session.Session | None = None,
        tracer: trace.Tracer | None = None,
        monitoring_account: str = "",
    ) -> None:
        self.regions = list(regions)
        # CloudWatch cross-account observability: the monitoring account's role ARN (or its id,
        # when it is the home account or one of role_arns). Empty: each account polls its own.
        self.monitoring_account = monitoring_account
        # A span per API call, child of whatever span is current on the calling thread (the poll).
        self.tracer = tracer or trace.NoOpTracer()
        self.role_arns = list(role_arns)
        self.endpoint_url = endpoint_url or None
        self.log = log or CallLog()
        self._base = session or boto3.session.Session(profile_name=profile or None)
        _keep_epoch_numbers(self._base._session)
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "adaptive", "total_max_attempts": max_attempts},
            user_agent_extra=f"fleetwatch/{__version__}",
            max_pool_connections=16,
        )
        self._lock = threading.Lock()
        self._sessions: dict[str, boto3.session.Session] = {}
        self._clients: dict[tuple[Place, str], Any] = {}
        self._home: str | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        log: CallLog | None = None,
        session: boto3.session.Session | None = None,
        tracer: trace.Tracer | None = None,
    ) -> Aws:
        return cls(
            regions=cfg["aws.regions"],
            role_arns=cfg["aws.role_arns"],
            endpoint_url=cfg["aws.endpoint_url"],
            profile=cfg["aws.profile"],
            connect_timeout=cfg["aws.connect_timeout"],
            read_timeout=cfg["aws.read_timeout"],
            max_attempts=cfg["aws.max_attempts"],
            log=log,
            session=session,
            tracer=tracer,
            monitoring_account=cfg["aws.monitoring_account"],
        )

    # -- accounts --------------------------------------------------------------------------------

    def home_account(self) -> str:
        """The account of the credentials fleetwatch runs with (STS GetCallerIdentity)."""
        if self._home is None:
            sts = self._instrument(
                self._base.client(
                    "sts", region_name=self.regions[0], endpoint_url=self.endpoint_url, config=self._config
                ),
                Place("?", self.regions[0]),
            )
            self._home = str(sts.get_caller_identity()["Account"])
        return self._home

    def accounts(self) -> list[tuple[str, str | None]]:
        """(account id, role ARN or None for the home account), in configuration order."""
        if not self.role_arns:
            return [(self.home_account(), None)]
        out: list[tuple[str, str | None]] = []
        for arn in self.role_arns:
            match = _ROLE_ACCOUNT.match(arn)
            if not match:
                raise ValueError(
                    f"aws.role_arns: {arn!r} is not a role ARN such as arn:aws:iam::123456789012:role/fleetwatch-reader"
                )
            out.append((match.group(1), arn))
        return out

    def monitoring(self) -> tuple[str, str | None] | None:
        """(account id, role ARN or None) of the monitoring account, or None when not set."""
        value = self.monitoring_account
        if not value:
            return None
        match = _ROLE_ACCOUNT.match(value)
        if match:
            return match.group(1), value
        if not re.fullmatch(r"\d{12}", value):
            raise ValueError(f"aws.monitoring_account: {value!r} is neither a role ARN nor a 12-digit account id")
        role = dict(self.accounts()).get(value)
        if role is None and value != self.home_account():
            raise ValueError(
                f"aws.monitoring_account: account {value} is neither the account fleetwatch runs in nor one of "
                "aws.role_arns; give the monitoring account's role ARN instead"
            )
        return value, role

    def places(self) -> list[Place]:
        return [Place(account, region) for account, _ in self.accounts() for region in self.regions]

    def _session(self, place: Place) -> boto3.session.Session:
        account = place.account
        with self._lock:
            found = self._sessions.get(account)
        if found is not None:
            return found
        role = dict(self.accounts()).get(account)
        monitoring = self.monitoring()
        if role is None and monitoring is not None and monitoring[0] == account:
            role = monitoring[1]
        session = self._base if role is None else self._assumed(place, role)
        with self._lock:
            self._sessions.setdefault(account, session)
            return self._sessions[account]

    def _assumed(self, place: Place, role_arn: str) -> boto3.session.Session:
        # One session per account, its credentials shared by the account's Regions. The STS call
        # goes to the first Region's endpoint as before, but is tallied under the place that first
        # needed the credentials: an agent holding only another Region of the account must not
        # appear to call into a place it does not hold (tests/test_chaos_cluster_processes.py).
        sts = self._instrument(
            self._base.client("sts", region_name=self.regions[0], endpoint_url=self.endpoint_url, config=self._config),
            place,
        )

        def fetch() -> dict[str, str]:
            try:
                creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME, DurationSeconds=3600)[
                    "Credentials"
                ]
            except Exception as exc:  # noqa: BLE001 - reported as the account's error, with the role
                raise AssumeRoleError(
                    f"cannot assume {role_arn}: {exc}. Check that the role exists, trusts this "
                    "principal, and that this principal may call sts:AssumeRole on it."
                ) from exc
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        # Refreshable: a long-running agent re-assumes the role before the credentials expire.
        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        core._credentials = credentials  # how botocore's own assume-role provider hands them to a session
        _keep_epoch_numbers(core)
        return boto3.session.Session(botocore_session=core)

    # -- clients ---------------------------------------------------------------------------------

    def client(self, place: Place, service: str) -> Any:
        key = (place, service)
        with self._lock:
            found = self._clients.get(key)
        if found is not None:
            return found
        session = self._session(place)
        with self._lock:
            if key not in self._clients:
                raw = session.client(
                    service, region_name=place.region, endpoint_url=self.endpoint_url, config=self._config
                )
                self._clients[key] = self._instrument(raw, place)
            return self._clients[key]

    def _instrument(self, client: Any, place: Place) -> Any:
        model = client.meta.service_model
        signing = model.signing_name
        log = self.log

        def before_build(params: dict[str, Any], model: Any, **_: Any) -> None:
            # Fires once per API call (each NextToken page is a call, and is billed as one).
            metrics = 0
            if model.name == "GetMetricData":
                metrics = sum(1 for q in params.get("MetricDataQueries", []) if "MetricStat" in q)
            elif model.name == "GetInsightRuleReport":
                metrics = 1
            log.call(place, iam_action(signing, model.name, model.http.get("method", "GET")), metrics)

        def before_send(request: Any = None, **_: Any) -> None:
            log.attempt(place)
            if request is not None and SPAN in request.context:
                request.context[ATTEMPTS] = request.context.get(ATTEMPTS, 0) + 1

        tracer, service = self.tracer, model.service_id

        def before_call(model: Any, context: dict[str, Any], **_: Any) -> None:
            # Named and attributed as OpenTelemetry's AWS SDK conventions have it (rpc.*).
            context[SPAN] = tracer.start_span(
                f"{service}.{model.name}",
                kind=SpanKind.CLIENT,
                attributes={
                    "rpc.system": "aws-api",
                    "rpc.service": str(service),
                    "rpc.method": model.name,
                    "cloud.region": place.region,
                    "cloud.account.id": place.account,
                },
            )

        def after_call(context: dict[str, Any], http_response: Any = None, parsed: Any = None, **_: Any) -> None:
            span = context.pop(SPAN, None)
            if span is None:
                return
            meta = (parsed or {}).get("ResponseMetadata", {})
            span.set_attribute("aws.retries", max(context.get(ATTEMPTS, 1) - 1, int(meta.get("RetryAttempts", 0))))
            if meta.get("RequestId"):
                span.set_attribute("aws.request_id", meta["RequestId"])
            status = getattr(http_response, "status_code", 0)
            span.set_attribute("http.response.status_code", status)
            if status >= 300:
                span.set_status(Status(StatusCode.ERROR, str((parsed or {}).get("Error", {}).get("Code", status))))
            span.end()

        def after_error(context: dict[str, Any], exception: BaseException, **_: Any) -> None:
            span = context.pop(SPAN, None)
            if span is None:
                return
            span.set_attribute("aws.retries", max(context.get(ATTEMPTS, 1) - 1, 0))
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
            span.end()

        events = client.meta.events
        hyphen = model.service_id.hyphenize()
        events.register(f"before-parameter-build.{hyphen}", before_build)
        events.register(f"before-send.{hyphen}", before_send)
        events.register(f"before-call.{hyphen}", before_call)
        events.register(f"after-call.{hyphen}", after_call)
        events.register(f"after-call-error.{hyphen}", after_error)
        return client
