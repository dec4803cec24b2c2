"""Drivers: the latent per-minute state of each resource, from which every metric, trace and
account figure is derived, so that all the signals of one resource agree with each other.

Evaluation order per resource: base drivers (params × season × noise) → incident effects on
base drivers → derived drivers (e.g. concurrency from invocations × duration) → effects on
derived drivers → physical limits (connections ≤ max_connections, age ≤ retention).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

import numpy as np

from simulator.fleet import Fleet, FleetError, Resource
from simulator.mathx import season

Arrays = dict[str, np.ndarray]


class FleetModel(Protocol):
    """What a driver reads from the model (simulator.model.FleetModel), named here so that the
    drivers need not import the model that calls them."""

    fleet: Fleet

    def noise(self, res: Resource, name: str, m: np.ndarray) -> np.ndarray: ...
    def noise_key(self, res: Resource, name: str) -> np.uint64: ...
    def drivers(self, res: Resource, m: np.ndarray) -> Arrays: ...
    def apply_effects(self, res: Resource, d: Arrays, m: np.ndarray, which: Callable[[str], bool]) -> None: ...
    def proxy_max_allowed(self, proxy: Resource) -> int: ...


DRIVERS: dict[str, set[str]] = {
    "lambda": {
        "invocations",
        "error_rate",
        "throttles",
        "duration_ms",
        "cold_share",
        "init_ms",
        "spillover",
        "concurrency",
        "async_received",
        "async_dropped",
        "async_age_ms",
    },
    "sqs": {"sent", "deleted", "backlog", "inflight", "age", "empty_receives", "received"},
    "dynamodb": {
        "read_units",
        "write_units",
        "hot_key_read_units",
        "hot_key_write_units",
        "keyrange_read_throttles",
        "keyrange_write_throttles",
        "provisioned_read_throttles",
        "provisioned_write_throttles",
        "account_read_throttles",
        "account_write_throttles",
        "ondemand_read_throttles",
        "ondemand_write_throttles",
        "latency_ms",
        "index_read_throttles",
        "index_write_throttles",
    },
    "rds": {"connections", "cpu"},
    "rds_proxy": {"clients", "db_connections", "borrow_us", "setup_failed", "pinned_share"},
    "api": {"requests", "error5", "error4", "latency_ms"},
    "schedule": {"runs", "failed_share"},
    "ses": {"sends", "bounce_rate", "complaint_rate", "reputation_bounce", "reputation_complaint", "rejects"},
}
DERIVED: dict[str, set[str]] = {
    "lambda": {"concurrency", "async_received", "async_dropped", "async_age_ms"},
    "sqs": {"received"},
    "rds": {"cpu"},
}
# Lambda retries an asynchronous event whose function errors twice, one then two minutes apart,
# then drops it (Lambda "Error handling for asynchronous invocation"; AsyncEventsDropped).
ASYNC_RETRY_MINUTES = (1, 3)


def evaluate(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    base = _BASE[res.kind](model, res, m)
    derived = DERIVED.get(res.kind, set())
    model.apply_effects(res, base, m, lambda d: d not in derived)
    _DERIVE.get(res.kind, lambda *a: None)(model, res, base, m)
    if derived:
        model.apply_effects(res, base, m, lambda d: d in derived)
    _LIMIT.get(res.kind, lambda *a: None)(model, res, base, m)
    return base


def _wobble(model: FleetModel, res: Resource, name: str, m: np.ndarray, spread: float) -> np.ndarray:
    """1 ± spread, fixed per (resource, driver, minute)."""
    return 1.0 + spread * (2.0 * model.noise(res, name, m) - 1.0)


def _seasonal(
    model: FleetModel, res: Resource, name: str, m: np.ndarray, level: float, spread: float = 0.1
) -> np.ndarray:
    return level * season(m, res["daily_amp"], res["weekly_amp"]) * _wobble(model, res, name, m, spread)


# -- Lambda -------------------------------------------------------------------------------------


def _lambda(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    if res["schedule"]:
        rule = model.fleet.get(f"schedule:{res['schedule']}")
        r = model.drivers(rule, m)
        invocations = r["runs"] * (1.0 - r["failed_share"])
    else:
        invocations = _seasonal(model, res, "invocations", m, res["rate"])
    return {
        "invocations": invocations,
        "error_rate": res["error_rate"] * _wobble(model, res, "error_rate", m, 0.3),
        "throttles": np.zeros(m.shape),
        "duration_ms": res["duration_ms"] * _wobble(model, res, "duration_ms", m, 0.05),
        "cold_share": res["cold_share"] * _wobble(model, res, "cold_share", m, 0.3),
        "init_ms": res["init_ms"] * _wobble(model, res, "init_ms", m, 0.1),
        "spillover": np.zeros(m.shape),
    }


def _async_retries(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    """A scheduled function is invoked asynchronously by EventBridge: each run's event is tried,
    and retried after 1 and 3 minutes while the function errors; after the third failure it is
    dropped. AsyncEventAge is the wait from queueing to each attempt (milliseconds)."""
    zero = np.zeros(m.shape)
    d.update(async_received=zero, async_dropped=zero.copy(), async_age_ms=zero.copy())
    if not res["schedule"]:
        return
    rule = model.fleet.get(f"schedule:{res['schedule']}")

    def handed(k: int) -> np.ndarray:  # events EventBridge handed over k minutes earlier
        r = model.drivers(rule, m - k)
        return r["runs"] * (1.0 - r["failed_share"])

    e = np.clip(d["error_rate"], 0.0, 1.0)
    first, (a, b) = handed(0), ASYNC_RETRY_MINUTES
    second, third = handed(a) * e, handed(b) * e * e
    d["invocations"] = first + second + third
    d["async_received"] = first
    d["async_dropped"] = third * e
    d["async_age_ms"] = np.where(
        third > 0, b * 60_000.0, np.where(second > 0, a * 60_000.0, np.where(first > 0, 40.0, 0.0))
    )


def _lambda_derive(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    _async_retries(model, res, d, m)
    # Little's law: concurrency = arrival rate × mean duration.
    mean_s = d["duration_ms"] / 1000.0 * np.exp(res["duration_sigma"] ** 2 / 2)
    busy = d["invocations"] / 60.0 * mean_s * _wobble(model, res, "concurrency", m, 0.15)
    d["concurrency"] = np.where(d["invocations"] > 0, np.maximum(np.ceil(busy), 1.0), 0.0)


def _lambda_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["cold_share"] = np.clip(d["cold_share"], 0.0, 1.0)
    d["error_rate"] = np.clip(d["error_rate"], 0.0, 1.0)
    if res["reserved"] is not None:
        d["concurrency"] = np.minimum(d["concurrency"], float(res["reserved"]))


# -- SQS ----------------------------------------------------------------------------------------


def _sqs(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    sent = _seasonal(model, res, "sent", m, res["rate"])
    return {
        "sent": sent,
        "deleted": sent * _wobble(model, res, "deleted", m, 0.02),
        "backlog": sent * res["backlog_minutes"] * _wobble(model, res, "backlog", m, 0.3),
        "inflight": sent * 0.1 * _wobble(model, res, "inflight", m, 0.3),
        "age": np.where(sent > 0, res["base_age"] * _wobble(model, res, "age", m, 0.3), 0.0),
        "empty_receives": np.full(m.shape, 20.0) * _wobble(model, res, "empty", m, 0.2)
        if res["consumer"]
        else np.zeros(m.shape),
    }


def _sqs_derive(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["received"] = d["deleted"] * 1.02


def _sqs_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["backlog"] = np.maximum(d["backlog"], 0.0)
    # Messages older than the retention period are deleted by SQS: the age cannot exceed it.
    d["age"] = np.where(d["backlog"] > 0, np.clip(d["age"], 0.0, float(res["retention"])), 0.0)


# -- DynamoDB -----------------------------------------------------------------------------------


def _dynamodb(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    zero = np.zeros(m.shape)
    out = {name: zero.copy() for name in DRIVERS["dynamodb"]}
    out["read_units"] = _seasonal(model, res, "read_units", m, res["read_units"])
    out["write_units"] = _seasonal(model, res, "write_units", m, res["write_units"])
    out["latency_ms"] = 4.0 * _wobble(model, res, "latency_ms", m, 0.2)
    return out


def _dynamodb_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    if res["billing"] == "PROVISIONED":
        d["read_units"] = np.minimum(d["read_units"], float(res["read_capacity"]))
        d["write_units"] = np.minimum(d["write_units"], float(res["write_capacity"]))
    # One partition serves at most 3,000 RCU / 1,000 WCU per second.
    d["hot_key_read_units"] = np.minimum(d["hot_key_read_units"], 3000.0)
    d["hot_key_write_units"] = np.minimum(d["hot_key_write_units"], 1000.0)


# -- RDS and RDS Proxy --------------------------------------------------------------------------


def _rds(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    return {"connections": _seasonal(model, res, "connections", m, res["connections"], 0.08)}


def _rds_derive(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    share = d["connections"] / model.fleet.max_connections(res)
    d["cpu"] = np.clip(12.0 + 55.0 * share, 0, 100) * _wobble(model, res, "cpu", m, 0.1)


def _rds_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["connections"] = np.round(np.clip(d["connections"], 0.0, float(model.fleet.max_connections(res))))


def _proxy(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    return {
        "clients": _seasonal(model, res, "clients", m, res["clients"], 0.1),
        "db_connections": _seasonal(model, res, "db_connections", m, res["db_connections"], 0.08),
        "borrow_us": res["borrow_us"] * _wobble(model, res, "borrow_us", m, 0.2),
        "setup_failed": np.zeros(m.shape),
        "pinned_share": np.full(m.shape, float(res["pinned_share"])),
    }


def _proxy_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["db_connections"] = np.round(np.clip(d["db_connections"], 0.0, float(model.proxy_max_allowed(res))))
    d["clients"] = np.round(np.maximum(d["clients"], 0.0))


# -- API Gateway, EventBridge schedules, SES ----------------------------------------------------


def _api(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    return {
        "requests": _seasonal(model, res, "requests", m, res["rate"]),
        "error5": res["error5"] * _wobble(model, res, "error5", m, 0.3),
        "error4": res["error4"] * _wobble(model, res, "error4", m, 0.3),
        "latency_ms": res["latency_ms"] * _wobble(model, res, "latency_ms", m, 0.08),
    }


def _api_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["error5"] = np.clip(d["error5"], 0.0, 1.0)
    d["error4"] = np.clip(d["error4"], 0.0, 1.0 - d["error5"])


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+)(?: (\S+))?\)$")


def schedule_due(expression: str, m: np.ndarray, phase_key: int) -> np.ndarray:
    """1.0 at the minutes an EventBridge schedule expression fires, else 0.0."""
    match = _RATE.match(expression)
    if match:
        n = int(match.group(1)) * {"minute": 1, "hour": 60, "day": 1440}[match.group(2).rstrip("s")]
        return (m % n == phase_key % n).astype(np.float64)
    match = _CRON.match(expression)
    if match:
        minute, hour, dom, month, dow = match.group(1, 2, 3, 4, 5)
        if any(f not in ("*", "?") for f in (dom, month, dow)):
            raise FleetError(f"schedule {expression!r}: the emulator supports cron minute and hour fields only")
        return (_cron_field(minute, m % 60, 60) & _cron_field(hour, (m // 60) % 24, 24)).astype(np.float64)
    raise FleetError(f"schedule expression {expression!r} is not rate(N unit) or cron(...)")


def _cron_field(spec: str, values: np.ndarray, size: int) -> np.ndarray:
    allowed = np.zeros(size, dtype=bool)
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part in ("*", "?"):
            lo, hi = 0, size - 1
        elif "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
        else:
            lo = int(part)
            hi = lo if step == 1 else size - 1
        allowed[lo : hi + 1 : step] = True
    return allowed[values]


def _schedule(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    return {"runs": schedule_due(res["expression"], m, _phase(model, res)), "failed_share": np.zeros(m.shape)}


def _phase(model: FleetModel, res: Resource) -> int:
    return int(model.noise_key(res, "phase") % np.uint64(1440))


def first_due(model: FleetModel, res: Resource, t: int, within: int = 2 * 1440) -> int | None:
    """The first time at or after `t` the emulated schedule fires, phase included (a rate()
    schedule's runs fall at the minutes its phase gives), or None within `within` minutes."""
    m = np.arange(t // 60 + (t % 60 > 0), t // 60 + within)
    hits = np.nonzero(schedule_due(res["expression"], m, _phase(model, res)))[0]
    return int(m[hits[0]]) * 60 if hits.size else None


def _schedule_limit(model: FleetModel, res: Resource, d: Arrays, m: np.ndarray) -> None:
    d["runs"] = np.clip(np.round(d["runs"]), 0.0, None)
    d["failed_share"] = np.clip(d["failed_share"], 0.0, 1.0)


def _ses(model: FleetModel, res: Resource, m: np.ndarray) -> Arrays:
    return {
        "sends": _seasonal(model, res, "sends", m, res["sends_per_min"], 0.2),
        "bounce_rate": res["bounce_rate"] * _wobble(model, res, "bounce_rate", m, 0.3),
        "complaint_rate": res["complaint_rate"] * _wobble(model, res, "complaint_rate", m, 0.3),
        "reputation_bounce": res["bounce_rate"] * _wobble(model, res, "reputation_bounce", m, 0.05),
        "reputation_complaint": res["complaint_rate"] * _wobble(model, res, "reputation_complaint", m, 0.05),
        "rejects": np.zeros(m.shape),
    }


_BASE = {
    "lambda": _lambda,
    "sqs": _sqs,
    "dynamodb": _dynamodb,
    "rds": _rds,
    "rds_proxy": _proxy,
    "api": _api,
    "schedule": _schedule,
    "ses": _ses,
}
_DERIVE = {"lambda": _lambda_derive, "sqs": _sqs_derive, "rds": _rds_derive}
_LIMIT = {
    "lambda": _lambda_limit,
    "sqs": _sqs_limit,
    "dynamodb": _dynamodb_limit,
    "rds": _rds_limit,
    "rds_proxy": _proxy_limit,
    "api": _api_limit,
    "schedule": _schedule_limit,
}
