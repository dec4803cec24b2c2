"""The spine's side of alerting: build the pipeline from the configuration (settings, channels),
and turn a detection pass into what the pipeline observes."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from alerts import digest
from alerts.delivery import Channel, Pacer, Ses, SlackBot, SlackWebhook, Smtp
from alerts.notify import Timers
from alerts.pagerduty import PagerDuty, installation_id
from alerts.pipeline import AlertSettings, DeliveryReport, Pipeline
from alerts.state import Observation, Policy
from alerts.store import AlertStore
from alerts.webhook import Webhook
from detectors.base import Finding, Resource
from fleetwatch.accounts import configured
from fleetwatch.agent.detection import DetectionPass
from fleetwatch.clock import Clock
from fleetwatch.config.rules import parse_route, parse_window, parse_wire
from fleetwatch.store import Store


def webhook_urls(cfg: Any) -> dict[str, str]:
    """webhook.urls as {NAME: URL}."""
    return {name.strip(): url.strip() for name, _, url in (e.partition("=") for e in cfg["webhook.urls"])}


def default_targets(cfg: Any) -> list[str]:
    """Where an incident no route names goes: slack.channel, email.to, PagerDuty when a routing key
    is set (someone who gave fleetwatch a routing key expects to be paged), and every webhook."""
    out = ([f"slack:{cfg['slack.channel']}"] if cfg["slack.channel"] else []) + [f"email:{a}" for a in cfg["email.to"]]
    if cfg["pagerduty.routing_key"]:
        out.append("pagerduty:default")
    return out + [f"webhook:{name}" for name in webhook_urls(cfg)]


def sending_channels(cfg: Any) -> set[str]:
    """The kinds of target fleetwatch can send to with this configuration (as channels() builds them)."""
    out = {"pagerduty"} if cfg["pagerduty.routing_key"] else set()
    if cfg["webhook.urls"]:
        out.add("webhook")
    if cfg["slack.bot_token"] or cfg["slack.webhook_url"]:
        out.add("slack")
    if cfg["email.transport"] == "ses" or cfg["smtp.host"]:
        out.add("email")
    return out


def delivery_warnings(cfg: Any) -> list[str]:
    """What `config check` and `run` warn of: a configuration that notifies nobody, and targets
    whose channel is not set up (they would fail at every incident)."""
    named = list(default_targets(cfg)) + [t for r in cfg["alerts.routes"] for t in parse_route(r).targets]
    can = sending_channels(cfg)
    how = {
        "slack": "slack.bot_token (FLEETWATCH_SLACK_BOT_TOKEN) or slack.webhook_url (FLEETWATCH_SLACK_WEBHOOK_URL)",
        "email": 'smtp.host (or email.transport = "ses")',
    }
    out = [
        f"{t} is a target, but nothing sends to {kind}: set {how[kind]}"
        for kind in ("slack", "email")
        if kind not in can
        for t in dict.fromkeys(t for t in named if t.startswith(kind + ":"))
    ]
    if not any(t.split(":", 1)[0] in can for t in named):
        out.insert(
            0,
            "this configuration notifies nobody: incidents show on the dashboard only. Name a target and its "
            "channel: slack.channel with slack.bot_token, email.to with smtp.host, pagerduty.routing_key "
            "(FLEETWATCH_PAGERDUTY_ROUTING_KEY), webhook.urls, or alerts.routes",
        )
    return out


def alert_settings(cfg: Any) -> AlertSettings:
    defaults = default_targets(cfg)
    return AlertSettings(
        policy=Policy(cfg["alerts.for"], cfg["alerts.keep_firing_for"], cfg["alerts.for_limits"]),
        timers=Timers(
            cfg["alerts.group_wait"],
            cfg["alerts.cause_wait"],
            cfg["alerts.group_interval"],
            cfg["alerts.repeat_interval"],
            cfg["alerts.notify_nodata"],
            cfg["alerts.notify_errors"],
        ),
        routes=tuple(parse_route(r) for r in cfg["alerts.routes"]),
        windows=tuple(parse_window(w) for w in cfg["alerts.maintenance"]),
        wiring=tuple(parse_wire(w) for w in cfg["alerts.wiring"]),
        defaults=tuple(defaults),
        public_url=cfg["web.public_url"],
        max_attempts=cfg["alerts.max_attempts"],
    )


def channels(
    cfg: Any, clock: Clock, sleep: Callable[[float], None], ses: Any = None, installation: str = ""
) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    if cfg["pagerduty.routing_key"]:
        out["pagerduty"] = PagerDuty(
            {"default": cfg["pagerduty.routing_key"]},
            cfg["pagerduty.url"],
            cfg["alerts.timeout"],
            installation or installation_id(None, cfg["web.public_url"]),
        )
    if cfg["webhook.urls"]:
        out["webhook"] = Webhook(webhook_urls(cfg), cfg["webhook.token"], cfg["alerts.timeout"], cfg["web.public_url"])
    pacer = Pacer(clock.now, sleep)
    if cfg["slack.bot_token"]:
        out["slack"] = SlackBot(cfg["slack.bot_token"], cfg["slack.api_url"], cfg["alerts.timeout"], pacer)
    elif cfg["slack.webhook_url"]:
        out["slack"] = SlackWebhook(cfg["slack.webhook_url"], cfg["alerts.timeout"], pacer)
    if cfg["email.transport"] == "ses":
        out["email"] = Ses(ses, cfg["email.from"], factory=lambda: ses_client(cfg))
    elif cfg["email.transport"] == "smtp" and cfg["smtp.host"]:
        out["email"] = Smtp(
            cfg["smtp.host"],
            cfg["smtp.port"],
            cfg["smtp.security"],
            cfg["smtp.username"],
            cfg["smtp.password"],
            cfg["email.from"],
            cfg["alerts.timeout"],
            ca_file=cfg["smtp.ca_file"],
        )
    return out


def ses_client(cfg: Any, session: Any = None) -> Any:
    """A SESv2 client in the home account and first region, with the collector's timeouts and
    retries (one STS call to learn the account). Sending needs ses:SendEmail, granted apart from
    the read-only policy by iam/fleetwatch-ses-send-policy.json."""
    from collector.aws import Aws, Place

    aws = Aws.from_config(cfg, session=session)
    return aws.client(Place(aws.home_account(), cfg["aws.regions"][0]), "sesv2")


def build_pipeline(
    cfg: Any,
    store: Store,
    clock: Clock,
    sleep: Callable[[float], None] = time.sleep,
    ses: Any = None,
    rng: random.Random | None = None,
    fence: Callable[[Any], None] | None = None,
    **kw: Any,
) -> Pipeline:
    """kw: the pipeline's `stopping` and `tracer`, for the agent. `fence`: see AlertStore."""
    return Pipeline(
        AlertStore(store, fence),
        alert_settings(cfg),
        channels(cfg, clock, sleep, ses, installation_id(store, cfg["web.public_url"])),
        clock.now,
        sleep,
        rng,
        **kw,
    )


