"""Issue 17: places where real AWS answers differently from what the collector assumed. Each
test names the AWS page or botocore model shape that decides it."""

from __future__ import annotations

from typing import Any

import pytest

from collector import limits

# -- Aurora MySQL max_connections (item 7) ---------------------------------------------------------
# "Maximum connections to an Aurora MySQL DB instance": a fixed default per instance class,
# https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Managing.Performance.html
# Aurora PostgreSQL: LEAST({DBInstanceClassMemory/9531392},5000),
# https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraPostgreSQL.Managing.html

GIB = 1 << 30
AURORA_MYSQL_FORMULA = "GREATEST({log(DBInstanceClassMemory/805306368)*45},{log(DBInstanceClassMemory/8187281408)*1000})"


@pytest.mark.parametrize(("engine", "klass", "parameter", "expected", "estimated"), [
    ("aurora-mysql", "db.t3.medium", None, 90, False),
    ("aurora-mysql", "db.t4g.medium", None, 90, False),
    ("aurora-mysql", "db.t4g.large", None, 135, False),
    ("aurora-mysql", "db.r6g.large", None, 1000, False),
    ("aurora-mysql", "db.r5.24xlarge", None, 7000, False),
    ("aurora", "db.r4.16xlarge", None, 6000, False),  # Aurora MySQL 5.6-compatible's engine name
    # The default parameter group's own formula (log) is not evaluated: the table stands.
    ("aurora-mysql", "db.t3.medium", AURORA_MYSQL_FORMULA, 90, False),
    ("aurora-mysql", "db.r6g.large", "2500", 2500, False),
    # Not in AWS's table: unknown, never the RDS for MySQL formula.
    ("aurora-mysql", "db.m5.large", None, None, True),
    ("aurora-postgresql", "db.r6g.large", None, min(int(16 * GIB * 0.9) // 9531392, 5000), True),
    ("mysql", "db.t3.medium", None, int(4 * GIB * 0.9) // 12582880, True),  # RDS for MySQL keeps its formula
])
def test_aurora_mysql_max_connections(engine: str, klass: str, parameter: str | None, expected: int | None,
                                      estimated: bool) -> None:
    value, is_estimate, how = limits.max_connections(engine, klass, parameter)
    assert (value, is_estimate) == (expected, estimated)
    if value is None:
        assert klass in how and "parameter group" in how
