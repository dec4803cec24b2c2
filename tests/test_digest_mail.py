"""The weekly digest as a mail people read: week-over-week and 8-week baselines from whole weeks
only (on a store with known history, raw and rolled up), every row named, no function without a
cold start among the slowest cold starts, mail-safe HTML (inline styles, no script, no external
asset), and one polling-cost figure on the overview, the digest and `fleetwatch plan`."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from alerts.digest import WEEK, gather, render_html, render_text
from fleetwatch.store import SeriesKey, open_store

END = 1_800_000_000 // 3600 * 3600  # the week gathered ends here (hour-aligned)
ACCOUNT, REGION = "111111111111", "us-east-1"
NAMES = {ACCOUNT: "payments-prod"}


def _rid(kind: str, name: str) -> str:
    return f"{kind}/{ACCOUNT}/{REGION}/{name}"


def _resource(kind: str, name: str, **facts: Any) -> dict[str, Any]:
    return {
        "id": _rid(kind, name),
        "account": ACCOUNT,
        "region": REGION,
        "kind": kind,
        "name": name,
        "facts": facts,
        "tags": {},
    }


def _hourly(start: int, end: int, value: Any) -> list[tuple[int, float]]:
    """One point an hour over [start, end); `value(k)` by the week k back from END it falls in."""
    return [(t, float(value((END - 1 - t) // WEEK))) for t in range(start, end, 3600)]


@pytest.fixture()
def store(tmp_path: Path) -> Any:
    s = open_store(tmp_path / "digest.db")
    s.upsert_resources(
        [
            _resource("api", "checkout-api"),
            _resource("api", "new-api"),
            _resource("ses", "account"),
            _resource("lambda", "fn-cold"),
            _resource("lambda", "fn-warm"),
        ],
        END - 10 * WEEK,
    )
    dim = (("ApiName", "checkout-api"),)
    old = END - 5 * WEEK - 4 * 86400  # checkout-api's history: 4 whole weeks before this one, and 3 days of a 5th
    s.write_samples(
        [
            (
                SeriesKey(_rid("api", "checkout-api"), "AWS/ApiGateway", "Count", dim, "Sum", 3600),
                _hourly(old, END, lambda k: 10 * (k + 1)),
            ),
            (
                SeriesKey(_rid("api", "checkout-api"), "AWS/ApiGateway", "5XXError", dim, "Average", 3600),
                _hourly(old, END, lambda k: 0.01 * (k + 1)),
            ),
            # new-api: two days of history, all in this week
            (
                SeriesKey(_rid("api", "new-api"), "AWS/ApiGateway", "Count", (("ApiName", "new-api"),), "Sum", 3600),
                _hourly(END - 2 * 86400, END, lambda k: 5),
            ),
            (
                SeriesKey(_rid("ses", "account"), "AWS/SES", "Send", (), "Sum", 3600),
                _hourly(END - 3 * WEEK, END, lambda k: 2),
            ),
        ]
    )
    for fn, cold in (("fn-cold", 5.0), ("fn-warm", 0.0)):
        rid, dims = _rid("lambda", fn), (("FunctionName", fn),)
        s.write_samples(
            [
                (SeriesKey(rid, "fleetwatch/XRay", "SampledInvocations", dims, "Sum", 300), [(END - 7200, 50.0)]),
                (SeriesKey(rid, "fleetwatch/XRay", "ColdStarts", dims, "Sum", 300), [(END - 7200, cold)]),
            ]
        )
    s.write_samples(
        [
            (
                SeriesKey(
                    _rid("lambda", "fn-cold"),
                    "fleetwatch/XRay",
                    "InitDuration",
                    (("FunctionName", "fn-cold"),),
                    "Maximum",
                    300,
                ),
                [(END - 7200, 812.0)],
            )
        ]
    )
    yield s
    s.close()


def _row(d: Any, resource: str, measure: str) -> dict[str, Any]:
    return next(o for o in d.outcomes if o["resource"] == resource and o["measure"] == measure)


def _check_weeks(d: Any) -> None:
    req = _row(d, "API checkout-api", "requests")
    # week k's hourly value is 10 (k + 1): 168 h each; week 5 is partial and stays out.
    assert req["this"] == 1680 and req["this_whole"] and req["last"] == 3360
    assert req["avg8"] == pytest.approx((3360 + 5040 + 6720 + 8400) / 4) and req["baseline_weeks"] == 4
    assert req["change"] == pytest.approx(-0.5)
    rate = _row(d, "API checkout-api", "5xx rate")
    assert rate["this"] == pytest.approx(0.01) and rate["last"] == pytest.approx(0.02)
    assert rate["avg8"] == pytest.approx((0.02 + 0.03 + 0.04 + 0.05) / 4)
    new = _row(d, "API new-api", "requests")
    assert new["this"] == 48 * 5 and not new["this_whole"] and new["last"] is None and new["avg8"] is None
    assert new["change"] is None, "a partial week is not compared with a whole one"
    mail = _row(d, "SES sending", "mails sent")
    assert mail["where"] == f"payments-prod ({ACCOUNT}) · {REGION}"
    assert mail["last"] == 336 and mail["avg8"] == 336 and mail["baseline_weeks"] == 2


def test_baselines_come_from_whole_weeks_only(store: Any) -> None:
    d = gather(store, END, names=NAMES)
    _check_weeks(d)
    html, text = render_html(d), render_text(d)
    assert html.count("not enough history") == 2 and "not enough history" in text
    assert "-50%" in html and "1,680" in html and "5,880" in html


def test_baselines_are_the_same_once_old_samples_are_rolled_up(store: Any) -> None:
    rolled = store.prune(END, 14 * 86400, 400 * 86400)
    assert rolled["samples_deleted"] > 0
    _check_weeks(gather(store, END, names=NAMES))


def test_every_row_is_named_and_only_cold_functions_are_slowest(store: Any) -> None:
    d = gather(store, END, names=NAMES)
    html, text = render_html(d), render_text(d)
    for out in (html, text):
        assert "ses:account" not in out and "ses:" not in out and "api:" not in out
        words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", out))
        assert re.search(rf"SES sending \(?payments-prod \({ACCOUNT}\)", words)
    assert [c["resource"] for c in d.coldstarts] == ["function fn-cold"], (
        "fn-warm started cold 0 times: not a slow cold start"
    )
    cold = html[html.index("Slowest cold starts") : html.index(">Hygiene<")]
    assert "812 ms" in cold and "10%" in cold and "fn-warm" not in cold and not re.search(r">0(\.0)?\s?%<", cold)


class _Mail(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def test_the_mail_html_has_inline_styles_no_script_and_no_external_asset(store: Any) -> None:
    url = "https://fleetwatch.example.com/digest"
    html = render_html(gather(store, END, names=NAMES, url=url))
    mail = _Mail()
    mail.feed(html)
    names = {t for t, _ in mail.tags}
    assert not names & {"script", "style", "link", "img", "iframe", "object", "embed", "form", "svg", "video", "audio"}
    assert "table" in names and "td" in names
    for tag, attrs in mail.tags:
        assert not any(k.startswith("on") for k in attrs), f"{tag}: an event handler"
        assert "src" not in attrs and "class" not in attrs, f"{tag}: {attrs}"
        if "href" in attrs:
            assert attrs["href"] == url, f"the only link is the dashboard's digest page, not {attrs['href']}"
        if tag in ("td", "th", "p", "h2", "ul", "table", "div", "span"):
            assert attrs.get("style") or tag == "span" and "<br>" in html, f"<{tag}> without an inline style"
        assert "url(" not in (attrs.get("style") or "")
    assert "javascript:" not in html.lower() and "@import" not in html


# -- one polling cost -----------------------------------------------------------------------------


def test_overview_digest_and_plan_state_the_same_polling_cost(fleet: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fleetwatch.cli.collect import plan_command
    from fleetwatch.config import load_config
    from tests.conftest import make_collector
    from web.app import create_app

    path = tmp_path / "cost.db"
    with open_store(path) as s:
        collector = make_collector(fleet, s, regions=["us-east-1"], roles=[], backfill=600)
        for _ in range(3):
            collector.poll()
            fleet.model.clock.advance(300)
        now = int(fleet.model.clock.now())
        logged = s.db.execute("SELECT SUM(cost_usd), MIN(started_at) FROM poll_log").fetchone()
        assert logged[0] > 0
        expected = logged[0] * 30 * 86400 / max(now - logged[1], 3600)
        cfg = load_config(None, environ={"FLEETWATCH_STORE_PATH": str(path)})
        out = io.StringIO()
        assert plan_command(cfg, s, collector.aws, fleet.model.clock, discover=False, out=out) == 0
        digest = render_text(gather(s, now))
    planned = re.search(r"polling cost measured from the poll log: (\$[\d,.]+ a month)", out.getvalue())
    mailed = re.search(r"FLEETWATCH'S OWN POLLING: (\$[\d,.]+ a month)", digest)
    app = create_app(cfg, path, fleet.model.clock, cache_ttl=0)
    page = TestClient(app).get("/").text
    shown = re.search(r"polling cost</dt><dd>(\$[\d,.]+ a month)", page)
    assert planned and mailed and shown
    assert planned.group(1) == mailed.group(1) == shown.group(1) == f"${expected:,.2f} a month"


def test_headroom_shows_only_limits_that_came_close_and_counts_the_rest(store: Any) -> None:
    store.upsert_resources(
        [_resource("rds", "orders-db", max_connections=500), _resource("rds", "quiet-db", max_connections=500)],
        END - 3600,
    )
    store.write_samples(
        [
            (
                SeriesKey(
                    _rid("rds", db), "AWS/RDS", "DatabaseConnections", (("DBInstanceIdentifier", db),), "Maximum", 60
                ),
                [(END - 7200, peak)],
            )
            for db, peak in (("orders-db", 400.0), ("quiet-db", 100.0))
        ]
    )
    d = gather(store, END, names=NAMES)
    assert [(h["resource"], h["used"]) for h in d.headroom] == [("database orders-db", 0.8)]
    assert d.headroom_others == 3, "quiet-db at 20 %, and SES's two reputation rates not yet published"
    assert "3 other limits stayed under half used all week" in render_html(d)
