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
    "db.t3.micro": 1, "db.t3.small": 2, "db.t3.medium": 4, "db.t3.large": 8, "db.t3.xlarge": 16, "db.t3.2xlarge": 32,
    "db.t4g.micro": 1, "db.t4g.small": 2, "db.t4g.medium": 4, "db.t4g.large": 8, "db.t4g.xlarge": 16, "db.t4g.2xlarge": 32,
    "db.m5.large": 8, "db.m5.xlarge": 16, "db.m5.2xlarge": 32, "db.m5.4xlarge": 64,
    "db.m6g.large": 8, "db.m6g.xlarge": 16, "db.m6g.2xlarge": 32, "db.m6g.4xlarge": 64,
    "db.m7g.large": 8, "db.m7g.xlarge": 16, "db.m7g.2xlarge": 32, "db.m7g.4xlarge": 64,
    "db.r5.large": 16, "db.r5.xlarge": 32, "db.r5.2xlarge": 64, "db.r5.4xlarge": 128,
    "db.r6g.large": 16, "db.r6g.xlarge": 32, "db.r6g.2xlarge": 64, "db.r6g.4xlarge": 128,
    "db.r7g.large": 16, "db.r7g.xlarge": 32, "db.r7g.2xlarge": 64, "db.r7g.4xlarge": 128,
}
# What the OS and RDS keep out of DBInstanceClassMemory: not published; ~10% is the usual estimate.
OS_RESERVE = 0.10

# Engine default max_connections formulas, with DBInstanceClassMemory in bytes.
_DEFAULT_FORMULA = {
    "postgres": "LEAST({DBInstanceClassMemory/9531392},5000)",
    "aurora-postgresql": "LEAST({DBInstanceClassMemory/9531392},5000)",
    "mariadb": "LEAST({DBInstanceClassMemory/25165760},12000)",
    "mysql": "{DBInstanceClassMemory/12582880}",
}
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
    memory = instance_class_memory(instance_class)
    formula = _DEFAULT_FORMULA.get("mysql" if engine.startswith("aurora-mysql") else engine)
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
    if value is None:
        return None, True, f"unknown: no default formula for engine {engine!r} or memory for {instance_class!r}"
    return value, True, f"{engine} default formula with estimated DBInstanceClassMemory of {instance_class}"
