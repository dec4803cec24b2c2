"""What every detector shares: the inputs it is handed (resources with their facts, windows of
series, the time), the finding it returns, and the registry that names it.

A detector is a function `(inputs) -> list[Finding]`. It may also return `NoData(resource_id,
why)` entries: a resource whose signals are absent is its own state, not an alarm.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

# info: a risk worth showing (a misconfiguration, a low limit) that pages nobody.
INFO, WARNING, CRITICAL = "info", "warning", "critical"
Point = tuple[int, float]


@dataclass(frozen=True)
class Approach:
    """A series climbing to a limit: seconds until it is reached at the slowest recent rise, when
    that climb began (the time of its first point), and that rise per minute."""

    eta: float
    since: int
    per_minute: float

    def told(self, reached: str = "full") -> str:
        """ " and rising 82/min: full in ~2 min", for a title."""
        return f" and rising {count_text(self.per_minute)}/min: {reached} in ~{max(self.eta / 60, 1):.0f} min"


@dataclass(frozen=True)
class Series:
    """Points of one metric of one resource, ascending by time; missing minutes are absent."""

    points: tuple[Point, ...] = ()
    period: int = 60  # seconds each point covers (the statistic's period)

    def __bool__(self) -> bool:
        return bool(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def since(self, t: int) -> Series:
        return Series(tuple(p for p in self.points if p[0] >= t), self.period)

    def before(self, t: int) -> Series:
        return Series(tuple(p for p in self.points if p[0] < t), self.period)

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]

    @property
    def latest(self) -> Point | None:
        return self.points[-1] if self.points else None

    def sum(self) -> float:
        return sum(v for _, v in self.points)

    def max(self) -> float | None:
        return max(self.values) if self.points else None

    def median(self) -> float | None:
        return statistics.median(self.values) if self.points else None

    def slope_per_minute(self) -> tuple[float, float]:
        """Least-squares slope (per minute) and R² of the points; (0, 0) with fewer than 3."""
        n = len(self.points)
        if n < 3:
            return 0.0, 0.0
        xs = [t / 60.0 for t, _ in self.points]
        ys = self.values
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        syy = sum((y - my) ** 2 for y in ys)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        if sxx == 0:
            return 0.0, 0.0
        slope = sxy / sxx
        r2 = (sxy * sxy) / (sxx * syy) if syy else 0.0
        return slope, r2

    def rising_to(self, limit: float, steps: int = 3) -> Approach | None:
        """How soon `limit` is reached if the climb of the last `steps` points goes on: None
        unless each of them rose on the one before (consecutive points, none missing). The pace
        is the slowest of those rises, not the last one nor a fit over a longer window: a single
        jump is not a trend, and a ramp that is levelling off is read at its slowest."""
        pts = self.points[-(steps + 1) :]
        if len(pts) < steps + 1 or any(b[0] - a[0] != self.period for a, b in pairwise(pts)):
            return None
        rises = [b[1] - a[1] for a, b in pairwise(pts)]
        slowest = min(rises)
        if slowest <= 0:
            return None
        per_minute = slowest * 60 / self.period
        return Approach(max(limit - pts[-1][1], 0.0) / per_minute * 60, pts[0][0], per_minute)

    def run_start(self, holds: Callable[[float], bool]) -> int | None:
        """When the newest unbroken run of points for which `holds` is true began (None if the
        newest point does not hold)."""
        start = None
        for t, v in reversed(self.points):
            if not holds(v):
                break
            start = t
        return start


def reaching(level: float, of: float = 1.0) -> Callable[[float], bool]:
    """For Series.run_start: whether a value is at least `level` of `of` (a share of a limit). Both
    are bound now: a lambda written in a loop would read the loop's variables when called."""
    return lambda v: v / of >= level


# A hard limit about to be reached: at least NEAR of it in use, and still climbing fast enough to
# use the rest within IMMINENT at the slowest of its last three one-minute rises. A database
# that climbs to a busy 60 % over ten minutes, or whose climb levels off, is not "about to".
NEAR, IMMINENT = 0.60, 150


def imminent(series: Series, limit: float, now: int) -> Approach | None:
    """The climb of `series` to `limit` if the limit is near and about to be reached (see NEAR,
    IMMINENT); None otherwise, or if its newest point is more than a few minutes old."""
    latest = series.latest
    if not limit or latest is None or latest[0] < now - 3 * series.period or latest[1] < NEAR * limit:
        return None
    climb = series.rising_to(limit)
    return climb if climb is not None and climb.eta <= IMMINENT else None


