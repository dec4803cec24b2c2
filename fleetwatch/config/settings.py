"""Every setting fleetwatch reads, in one table: key, type, default, limits and help text.

The table is the single source of truth: the loader validates against it, `fleetwatch config
check` prints from it, docs/configuration.md is generated from it, and a test fails when a
setting lacks help or the generated reference is stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("str", "int", "float", "bool", "duration", "list[str]", "choice")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> int:
    """Seconds from an integer or a string such as "90s", "5m", "2h" or "14d"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("a duration is a number of seconds or a string like '90s', '5m', '2h' or '14d'")


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

    @property
    def env(self) -> str:
        return "FLEETWATCH_" + self.key.replace(".", "_").upper()

    def expected(self) -> str:
        """What a valid value looks like, for error messages and the reference."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "duration":
            text = "a duration (seconds, or '90s', '5m', '2h', '14d')"
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
                text += f" from {format_duration(self.minimum)} to {format_duration(self.maximum)}"
            else:
                text += f" from {self.minimum} to {self.maximum}"
        return text


_REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$"
_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store.path", "str", "fleetwatch.db",
        "Path of the SQLite store that holds resources, samples, findings, incidents and the "
        "notification log. Created on first start; relative paths are relative to the working "
        "directory.",
    ),
    Setting(
        "store.raw_retention", "duration", 14 * 86400,
        "How long raw samples (one value per metric and period) are kept. Older samples are "
        "rolled up into hourly count/sum/min/max rows before they are deleted.",
        minimum=3600, maximum=455 * 86400,
    ),
    Setting(
        "store.rollup_retention", "duration", 400 * 86400,
        "How long hourly rollups are kept. They feed baselines such as the same hour last week "
        "and the weekly digest's 8-week average.",
        minimum=86400, maximum=10 * 365 * 86400,
    ),
    Setting(
        "aws.regions", "list[str]", ["us-east-1"],
        "AWS regions to discover and poll.",
        pattern=_REGION, pattern_hint="region names such as 'us-east-1'",
    ),
    Setting(
        "aws.role_arns", "list[str]", [],
        "IAM roles to assume with STS AssumeRole, one per account to watch. Empty means only the "
        "account of the credentials fleetwatch runs with.",
        pattern=_ROLE_ARN, pattern_hint="role ARNs such as 'arn:aws:iam::123456789012:role/fleetwatch-reader'",
    ),
    Setting(
        "aws.endpoint_url", "str", "",
        "Send every AWS call to this endpoint instead of AWS, e.g. the emulated fleet at "
        "'http://127.0.0.1:4590'. Empty for real AWS. boto3's own AWS_ENDPOINT_URL variable is "
        "honoured too.",
        pattern=r"^(https?://[^\s]+)?$", pattern_hint="an http:// or https:// URL, or empty",
    ),
    Setting(
        "aws.profile", "str", "",
        "Name of the AWS shared-config profile to take credentials from. Empty uses boto3's "
        "default credential chain (environment, profile, instance role).",
    ),
    Setting(
        "aws.connect_timeout", "duration", 5,
        "Timeout for opening a connection to an AWS endpoint.",
        minimum=1, maximum=60,
    ),
    Setting(
        "aws.read_timeout", "duration", 30,
        "Timeout for an AWS response once the request is sent. A call that times out is retried, "
        "then its source is recorded as errored and polled again next time.",
        minimum=1, maximum=600,
    ),
    Setting(
        "aws.max_attempts", "int", 5,
        "Attempts per AWS call, first try included, with botocore's adaptive retry mode: "
        "throttling slows fleetwatch's own request rate down instead of failing the poll.",
        minimum=1, maximum=10,
    ),
    Setting(
        "scope.include_tags", "list[str]", [],
        "Watch only resources carrying one of these tags. Each entry is 'key' (any value) or "
        "'key=value'. Empty watches everything. The SES account and Lambda account limits are "
        "always watched.",
        pattern=r"^[^=]+(=.*)?$", pattern_hint="'key' or 'key=value'",
    ),
    Setting(
        "scope.exclude_tags", "list[str]", [],
        "Ignore resources carrying any of these tags ('key' or 'key=value'); wins over include.",
        pattern=r"^[^=]+(=.*)?$", pattern_hint="'key' or 'key=value'",
    ),
    Setting(
        "scope.include_names", "list[str]", [],
        "Watch only resources whose name matches one of these shell-style patterns, e.g. "
        "'checkout-*'. Empty watches every name.",
    ),
    Setting(
        "scope.exclude_names", "list[str]", [],
        "Ignore resources whose name matches any of these shell-style patterns, e.g. '*-test'; "
        "wins over include.",
    ),
    Setting(
        "discovery.interval", "duration", 3600,
        "How often the fleet is re-discovered: new resources start being polled, vanished ones "
        "are marked gone (their history is kept).",
        minimum=300, maximum=7 * 86400,
    ),
    Setting(
        "poll.fast_interval", "duration", 60,
        "How often limits and user-visible outcomes (API errors and latency, throttles, queue "
        "age, connections) are polled.",
        minimum=60, maximum=3600,
    ),
    Setting(
        "poll.slow_interval", "duration", 300,
        "How often the remaining, slower-moving signals are polled.",
        minimum=60, maximum=6 * 3600,
    ),
    Setting(
        "poll.lookback", "duration", 900,
        "Trailing window re-read on every poll, because CloudWatch values settle for minutes "
        "after the fact. Re-read samples are upserted, never counted twice.",
        minimum=60, maximum=3 * 3600,
    ),
    Setting(
        "poll.backfill", "duration", 86400,
        "History fetched on the very first start, before regular polling begins.",
        minimum=0, maximum=15 * 86400,
    ),
    Setting(
        "poll.xray_max_traces", "int", 100,
        "At most this many sampled X-Ray traces are fetched per function and poll, and only for "
        "functions whose duration or concurrency jumped (X-Ray retrieval is billed per trace).",
        minimum=5, maximum=5000,
    ),
    Setting(
        "objectives.api_error_rate", "float", 0.01,
        "Share of an API's requests that may fail with a 5XX before it is a finding, whatever the "
        "API's own baseline (0.01 = 1%). A rate three times the API's usual also counts.",
        minimum=0.0, maximum=1.0,
    ),
    Setting(
        "objectives.api_latency_ms", "int", 0,
        "API latency objective for the p95, in milliseconds; 0 means none, and only a doubling against the "
        "API's own recent latency is a finding.",
        minimum=0, maximum=600000,
    ),
    Setting(
        "log.level", "choice", "INFO",
        "Least severe log level written.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "slack.bot_token", "str", "",
        "Slack bot token (xoxb-...) with chat:write, used to post and update incident messages. "
        "Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "slack.webhook_url", "str", "",
        "Slack incoming-webhook URL, the simpler alternative to a bot token (it cannot update "
        "messages). Never printed: shown redacted everywhere.",
        secret=True,
    ),
    Setting(
        "smtp.password", "str", "",
        "Password for the SMTP server that sends incident mail and the weekly digest. Never "
        "printed: shown redacted everywhere.",
        secret=True,
    ),
)

_BY_KEY = {s.key: s for s in SETTINGS}


def setting(key: str) -> Setting:
    return _BY_KEY[key]


def all_keys() -> list[str]:
    return list(_BY_KEY)
