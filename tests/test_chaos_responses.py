"""Malformed and surprising AWS answers, made by rewriting the emulator's real answers in the
fault proxy: missing fields, empty pages, pages that never end, unknown enum values, NaN,
infinities and huge numbers, timestamps out of order, at the epoch or a year ahead. Each poll
finishes; what is wrong is dropped or reported on its own source with a clear message, and the
rest of the poll is stored. Nothing non-finite or from the future reaches the store."""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.store import open_store
from simulator.faultproxy import FaultProxy, Rule, json_rewrite
from simulator.server import Call
from tests import chaos_kit
from tests.conftest import ANCHOR, make_collector, set_clock

NOW = ANCHOR + 2 * 3600
YEAR = 365 * 86400


def _gmd(edit: Callable[[list[dict[str, Any]]], None]) -> Rule:
    def rewrite(call: Call, body: dict[str, Any]) -> None:
        edit(body.get("MetricDataResults", []))

    return Rule(mode="rewrite", service="monitoring", operation="GetMetricData", rewrite=json_rewrite(rewrite))


def _each_result(edit: Callable[[dict[str, Any]], None]) -> Rule:
    return _gmd(lambda results: [edit(r) for r in results[::3]])


def _values(new: list[float]) -> Callable[[dict[str, Any]], None]:
    def edit(r: dict[str, Any]) -> None:
        r["Values"] = (new * (len(r.get("Timestamps", [])) // len(new) + 1))[: len(r.get("Timestamps", []))]

    return edit


def _json(service: str, operation: str, edit: Callable[[dict[str, Any]], Any]) -> Rule:
    def rewrite(call: Call, body: dict[str, Any]) -> None:
        edit(body)  # edits in place; what it returns is not the new body

    return Rule(mode="rewrite", service=service, operation=operation, rewrite=json_rewrite(rewrite))


def _text(service: str, operation: str, pattern: str, repl: str) -> Rule:
    return Rule(
        mode="rewrite",
        service=service,
        operation=operation,
        rewrite=lambda call, raw: re.sub(pattern.encode(), repl.encode(), raw),
    )


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return body.get(key) or []


CASES: dict[str, list[Rule]] = {
    "NaN, infinities and huge values": [_each_result(_values([math.nan, math.inf, -math.inf, 1e308, -1e308, 5.0]))],
    "values missing": [_each_result(lambda r: r.pop("Values", None))],
    "timestamps missing": [_each_result(lambda r: r.pop("Timestamps", None))],
    "timestamps and values of different lengths": [
        _each_result(lambda r: r.__setitem__("Values", r.get("Values", [])[:-1]))
    ],
    "timestamps out of order": [_each_result(lambda r: r.__setitem__("Timestamps", r.get("Timestamps", [])[::-1]))],
    "timestamps a year ahead and at the epoch": [
        _each_result(
            lambda r: r.__setitem__(
                "Timestamps", [NOW + YEAR if i % 2 else 0 for i, _ in enumerate(r.get("Timestamps", []))]
            )
        )
    ],
    "unknown StatusCode": [_each_result(lambda r: r.__setitem__("StatusCode", "Exploded"))],
    "empty metric page": [_gmd(lambda results: results.clear())],
    "result ids unknown": [_each_result(lambda r: r.__setitem__("Id", "zz_not_asked"))],
    "unknown Lambda state, a string for memory, a function without a name": [
        _json(
            "lambda",
            "GET /2015-03-31/functions",
            lambda b: (
                [f.update(State="Zombie", MemorySize="huge") for f in _items(b, "Functions")]
                and _items(b, "Functions").append({"Runtime": "python3.12"})
            ),
        )
    ],
    "account settings without limits": [_json("lambda", "GetAccountSettings", lambda b: b.pop("AccountLimit", None))],
    "queue attributes not numbers": [
        _json(
            "sqs",
            "GetQueueAttributes",
            lambda b: b.get("Attributes", {}).update(
                ApproximateNumberOfMessages="NaN",
                ApproximateAgeOfOldestMessage="-5",
                ApproximateNumberOfMessagesNotVisible="1e400",
            ),
        )
    ],
    "metric pages that never end": [
        _gmd(lambda results: None),
        _json("monitoring", "GetMetricData", lambda b: b.update(NextToken="again")),
    ],
    "function pages that never end": [
        _json("lambda", "GET /2015-03-31/functions", lambda b: b.update(Functions=[], NextMarker="again"))
    ],
    "table status unknown, throughput missing": [
        _json(
            "dynamodb",
            "DescribeTable",
            lambda b: (
                b.get("Table", {}).update(TableStatus="MELTING"),
                b.get("Table", {}).pop("ProvisionedThroughput", None),
            ),
        )
    ],
    "database status unknown, class missing": [
        _text("rds", "DescribeDBInstances", r"<DBInstanceStatus>[^<]*<", "<DBInstanceStatus>mystery<"),
        _text("rds", "DescribeDBInstances", r"<DBInstanceClass>[^<]*</DBInstanceClass>", ""),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_surprising_answer_costs_only_what_it_spoiled(fleet: Any, tmp_path: Path, case: str) -> None:
    set_clock(fleet, NOW)
    with FaultProxy(fleet.endpoint) as proxy, open_store(tmp_path / "fw.db") as store:
        proxy.set_rules(CASES[case])
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], endpoint=proxy.endpoint)
        report = collector.poll()
        rewritten = proxy.stats().get("injected", 0)
    assert rewritten >= 1, "the case touched an answer"
    by_source = {s.source: s for s in report.sources}
    # The rest of the poll was stored: the probes' samples at least, and the metrics unless the
    # case spoiled every metric answer (then the metric source says so and is asked again).
    assert report.samples > 10, {k: (s.status, s.error) for k, s in by_source.items()}
    if by_source["cloudwatch"].status == "ok" and "empty" not in case:
        assert report.samples > 100
    for s in report.sources:
        if s.status == "error":  # said in words, and retried next poll
            # ... as an unreadable answer, a refused one, or AWS's own error (Operation: Code: message).
            assert (
                "could not be read" in s.error
                or "asked again next poll" in s.error
                or re.search(r"\b[A-Z]\w+: [A-Z]\w+: ", s.error)
            ), s.error
    touched = {r.service for r in CASES[case]}
    if "monitoring" not in touched:
        assert by_source["cloudwatch"].status == "ok", "the metrics failed for a case that did not touch them"
    conn = sqlite3.connect(tmp_path / "fw.db")
    bad = conn.execute(
        "SELECT COUNT(*) FROM samples WHERE value IS NULL OR value != value OR abs(value) > 1e300 OR ts > ? OR ts < ?",
        [NOW + 300, NOW - 40 * 86400],
    ).fetchone()[0]
    conn.close()
    assert bad == 0, f"{bad} non-finite, absurd or misdated samples stored"
    chaos_kit.record(
        f"AWS answer: {case}",
        group="malformed AWS answers",
        bad_inputs_tried=1,
        handled=1,
        faults_injected=rewritten,
        errored_sources=sorted(k for k, s in by_source.items() if s.status == "error"),
    )
