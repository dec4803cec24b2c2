"""What the on-call reads when an incident ends, on a fake clock through the real pipeline (store
on disk, Slack stand-in over HTTP, SMTP sink): `make demo` ended incident 5 with "[RESOLVED]
... orders-db at 96% of max_connections (478 of 500) ... connections 61", the last alarming
numbers told as if current. The RESOLVED message tells what each alert peaked at and when, and
the reading its last finding held, with its time, and since when it has been clear."""

from __future__ import annotations

import time

from alerts.state import Observation
from detectors.base import CRITICAL, Series, evidence
from tests.alerting_kit import T0, World, api_errors, rid, world_fixture  # noqa: F401 - the `world` fixture

M = 60
DB = rid("rds", "orders-db")
# orders-db's connections each minute: up to 478 of 500 at minute 4, down to 61 at minute 39.
CONNECTIONS = [300, 380, 440, 470, 478, 470, 460, 455, 450, 450] + [445] * 25 + [400, 300, 200, 100, 61]


def at(minute: int) -> int:
    return T0 + minute * M


def storm_at(minute: int) -> Observation:
    """The connections finding as the detector makes it at `minute`: the series up to then (its
    last 30 points kept in the evidence, detectors.base.series_evidence), held against 500."""
    conns = Series([(at(m), float(v)) for m, v in enumerate(CONNECTIONS[: minute + 1])], M)
    share = max(CONNECTIONS[max(0, minute - 4) : minute + 1]) / 500
    return Observation(
        "connections",
        DB,
        "utilisation",
        "finding",
        CRITICAL,
        f"orders-db at {share:.0%} of max_connections ({share * 500:.0f} of 500)",
        cause="connections near the database's limit",
        evidence=evidence(limit=500, connections=conns),
        limit=True,
    )


def hhmm(minute: int) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(at(minute)))


# Held against its usual level only, which a drop is worse the further below: no peak to tell.
FN_ERRORS = Observation(
    "outcomes",
    rid("lambda", "checkout-fn"),
    "errors",
    "finding",
    "warning",
    "checkout-fn: 6% failed",
    evidence={"series": {"invocations": [[T0, 4446.0], [T0 + M, 100.0]]}, "baseline": 4446.0},
)


def test_resolved_tells_the_peak_and_its_time_not_the_last_numbers_as_current(world: World) -> None:
    end = len(CONNECTIONS) - 1
    for minute in range(end + 1):
        world.tick(storm_at(minute), api_errors(), FN_ERRORS)
    while world.incidents()[0].state != "resolved":
        assert int(world.clock.now()) < at(60), "it resolves within keep_firing_for of the last finding"
        world.tick()
    (head,) = world.slack.messages(top_level_only=True)
    resolved = head["updates"][-1]
    assert resolved["text"].startswith("[RESOLVED] checkout-api: 12% of requests failing — orders-db at")
    # The last finding's evidence held its last 30 minutes only: the peak at minute 4 is carried
    # from the pass that saw it. "clear since": the first pass that no longer found it.
    told = f"orders-db connections peaked at 478 at {hhmm(4)} (limit 500); latest 61 at {hhmm(end)}; "
    told += f"clear since {hhmm(end + 1)}"
    assert told in resolved["text"], resolved["text"]
    assert "Cause: " not in resolved["text"], "the cause's last numbers are not told as current"
    sections = [b["text"]["text"] for b in resolved["blocks"] if b["type"] == "section"]
    (went,) = [s for s in sections if s.startswith("How it went:")]
    assert told in went, went
    # The API's one reading, at minute 0, is its peak; nothing later to tell beside it.
    assert f"checkout-api 5xx rate peaked at 12% at {hhmm(0)} (limit 1%); clear since {hhmm(end + 1)}\n" in went, went
    # checkout-fn's finding held no series against a limit: told as its last alert, with that time.
    assert f"clear since {hhmm(end + 1)}, last alerted at {hhmm(end)}: checkout-fn: 6% failed" in went, went
    assert "4,446" not in went and "invocations peaked" not in went, went
    assert not any(s.startswith(("Evidence:", "Cause: ", "What users feel: ")) for s in sections), sections
    assert any(s.startswith("Cause, at its last alert: orders-db at") for s in sections), sections
    mails = [m for _, m in world.smtp.messages()]
    body = mails[-1].get_body(("plain",)).get_content()
    assert mails[-1]["Subject"].startswith("[fleetwatch] [RESOLVED]")
    assert "How it went:" in body and told in body and "\nEvidence:" not in body, body
    assert "Cause, at its last alert: orders-db at" in body, body


