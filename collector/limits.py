"""Documented AWS limits the collector needs to turn raw facts into denominators.

`max_connections` comes from the DB parameter group when it is set there; otherwise from the
engine's documented default formula and the instance class's memory, and is then marked
estimated (DBInstanceClassMemory is smaller than the nominal memory by an amount AWS does not
publish). See SIGNALS.md §3.
"""

from __future__ import annotations

import re

# Nominal memory (GiB) of common instance classes (AWS instance-type pages).
INSTANCE_MEMORY_GIB = {
    "db.t3.micro": 1,
    "db.t3.small": 2,
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.t3.xlarge": 16,
    "db.t3.2xlarge": 32,
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.t4g.xlarge": 16,
    "db.t4g.2xlarge": 32,
    "db.m5.large": 8,
    "db.m5.xlarge": 16,
    "db.m5.2xlarge": 32,
    "db.m5.4xlarge": 64,
    "db.m6g.large": 8,
    "db.m6g.xlarge": 16,
    "db.m6g.2xlarge": 32,
    "db.m6g.4xlarge": 64,
    "db.m7g.large": 8,
    "db.m7g.xlarge": 16,
    "db.m7g.2xlarge": 32,
    "db.m7g.4xlarge": 64,
    "db.r5.large": 16,
    "db.r5.xlarge": 32,
    "db.r5.2xlarge": 64,
    "db.r5.4xlarge": 128,
    "db.r6g.large": 16,
    "db.r6g.xlarge": 32,
    "db.r6g.2xlarge": 64,
    "db.r6g.4xlarge": 128,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
    "db.r7g.2xlarge": 64,
    "db.r7g.4xlarge": 128,
}
# What the OS and RDS keep out of DBInstanceClassMemory: not published; ~10% is the usual estimate.
OS_RESERVE = 0.10

# Engine default max_connections formulas, with DBInstanceClassMemory in bytes. Aurora
# PostgreSQL's default parameter group uses the RDS PostgreSQL one ("Maximum connections to an
# Aurora PostgreSQL DB instance", https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/
# AuroraPostgreSQL.Managing.html). Aurora MySQL has no formula here: see AURORA_MYSQL_DEFAULT.
_DEFAULT_FORMULA = {
    "postgres": "LEAST({DBInstanceClassMemory/9531392},5000)",
    "aurora-postgresql": "LEAST({DBInstanceClassMemory/9531392},5000)",
    "mariadb": "LEAST({DBInstanceClassMemory/25165760},12000)",
    "mysql": "{DBInstanceClassMemory/12582880}",
}
# Aurora MySQL's default max_connections per instance class, as AWS publishes it ("Maximum
# connections to an Aurora MySQL DB instance", https://docs.aws.amazon.com/AmazonRDS/latest/
# AuroraUserGuide/AuroraMySQL.Managing.Performance.html#AuroraMySQL.Managing.MaxConnections).
# AWS says the RDS for MySQL values do not apply ("Aurora MySQL and RDS for MySQL DB instances
# have different amounts of memory overhead"), and does not print the formula behind the table,
# so a class missing here is reported unknown (set max_connections in the parameter group)
# rather than guessed with the RDS for MySQL formula (307 where AWS says 90 on a t3.medium).
AURORA_MYSQL_DEFAULT = {
    "db.t2.small": 45,
    "db.t2.medium": 90,
    "db.t3.small": 45,
    "db.t3.medium": 90,
    "db.t3.large": 135,
    "db.t4g.medium": 90,
    "db.t4g.large": 135,
    "db.r3.large": 1000,
    "db.r3.xlarge": 2000,
    "db.r3.2xlarge": 3000,
    "db.r3.4xlarge": 4000,
    "db.r3.8xlarge": 5000,
    "db.r4.large": 1000,
    "db.r4.xlarge": 2000,
    "db.r4.2xlarge": 3000,
    "db.r4.4xlarge": 4000,
    "db.r4.8xlarge": 5000,
    "db.r4.16xlarge": 6000,
    "db.r5.large": 1000,
    "db.r5.xlarge": 2000,
    "db.r5.2xlarge": 3000,
    "db.r5.4xlarge": 4000,
    "db.r5.8xlarge": 5000,
    "db.r5.12xlarge": 6000,
    "db.r5.16xlarge": 6000,
    "db.r5.24xlarge": 7000,
    "db.r6g.large": 1000,
    "db.r6g.xlarge": 2000,
    "db.r6g.2xlarge": 3000,
    "db.r6g.4xlarge": 4000,
    "db.r6g.8xlarge": 5000,
    "db.r6g.12xlarge": 6000,
    "db.r6g.16xlarge": 6000,
    "db.x2g.large": 2000,
    "db.x2g.xlarge": 3000,
    "db.x2g.2xlarge": 4000,
    "db.x2g.4xlarge": 5000,
    "db.x2g.8xlarge": 6000,
    "db.x2g.12xlarge": 7000,
    "db.x2g.16xlarge": 7000,
}


