"""Discovery inside the control-plane quotas (issue 17 item 12): paced per (account, region,
service) below the documented rate on the injected clock, incremental (an unchanged function gets
no detail calls, a changed one does, tags are refreshed by age), and off the poll cycle."""

from __future__ import annotations

import math
import threading
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from collector.pacing import QUOTAS, Pacer
from fleetwatch.clock import FakeClock
from fleetwatch.store import open_store
from tests.conftest import ANCHOR, client, make_collector, set_clock

PROD = "123456789012"
DETAIL = {
    "lambda:ListTags",
    "lambda:GetFunctionConcurrency",
    "lambda:ListProvisionedConcurrencyConfigs",
    "lambda:ListAliases",
}


@pytest.fixture()
def store(tmp_path: Path) -> Any:
    with open_store(tmp_path / "fw.db") as s:
        yield s


@pytest.fixture()
def calls(aws_calls: Counter[str]) -> Counter[str]:
    return aws_calls


def one_place(emulator: Any, store: Any, **kw: Any) -> Any:
    return make_collector(
        emulator, store, regions=["us-east-1"], roles=[f"arn:aws:iam::{PROD}:role/fleetwatch-reader"], **kw
    )


def test_pacer_releases_calls_from_many_threads_no_faster_than_the_configured_rate() -> None:
    clock = FakeClock(0)
    released: list[tuple[str, float]] = []
    names = {"lambda": "ListTags", "apigateway:GetResources": "GetResources"}
    pacer = Pacer(
        clock.now,
        clock.sleep,
        fraction=0.4,
        on_release=lambda key, t: names.get(key[2]) and released.append((names[key[2]], t)),
    )

    def worker(op: str) -> None:
        for _ in range(30):
            pacer.acquire(PROD, "us-east-1", "apigateway" if op == "GetResources" else "lambda", op)

    threads = [threading.Thread(target=worker, args=(op,)) for op in ["ListTags"] * 6 + ["GetResources"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Lambda: 15 requests/s documented, 40 % of it = 6/s; API Gateway GetResources 5 per 2 s -> 1/s.
    for op, rate in (("ListTags", 6.0), ("GetResources", 1.0)):
        times = sorted(t for o, t in released if o == op)
        assert len(times) == (180 if op == "ListTags" else 60)
        assert all(b - a >= 1 / rate - 1e-9 for a, b in pairwise(times)), op
        busiest = max(sum(1 for t in times if s <= t < s + 1 - 1e-9) for s in times)
        assert (
            busiest <= math.ceil(rate)
            and busiest < QUOTAS["lambda" if op == "ListTags" else "apigateway:GetResources"].per_second / 2 + 1
        )
    stats = pacer.stats()
    assert stats[(PROD, "us-east-1", "lambda")] == (180, 6)
    assert stats[(PROD, "us-east-1", "apigateway:GetResources")][0] == 60
    with pytest.raises(ValueError, match="quota_fraction"):
        Pacer(clock.now, clock.sleep, fraction=0)


def test_discovery_is_paced_per_service_on_the_injected_clock(fleet: Any, store: Any, calls: Counter[str]) -> None:
    own = FakeClock(ANCHOR)
    pacer = Pacer(own.now, own.sleep, fraction=0.4)
    result = one_place(fleet, store, pacer=pacer).discover()[0]
    assert result.status == "ok", result.error

    stats = pacer.stats()
    lambda_calls = sum(n for action, n in calls.items() if action.startswith("lambda:"))
    # Every Lambda call, the thread pool's detail calls included, went through the bucket...
    assert stats[(PROD, "us-east-1", "lambda")][0] == lambda_calls > 20
    # ...and no second held more than the configured 6 (under half of the documented 15).
    for (_account, _region, key), (_n, peak) in stats.items():
        assert peak <= math.ceil(pacer.rate(key)), (key, peak)
    # Waiting happened on the injected clock: at 6 calls a second, that many calls take this long.
    assert own.now() - ANCHOR >= (lambda_calls - 1) / 6.0
    # The discovery row counts the pool's calls too (they were lost before: thread-local source).
    assert result.tally.calls["lambda:ListTags"] == calls["lambda:ListTags"] > 0


def test_an_unchanged_function_gets_no_detail_calls_and_a_changed_one_does(
    fleet: Any, store: Any, calls: Counter[str]
) -> None:
    collector = one_place(fleet, store)
    collector.discover()
    first = {a: n for a, n in calls.items() if a in DETAIL}
    functions = len(store.resources(kinds=["lambda"], account=PROD, region="us-east-1"))
    assert first["lambda:ListTags"] == functions > 5

    calls.clear()
    set_clock(fleet, ANCHOR + 3600)
    result = collector.discover()[0]
    assert not any(a in DETAIL for a in calls), calls
    assert calls["lambda:ListFunctions"] >= 1  # the list itself is read every time
    assert f"{functions} unchanged kept their stored detail" in result.note or "unchanged kept" in result.note
    stored = {r["name"]: r for r in store.resources(kinds=["lambda"], account=PROD, region="us-east-1")}
    assert stored["orders-fn"]["tags"] == {"service": "orders", "team": "payments"}
    assert stored["report-fn"]["facts"]["reserved_concurrency"] == 5

    lam = client(fleet, "lambda")
    before = lam.get_function_configuration(FunctionName="orders-fn")["Timeout"]
    lam.update_function_configuration(FunctionName="orders-fn", Timeout=42)
    try:
        calls.clear()
        set_clock(fleet, ANCHOR + 7200)
        collector.discover()
        assert {a: calls[a] for a in DETAIL} == {a: 1 for a in DETAIL}
        orders = store.resources(kinds=["lambda"], account=PROD, region="us-east-1")
        assert next(r for r in orders if r["name"] == "orders-fn")["facts"]["timeout"] == 42
    finally:  # the emulated fleet is shared by the session
        lam.update_function_configuration(FunctionName="orders-fn", Timeout=before)


def test_tags_are_refreshed_after_the_detail_age_even_without_a_change(
    fleet: Any, store: Any, calls: Counter[str]
) -> None:
    collector = one_place(fleet, store, detail_refresh=6 * 3600)
    collector.discover()
    functions = len(store.resources(kinds=["lambda"], account=PROD, region="us-east-1"))
    lam = client(fleet, "lambda")
    arn = lam.get_function_configuration(FunctionName="orders-fn")["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"owner": "checkout"})  # moves no RevisionId
    try:
        _tags_refresh_after_the_age(fleet, store, collector, calls, functions)
    finally:  # the emulated fleet is shared by the session
        lam.untag_resource(Resource=arn, TagKeys=["owner"])


def _tags_refresh_after_the_age(fleet: Any, store: Any, collector: Any, calls: Counter[str], functions: int) -> None:
    calls.clear()
    set_clock(fleet, ANCHOR + 3 * 3600 - 60)  # under half the age: nothing is due
    collector.discover()
    assert calls["lambda:ListTags"] == 0
    orders = next(
        r for r in store.resources(kinds=["lambda"], account=PROD, region="us-east-1") if r["name"] == "orders-fn"
    )
    assert "owner" not in orders["tags"]

    calls.clear()
    set_clock(fleet, ANCHOR + 6 * 3600)  # the full age: every function's detail is asked again
    collector.discover()
    assert calls["lambda:ListTags"] == functions
    orders = next(
        r for r in store.resources(kinds=["lambda"], account=PROD, region="us-east-1") if r["name"] == "orders-fn"
    )
    assert orders["tags"]["owner"] == "checkout"


def test_rediscovery_runs_off_the_poll_cycle(fleet: Any, store: Any) -> None:
    gate = threading.Event()
    gate.set()
    own = FakeClock(ANCHOR)

    def sleep(seconds: float) -> None:
        gate.wait(60)  # a slow control plane: the background discovery waits here
        own.sleep(seconds)

    collector = one_place(fleet, store, pacer=Pacer(own.now, sleep), background_discovery=True)
    first = collector.poll()  # never discovered: discovered in the poll (nothing to poll before)
    assert any(s.source == "discovery" and s.status == "ok" for s in first.sources)

    gate.clear()
    set_clock(fleet, ANCHOR + 3600 + 60)
    second = collector.poll()  # discovery is due again: it starts on its thread and waits on the gate
    try:
        assert not collector.wait_for_discovery(timeout=0.2)  # still running...
        assert second.samples > 0 and not second.errors, second.summary()  # ...and the poll was not held up
        assert not any(s.source == "discovery" for s in second.sources)
    finally:
        gate.set()
    assert collector.wait_for_discovery(timeout=60)

    set_clock(fleet, ANCHOR + 3600 + 120)
    third = collector.poll()
    done = [s for s in third.sources if s.source == "discovery"]
    assert len(done) == 1 and done[0].status == "ok", [(s.source, s.error) for s in third.sources]
    assert done[0].tally.calls["lambda:ListFunctions"] >= 1  # its calls are recorded with it
    with collector._db:
        assert store.last_poll("discovery", PROD, "us-east-1") == ANCHOR + 3600 + 120