def observation(f: Finding) -> Observation:
    """What the pipeline observes of one detector finding."""
    return Observation(
        f.detector,
        f.resource_id,
        f.key,
        "finding",
        f.severity,
        f.title,
        f.cause,
        f.fix,
        f.evidence,
        f.started_at,
        f.limit,
        f.sustained,
    )


def observations(detection: DetectionPass) -> tuple[list[Observation], set[str]]:
    """A pass's findings, NoData entries and errored detectors, and which detectors ran cleanly."""
    out = []
    for run in detection.runs:
        if run.status != "ok":
            out.append(Observation(run.name, "", "", "error", "warning", f"detector {run.name} failed: {run.error}"))
            continue
        out.extend(observation(f) for f in run.findings)
        for n in run.nodata:
            out.append(Observation(run.name, n.resource_id, "", "nodata", "info", f"no data: {n.why}"))
    return out, {r.name for r in detection.runs if r.status == "ok"}


def resources(store: Store) -> list[Resource]:
    return [
        Resource(r["id"], r["kind"], r["name"], r["account"], r["region"], r["facts"], r["tags"])
        for r in store.resources()
    ]


def alert(pipeline: Pipeline, store: Store, detection: DetectionPass) -> DeliveryReport:
    """Observe one detection pass and deliver what is owed."""
    observed, ran_ok = observations(detection)
    pipeline.observe(observed, ran_ok, resources(store), detection.at)
    return pipeline.deliver()


def send_due_digest(cfg: Any, store: Store, clock: Any, sleep: Any) -> tuple[str, list[str]] | None:
    """Send the digest if one is due and not sent (on schedule, or missed while stopped)."""
    owed = digest.owed_digest(store, clock.now(), cfg)
    if owed is None:
        return None
    period, when = owed
    d = digest.gather(store, when, period, configured(cfg), digest.digest_url(cfg))
    return period, digest.send_digest(
        store,
        d,
        digest.digest_targets(cfg),
        channels(cfg, clock, sleep),
        cfg["email.from"],
        int(clock.now()),
        sleep,
        cfg["alerts.max_attempts"],
        cfg["web.public_url"],
    )