def is_aurora_mysql(engine: str) -> bool:
    return engine in ("aurora", "aurora-mysql") or engine.startswith("aurora-mysql")


_TERM = re.compile(r"\{DBInstanceClassMemory\s*/\s*(\d+)\}")
_CALL = re.compile(r"^(LEAST|GREATEST)\((.*)\)$", re.IGNORECASE)


def instance_class_memory(instance_class: str) -> int | None:
    gib = INSTANCE_MEMORY_GIB.get(instance_class)
    return None if gib is None else int(gib * (1 << 30) * (1 - OS_RESERVE))


def evaluate(expression: str, memory: int) -> int | None:
    """Evaluate a parameter-group value: a number, {DBInstanceClassMemory/N}, or LEAST/GREATEST
    of those. None if it is anything else."""
    text = expression.strip()
    if text.isdigit():
        return int(text)
    match = _CALL.match(text)
    if match:
        parts = [evaluate(p, memory) for p in _split(match.group(2))]
        if any(p is None for p in parts) or not parts:
            return None
        return min(parts) if match.group(1).upper() == "LEAST" else max(parts)  # type: ignore[type-var]
    term = _TERM.fullmatch(text)
    if term:
        return memory // int(term.group(1))
    return None


def _split(args: str) -> list[str]:
    depth, start, out = 0, 0, []
    for i, ch in enumerate(args):
        depth += ch in "({"
        depth -= ch in ")}"
        if ch == "," and depth == 0:
            out.append(args[start:i])
            start = i + 1
    out.append(args[start:])
    return out


def default_max_connections(engine: str, instance_class: str) -> int | None:
    if is_aurora_mysql(engine):
        return AURORA_MYSQL_DEFAULT.get(instance_class)
    memory = instance_class_memory(instance_class)
    formula = _DEFAULT_FORMULA.get(engine)
    if memory is None or formula is None:
        return None
    return evaluate(formula, memory)


def max_connections(engine: str, instance_class: str, parameter: str | None) -> tuple[int | None, bool, str]:
    """(max_connections, estimated, how it was found) from the parameter group's value, if any."""
    memory = instance_class_memory(instance_class)
    if parameter:
        if parameter.strip().isdigit():
            return int(parameter), False, "parameter group"
        value = evaluate(parameter, memory) if memory is not None else None
        if value is not None:
            return value, True, f"parameter group formula {parameter} with estimated DBInstanceClassMemory"
    value = default_max_connections(engine, instance_class)
    if is_aurora_mysql(engine):
        if value is None:
            return (
                None,
                True,
                (
                    f"unknown: {instance_class!r} is not in AWS's Aurora MySQL max_connections table; "
                    "set max_connections in the DB parameter group"
                ),
            )
        return value, False, f"Aurora MySQL default for {instance_class} (AWS's published table)"
    if value is None:
        return None, True, f"unknown: no default formula for engine {engine!r} or memory for {instance_class!r}"
    return value, True, f"{engine} default formula with estimated DBInstanceClassMemory of {instance_class}"
