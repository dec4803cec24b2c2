"""What notifications say: RESOLVED green with how long it lasted, MERGED linking its target,
an Acknowledge link on every firing message, mail subjects under 100 characters, evidence in
the units a person reads."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.incidents import Incident
from alerts.messages import Notice, email_message, slack_message
from alerts.state import Alert
from alerts.units import human
from detectors.base import Series, evidence
from tests.alerting_kit import T0

URL = "https://fleetwatch.example.com/incidents/7"


def notice(
    kind: str, title: str = "checkout-api: 12% of requests failing", ev: dict[str, Any] | None = None, **kw: Any
) -> Notice:
    inc = Incident(
        "f",
        "g",
        kw.pop("state", "firing"),
        kw.pop("severity", "critical"),
        title,
        T0,
        T0 + 60,
        id=7,
        firing_at=T0 + 120,
        **kw,
    )
    alert = Alert(
        "a1",
        "outcomes",
        "api/x",
        "5xx",
        "finding",
        "firing",
        "critical",
        title,
        evidence=ev if ev is not None else {"series": {"5xx_rate": [[T0, 0.12]]}, "limit": 0.01},
    )
    extra = {"into": 9, "into_url": "https://fleetwatch.example.com/incidents/9"} if kind == "absorbed" else {}
    return Notice(inc, kind, [alert], URL, extra)


def header(msg: dict[str, Any]) -> str:
    return msg["blocks"][0]["text"]["text"]


def buttons(msg: dict[str, Any]) -> dict[str, str]:
    (actions,) = [b for b in msg["blocks"] if b["type"] == "actions"]
    return {e["text"]["text"]: e["url"] for e in actions["elements"]}


def test_resolved_is_green_says_how_long_and_drops_the_severity() -> None:
    n = notice("resolved", state="resolved", resolved_at=T0 + 34 * 60)
    msg = slack_message(n)
    assert header(msg).startswith(":large_green_circle: [RESOLVED]") and "resolved after 34 min" in header(msg)
    assert "CRITICAL" not in header(msg) and ":red_circle:" not in header(msg)
    assert "Acknowledge" not in buttons(msg), "nothing to acknowledge once it is over"
    subject, text, html = email_message(n)
    assert subject == "[fleetwatch] [RESOLVED] checkout-api: 12% of requests failing — after 34 min"
    assert "Resolved after 34 min." in text and "#2e7d32" in html and "#c62828" not in html


def test_a_long_resolved_header_keeps_saying_it_is_resolved() -> None:
    # make demo's incident 5: the 150-character header cut "resolved after 38 min" off, leaving
    # "... orders-db at 96% of max_co…" under a small [RESOLVED] to read as still going.
    title = (
        "checkout-api: 2.6% of requests failing (5XX) over 5 min (39 of 1,498), usually 0.12% — "
        "orders-db at 96% of max_connections (478 of 500)"
    )
    text = header(slack_message(notice("resolved", title=title, state="resolved", resolved_at=T0 + 38 * 60)))
    assert len(text) <= 150 and text.endswith("… — resolved after 38 min"), text
    cut = text.removeprefix(":large_green_circle: [RESOLVED] ").split("…")[0]
    assert title.startswith(cut) and title[len(cut)] == " ", "cut at a word, nothing invented"


def test_firing_is_red_with_an_acknowledge_link_until_acknowledged() -> None:
    n = notice("firing")
    msg = slack_message(n)
    assert header(msg).startswith(":red_circle: [FIRING] CRITICAL:")
    assert buttons(msg) == {"Open incident": URL, "Acknowledge": URL + "#ack"}
    subject, text, html = email_message(n)
    assert f"Acknowledge: {URL}#ack" in text and f'href="{URL}#ack"' in html and "#c62828" in html
    for kind in ("changed", "repeat"):
        assert "Acknowledge" in buttons(slack_message(notice(kind)))
    acked = notice("repeat", acked_by="alice", acked_at=T0 + 200)
    assert "Acknowledge" not in buttons(slack_message(acked))


def test_merged_links_the_incident_it_joined() -> None:
    n = notice("absorbed", state="absorbed", resolved_at=T0 + 600, absorbed_into=9)
    msg = slack_message(n)
    assert "now part of incident #9" in header(msg)
    assert buttons(msg)["Open incident #9"] == "https://fleetwatch.example.com/incidents/9"
    assert any(
        "https://fleetwatch.example.com/incidents/9" in b["text"]["text"]
        for b in msg["blocks"]
        if b["type"] == "section"
    )
    subject, text, html = email_message(n)
    assert subject.endswith("— into #9") and 'href="https://fleetwatch.example.com/incidents/9"' in html


def test_acknowledged_is_one_line_in_the_thread() -> None:
    n = notice("acknowledged", acked_by="<!channel> bob", acked_at=T0 + 200)
    reply = slack_message(n, reply=True)
    assert reply["text"] == ":eyes: Acknowledged by &lt;!channel&gt; bob", "escaped: a name cannot mention the channel"
    assert [b["type"] for b in reply["blocks"]] == ["section"] and reply["blocks"][0]["text"]["type"] == "plain_text"
    full = slack_message(n)
    assert header(full).startswith(":eyes: [ACKNOWLEDGED]") and "Acknowledge" not in buttons(full)


@pytest.mark.parametrize("kind", ["firing", "resolved", "absorbed", "changed"])
def test_mail_subjects_stay_under_100_characters_cut_at_a_word(kind: str) -> None:
    title = (
        "checkout-api: 12% of requests failing for 8 min — orders-db "
        "at 98% of max_connections since orders-fn scaled to 600"
    )
    n = notice(kind, title=title, resolved_at=T0 + 3 * 3600, absorbed_into=9)
    subject, _, _ = email_message(n)
    assert len(subject) < 100 and subject.endswith(("…", "after 3 h", "into #9")) and "\n" not in subject
    cut = subject[subject.index("checkout-api") :].split("…")[0]
    assert title.startswith(cut) and title[len(cut)] == " ", "cut at a word, nothing invented"


def test_evidence_in_units_a_person_reads() -> None:
    storm = evidence(limit=345600, age=Series(((T0, 5400.0),)))
    assert notice("firing", ev=storm).evidence_lines()[0].endswith("— age 1 h 30 min, limit 4 d")
    api = evidence(limit=0.01, baseline=0.00055, error_rate=Series(((T0, 0.12),)), requests=Series(((T0, 123456.0),)))
    assert (
        notice("firing", ev=api)
        .evidence_lines()[0]
        .endswith("— error rate 12%, requests 123,456, limit 1%, usually 0.055%")
    )
    latency = evidence(
        limit=1000, latency_p95=Series(((T0, 2300.0),)), borrow=Series(((T0, 1500.0),)), units={"borrow": "us"}
    )
    assert "latency p95 2.3 s, borrow 1.5 ms, limit 1 s" in notice("firing", ev=latency).evidence_lines()[0]


def test_evidence_without_units_still_reads() -> None:
    # Evidence stored before units existed, and hand-built evidence: the unit comes from the name.
    old = {"series": {"5xx_rate": [[T0, 0.12]], "connections": [[T0, 4600.0]]}, "limit": 0.01}
    assert notice("firing", ev=old).evidence_lines()[0].endswith("— 5xx rate 12%, connections 4,600, limit 1%")
    bare = {"series": {}, "limit": 345600}
    assert notice("firing", ev=bare).evidence_lines()[0].endswith("limit 345,600")
    with pytest.raises(ValueError, match="unknown unit"):
        evidence(units={"x": "furlongs"}, x=Series())


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.12, "ratio", "12%"),
        (0.015, "ratio", "1.5%"),
        (0.00055, "ratio", "0.055%"),
        (0, "ratio", "0%"),
        (45, "percent", "45%"),
        (42, "s", "42 s"),
        (2040, "s", "34 min"),
        (7500, "s", "2 h 5 min"),
        (345600, "s", "4 d"),
        (1.5 * 86400, "s", "1.5 d"),
        (850, "ms", "850 ms"),
        (2300, "ms", "2.3 s"),
        (1234567, "count", "1,234,567"),
        (0.5, "count", "0.5"),
        (46, "count", "46"),
        (float("nan"), "count", "nan"),
        ("n/a", "s", "n/a"),
    ],
)
def test_human(value: Any, unit: str, text: str) -> None:
    assert human(value, unit) == text


def test_a_series_named_for_its_unit_is_labelled_without_it_as_its_value_carries_one() -> None:
    # `make demo`'s cold-start pages read "init ms 2.98 s": the name's unit beside another one.
    cold = evidence(limit=10_000, init_ms=Series(((T0, 2980.0),)), age_seconds=Series(((T0, 90.0),)))
    line = notice("firing", ev=cold).evidence_lines()[0]
    assert line.endswith(f"— init 2.98 s, age {human(90, 's')}, limit 10 s"), line
