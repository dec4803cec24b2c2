"""Scenarios: a fleet, a seed and labelled incidents, from simulator/scenarios/*.toml (or any
scenario file, by path).

An incident names its kind (the failure mode a detector should find), the resource at fault,
optionally the outcome users feel, its start and end as offsets from the scenario's anchor, the
effects it has on the resources' drivers, and `visible` checks stating which signals it must
move (the tests run every one of them against the emulator).

A look-alike (`[[lookalikes]]`) has the same shape without a kind: its effects play (a traffic
surge that scales cleanly, a queue that bursts and drains) but it is not an incident, and
nothing may page for it.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.drivers import DRIVERS
from simulator.fleet import Fleet, FleetError, load_fleet

SCENARIOS_DIR = Path(__file__).parent / "scenarios"
OPS = ("set", "scale", "add", "grow")
INCIDENT_KINDS = (
    "cold_start",
    "hot_partition",
    "table_capacity",
    "connection_exhaustion",
    "queue_growth",
    "queue_consumer_stopped",
    "dlq",
    "ses_sandbox",
    "ses_reputation",
    "ses_send_rate",
    "lambda_concurrency",
    "schedule_missed",
    "schedule_failed",
)
_OFFSET = re.compile(r"([+-]?)((?:\d+[dhms])+)$")
_PART = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_offset(text: str | int) -> int:
    """Seconds from an offset such as "-45m", "+2h30m" or "-3d" (or a number of seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _OFFSET.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not an offset like '-45m', '+2h30m' or '-3d'")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(match.group(2)))
    return -seconds if match.group(1) == "-" else seconds


@dataclass(frozen=True)
class Effect:
    target: str
    driver: str | None
    fact: str | None
    op: str
    value: Any
    start: int  # offsets from the anchor, seconds
    end: int
    ramp: int = 0
    of: str | None = None


@dataclass
class Incident:
    id: str
    kind: str
    resource: str
    start: int
    end: int
    summary: str
    outcome: str | None = None
    effects: list[Effect] = field(default_factory=list)
    visible: list[dict[str, Any]] = field(default_factory=list)

    def label(self, anchor: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "resource": self.resource,
            "outcome": self.outcome,
            "start": anchor + self.start,
            "end": anchor + self.end,
            "summary": self.summary,
        }


@dataclass
class Scenario:
    name: str
    description: str
    fleet_name: str
    seed: int
    incidents: list[Incident]
    source: str = ""
    lookalikes: list[Incident] = field(default_factory=list)

    @property
    def effects(self) -> list[Effect]:
        """Every effect that plays: the incidents' and the look-alikes'."""
        return [e for inc in (*self.incidents, *self.lookalikes) for e in inc.effects]


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml"))


def _read(name: str) -> tuple[Path, dict[str, Any]]:
    path = Path(name) if name.endswith(".toml") else SCENARIOS_DIR / f"{name}.toml"
    if not path.exists():
        raise FleetError(f"no scenario {name!r}; known scenarios: {', '.join(scenario_names())}")
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None


def scenario_fleet(name: str) -> str:
    """The fleet a scenario runs on, without loading that fleet."""
    return str(_read(name)[1].get("fleet", "shop"))


def load_scenario(name: str, fleet: Fleet | None = None, _shift: int = 0, _stack: tuple[str, ...] = ()) -> Scenario:
    if name in _stack:
        raise FleetError(f"scenario {name!r} includes itself through {' -> '.join(_stack)}")
    path, data = _read(name)
    fleet_name = data.get("fleet", "shop")
    fleet = fleet or load_fleet(fleet_name)
    incidents: list[Incident] = []
    lookalikes: list[Incident] = []
    for inc in data.get("include", []):
        shift = parse_offset(inc.get("shift", 0))
        beside = path.parent / f"{inc['scenario']}.toml"  # a scenario in another folder includes its neighbours first
        sub = load_scenario(str(beside) if beside.exists() else inc["scenario"], fleet, _shift + shift, (*_stack, name))
        if sub.fleet_name != fleet_name:
            raise FleetError(
                f"{path}: included scenario {inc['scenario']!r} uses fleet {sub.fleet_name!r}, not {fleet_name!r}"
            )
        if "duration" in inc:  # cut short (the demo's tour): its effects that lasted to its end end with it
            cut = parse_offset(inc["duration"])
            if cut <= 0:
                raise FleetError(f"{path}: include {inc['scenario']!r}: duration must be positive")
            sub.incidents = [_cut(i, cut) for i in sub.incidents]
        # A scenario included more than once (a daily failure) tells its copies apart by a suffix.
        suffix = str(inc.get("id_suffix", ""))
        incidents.extend(dataclasses.replace(i, id=i.id + suffix) if suffix else i for i in sub.incidents)
        lookalikes.extend(dataclasses.replace(i, id=i.id + suffix) if suffix else i for i in sub.lookalikes)
    for i, raw in enumerate(data.get("incidents", [])):
        incidents.append(_incident(raw, fleet, f"{path}: incidents[{i}]", _shift))
    for i, raw in enumerate(data.get("lookalikes", [])):
        if "kind" in raw:
            raise FleetError(
                f"{path}: lookalikes[{i}] has a kind; a look-alike is not an incident (move it to [[incidents]])"
            )
        lookalikes.append(_incident({**raw, "kind": "lookalike"}, fleet, f"{path}: lookalikes[{i}]", _shift))
    ids = [inc.id for inc in (*incidents, *lookalikes)]
    if len(ids) != len(set(ids)):
        raise FleetError(f"{path}: incident ids must be unique, got {ids}")
    return Scenario(
        data.get("name", path.stem),
        data.get("description", ""),
        fleet_name,
        int(data.get("seed", 1)),
        incidents,
        str(path),
        lookalikes,
    )


def _cut(inc: Incident, duration: int) -> Incident:
    """The incident ended `duration` after its start: what lasted to its end ends then, and what
    began at its end (what ended it: access granted, a fix deployed) begins then."""
    end = min(inc.end, inc.start + duration)
    early = inc.end - end
    effects = [
        dataclasses.replace(e, end=min(e.end, end))
        if e.end == inc.end
        else dataclasses.replace(e, start=e.start - early, end=e.end - early)
        if e.start == inc.end
        else e
        for e in inc.effects
    ]
    return dataclasses.replace(inc, end=end, effects=[e for e in effects if e.start < e.end])


def _incident(raw: dict[str, Any], fleet: Fleet, where: str, shift: int) -> Incident:
    try:
        kind = raw["kind"]
        if kind not in (*INCIDENT_KINDS, "lookalike"):
            raise FleetError(f"{where}: kind {kind!r} is not one of {INCIDENT_KINDS}")
        start = parse_offset(raw["start"]) + shift
        end = parse_offset(raw["end"]) + shift
        if end <= start:
            raise FleetError(f"{where}: end must come after start")
        fleet.get(raw["resource"])
        if raw.get("outcome"):
            fleet.get(raw["outcome"])
        effects = [_effect(e, fleet, f"{where}.effects[{j}]", start, end) for j, e in enumerate(raw.get("effects", []))]
        return Incident(
            raw["id"],
            kind,
            raw["resource"],
            start,
            end,
            raw.get("summary", ""),
            raw.get("outcome"),
            effects,
            list(raw.get("visible", [])),
        )
    except KeyError as exc:
        raise FleetError(f"{where}: missing required key {exc.args[0]!r}") from None
    except ValueError as exc:
        if isinstance(exc, FleetError):
            raise
        raise FleetError(f"{where}: {exc}") from None


def _effect(raw: dict[str, Any], fleet: Fleet, where: str, inc_start: int, inc_end: int) -> Effect:
    target = fleet.get(raw["target"])
    op = raw.get("op", "set")
    if op not in OPS:
        raise FleetError(f"{where}: op {op!r} is not one of {OPS}")
    if ("driver" in raw) == ("fact" in raw):
        raise FleetError(f"{where}: an effect changes exactly one driver or one fact")

    if "driver" in raw and raw["driver"] not in DRIVERS[target.kind]:
        raise FleetError(
            f"{where}: {target.kind} has no driver {raw['driver']!r}; it has {sorted(DRIVERS[target.kind])}"
        )
    start = inc_start + parse_offset(raw["from"]) if "from" in raw else inc_start
    end = inc_start + parse_offset(raw["until"]) if "until" in raw else inc_end
    return Effect(
        target.uid,
        raw.get("driver"),
        raw.get("fact"),
        op,
        raw["value"],
        start,
        end,
        parse_offset(raw.get("ramp", 0)),
        raw.get("of"),
    )
