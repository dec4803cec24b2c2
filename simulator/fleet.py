"""The fleet: accounts, regions and resources, loaded from a data file (simulator/fleets/*.toml).

A resource is named `kind:name` (e.g. `lambda:orders-fn`); names are unique across the fleet so
scenarios can refer to them without an account or region.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.limits import default_max_connections

FLEETS_DIR = Path(__file__).parent / "fleets"
DEFAULT_ACCOUNT = "123456789012"  # moto's default account: plain credentials land here

# Per-kind parameters with their defaults. A fleet file may set only these.
KIND_PARAMS: dict[str, dict[str, Any]] = {
    "lambda": {
        "memory": 512,
        "timeout": 30,
        "runtime": "python3.12",
        "reserved": None,
        "provisioned": 0,
        "rate": 60.0,
        "duration_ms": 100.0,
        "duration_sigma": 0.4,
        "init_ms": 400.0,
        "cold_share": 0.003,
        "error_rate": 0.001,
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
        "schedule": None,
        "queue": None,
        "database": None,
        "table": None,
        "sends_mail": False,
        "alias": None,  # an alias callers invoke (version 1 published); scenarios move it: alias_version, alias_canary
    },
    "sqs": {
        "rate": 30.0,
        "retention": 345600,
        "visibility_timeout": 30,
        "dlq": None,
        "max_receive": 5,
        "base_age": 5.0,
        "backlog_minutes": 0.1,
        "consumer": None,
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
    "dynamodb": {
        "billing": "PROVISIONED",
        "read_capacity": 100,
        "write_capacity": 100,
        "read_units": 20.0,
        "write_units": 10.0,
        "sort_key": False,
        "contributor_insights": "off",
        "key_prefix": "item#",
        "indexes": [],  # global secondary indexes (names); the index_*_throttles drivers throttle the first
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
    "rds": {
        "engine": "postgres",
        "engine_version": "16.3",
        "instance_class": "db.r6g.large",
        "max_connections": None,
        "connections": 40.0,
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
    "rds_proxy": {
        "target": None,
        "engine_family": "POSTGRESQL",
        "max_connections_percent": 100,
        "clients": 50.0,
        "db_connections": 20.0,
        "borrow_us": 150.0,
        "pinned_share": 0.05,
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
    "ses": {
        "production_access": False,
        "max_24h": None,
        "max_rate": None,
        "sends_per_min": 0.1,
        "bounce_rate": 0.01,
        "complaint_rate": 0.0002,
        "sender": "example.com",
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
    # service "events": an EventBridge scheduled rule; "scheduler": an EventBridge Scheduler schedule
    # in `group` (AWS/Scheduler metrics are per group; the emulator evaluates cron in UTC only).
    "schedule": {
        "expression": "rate(5 minutes)",
        "target": None,
        "service": "events",
        "group": "default",
        "flexible_window": 0,
    },
    "api": {
        "type": "REST",
        "stage": "prod",
        "routes": {},
        "rate": 120.0,
        "latency_ms": 80.0,
        "latency_sigma": 0.5,
        "error5": 0.001,
        "error4": 0.01,
        "daily_amp": 0.3,
        "weekly_amp": 0.2,
    },
}


class FleetError(ValueError):
    """A fleet or scenario file that does not make sense, with the file and the fix."""


@dataclass
class Account:
    id: str
    name: str
    regions: list[str]
    concurrency_limit: int = 1000
    reader_role: str = "fleetwatch-reader"

    @property
    def reader_role_arn(self) -> str:
        return f"arn:aws:iam::{self.id}:role/{self.reader_role}"


@dataclass
class Resource:
    kind: str
    name: str
    account: str
    region: str
    tags: dict[str, str]
    params: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)  # filled in when created in moto

    @property
    def uid(self) -> str:
        return f"{self.kind}:{self.name}"

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    @property
    def arn(self) -> str:
        a, r, n = self.account, self.region, self.name
        return {
            "lambda": f"arn:aws:lambda:{r}:{a}:function:{n}",
            "sqs": f"arn:aws:sqs:{r}:{a}:{n}",
            "dynamodb": f"arn:aws:dynamodb:{r}:{a}:table/{n}",
            "rds": f"arn:aws:rds:{r}:{a}:db:{n}",
            "rds_proxy": f"arn:aws:rds:{r}:{a}:db-proxy:{n}",
            "ses": f"arn:aws:ses:{r}:{a}:identity/{self.params.get('sender')}",
            "schedule": (
                f"arn:aws:scheduler:{r}:{a}:schedule/{self.params.get('group', 'default')}/{n}"
                if self.params.get("service") == "scheduler"
                else f"arn:aws:events:{r}:{a}:rule/{n}"
            ),
            "api": f"arn:aws:apigateway:{r}::/restapis/{n}",
        }[self.kind]


@dataclass
class Fleet:
    name: str
    description: str
    accounts: list[Account]
    resources: list[Resource]
    source: str = ""

    def __post_init__(self) -> None:
        self.by_uid = {r.uid: r for r in self.resources}

    def get(self, uid: str) -> Resource:
        try:
            return self.by_uid[uid]
        except KeyError:
            raise FleetError(f"{self.source}: no resource {uid!r} in fleet {self.name!r}") from None

    def of_kind(self, kind: str, account: str | None = None, region: str | None = None) -> list[Resource]:
        return [
            r
            for r in self.resources
            if r.kind == kind and (account is None or r.account == account) and (region is None or r.region == region)
        ]

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)

    def places(self) -> list[tuple[str, str]]:
        return [(a.id, r) for a in self.accounts for r in a.regions]

    def max_connections(self, db: Resource) -> int:
        return int(db["max_connections"] or default_max_connections(db["engine"], db["instance_class"]) or 100)


def load_fleet(name_or_path: str, extra: dict[str, int] | None = None, dirs: tuple[Path, ...] = ()) -> Fleet:
    """Load a fleet file; `extra` pads it with generated resources per kind (benchmarks), e.g.
    {"lambda": 1000, "sqs": 200, "dynamodb": 50, "rds": 5}. A bare name is looked up in `dirs`
    first, then among the fleets shipped here."""
    path = Path(name_or_path)
    if not path.suffix:
        path = next(
            (d / f"{name_or_path}.toml" for d in dirs if (d / f"{name_or_path}.toml").exists()),
            FLEETS_DIR / f"{name_or_path}.toml",
        )
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in FLEETS_DIR.glob("*.toml")))
        raise FleetError(f"no fleet {name_or_path!r}; known fleets: {known}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None
    fleet = _build(data, str(path))
    for kind, count in (extra or {}).items():
        if count:
            add_generated(fleet, kind, count)
    return fleet


def _build(data: dict[str, Any], source: str) -> Fleet:
    accounts = []
    for i, raw in enumerate(data.get("accounts", [])):
        unknown = set(raw) - {"id", "name", "regions", "concurrency_limit", "reader_role"}
        if unknown:
            raise FleetError(f"{source}: accounts[{i}] has unknown keys {sorted(unknown)}")
        accounts.append(
            Account(
                id=str(raw["id"]),
                name=raw.get("name", str(raw["id"])),
                regions=list(raw["regions"]),
                concurrency_limit=int(raw.get("concurrency_limit", 1000)),
                reader_role=raw.get("reader_role", "fleetwatch-reader"),
            )
        )
    if not accounts:
        raise FleetError(f"{source}: a fleet needs at least one [[accounts]] entry")
    resources: list[Resource] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("resources", [])):
        raw = dict(raw)
        kind = raw.pop("kind", None)
        name = raw.pop("name", None)
        where = f"{source}: resources[{i}]"
        if kind not in KIND_PARAMS:
            raise FleetError(f"{where}: kind {kind!r} is not one of {sorted(KIND_PARAMS)}")
        if not name:
            raise FleetError(f"{where}: a resource needs a name")
        account = str(raw.pop("account", accounts[0].id))
        acct = next((a for a in accounts if a.id == account), None)
        if acct is None:
            raise FleetError(f"{where}: account {account} is not among the fleet's accounts")
        region = raw.pop("region", acct.regions[0])
        if region not in acct.regions:
            raise FleetError(f"{where}: region {region} is not among account {account}'s regions {acct.regions}")
        tags = {str(k): str(v) for k, v in raw.pop("tags", {}).items()}
        unknown = set(raw) - set(KIND_PARAMS[kind])
        if unknown:
            raise FleetError(
                f"{where} ({kind}:{name}): unknown parameters {sorted(unknown)}; "
                f"a {kind} takes {sorted(KIND_PARAMS[kind])}"
            )
        params = {**KIND_PARAMS[kind], **raw}
        res = Resource(kind, name, account, region, tags, params)
        if res.uid in seen:
            raise FleetError(f"{where}: {res.uid} is defined twice; names are unique per kind across the fleet")
        seen.add(res.uid)
        resources.append(res)
    fleet = Fleet(data.get("name", Path(source).stem), data.get("description", ""), accounts, resources, source)
    _check_references(fleet)
    return fleet


def _check_references(fleet: Fleet) -> None:
    refs = {
        ("lambda", "schedule"): "schedule",
        ("lambda", "queue"): "sqs",
        ("lambda", "database"): None,
        ("lambda", "table"): "dynamodb",
        ("sqs", "dlq"): "sqs",
        ("sqs", "consumer"): "lambda",
        ("rds_proxy", "target"): "rds",
        ("schedule", "target"): "lambda",
    }
    for res in fleet.resources:
        for (kind, param), target_kind in refs.items():
            value = res.params.get(param) if res.kind == kind else None
            if not value:
                continue
            if target_kind is None:
                target = fleet.by_uid.get(f"rds:{value}") or fleet.by_uid.get(f"rds_proxy:{value}")
            else:
                target = fleet.by_uid.get(f"{target_kind}:{value}")
            if target is None:
                raise FleetError(f"{fleet.source}: {res.uid} has {param} = {value!r}, which is not in the fleet")
        if res.kind == "api":
            for route, fn in res["routes"].items():
                if f"lambda:{fn}" not in fleet.by_uid:
                    raise FleetError(
                        f"{fleet.source}: {res.uid} route {route!r} targets {fn!r}, which is not a lambda in the fleet"
                    )
        if res.kind == "rds_proxy" and not res["target"]:
            raise FleetError(f"{fleet.source}: {res.uid} needs a target database")
        if res.kind == "schedule" and not res["target"]:
            raise FleetError(f"{fleet.source}: {res.uid} needs a target function")
        if res.kind == "schedule" and res["service"] not in ("events", "scheduler"):
            raise FleetError(
                f'{fleet.source}: {res.uid} has service = {res["service"]!r}; use "events" (a rule) or "scheduler"'
            )
        if res.kind == "schedule" and res["service"] == "scheduler":
            mates = [
                o
                for o in fleet.resources
                if o.kind == "schedule"
                and o.params.get("service") == "scheduler"
                and o.account == res.account
                and o.region == res.region
                and o.params.get("group", "default") == res["group"]
            ]
            res.facts["group_alone"] = len(mates) == 1
        if res.kind == "rds_proxy":
            target = fleet.get(f"rds:{res['target']}")
            # MaxDatabaseConnectionsAllowed: a share of the target's max_connections, less the
            # few AWS keeps for monitoring and failover.
            res.facts["max_allowed"] = max(
                int(fleet.max_connections(target) * res["max_connections_percent"] / 100) - 3, 1
            )
        if res.kind == "ses":
            sandbox = not res["production_access"]
            res.params["max_24h"] = res["max_24h"] or (200 if sandbox else 50000)
            res.params["max_rate"] = res["max_rate"] or (1 if sandbox else 14)


def _generated_params(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "lambda":
        return {
            "rate": round(rng.lognormvariate(3.0, 1.2), 2),
            "duration_ms": round(rng.lognormvariate(4.5, 0.8), 1),
            "init_ms": round(rng.lognormvariate(6.0, 0.6), 1),
            "memory": rng.choice([128, 256, 512, 1024, 2048]),
        }
    if kind == "sqs":
        return {"rate": round(rng.lognormvariate(2.0, 1.0), 2), "retention": rng.choice([86400, 345600, 1209600])}
    if kind == "dynamodb":
        return {
            "read_capacity": rng.choice([50, 100, 400]),
            "write_capacity": rng.choice([25, 50, 200]),
            "read_units": round(rng.uniform(2, 30), 1),
            "write_units": round(rng.uniform(1, 15), 1),
        }
    if kind == "rds":
        return {
            "instance_class": rng.choice(["db.t3.medium", "db.r6g.large", "db.m6g.large"]),
            "connections": round(rng.uniform(10, 60), 1),
        }
    raise FleetError(f"cannot generate resources of kind {kind!r}; generated kinds: lambda, sqs, dynamodb, rds")


GENERATED_PREFIX = {"lambda": "fn", "sqs": "queue", "dynamodb": "table", "rds": "db"}


def add_generated(fleet: Fleet, kind: str, count: int) -> None:
    """Pad the fleet with `count` plain resources of one kind in the first account and region."""
    rng = random.Random(f"{kind}:{count}")
    acct = fleet.accounts[0]
    width = max(5, len(str(count)))
    prefix = GENERATED_PREFIX.get(kind, kind)
    for i in range(count):
        params = {**KIND_PARAMS[kind], **_generated_params(kind, rng)}
        res = Resource(
            kind,
            f"{prefix}-{i:0{width}d}",
            acct.id,
            acct.regions[0],
            {"service": f"svc-{i % 50:02d}", "generated": "true"},
            params,
        )
        fleet.resources.append(res)
        fleet.by_uid[res.uid] = res
