"""What the chaos tests share: their size (quick in `make test`, full with CHAOS_FULL=1, which
`make chaos` sets), the table of figures they report, and the comparisons they assert with.

Each chaos test calls `record(...)` with what it injected and what it found; the session's
terminal summary prints the table, and test-artifacts/chaos.json (chaos-full.json at full size)
keeps it (conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FULL = os.environ.get("CHAOS_FULL") == "1"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = (
    ROOT / "test-artifacts" / ("chaos-full.json" if FULL else "chaos.json")
)  # a quick run never overwrites a full one
COLUMNS = (
    "faults injected",
    "incidents expected",
    "detected",
    "notified",
    "notifications duplicated",
    "samples lost",
    "restarts survived",
    "bad inputs tried",
    "handled",
)
ROWS: list[dict[str, Any]] = []


def size(quick: Any, full: Any) -> Any:
    return full if FULL else quick


def record(experiment: str, group: str = "", **figures: Any) -> None:
    """One row of the chaos table; keys are COLUMNS with '_' for ' ' (others go to the JSON only).
    Rows with the same `group` (one per case of a parametrised test) share a line of the table."""
    ROWS.append(
        {"experiment": experiment, "group": group or experiment, "scale": "full" if FULL else "quick", **figures}
    )


def table(rows: list[dict[str, Any]]) -> str:
    head = ["experiment", *COLUMNS]
    merged: dict[str, dict[str, Any]] = {}
    for r in rows:
        line = merged.setdefault(r["group"], {})
        for c in COLUMNS:
            key = c.replace(" ", "_")
            if isinstance(r.get(key), int):
                line[key] = line.get(key, 0) + r[key]
    body = [[group, *(str(line.get(c.replace(" ", "_"), "")) for c in COLUMNS)] for group, line in merged.items()]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(b) for b in body)])


def write_artifact() -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"scale": "full" if FULL else "quick", "rows": ROWS}, indent=2))


# -- comparisons ---------------------------------------------------------------------------------


def samples(path: Path, until: int | None = None) -> dict[tuple[str, int], float]:
    """Every stored sample, by (series key, timestamp), read straight from the file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT s.key, x.ts, x.value FROM samples x JOIN series s ON s.id = x.series_id"
            + (" WHERE x.ts <= ?" if until is not None else ""),
            [until] if until is not None else [],
        ).fetchall()
    finally:
        conn.close()
    return {(k, ts): v for k, ts, v in rows}


def breakdown(keys: list[tuple[str, int]]) -> dict[str, Any]:
    """Samples by namespace|metric|period, and the newest timestamp: what a failed comparison shows."""
    by: dict[str, int] = {}
    for k, _ in keys:
        parts = k.split("|")
        name = f"{parts[1]}|{parts[2]}|{parts[-1]}"
        by[name] = by.get(name, 0) + 1
    return {
        "count": len(keys),
        "by_series": dict(sorted(by.items(), key=lambda x: -x[1])[:10]),
        "newest": max((ts for _, ts in keys), default=None),
        "oldest": min((ts for _, ts in keys), default=None),
    }


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@contextlib.contextmanager
def fast_botocore_waits(scale: float = 0.01) -> Iterator[None]:
    """The simulated day passes on a fake clock, but botocore's retry backoff (up to 20 s) and
    its adaptive rate limiter wait on the wall clock; a day of throttles would take hours. So,
    for in-process runs only, the backoff is scaled down and the limiter's token waits are
    skipped. Every retry still goes over HTTP through the fault proxy; only its wait shrinks.
    (Nothing real can shorten a wait inside botocore, hence the patch.)"""
    from botocore.retries import bucket, standard

    delay = standard.ExponentialBackoff.delay_amount
    acquire = bucket.TokenBucket.acquire
    standard.ExponentialBackoff.delay_amount = lambda self, ctx: delay(self, ctx) * scale  # type: ignore[method-assign]
    bucket.TokenBucket.acquire = lambda self, amount=1, block=True: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        standard.ExponentialBackoff.delay_amount = delay  # type: ignore[method-assign]
        bucket.TokenBucket.acquire = acquire  # type: ignore[method-assign]


def target(emulator: Any, label: dict[str, Any]) -> str:
    """The store's resource id a labelled incident's finding lands on."""
    res = emulator.model.fleet.get(label["resource"])
    kind, name = label["resource"].split(":", 1)
    return f"{kind}/{res.account}/{res.region}/{name}"


def outcomes(
    path: Path, emulator: Any, labels: list[dict[str, Any]], slack_keys: set[str], notify_within: int = 1200
) -> list[dict[str, Any]]:
    """Per labelled incident: detected (a paging finding on its resource during it, or up to 20
    minutes after it ended) and notified (a notification about an incident holding that
    resource's alert was delivered by `notify_within` seconds after it ended, and the Slack
    stand-in received it; the incident may be an earlier one the alert joined)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    try:
        for label in labels:
            rid = target(emulator, label)
            detected = conn.execute(
                "SELECT MIN(ts) FROM findings WHERE resource_id = ? AND "
                "severity IN ('warning', 'critical') AND ts BETWEEN ? AND ?",
                [rid, label["start"] - 600, label["end"] + 1200],
            ).fetchone()[0]
            keys = {
                k
                for (k,) in conn.execute(
                    "SELECT n.key FROM notifications n JOIN incidents i ON i.id = n.incident_id "
                    "WHERE n.status = 'sent' AND n.sent_at BETWEEN ? AND ? AND EXISTS (SELECT 1 FROM alerts a "
                    "WHERE a.resource_id = ? AND i.members LIKE '%' || a.fingerprint || '%')",
                    [label["start"] - 600, label["end"] + notify_within, rid],
                )
            }
            out.append(
                {"id": label["id"], "resource": rid, "detected_at": detected, "notified": bool(keys & slack_keys)}
            )
    finally:
        conn.close()
    return out
