"""Every setting fleetwatch reads, in one table: key, type, default, limits and help text.

The table is the single source of truth: the loader validates against it, `fleetwatch config
check` prints from it, docs/configuration.md is generated from it, and a test fails when a
setting lacks help or the generated reference is stale.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.config.rules import check_target, check_zone, parse_route, parse_window, parse_wire

KINDS = ("str", "int", "float", "bool", "duration", "list[str]", "choice")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> int:
    """Seconds from a string with a unit: "90s", "5m", "2h" or "14d". A number alone is refused
    (`backfill = 3` would be 3 seconds to one reader and 3 hours to another), except 0."""
    match = _DURATION.match(str(value)) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if match and (match.group(2) or int(match.group(1)) == 0):
        return int(match.group(1)) * _UNIT_SECONDS.get(match.group(2), 0)
    if match:
        n = match.group(1)
        raise ValueError(f"{n} has no unit: write '{n}s', '{n}m', '{n}h' or '{n}d' (seconds, minutes, hours, days)")
    raise ValueError("a duration is a number with a unit, such as '90s', '5m', '2h' or '14d'")


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str
    default: Any
    help: str
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_hint: str = ""
    examples: tuple[str, ...] = field(default=())
    # Parses a str value (each item of a list[str]) and raises ValueError saying what to write.
    check: Callable[[str], Any] | None = field(default=None, compare=False)

    @property
    def env(self) -> str:
        return "FLEETWATCH_" + self.key.replace(".", "_").upper()

    def expected(self) -> str:
        """What a valid value looks like, for error messages and the reference."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "duration":
            text = "a duration with a unit ('90s', '5m', '2h', '14d')"
        elif self.kind == "int":
            text = "a whole number"
        elif self.kind == "float":
            text = "a number"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "list[str]":
            text = "a list of strings" + (f" ({self.pattern_hint})" if self.pattern_hint else "")
        else:
            text = "a string" + (f" ({self.pattern_hint})" if self.pattern_hint else "")
        if self.minimum is not None and self.maximum is not None:
            if self.kind == "duration":
                text += f" from {format_duration(int(self.minimum))} to {format_duration(int(self.maximum))}"
            else:
                text += f" from {self.minimum} to {self.maximum}"
        return text


_REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$"
_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store.path",
        "str",
        "fleetwatch.db",
        "Path of the SQLite store that holds resources, samples, findings, incidents and the "
        "notification log. Created on first start; relative paths are relative to the working "
        "directory. Not used when store.url is set.",
    ),
    Setting(
        "store.url",
        "str",
        "",
        "A PostgreSQL database to use as the store instead of the SQLite file at store.path, as "
        "postgresql://user:password@host:5432/dbname (libpq's URL form; ?sslmode=require and the "
        "like pass through). The database must exist and be empty or a fleetwatch store; it is "
        "migrated on start. Needs pip install 'fleetwatch[postgres]'. Empty: SQLite. See "
        "docs/store.md for when to move.",
        secret=True,
        pattern=r"^$|^postgres(ql)?://",
        pattern_hint="empty, or a postgresql:// URL",
        examples=("postgresql://fleetwatch:secret@db.internal:5432/fleetwatch",),
    ),
    Setting(
        "store.raw_retention",
        "duration",
        14 * 86400,
        "How long raw samples (one value per metric and period) are kept. Older samples are "
        "rolled up into hourly count/sum/min/max rows before they are deleted.",
        minimum=3600,
        maximum=455 * 86400,
    ),
    Setting(
        "store.rollup_retention",
        "duration",
        400 * 86400,
        "How long hourly rollups are kept. They feed baselines such as the same hour last week "
        "and the weekly digest's 8-week average.",
        minimum=86400,
        maximum=10 * 365 * 86400,
    ),
    Setting(
        "store.history_retention",
        "duration",
        30 * 86400,
        "How long the agent's own records are kept: the poll log, findings, detector runs, "
        "failed notifications and the agent's poll cycles. Older rows are deleted hourly.",
        minimum=86400,
        maximum=400 * 86400,
    ),
    Setting(
        "store.incident_retention",
        "duration",
        180 * 86400,
        "How long resolved incidents are kept, with their timeline and notification log. The "
        "weekly digest needs at least a week.",
        minimum=8 * 86400,
        maximum=10 * 365 * 86400,
    ),
    Setting(
        "otlp.enabled",
        "bool",
        False,
        "Accept OpenTelemetry traces and metrics over OTLP/HTTP (protobuf or JSON, POST "
        "/v1/traces and /v1/metrics) from instrumented functions, and turn their cold starts, "
        "errors and durations into the same series X-Ray and CloudWatch feed.",
    ),
    Setting(
        "otlp.host",
        "str",
        "127.0.0.1",
        "Address the OTLP receiver listens on.",
    ),
    Setting(
        "otlp.port",
        "int",
        4318,
        "Port of the OTLP receiver (4318 is OTLP/HTTP's usual port); 0 picks a free one (the log says which).",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "aws.regions",
        "list[str]",
        ["us-east-1"],
        "AWS regions to discover and poll.",
        pattern=_REGION,
        pattern_hint="region names such as 'us-east-1'",
    ),
    Setting(
        "aws.role_arns",
        "list[str]",
        [],
        "IAM roles to assume with STS AssumeRole, one per account to watch. Empty means only the "
        "account of the credentials fleetwatch runs with.",
        pattern=_ROLE_ARN,
        pattern_hint="role ARNs such as 'arn:aws:iam::123456789012:role/fleetwatch-reader'",
    ),
    Setting(
        "aws.account_names",
        "list[str]",
        [],
        "Names people know the accounts by, as 'ID=NAME' ('123456789012=payments-prod'): the "
        "dashboard shows 'payments-prod (123456789012)' wherever an account id appears.",
        pattern=r"^\d{12}=\S.{0,63}$",
        pattern_hint="'ID=NAME' with a 12-digit account id, such as '123456789012=payments-prod'",
    ),
    Setting(
        "aws.monitoring_account",
        "str",
        "",
        "CloudWatch cross-account observability: the monitoring account's role ARN (or its account "
        "id, when it is the account fleetwatch runs in or one of aws.role_arns). When set, the "
        "metric queries of every watched account in a Region go through the monitoring account, "
        "up to 500 queries a GetMetricData call with AccountId on each; discovery still assumes "
        "each account's role. The accounts must be linked to it as source accounts. Empty: each "
        "account's metrics are read with its own role.",
        pattern=r"^(arn:aws[a-z-]*:iam::\d{12}:role/[^\s]+|\d{12})?$",
        pattern_hint="a role ARN such as 'arn:aws:iam::123456789012:role/fleetwatch-reader', "
        "a 12-digit account id, or empty",
    ),
    Setting(
        "aws.endpoint_url",
        "str",
        "",
        "Send every AWS call to this endpoint instead of AWS, e.g. the emulated fleet at "
        "'http://127.0.0.1:4590'. Empty for real AWS. boto3's own AWS_ENDPOINT_URL variable is "
        "honoured too.",
        pattern=r"^(https?://[^\s]+)?$",
        pattern_hint="an http:// or https:// URL, or empty",
    ),
    Setting(
        "aws.profile",
        "str",
        "",
        "Name of the AWS shared-config profile to take credentials from. Empty uses boto3's "
        "default credential chain (environment, profile, instance role).",
    ),
    Setting(
        "aws.connect_timeout",
        "duration",
        5,
        "Timeout for opening a connection to an AWS endpoint.",
        minimum=1,
        maximum=60,
    ),
    Setting(
        "aws.read_timeout",
        "duration",
        30,
        "Timeout for an AWS response once the request is sent. A call that times out is retried, "
        "then its source is recorded as errored and polled again next time.",
        minimum=1,
        maximum=600,
    ),
    Setting(
        "aws.max_attempts",
        "int",
        5,
        "Attempts per AWS call, first try included, with botocore's adaptive retry mode: "
        "throttling slows fleetwatch's own request rate down instead of failing the poll.",
        minimum=1,
        maximum=10,
    ),
    Setting(
        "scope.include_tags",
        "list[str]",
        [],
        "Watch only resources carrying one of these tags. Each entry is 'key' (any value) or "
        "'key=value'. Empty watches everything. The SES account and Lambda account limits are "
        "always watched.",
        pattern=r"^[^=]+(=.*)?$",
        pattern_hint="'key' or 'key=value'",
    ),
    Setting(
        "scope.exclude_tags",
        "list[str]",
        [],
        "Ignore resources carrying any of these tags ('key' or 'key=value'); wins over include.",
        pattern=r"^[^=]+(=.*)?$",
        pattern_hint="'key' or 'key=value'",
    ),
    Setting(
        "scope.include_names",
        "list[str]",
        [],
        "Watch only resources whose name matches one of these shell-style patterns, e.g. "
        "'checkout-*'. Empty watches every name.",
    ),
    Setting(
        "scope.exclude_names",
        "list[str]",
        [],
        "Ignore resources whose name matches any of these shell-style patterns, e.g. '*-test'; wins over include.",
    ),
    Setting(
        "discovery.interval",
        "duration",
        3600,
        "How often the fleet is re-discovered: new resources start being polled, vanished ones "
        "are marked gone (their history is kept).",
        minimum=300,
        maximum=7 * 86400,
    ),
    Setting(
        "discovery.quota_fraction",
        "float",
        0.4,
        "Discovery's control-plane calls are paced to at most this fraction of each service's "
        "documented request rate per account and Region (Lambda: 15 requests/s), leaving the rest "
        "for the account's own deploys. 0.4 keeps every one-second peak under half of each quota.",
        minimum=0.05,
        maximum=1.0,
    ),
    Setting(
        "discovery.detail_refresh",
        "duration",
        6 * 3600,
        "Incremental discovery: a resource whose list entry shows no change (Lambda RevisionId, "
        "Scheduler LastModificationDate, ...) keeps its stored tags and detail for between half "
        "and all of this age, then they are asked again (tags can change without any marker). "
        "0 asks every resource's detail at every discovery.",
        minimum=0,
        maximum=7 * 86400,
    ),
    Setting(
        "poll.fast_interval",
        "duration",
        60,
        "How often limits and user-visible outcomes (API errors and latency, throttles, queue "
        "age, connections) are polled.",
        minimum=60,
        maximum=3600,
    ),
    Setting(
        "poll.slow_interval",
        "duration",
        300,
        "How often the remaining, slower-moving signals are polled.",
        minimum=60,
        maximum=6 * 3600,
    ),
    Setting(
        "poll.lookback",
        "duration",
        900,
        "Trailing window re-read on every poll, because CloudWatch values settle for minutes "
        "after the fact. Re-read samples are upserted, never counted twice.",
        minimum=60,
        maximum=3 * 3600,
    ),
    Setting(
        "poll.short_lookback",
        "duration",
        180,
        "Trailing window re-read on most polls; the full poll.lookback (and SQS's 15 minutes of late "
        "metrics) is re-read once every poll.slow_interval, so late datapoints still land. Fewer "
        "points parsed and stored each minute on a large fleet.",
        minimum=60,
        maximum=3 * 3600,
    ),
    Setting(
        "poll.backfill",
        "duration",
        86400,
        "History fetched on the very first start, before regular polling begins.",
        minimum=0,
        maximum=15 * 86400,
    ),
    Setting(
        "poll.xray_max_traces",
        "int",
        100,
        "At most this many sampled X-Ray traces are fetched per function and poll, and only for "
        "functions whose duration or concurrency jumped (X-Ray retrieval is billed per trace).",
        minimum=5,
        maximum=5000,
    ),
    Setting(
        "poll.coldstart_sources",
        "list[str]",
        ["lambda_insights", "logs", "xray"],
        "Where cold starts are read, best first; each function uses the first it has: "
        "'lambda_insights' (the Lambda Insights extension is installed), 'logs' (Logs Insights over "
        "its REPORT lines: every invocation, billed per GB scanned), 'xray' (active tracing, and "
        "the account not in Transaction Search mode: sampled traces). Leave one out to never use it.",
        pattern=r"^(lambda_insights|logs|xray)$",
        pattern_hint="'lambda_insights', 'logs' or 'xray'",
    ),
    Setting(
        "poll.logs_insights_gb_per_day",
        "float",
        1.0,
        "Logs Insights may scan at most this many GB of function logs a day, across all accounts "
        "(at $0.005 per GB, 1 GB a day is $0.15 a month). Once spent, cold starts come from X-Ray "
        "where the function is traced, else are not read until the day's scans age out.",
        minimum=0.0,
        maximum=1000.0,
    ),
    Setting(
        "poll.logs_query_timeout",
        "duration",
        30,
        "How long a poll waits for one Logs Insights query to finish; one that takes longer is asked again next poll.",
        minimum=5,
        maximum=600,
    ),
    Setting(
        "objectives.api_error_rate",
        "float",
        0.01,
        "Share of an API's requests that may fail with a 5XX before it is a finding, whatever the "
        "API's own baseline (0.01 = 1%). A rate three times the API's usual also counts.",
        minimum=0.0,
        maximum=1.0,
    ),
    Setting(
        "objectives.api_latency_ms",
        "int",
        0,
        "API latency objective for the p95, in milliseconds; 0 means none, and only a doubling against the "
        "API's own recent latency is a finding.",
        minimum=0,
        maximum=600000,
    ),
    Setting(
        "unusual.enabled",
        "bool",
        True,
        "Run the `unusual` detector: every outcome series (API 5XX rate and p95 latency, function "
        "errors, p95 duration and invocations, queue inflow, mail deliveries) against its own history, "
        "in 5-minute buckets, for what no rule names. Its findings are warnings; where a rule fires on "
        "the same resource they join that incident as supporting evidence. It learns 12.5 hours of a "
        "series before it speaks (docs/anomaly.md).",
    ),
    Setting(
        "unusual.threshold",
        "float",
        3.0,
        "Score at which the `unusual` detector opens an episode: 3 means new to the series, or a "
        "one-in-10^10.5 surprise (docs/anomaly.md). Higher: fewer, surer findings.",
        minimum=1.0,
        maximum=12.0,
    ),
    Setting(
        "log.format",
        "choice",
        "json",
        "How `fleetwatch run` logs to stderr: 'json' (one object per line, with the poll and "
        "incident correlation ids and the trace id) for log collectors, or 'text' for a terminal.",
        choices=("json", "text"),
    ),
    Setting(
        "log.level",
        "choice",
        "INFO",
        "Least severe log level written.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "alerts.for",
        "duration",
        120,
        "How long a finding must persist before its incident fires and pages (the rule's `for`). "
        "Until then the incident is pending and shows on the dashboard only.",
        minimum=0,
        maximum=86400,
    ),
    Setting(
        "alerts.for_limits",
        "duration",
        60,
        "The `for` of rules measured against a hard limit (a database at max_connections, a hot "
        "partition or a table throttled, account concurrency or the SES quota nearly used): users "
        "already fail there and a blip cannot fake it, so they page sooner than statistical rules. "
        "A climb about to reach a limit, seen rising minute after minute in the data, counts this "
        "from when the climb began.",
        minimum=0,
        maximum=86400,
    ),
    Setting(
        "alerts.keep_firing_for",
        "duration",
        300,
        "How long an incident keeps firing after its findings stop, so a flapping signal is one "
        "incident rather than many; it is recovering meanwhile and resolves at the end.",
        minimum=0,
        maximum=86400,
    ),
    Setting(
        "alerts.group_wait",
        "duration",
        30,
        "How long a new incident gathers related findings before its first notification, counted "
        "from when it opened (its first finding went pending, or began in the data for a climb "
        "about to reach a limit), so findings that arrive together are sent together.",
        minimum=0,
        maximum=3600,
    ),
    Setting(
        "alerts.cause_wait",
        "duration",
        120,
        "How long a warning-level cause (a cold-start spike, a table near its capacity) that could "
        "hurt a user-facing entry point waits before paging on its own: if the symptom appears "
        "meanwhile, one page is sent, titled by the symptom and naming the cause. A critical cause "
        "pages after group_wait; a symptom that follows it joins its thread.",
        minimum=0,
        maximum=3600,
    ),
    Setting(
        "alerts.group_interval",
        "duration",
        300,
        "Least time between two notifications of the same incident when it changes (severity, "
        "new findings, cause joined).",
        minimum=0,
        maximum=86400,
    ),
    Setting(
        "alerts.repeat_interval",
        "duration",
        4 * 3600,
        "How often an unchanged, unacknowledged firing incident is notified again.",
        minimum=60,
        maximum=30 * 86400,
    ),
    Setting(
        "alerts.notify_nodata",
        "bool",
        False,
        "Also page on NoData (a resource whose signals are absent). NoData always shows on the dashboard.",
    ),
    Setting(
        "alerts.notify_errors",
        "bool",
        False,
        "Also page when a detector errors. Errored detectors always show on the dashboard.",
    ),
    Setting(
        "alerts.routes",
        "list[str]",
        [],
        "Where incidents go: 'MATCHERS -> TARGETS', e.g. 'severity=critical service=checkout -> "
        "slack:#checkout-oncall email:payments@example.com'. Matchers are Alertmanager-style on the "
        "labels severity, service, account, region, detector, kind and name ('*' matches all). Every "
        "matching route adds its targets; an incident no route matches goes to the defaults: "
        "slack.channel, email.to, 'pagerduty:default' when pagerduty.routing_key is set, and every "
        "receiver in webhook.urls. Targets are 'slack:#channel', 'email:address', 'pagerduty:default' "
        "and 'webhook:NAME'.",
        check=parse_route,
        pattern_hint="'MATCHERS -> slack:#channel email:address pagerduty:default webhook:NAME'",
        examples=("severity=critical -> slack:#oncall email:oncall@example.com",),
    ),
    Setting(
        "alerts.maintenance",
        "list[str]",
        [],
        "Recurring maintenance windows in which matching incidents do not notify: 'DAYS "
        "HH:MM-HH:MM ZONE [MATCHERS]', e.g. 'sun 02:00-04:00 Europe/London service=orders'. What "
        "still fires when the window ends is notified then.",
        check=parse_window,
        pattern_hint="'DAYS HH:MM-HH:MM ZONE [MATCHERS]'",
        examples=("sun 02:00-04:00 UTC service=orders",),
    ),
    Setting(
        "alerts.wiring",
        "list[str]",
        [],
        "Explicit cause -> effect links added to the topology discovered from API integrations, "
        "event source mappings, schedule targets, function environment and service tags, e.g. "
        "'rds:orders-db -> api:checkout-api'.",
        check=parse_wire,
        pattern_hint="'kind:name -> kind:name'",
        examples=("rds:orders-db -> api:checkout-api",),
    ),
    Setting(
        "alerts.max_attempts",
        "int",
        6,
        "Attempts per notification and channel before the failure is recorded and shown (it is "
        "tried again on the next evaluation); backoff with jitter between attempts, honouring "
        "Retry-After on 429.",
        minimum=1,
        maximum=20,
    ),
    Setting(
        "alerts.timeout",
        "duration",
        10,
        "Timeout of one Slack or mail request.",
        minimum=1,
        maximum=120,
    ),
    Setting(
        "web.public_url",
        "str",
        "http://127.0.0.1:8000",
        "Address of the dashboard as people reach it; notifications link to incidents under it.",
        pattern=r"^https?://\S+$",
        pattern_hint="an http(s) URL",
    ),
    Setting(
        "web.host",
        "str",
        "127.0.0.1",
        "Address the dashboard listens on. Loopback by default; set '0.0.0.0' only behind a "
        "proxy or on a trusted network, with web.token or web.password set for changes.",
    ),
    Setting(
        "web.port",
        "int",
        8000,
        "Port of the dashboard and its JSON API; 0 picks a free one (the log says which).",
        minimum=0,
        maximum=65535,
    ),
    Setting(
        "web.token",
        "str",
        "",
        "Bearer token that allows changes (acknowledge, silence) through the API: "
        "'Authorization: Bearer TOKEN'. Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "web.username",
        "str",
        "",
        "User name for basic authentication of changes made in the browser.",
    ),
    Setting(
        "web.password",
        "str",
        "",
        "Password for basic authentication of changes made in the browser (with web.username). "
        "Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "web.user_header",
        "str",
        "",
        "Header naming the signed-in user, set by a trusted authenticating proxy (for example "
        "'X-Forwarded-User'); honoured only from the addresses in web.trusted_proxies.",
        pattern=r"^([A-Za-z0-9-]+)?$",
        pattern_hint="a header name such as 'X-Forwarded-User'",
    ),
    Setting(
        "web.trusted_proxies",
        "list[str]",
        ["127.0.0.1"],
        "Client addresses whose web.user_header is believed.",
    ),
    Setting(
        "web.refresh",
        "duration",
        30,
        "How often an open page refreshes its content.",
        minimum=5,
        maximum=3600,
    ),
    Setting(
        "web.cache",
        "duration",
        2,
        "How long the overview and the incident list are reused before being read again: with "
        "many people (or wall screens) on the dashboard during an incident, each is computed at "
        "most once in this time. 0 reads the store on every request. A change made on the "
        "dashboard clears it.",
        minimum=0,
        maximum=60,
    ),
    Setting(
        "web.read_auth",
        "bool",
        False,
        "Require authentication for reading too, not only for changes.",
    ),
    Setting(
        "slack.channel",
        "str",
        "",
        "Default Slack channel (name such as '#alerts' or an ID) for incidents no route names.",
        check=lambda v: check_target("slack:" + v) if v else None,
    ),
    Setting(
        "slack.api_url",
        "str",
        "https://slack.com/api/",
        "Base URL of the Slack Web API; change it only for a proxy or a stand-in.",
        pattern=r"^https?://\S+$",
        pattern_hint="an http(s) URL",
    ),
    Setting(
        "slack.bot_token",
        "str",
        "",
        "Slack bot token (xoxb-...) with chat:write, used to post and update incident messages. "
        "Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "slack.webhook_url",
        "str",
        "",
        "Slack incoming-webhook URL, the simpler alternative to a bot token (it cannot update "
        "messages). Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "email.transport",
        "choice",
        "smtp",
        "How mail is sent: 'smtp' (smtp.* settings) or 'ses' (SESv2 SendEmail with raw MIME, from "
        "fleetwatch's own account and first region; grant ses:SendEmail with "
        "iam/fleetwatch-ses-send-policy.json).",
        choices=("smtp", "ses"),
    ),
    Setting(
        "email.from",
        "str",
        "fleetwatch@localhost",
        "Sender address of incident mail and the digest.",
        check=lambda v: check_target("email:" + v),
    ),
    Setting(
        "email.to",
        "list[str]",
        [],
        "Default recipients of incidents no route names, and of the weekly digest.",
        check=lambda v: check_target("email:" + v),
    ),
    Setting(
        "smtp.host",
        "str",
        "",
        "SMTP server; empty disables mail by SMTP.",
    ),
    Setting(
        "smtp.port",
        "int",
        587,
        "SMTP port: 587 for STARTTLS, 465 for TLS, 25 for neither.",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "smtp.security",
        "choice",
        "starttls",
        "'starttls' (upgrade after connecting), 'tls' (TLS from the start) or 'none' (loopback and test servers only).",
        choices=("starttls", "tls", "none"),
    ),
    Setting(
        "smtp.ca_file",
        "str",
        "",
        "PEM file of the certificate authority that signed the SMTP server's certificate, for a "
        "server with an internal CA; empty trusts the system's authorities. The certificate and "
        "its host name are always checked.",
        check=lambda v: v if v == "" or os.path.isfile(v) else _missing(v),
    ),
    Setting(
        "smtp.username",
        "str",
        "",
        "SMTP user name; empty sends without authentication.",
    ),
    Setting(
        "smtp.password",
        "str",
        "",
        "Password for the SMTP server that sends incident mail and the weekly digest. Never "
        "printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "pagerduty.routing_key",
        "str",
        "",
        "Integration key of a PagerDuty Events API v2 integration: incidents are triggered, "
        "acknowledged and resolved on it as target 'pagerduty:default', which joins the default "
        "targets when this is set. Put it in the environment (FLEETWATCH_PAGERDUTY_ROUTING_KEY), "
        "not in the file. Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "pagerduty.url",
        "str",
        "https://events.pagerduty.com/v2/enqueue",
        "Events API v2 endpoint; change it only for PagerDuty's EU service region "
        "('https://events.eu.pagerduty.com/v2/enqueue'), a proxy or a stand-in.",
        pattern=r"^https?://\S+$",
        pattern_hint="an http(s) URL",
    ),
    Setting(
        "pagerduty.webhook_secret",
        "str",
        "",
        "Signing secret of a PagerDuty V3 webhook subscription pointed at the dashboard's "
        "/hooks/pagerduty: an incident acknowledged in PagerDuty is then acknowledged here too "
        "(and said in the Slack thread). Empty turns the endpoint off. Never printed: shown "
        "redacted everywhere.",
        secret=True,
    ),
    Setting(
        "webhook.urls",
        "list[str]",
        [],
        "Generic webhook receivers, as 'NAME=URL' (target 'webhook:NAME'): each notification is "
        "POSTed as JSON in Prometheus Alertmanager's webhook format (version 4), so anything that "
        "takes Alertmanager's webhook takes fleetwatch's. Every receiver listed here joins the "
        "default targets. A URL may carry a token, so the list is treated as a secret.",
        check=lambda v: _webhook_url(v),
        pattern_hint="'NAME=https://...'",
        examples=("oncall-bot=https://hooks.example.com/fleetwatch",),
        secret=True,
    ),
    Setting(
        "webhook.token",
        "str",
        "",
        "Bearer token sent to every webhook receiver ('Authorization: Bearer TOKEN'); empty sends "
        "none. Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "digest.day",
        "choice",
        "mon",
        "Day of the week the health digest is sent.",
        choices=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    ),
    Setting(
        "digest.hour",
        "int",
        9,
        "Local hour (0-23) at which the digest is sent on digest.day.",
        minimum=0,
        maximum=23,
    ),
    Setting(
        "digest.timezone",
        "str",
        "UTC",
        "IANA time zone of digest.day and digest.hour, e.g. 'Europe/London'.",
        check=check_zone,
    ),
    Setting(
        "digest.targets",
        "list[str]",
        [],
        "Where the digest goes, as route targets ('slack:#channel', 'email:address'). Empty sends it to email.to.",
        check=lambda v: _digest_target(v),
    ),
)

_BY_KEY = {s.key: s for s in SETTINGS}


def setting(key: str) -> Setting:
    return _BY_KEY[key]


def all_keys() -> list[str]:
    return list(_BY_KEY)


def _digest_target(target: str) -> None:
    check_target(target)
    if not target.startswith(("slack:", "email:")):
        raise ValueError(f"the digest goes to slack:#channel or email:address, not {target!r}")


def _webhook_url(entry: str) -> None:
    # The entry is not echoed: its URL may carry a token.
    name, sep, url = entry.partition("=")
    if not sep or not re.fullmatch(r"[\w.-]{1,80}", name.strip()) or not re.match(r"^https?://\S+$", url.strip()):
        raise ValueError(
            "an entry is not 'NAME=URL': write e.g. 'oncall-bot=https://hooks.example.com/fleetwatch' "
            "(NAME of letters, digits, '.', '_' or '-')"
        )


def _missing(path: str) -> None:
    raise ValueError(f"file {path!r} does not exist or is not a file: give the path of a PEM certificate")