@dataclass(frozen=True)
class Resource:
    id: str
    kind: str
    name: str
    account: str
    region: str
    facts: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Inputs:
    """Everything a detector may look at. Built by the spine from the store; built by hand in
    the table tests."""

    now: int
    resources: Sequence[Resource]
    series: dict[tuple[str, str, str], Series]  # (resource id, metric, stat) -> points
    settings: dict[str, Any] = field(default_factory=dict)
    # The (metric, stat) pairs that were loaded; reading any other is a bug in a detector's
    # READS declaration, so it fails loudly (None: everything was given, as in table tests).
    loaded: frozenset[tuple[str, str]] | None = None
    # The same clock hour of the week in earlier weeks: (resource id, metric, stat) -> (sum of
    # the values over those hours, how many of the hours had data). Declared by WEEKLY.
    weekly: dict[tuple[str, str, str], tuple[float, int]] = field(default_factory=dict)
    # When the newest point of each series declared by LAST_SEEN was, however long ago (raw
    # samples or hourly rollups): (resource id, metric, stat) -> time. A schedule whose last run
    # left the window is still known to have last run then.
    last_seen: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # When fleetwatch first discovered each resource (resource id -> time).
    first_seen: dict[str, int] = field(default_factory=dict)
    # What open alerts were decided against, by finding fingerprint: {"baseline": x, "since": t}.
    # "Usually" means before the incident: a detector holds the baseline of an open alert.
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Detectors that keep state between passes (detectors/unusual.py): what is stored, by
    # (resource id, metric, stat) -> (last time fed, the state's JSON or None when not loaded this
    # pass); a bounded number of first-seen series' stored history to learn from; and what to
    # store back, -> (last time fed, an episode is open, the state's JSON), saved with the pass.
    states: dict[tuple[str, str, str], tuple[int, str | None]] = field(default_factory=dict)
    seed: dict[tuple[str, str, str], Series] = field(default_factory=dict)
    new_states: dict[tuple[str, str, str], tuple[int, bool, str]] = field(default_factory=dict)
    # The incremental pass (fleetwatch/agent/incremental.py): the ids of the resources to
    # evaluate this pass (None: all), and what each evaluation read (see Tracking). Detectors
    # iterate the resources they report on with `due`, and look up others with of_kind/named/get.
    only: frozenset[str] | set[str] | None = None
    track: Tracking | None = None

    # Indexes of `resources` (by kind, by id, by place and name), built on first use and again
    # whenever `resources` is replaced or grows: detectors ask per queue or per function, so a
    # scan of the whole fleet each time made a pass O(fleet²) (bench/scale.py, issue 20).
    _index: tuple[Any, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def _indexes(self) -> tuple[dict[str, list[Resource]], dict[str, Resource], dict[tuple[str, ...], list[int]]]:
        stamp = (id(self.resources), len(self.resources))
        if self._index is None or self._index[0] != stamp:
            kinds: dict[str, list[Resource]] = {}
            ids: dict[str, Resource] = {}
            named: dict[tuple[str, ...], list[int]] = {}
            for i, r in enumerate(self.resources):
                kinds.setdefault(r.kind, []).append(r)
                ids.setdefault(r.id, r)
                named.setdefault((r.kind, r.account, r.region, r.name), []).append(i)
            self._index = (stamp, kinds, ids, named)
        return self._index[1], self._index[2], self._index[3]

    def due(self, kind: str, always: Iterable[str] = ()) -> Iterator[Resource]:
        """The resources of `kind` a detector reports on this pass, in fleet order: all of them,
        or in an incremental pass those in `only` (and `always`, ids whose answer depends on
        what other resources' evaluation found in this same pass). What the detector reads and
        yields while one is current is that resource's (Tracking)."""
        track = self.track
        if track is not None:
            track.loop += 1
        extra = set(always) if self.only is not None else set()
        for r in self._indexes()[0].get(kind, ()):
            if self.only is not None and r.id not in self.only and r.id not in extra:
                continue
            if track is not None:
                track.current = r.id
                track.reads.setdefault(r.id, set())  # evaluated, even if it reads nothing
            yield r
        if track is not None:
            track.current = None

    def of_kind(self, kind: str) -> list[Resource]:
        if self.track is not None:
            self.track.read(("k", kind))
        return list(self._indexes()[0].get(kind, ()))

    def named(self, kind: str, account: str, region: str, names: Iterable[str]) -> list[Resource]:
        """The resources of `kind` in one place whose name is one of `names`, in fleet order."""
        index = self._indexes()[2]
        at = sorted({i for n in set(names) for i in index.get((kind, account, region, n), ())})
        found = [self.resources[i] for i in at]
        if self.track is not None:
            for r in found:
                self.track.read(("r", r.id))
        return found

    def get(self, resource_id: str, metric: str, stat: str) -> Series:
        if self.loaded is not None and (metric, stat) not in self.loaded:
            raise KeyError(f"{metric} {stat} was not loaded: add it to the detector module's READS")
        if self.track is not None:
            self.track.read(resource_id)
        return self.series.get((resource_id, metric, stat), Series())

    def same_hour(self, resource_id: str, metric: str, stat: str) -> float:
        """The sum of a series over the same clock hour of the week in earlier weeks (0 if none)."""
        if self.track is not None:
            self.track.read(resource_id)
        return self.weekly.get((resource_id, metric, stat), (0.0, 0))[0]

    def resource(self, resource_id: str) -> Resource | None:
        if self.track is not None:
            self.track.read(("r", resource_id))
        return self._indexes()[1].get(resource_id)


@dataclass
class Tracking:
    """What a detector's evaluation of each resource read, for the incremental pass: the ids
    whose series it read (a str), the resources it looked up (("r", id)) and the kinds it
    scanned (("k", kind)); and which `due` loop of the detector's run is going on, so a finding
    yielded while a resource is current is that resource's."""

    loop: int = -1
    current: str | None = None
    reads: dict[str, set[Any]] = field(default_factory=dict)

    def read(self, token: Any) -> None:
        if self.current is not None:
            self.reads.setdefault(self.current, set()).add(token)


@dataclass
class Finding:
    detector: str
    resource_id: str
    severity: str
    title: str
    started_at: int
    evidence: dict[str, Any]
    cause: str = ""
    fix: str = ""
    key: str = ""  # what about the resource: several findings of one detector on one resource
    # Measured against a hard limit (max_connections, a partition's or the account's throughput,
    # a quota): not a statistical guess, so its alert fires after `alerts.for_limits`, not `alerts.for`.
    limit: bool = False
    # Its evidence already spans minutes of data (a climb seen rising minute after minute), so
    # `for` counts from `started_at`, when the data shows it began, not from the first pass.
    sustained: bool = False

    @property
    def fingerprint(self) -> str:
        return f"{self.detector}:{self.resource_id}:{self.key}"


@dataclass(frozen=True)
class NoData:
    resource_id: str
    why: str


Detector = Callable[[Inputs], Iterable[Finding | NoData]]
REGISTRY: dict[str, Detector] = {}


def detector(name: str) -> Callable[[Detector], Detector]:
    """Register a detector under `name`; a second detector with the same name fails loudly."""

    def register(fn: Detector) -> Detector:
        if name in REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice ({REGISTRY[name].__module__} and {fn.__module__})")
        REGISTRY[name] = fn
        return fn

    return register


# Units a person reads evidence in (alerts/units.py formats them): "ratio" (0.12 -> 12 %),
# "percent" (already 0-100), "s", "ms", "us" (durations), "count" (thousands separated).
UNITS = ("ratio", "percent", "s", "ms", "us", "count")


def unit_for(name: str) -> str:
    """The unit a series is in, guessed from its name when the detector did not say: *_rate,
    *_ratio, *_share -> ratio; age, *_age, *_seconds, *_s -> s; *_ms, latency* -> ms; else count."""
    n = name.lower()
    if n in ("rate", "ratio", "share") or n.endswith(("_rate", "_ratio", "_share")):
        return "ratio"
    if n == "age" or n.endswith(("_age", "_seconds", "_s")):
        return "s"
    if n.endswith("_ms") or n.startswith("latency"):
        return "ms"
    if n.endswith("_us"):
        return "us"
    return "count"


def evidence(
    limit: float | None = None, baseline: float | None = None, units: dict[str, str] | None = None, **series: Series
) -> dict[str, Any]:
    """The points that decided a finding, what they were held against, and the unit of each.

    `units` names the unit of a series, of "limit" or of "baseline" (one of UNITS), e.g.
    evidence(limit=retention, age=age, units={"age": "s", "limit": "s"}). Series left out are
    guessed from their names (unit_for); limit and baseline take the unit of the first series, the
    one held against them."""
    return series_evidence(series, limit=limit, baseline=baseline, units=units)


def series_evidence(
    series: Mapping[str, Series],
    *,
    limit: float | None = None,
    baseline: float | None = None,
    units: dict[str, str] | None = None,
) -> dict[str, Any]:
    """evidence() for series named at run time (a metric's name, a dict of series)."""
    given = dict(units or {})
    bad = {k: v for k, v in given.items() if v not in UNITS}
    if bad:
        raise ValueError(f"unknown unit(s) {bad}: use one of {', '.join(UNITS)}")
    out: dict[str, Any] = {"series": {name: [list(p) for p in s.points[-30:]] for name, s in series.items()}}
    shown = {name: given.get(name) or unit_for(name) for name in series}
    primary = next(iter(shown.values()), None)
    for key, value in (("limit", limit), ("baseline", baseline)):
        if value is not None:
            out[key] = value
            unit = given.get(key) or primary  # given units were checked above: none is empty
            if unit is not None:
                shown[key] = unit
    out["units"] = shown
    return out


def count_text(n: float) -> str:
    """A count in a title, whole and with thousands separators: "4,888 messages", "of its 4,000
    WCU" (alerts.units writes the counts in evidence the same way)."""
    return f"{n:,.0f}"


def pct(x: float) -> str:
    """A ratio as a percentage: whole above 10 %, one decimal above 1 %, two significant figures
    below (0.00055 is "0.055%", not "0.1%" beside a 0.1 % limit)."""
    p = x * 100
    if p == 0:
        return "0%"
    if abs(p) >= 10:
        return f"{p:.0f}%"
    if abs(p) >= 1:
        return f"{p:.1f}%"
    return f"{p:.2g}%"
