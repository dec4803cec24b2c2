"""FleetModel: a fleet, a scenario, an anchor time and a clock; answers "what was the state of
resource R at minutes M?" deterministically. Nothing exists after the clock's now."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from fleetwatch.clock import Clock
from simulator import drivers as drv
from simulator.fleet import Fleet, Resource
from simulator.mathx import key, uniform
from simulator.scenario import Effect, Scenario

LAMBDA_ACCOUNT_DRIVERS = ("concurrency", "unreserved_concurrency", "claimed", "invocations", "errors", "throttles")


# How the fleet is observed, set through /__fleet__/modes (tests and the demo switch them):
# - untraced: functions without active X-Ray tracing ("*" for all): ListFunctions says
#   TracingConfig.Mode PassThrough and X-Ray holds none of their traces.
# - transaction_search: accounts whose trace segments go to CloudWatch Logs (X-Ray
#   GetTraceSegmentDestination says CloudWatchLogs, and BatchGetTraces finds nothing).
# - lambda_insights: functions with the Lambda Insights extension layer (LambdaInsights metrics).
# - snap_start: functions with SnapStart: a new environment is restored, not initialised.
# - callers: function -> the function that invokes it, so its traces hold both functions.
# - logs_query_status: the status Logs Insights queries end in ("" = Complete; Failed, Timeout,
#   Cancelled as AWS can answer).
MODES = {
    "untraced": list,
    "transaction_search": list,
    "lambda_insights": list,
    "snap_start": list,
    "callers": dict,
    "logs_query_status": str,
}


def default_modes() -> dict[str, Any]:
    return {name: kind() for name, kind in MODES.items()}


def set_modes(model: FleetModel, changes: dict[str, Any]) -> dict[str, Any]:
    """Replace the modes named in `changes`; a wrong name or type is refused with the fix."""
    for name, value in changes.items():
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}; modes are {', '.join(MODES)}")
        if not isinstance(value, MODES[name]):
            raise ValueError(f"mode {name!r} takes a {MODES[name].__name__}")
    model.modes.update({k: MODES[k](v) for k, v in changes.items()})
    return model.modes


def in_mode(model: FleetModel, mode: str, name: str) -> bool:
    names = model.modes.get(mode) or ()
    return name in names or "*" in names


class FleetModel:
    def __init__(self, fleet: Fleet, scenario: Scenario, anchor: int, clock: Clock, seed: int | None = None) -> None:
        self.fleet = fleet
        self.clock = clock
        self.anchor = int(anchor) // 60 * 60
        self.set_scenario(scenario, seed)

    def set_scenario(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        effects: dict[str, list[Effect]] = {}
        for eff in scenario.effects:
            effects.setdefault(eff.target, []).append(eff)
        self._effects = effects
        self.modes = default_modes()  # a new scenario starts from AWS's defaults
        self._keys: dict[tuple[str, str], np.uint64] = {}
        self._cache: OrderedDict[tuple[str, int, int], dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # -- time -----------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def incident_labels(self) -> list[dict[str, Any]]:
        return [inc.label(self.anchor) for inc in self.scenario.incidents]

    # -- noise ----------------------------------------------------------------------------------

    def noise_key(self, res: Resource, name: str) -> np.uint64:
        k = (res.uid, name)
        found = self._keys.get(k)
        if found is None:
            found = self._keys[k] = key(self.seed, res.account, res.region, res.uid, name)
        return found

    def noise(self, res: Resource, name: str, m: np.ndarray) -> np.ndarray:
        return uniform(self.noise_key(res, name), m)

    # -- drivers --------------------------------------------------------------------------------

    def _memo(
        self, cache_key: tuple[str, int, int], compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """A bounded LRU of evaluated windows: the many queries of one call share their work."""
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None:
                self._cache.move_to_end(cache_key)
                return hit
        value = compute()
        with self._lock:
            self._cache[cache_key] = value
            while len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return value

    def drivers(self, res: Resource, m: np.ndarray) -> dict[str, np.ndarray]:
        """Driver arrays of one resource over a contiguous run of epoch minutes (cached)."""
        return self._memo((res.uid, int(m[0]), len(m)), lambda: drv.evaluate(self, res, m))

    def apply_effects(
        self, res: Resource, d: dict[str, np.ndarray], m: np.ndarray, which: Callable[[str], bool]
    ) -> None:
        t = m.astype(np.float64) * 60.0
        for eff in self._effects.get(res.uid, ()):
            if eff.driver is None or not which(eff.driver):
                continue
            start, end = self.anchor + eff.start, self.anchor + eff.end
            active = (t >= start) & (t < end)
            if not active.any():
                continue
            value = float(eff.value) * (self.fact(res, eff.of) if eff.of else 1.0)
            weight = np.clip((t - start + 60.0) / eff.ramp, 0.0, 1.0) if eff.ramp else 1.0
            cur = d[eff.driver]
            if eff.op == "set":
                jitter = 1.0 + 0.03 * (2.0 * self.noise(res, f"effect:{eff.driver}", m) - 1.0)
                new = cur * (1 - weight) + value * jitter * weight
            elif eff.op == "scale":
                new = cur * (1 + (value - 1) * weight)
            elif eff.op == "add":
                new = cur + value * weight
            else:  # grow: value per minute since the effect started
                new = cur + value * np.maximum(t - start + 60.0, 0.0) / 60.0
            d[eff.driver] = np.where(active, new, cur)

    # -- facts that are not time series ---------------------------------------------------------

    def fact(self, res: Resource, name: str) -> float:
        if name == "max_connections":
            return float(self.fleet.max_connections(res) if res.kind == "rds" else self.proxy_max_allowed(res))
        if name in res.params and isinstance(res.params[name], (int, float)):
            return float(res.params[name])
        raise KeyError(f"{res.uid} has no numeric fact {name!r}")

    def facts_at(self, res: Resource, t: float) -> dict[str, Any]:
        """Params overridden by fact effects active at time t (e.g. SES EnforcementStatus)."""
        out = dict(res.params)
        for eff in self._effects.get(res.uid, ()):
            if eff.fact and self.anchor + eff.start <= t < self.anchor + eff.end:
                out[eff.fact] = eff.value
        return out

    def deployed(self, res: Resource, t: float) -> tuple[str, float] | None:
        """(version, when) of the newest code deployed by a scenario and live at time t."""
        live = [
            (str(e.value), float(self.anchor + e.start))
            for e in self._effects.get(res.uid, ())
            if e.fact == "version" and self.anchor + e.start <= t < self.anchor + e.end
        ]
        return max(live, key=lambda v: v[1]) if live else None

    def proxy_max_allowed(self, proxy: Resource) -> int:
        return int(proxy.facts["max_allowed"])

    def account_concurrency_limit(self, account: str) -> int:
        acct = self.fleet.account(account)
        return acct.concurrency_limit if acct else 1000

    def lambda_account(self, account: str, region: str, m: np.ndarray) -> dict[str, np.ndarray]:
        """Account-wide Lambda figures: the sums AWS publishes with no dimension."""
        return self._memo(
            (f"lambda_account:{account}/{region}", int(m[0]), len(m)), lambda: self._lambda_account(account, region, m)
        )

    def _lambda_account(self, account: str, region: str, m: np.ndarray) -> dict[str, np.ndarray]:
        total = {name: np.zeros(m.shape) for name in LAMBDA_ACCOUNT_DRIVERS}
        provisioned_total = 0.0
        for fn in self.fleet.of_kind("lambda", account, region):
            d = self.drivers(fn, m)
            total["concurrency"] += d["concurrency"]
            total["invocations"] += d["invocations"]
            total["errors"] += d["invocations"] * d["error_rate"]
            total["throttles"] += d["throttles"]
            if fn["reserved"] is None:
                total["unreserved_concurrency"] += d["concurrency"]
            provisioned_total += float(fn["provisioned"])
        # ClaimedAccountConcurrency = unreserved in use + all reserved + all provisioned.
        total["claimed"] = total["unreserved_concurrency"] + self.reserved_total(account, region) + provisioned_total
        return total

    def reserved_total(self, account: str, region: str) -> int:
        return int(sum(fn["reserved"] or 0 for fn in self.fleet.of_kind("lambda", account, region)))
