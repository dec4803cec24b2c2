"""Issue 17, the items left over: late SQS metrics of a waking queue, SES reputation metrics
that are not published, the cost of X-Ray traces and SQS requests, alias releases as deploys,
and throttled global secondary indexes end to end. Each test names what in AWS decides it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ANCHOR, client, control, make_collector, set_clock
from tests.test_detectors import NOW, flat, res, results

PROD = "123456789012"


@pytest.fixture()
def store(tmp_path: Any) -> Any:
    from fleetwatch.store import open_store

    with open_store(tmp_path / "fw.db") as s:
        yield s


# -- SQS metrics up to 15 minutes late when a queue wakes (item 13) --------------------------------
# SQS Developer Guide, "Monitoring Amazon SQS queues using CloudWatch"
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html):
# a queue inactive for more than six hours is asleep and stops delivering metrics to CloudWatch;
# once it is activated there is a delay of up to 15 minutes before they resume (SIGNALS.md §4).
# In dlq-filling, orders-dlq (idle for days) starts receiving messages 50 minutes before the anchor.

WAKE = ANCHOR - 50 * 60
DLQ_VISIBLE = ("AWS/SQS", "ApproximateNumberOfMessagesVisible")


def _dlq_points(fleet: Any, start: int, end: int) -> list[int]:
    cw = client(fleet, "cloudwatch")
    got = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "v",
                "MetricStat": {
                    "Metric": {
                        "Namespace": DLQ_VISIBLE[0],
                        "MetricName": DLQ_VISIBLE[1],
                        "Dimensions": [{"Name": "QueueName", "Value": "orders-dlq"}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampAscending",
    )
    return [int(t.timestamp()) for t in got["MetricDataResults"][0]["Timestamps"]]


def test_the_emulator_publishes_a_waking_queues_first_points_late(fleet: Any) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "dlq-filling"})
    set_clock(fleet, WAKE + 10 * 60)
    assert _dlq_points(fleet, WAKE - 3600, WAKE + 10 * 60) == [], "nothing yet, 10 min after the queue woke"
    url = client(fleet, "sqs").get_queue_url(QueueName="orders-dlq")["QueueUrl"]
    live = client(fleet, "sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert float(live["Attributes"]["ApproximateNumberOfMessages"]) > 0, "GetQueueAttributes answers live"
    set_clock(fleet, WAKE + 16 * 60)
    stamps = _dlq_points(fleet, WAKE - 3600, WAKE + 16 * 60)
    assert stamps and stamps[0] <= WAKE + 60, "the late points arrive stamped with their own minutes"


def test_a_waking_dlq_is_read_from_its_live_depth_not_called_inactive() -> None:
    from detectors.queues import queues

    dlq = res("sqs", "orders-dlq", {"is_dlq": True, "dlq_of": ["orders-queue"], "fifo": True})
    live = flat(120, 10, every=5)  # the SQS probe runs on slow polls
    findings, nodata = results(queues, _inputs([dlq], {(dlq.id, "SQS.ApproximateNumberOfMessages", "Value"): live}))
    assert not nodata, "CloudWatch's silence is its 15-minute delay, not an idle queue"
    (finding,) = findings
    assert finding.key == "dlq" and "120 waiting" in finding.title and "GetQueueAttributes" in finding.title

    # A plain queue waking with messages: no NoData either (nothing else to judge yet).
    q = res("sqs", "orders-queue", {"consumers": ["orders-fn"]})
    findings, nodata = results(queues, _inputs([q], {(q.id, "SQS.ApproximateNumberOfMessages", "Value"): live}))
    assert (findings, nodata) == ([], [])
    # Empty by its live depth too: still the inactive queue it was.
    findings, nodata = results(
        queues, _inputs([q], {(q.id, "SQS.ApproximateNumberOfMessages", "Value"): flat(0, 10, 5)})
    )
    assert findings == [] and len(nodata) == 1


def _inputs(resources: list[Any], series: dict[tuple[str, str, str], Any]) -> Any:
    from detectors.base import Inputs

    return Inputs(NOW, resources, series)


def test_late_sqs_points_behind_the_cursor_are_stored(fleet: Any, store: Any) -> None:
    """poll.lookback may be as short as a minute; the SQS series are re-read over the 15 minutes
    their points can be late, with the same metrics requested (the bill is per metric)."""
    from fleetwatch.store import SeriesKey

    control(fleet, "/__fleet__/scenario", {"name": "dlq-filling"})
    set_clock(fleet, WAKE - 120)
    collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], lookback=120, backfill=600, probes=False)
    reports = []
    for minute in range(0, 21):
        set_clock(fleet, WAKE - 60 + minute * 60)
        reports.append(collector.poll(tiers=("fast",)))
    key = SeriesKey(f"sqs/{PROD}/us-east-1/orders-dlq", *DLQ_VISIBLE, (("QueueName", "orders-dlq"),), "Maximum", 60)
    stamps = [ts for ts, _ in store.series_samples(key, WAKE - 600, WAKE + 20 * 60)]
    assert stamps[:3] == [WAKE, WAKE + 60, WAKE + 120], "the first minutes after the wake, published 15 min late"
    assert len({r.metrics for r in reports[1:]}) == 1, "every poll requests the same metrics: no extra cost"


def test_a_waking_dlq_is_reported_end_to_end_before_cloudwatch_has_it(fleet: Any, store: Any) -> None:
    from fleetwatch.agent.detection import detect

    control(fleet, "/__fleet__/scenario", {"name": "dlq-filling"})
    now = WAKE + 10 * 60
    set_clock(fleet, now)
    collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], backfill=3600)
    collector.poll(force_discovery=True)
    found = detect(store, now, names=["queues"])
    rid = f"sqs/{PROD}/us-east-1/orders-dlq"
    assert not [n for r in found.runs for n in r.nodata if n.resource_id == rid]
    assert [f for f in found.findings if f.resource_id == rid and f.key == "dlq"]


# -- SES reputation metrics absent with no bounces (item 13) -----------------------------------------
# SES publishes Reputation.BounceRate / Reputation.ComplaintRate only once mail has bounced / drawn
# complaints (issue 17 item 13; SES "Reputation metrics", https://docs.aws.amazon.com/ses/latest/dg/
# reputation-dashboard-dg.html): absent is "not published (no bounces yet)", never NoData, an alarm or 0 %.

NO_BOUNCES = """name = "ses-no-bounces"
description = "A sandbox account that has sent only to verified recipients: nothing bounced, nothing complained."
fleet = "shop"
seed = 7