def test_a_resolved_incident_is_labelled_resolved(world: World) -> None:
    # make demo's resolved incidents showed state=recovering among their labels (the dashboard's
    # labels row, what routes and silences match on): the labels were last set while it recovered.
    for _ in range(4):
        world.tick(api_errors())
    states = []
    while world.incidents()[0].state != "resolved":
        assert len(states) < 20, states
        world.tick()
        states.append(world.incidents()[0].labels["state"])
    assert "recovering" in states, "it recovered before it resolved"
    (inc,) = world.incidents()
    assert inc.labels["state"] == "resolved", inc.labels
    assert inc.labels["resource"] == rid("api", "checkout-api"), "the other labels stay"


def test_supporting_evidence_still_found_at_the_end_is_said_to_be(world: World) -> None:
    # make demo's storm thread ended "[RESOLVED] …" with "last alerted at 04:01 UTC: checkout-fn:
    # unusual errors — peaked at 151 …" for episodes still found when the rules ended (an
    # `unusual` finding supports an incident but does not hold it open): it read as over.
    fn = rid("lambda", "checkout-fn")
    unusual = Observation(
        "unusual",
        fn,
        "errors",
        "finding",
        "warning",
        "checkout-fn: unusual errors — peaked at 151 per 5 min",
        evidence={"series": {"errors": [[T0, 151.0]]}, "baseline": 1.0},
    )
    ran = {"outcomes", "unusual"}
    for _ in range(5):
        world.tick(api_errors(), unusual, ran_ok=ran)
    passes = 0
    while world.incidents()[0].state != "resolved":
        passes += 1
        assert passes < 40, "it resolves within keep_firing_for of the rule's last finding"
        world.tick(unusual, ran_ok=ran)
    last = int(world.clock.now()) - M  # the pass that resolved it, where the episode was still found
    (head,) = world.slack.messages(top_level_only=True)
    went = head["updates"][-1]["text"]
    assert went.startswith("[RESOLVED]"), went
    stamp = time.strftime("%H:%M UTC", time.gmtime(last))
    assert f"still seen at {stamp}, supporting only: checkout-fn: unusual errors" in went, went
    assert "last alerted at" not in went.split("still seen")[1], "not told as if it had ended"
    assert "checkout-api 5xx rate peaked at 12%" in went and "clear since" in went, went


def test_an_incident_of_unusual_findings_alone_calls_none_of_them_supporting(world: World) -> None:
    # "supporting only" is said of an `unusual` finding beside a rule's: in an incident made of
    # `unusual` findings alone there is no rule for it to support. (Such an incident still ends
    # when one of its episodes ends: the older behaviour this message only reports.)
    def unusual(kind: str, name: str, what: str) -> Observation:
        return Observation(
            "unusual",
            rid(kind, name),
            what,
            "finding",
            "warning",
            f"{name}: unusual {what}",
            evidence={"series": {what: [[T0, 5.0]]}, "baseline": 1.0},
        )

    fn, api = unusual("lambda", "checkout-fn", "errors"), unusual("api", "checkout-api", "latency")
    ran = {"unusual"}
    for _ in range(5):
        world.tick(fn, api, ran_ok=ran)
    for _ in range(12):
        world.tick(api, ran_ok=ran)
    heads = world.slack.messages(top_level_only=True)
    ended = [u["text"] for h in heads for u in h.get("updates", []) if u["text"].startswith("[RESOLVED]")]
    assert ended, [h["text"][:80] for h in heads]
    assert all("supporting only" not in t for t in ended), ended
