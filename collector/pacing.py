"""Pacing discovery's control-plane calls below each service's documented rate.

AWS throttles control-plane APIs per account and Region, and the customer's own deploys
(CloudFormation, CDK, Terraform, CI) draw on the same quota. So discovery asks for no more than
a fraction (`discovery.quota_fraction`, default 40 %) of each documented figure, leaving the rest
for them. A bucket per (account, region, quota) spaces calls at least 1 / rate seconds apart on
the injected clock (tests and the bench run on a fake clock and never sleep on the wall clock);
a call bound by an operation's own quota (API Gateway GetResources) waits for both its own
bucket and its service's.

Only calls made inside `Pacer.active()` are paced (discovery); the metric poll and the probes
are not. The active pacer is a context variable: `in_context` carries it (and the call log's
source) into a thread pool's workers, so parallel detail calls share the same buckets.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Quota:
    per_second: float
    source: str  # where AWS documents it


# Documented control-plane rates, per account and Region, in requests per second.
QUOTAS: dict[str, Quota] = {
    # "Control plane API requests (excludes invocation, GetFunction, and GetPolicy requests): 15
    # requests per second across all APIs (not per API)", Lambda quotas, "Lambda API requests".
    "lambda": Quota(15.0, "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html#api-requests"),
    # "DynamoDB is introducing a control plane throttle limit of 2,500 requests per second",
    # Best practices for managing the control plane in DynamoDB.
    "dynamodb": Quota(2500.0, "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-control-plane.html"),
    # "Total operations: 10 requests per second with a burst quota of 40 requests per second", and
    # "GetResources: 5 requests every 2 seconds per account", API Gateway quotas, "API Gateway
    # quotas for creating, deploying and managing an API" (REST and HTTP APIs alike).
    "apigateway": Quota(10.0, "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    "apigateway:GetResources": Quota(2.5, "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    # "By default, you can make up to 300 requests in a burst and a sustained 12 requests per
    # second", Request throttling for the Amazon RDS API (all RDS API operations together).
    "rds": Quota(12.0, "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-api-throttling.html"),
    # "Up to 50 requests per second for all CloudWatch Events API operations except PutEvents"
    # (CloudWatch Events limits, the last page to give a figure for ListRules/ListTargetsByRule;
    # today's EventBridge quotas page names none for them).
    "events": Quota(50.0, "https://docs.aws.amazon.com/AmazonCloudWatch/latest/events/cloudwatch_limits_cwe.html"),
    # EventBridge Scheduler quotas: ListSchedules and GetSchedule request rate 50 per second,
    # ListTagsForResource 10 per second (each supported Region, the lowest listed default).
    "scheduler": Quota(50.0, "https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html"),
    "scheduler:ListTagsForResource": Quota(
        10.0, "https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html"
    ),
    # SQS documents no request rate for ListQueues or GetQueueAttributes ("nearly unlimited" API
    # calls for standard queues); its API reference used to limit tagging actions (ListQueueTags)
    # to 5 TPS per account. Unconfirmed today, so kept as the conservative figure for all of SQS.
    "sqs": Quota(
        5.0,
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListQueueTags.html (former text)",
    ),
    # CloudWatch service quotas: ListMetrics 25 transactions per second (for the plan's
    # ListMetrics verification at discovery).
    "cloudwatch:ListMetrics": Quota(
        25.0, "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html"
    ),
}
# botocore service names that share another's quota.
GROUP = {"apigatewayv2": "apigateway"}
DEFAULT_FRACTION = 0.4


def quota_keys(service: str, operation: str) -> list[str]:
    """The quotas a call draws on, most specific first; none for a service without a known quota."""
    group = GROUP.get(service, service)
    return [k for k in (f"{group}:{operation}", group) if k in QUOTAS]


@dataclass
class _Bucket:
    gap: float  # seconds between two calls
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: float = float("-inf")
    calls: int = 0
    window: deque[float] = field(default_factory=deque)  # release times within the last second
    peak: int = 0  # most calls released within any one second


class Pacer:
    """Token buckets of one token per (account, region, quota), refilled at `fraction` of the
    documented rate, on the injected clock. A caller holds its bucket while it waits, so calls
    from many threads are released one by one, each at least `gap` after the one before (also
    on a fake clock whose sleep moves time at once)."""

    def __init__(
        self,
        now: Callable[[], float],
        sleep: Callable[[float], None],
        fraction: float = DEFAULT_FRACTION,
        quotas: dict[str, Quota] | None = None,
        on_release: Callable[[tuple[str, str, str], float], None] | None = None,
    ) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"discovery.quota_fraction must be above 0 and at most 1, not {fraction}")
        self.now, self.sleep, self.fraction = now, sleep, fraction
        self.quotas = QUOTAS if quotas is None else quotas
        self.on_release = on_release  # (account, region, key), time: called as each call is let go (the bench)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}

    def rate(self, key: str) -> float:
        """Calls per second allowed for a quota key."""
        return self.quotas[key].per_second * self.fraction

    def _bucket(self, account: str, region: str, key: str) -> _Bucket:
        with self._lock:
            found = self._buckets.get((account, region, key))
            if found is None:
                found = self._buckets[(account, region, key)] = _Bucket(1.0 / self.rate(key))
            return found

    def acquire(self, account: str, region: str, service: str, operation: str) -> None:
        for key in quota_keys(service, operation):
            self._take((account, region, key), self._bucket(account, region, key))

    def _take(self, key: tuple[str, str, str], bucket: _Bucket) -> None:
        with bucket.lock:
            while (wait := bucket.last + bucket.gap - self.now()) > 0:
                self.sleep(wait)
            released = self.now()
            bucket.last = released
            bucket.calls += 1
            bucket.window.append(released)
            while bucket.window and bucket.window[0] <= released - 1.0 + 1e-9:  # a half-open second
                bucket.window.popleft()
            bucket.peak = max(bucket.peak, len(bucket.window))
            if self.on_release is not None:
                self.on_release(key, released)

    def stats(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(calls released, most released within one second) per (account, region, quota key)."""
        with self._lock:
            return {k: (b.calls, b.peak) for k, b in self._buckets.items()}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)


_ACTIVE: contextvars.ContextVar[Pacer | None] = contextvars.ContextVar("fleetwatch_pacer", default=None)


def in_context(fn: Callable[[T], Any]) -> Callable[[T], Any]:
    """`fn` run in a copy of the caller's context (active pacer, call-log source), for a thread
    pool: workers start with an empty context otherwise."""
    caller = contextvars.copy_context()

    def run(item: T) -> Any:
        return caller.copy().run(fn, item)

    return run


def paced(client: Any, account: str, region: str) -> Any:
    """Have every call this client makes inside `Pacer.active()` wait for its slot first (once
    per client; botocore's provide-client-params event fires once per call and page, before the
    call is counted or sent)."""
    if getattr(client, "_fleetwatch_paced", False):
        return client
    service = client.meta.service_model.service_name

    def wait(model: Any = None, **_: Any) -> None:
        pacer = _ACTIVE.get()
        if pacer is not None and model is not None:
            pacer.acquire(account, region, service, model.name)

    client.meta.events.register_first(f"provide-client-params.{client.meta.service_model.service_id.hyphenize()}", wait)
    client._fleetwatch_paced = True
    return client