[[lookalikes]]
id = "no-bounces-yet"
resource = "ses:ses-prod-us-east-1"
start = "-2d"
end = "+1d"
summary = "no bounce and no complaint ever"
effects = [
  { target = "ses:ses-prod-us-east-1", driver = "reputation_bounce", op = "set", value = 0 },
  { target = "ses:ses-prod-us-east-1", driver = "reputation_complaint", op = "set", value = 0 },
]
"""


def test_reputation_not_published_is_shown_as_such(fleet: Any, store: Any, tmp_path: Any) -> None:
    import sqlite3

    from fleetwatch.agent.detection import detect
    from web.data import headroom

    scenario = tmp_path / "ses-no-bounces.toml"
    scenario.write_text(NO_BOUNCES, encoding="utf-8")
    control(fleet, "/__fleet__/scenario", {"name": str(scenario)})
    cw = client(fleet, "cloudwatch")
    got = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "b",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/SES", "MetricName": "Reputation.BounceRate"},
                    "Period": 300,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=ANCHOR - 3600,
        EndTime=ANCHOR,
    )
    assert got["MetricDataResults"][0]["Values"] == [], "no bounces: no rate published, not a rate of 0"

    make_collector(fleet, store, regions=["us-east-1", "eu-west-1"], roles=[], backfill=3600).poll(force_discovery=True)
    found = detect(store, ANCHOR, names=["ses_account"])
    rid = f"ses/{PROD}/us-east-1/account"
    assert [r for r in found.runs if r.name == "ses_account" and r.status == "ok"]
    assert not [f for f in found.findings if f.resource_id == rid and f.key in ("bounce", "complaint")]
    assert not [n for r in found.runs for n in r.nodata if n.resource_id == rid]

    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    rows = {h["limit"]: h for h in headroom(conn, ANCHOR) if h["resource"] == rid}
    bounce, complaint = rows["bounce rate (review at 5%)"], rows["complaint rate (review at 0.1%)"]
    assert (bounce["value"], bounce["note"]) == (None, "not published (no bounces yet)")
    assert (complaint["value"], complaint["note"]) == (None, "not published (no complaints yet)")
    eu = [h for h in headroom(conn, ANCHOR) if h["resource"] == f"ses/{PROD}/eu-west-1/account"]
    assert [h["note"] for h in eu if "rate (" in h["limit"]] == ["", ""], "published rates show as rates"


# -- the cost figure counts X-Ray traces scanned and SQS requests (item 13) --------------------------
# X-Ray pricing (https://aws.amazon.com/xray/pricing/, SIGNALS.md "X-Ray"): traces retrieved or
# scanned, $0.50 per million; GetTraceSummaries' TracesProcessedCount counts those scanned (botocore
# xray 2016-04-12, GetTraceSummariesResult). SQS pricing (https://aws.amazon.com/sqs/pricing/):
# $0.40 per million requests, every API action a request. Free tiers are shared with the account's
# own use, so not deducted.


def test_cost_counts_xray_traces_and_sqs_requests() -> None:
    from collections import Counter

    from collector.aws import CallTally
    from collector.pollreport import cost_of

    tally = CallTally(
        calls=Counter({"sqs:GetQueueAttributes": 900_000, "sqs:ListQueues": 100_000, "xray:BatchGetTraces": 5}),
        metrics=1000,
        traces=2_000_000,
    )
    assert cost_of(tally) == pytest.approx(1000 * 0.01 / 1000 + 1_000_000 * 0.40 / 1e6 + 2_000_000 * 0.50 / 1e6)


def test_a_poll_logs_the_cost_of_its_sqs_requests_and_plan_projects_them(fleet: Any, store: Any) -> None:
    from collector.report import project, render

    report = make_collector(fleet, store, regions=["us-east-1"], roles=[], backfill=600).poll(force_discovery=True)
    probe = next(s for s in report.sources if s.source == "probe:sqs")
    asked = probe.tally.calls["sqs:GetQueueAttributes"]
    assert asked >= 6 and probe.cost == pytest.approx(asked * 0.40 / 1e6)
    logged = store.db.execute("SELECT cost_usd FROM poll_log WHERE source = 'probe:sqs'").fetchone()[0]
    assert logged == pytest.approx(asked * 0.40 / 1e6, abs=1e-6)

    queues = [{"id": f"sqs/1/r/q{i}", "kind": "sqs", "name": f"q{i}", "facts": {"url": "u"}} for i in range(20)]
    p = project({"1/r": queues}, 60, 300)
    assert p.sqs_monthly_cost_usd == pytest.approx(20 * 30 * 86400 / 300 * 0.40 / 1e6)
    assert p.total_monthly_cost_usd == pytest.approx(p.monthly_cost_usd + p.sqs_monthly_cost_usd)
    assert "projected SQS request cost: $0.07 a month" in render({"1/r": queues}, 60, 300)


def test_xray_traces_scanned_are_counted_with_those_read(fleet: Any) -> None:
    from collector import probes

    xray = client(fleet, "xray")
    got, read = probes.cold_starts(
        lambda svc: xray, [("lambda/x/us-east-1/checkout-fn", "checkout-fn")], ANCHOR - 600, ANCHOR, 5
    )
    summaries = xray.get_trace_summaries(
        StartTime=ANCHOR - 600, EndTime=ANCHOR, Sampling=False, FilterExpression='service("checkout-fn")'
    )
    assert read <= 5 and got.scanned >= summaries["TracesProcessedCount"] > read
