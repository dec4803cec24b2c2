"""What a notification says, for Slack (Block Kit with a plain `text` fallback) and for mail
(multipart text and HTML from Jinja2 templates): the symptom first, then the cause, the numbers
that decided it, a link to the incident, and the fix.

Everything that comes from the fleet (resource names, tag values, messages) is untrusted: it is
stripped of control characters, cut to size, escaped for Slack's mrkdwn in `text`, put only in
plain_text objects in blocks, and autoescaped in HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from alerts.incidents import SUPPORTING, Incident
from alerts.state import Alert
from alerts.units import duration_words, human, unit_of, utc_time

# Slack's documented limits: header text 150 characters, section text 3,000, 50 blocks a message;
# `text` is truncated past 40,000 and Slack advises keeping it far shorter.
HEADER_MAX, SECTION_MAX, TEXT_MAX, BLOCKS_MAX = 150, 3000, 3000, 50
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
LABEL = {
    "firing": "FIRING",
    "changed": "UPDATED",
    "repeat": "STILL FIRING",
    "resolved": "RESOLVED",
    "absorbed": "MERGED",
    "acknowledged": "ACKNOWLEDGED",
    "nodata": "NO DATA",
    "error": "DETECTOR ERROR",
}
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
# An ended incident is no longer its severity: RESOLVED is green whatever it was.
KIND_EMOJI = {"resolved": ":large_green_circle:", "absorbed": ":white_circle:", "acknowledged": ":eyes:"}
# Mail: the colour of the heading, as the Slack circle.
COLOUR = {
    "critical": "#c62828",
    "warning": "#ef6c00",
    "info": "#1565c0",
    "resolved": "#2e7d32",
    "absorbed": "#616161",
    "acknowledged": "#6a1b9a",
}
FIRING_KINDS = ("firing", "changed", "repeat")
SUBJECT_MAX = 99  # mail subjects under 100 characters: the rest is in the body


def clean(text: Any, limit: int) -> str:
    """Untrusted text made safe to show: no control or direction-changing characters, at most
    `limit` characters (cut with an ellipsis)."""
    s = _CONTROL.sub(" ", str(text or ""))
    s = re.sub(r"[ \t]{2,}", " ", s).strip()
    return s if len(s) <= limit else s[: max(0, limit - 1)].rstrip() + "…"


def one_line(text: Any, limit: int) -> str:
    """clean(), and on one line: for subjects and headers (a line break in a mail subject would
    start a header of its own)."""
    return clean(re.sub(r"[\r\n]+", " ", str(text or "")), limit)


def cut_words(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut at a word boundary with an ellipsis."""
    s = one_line(text, 10 * limit)
    if len(s) <= limit:
        return s
    head = s[: limit - 1]
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:—-") + "…"


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters; with them escaped, a name cannot become a link or a
    mention such as <!channel>."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Notice:
    incident: Incident
    kind: str
    alerts: list[Alert]
    url: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABEL.get(self.kind, self.kind.upper())

    @property
    def headline(self) -> str:
        title = one_line(self.incident.title, 400)
        if self.kind == "resolved":
            return f"[RESOLVED] {title}" + (f" — resolved after {self.lasted}" if self.lasted else "")
        if self.kind == "absorbed":
            into = self.extra.get("into")
            return f"[MERGED] {title}" + (f" — now part of incident #{into}" if into else "")
        return f"[{self.label}] {self.incident.severity.upper()}: {title}"

    @property
    def lasted(self) -> str:
        """How long the incident lasted, from its first finding to its end ('' while open)."""
        inc = self.incident
        if inc.resolved_at is None or inc.started_at is None:
            return ""
        return duration_words(inc.resolved_at - inc.started_at)

    @property
    def emoji(self) -> str:
        return KIND_EMOJI.get(self.kind) or EMOJI.get(self.incident.severity, "")

    @property
    def colour(self) -> str:
        return COLOUR.get(self.kind) or COLOUR.get(self.incident.severity, "#333333")

    @property
    def ack_url(self) -> str:
        """Where to acknowledge: the dashboard's incident page, at its Acknowledge button; only
        while it is firing and nobody has acknowledged it yet."""
        if self.kind not in FIRING_KINDS or self.incident.acked_at is not None:
            return ""
        return f"{self.url}#ack"

    @property
    def into_url(self) -> str:
        return str(self.extra.get("into_url") or "") if self.kind == "absorbed" else ""

    # Once resolved, the symptom's and the cause's words are their last alert's, numbers and all:
    # labelled so, lest they read as current.
    @property
    def evidence_heading(self) -> str:
        return "How it went" if self.kind == "resolved" else "Evidence"

    @property
    def symptom_label(self) -> str:
        return "What users felt at its last alert" if self.kind == "resolved" else "What users feel"

    @property
    def cause_label(self) -> str:
        return "Cause, at its last alert" if self.kind == "resolved" else "Cause"

    def evidence_lines(self) -> list[str]:
        """One line per alert: its title and the numbers it was held against, in the units a
        person reads (12%, 34 min, 1,234). Once resolved, what each peaked at and when instead
        (ended_lines): the last numbers of a finding read as current under RESOLVED."""
        if self.kind == "resolved":
            return self.ended_lines()
        out = []
        for a in self.alerts[:8]:
            ev = a.evidence or {}
            parts = []
            for name, points in (ev.get("series") or {}).items():
                if points:
                    unit = unit_of(ev, name)
                    parts.append(f"{_label(clean(name, 60), unit)} {human(points[-1][1], unit)}")
            if "limit" in ev:
                parts.append(f"limit {human(ev['limit'], unit_of(ev, 'limit'))}")
            if "baseline" in ev:
                parts.append(f"usually {human(ev['baseline'], unit_of(ev, 'baseline'))}")
            line = clean(a.title, 300)
            if parts:
                line += " — " + clean(", ".join(parts[:6]), 300)
            out.append(line)
        return out

    def ended_lines(self) -> list[str]:
        """For a RESOLVED notice, one line per alert, every number with the time it was read:
        "orders-db connections peaked at 478 at 17:25 UTC (limit 500); latest 61 at 17:58 UTC;
        clear since 18:01 UTC".
        The peak is the one carried over the alert's life (alerts.state.with_peak); "latest" is
        the last reading its last finding held (not a reading taken as it resolved, which the
        pipeline does not have). An alert with no series held against a limit is told as its
        last alert, with that alert's time."""
        out = []
        ruled = any(a.detector not in SUPPORTING for a in self.alerts)
        for a in self.alerts[:8]:
            ev = a.evidence or {}
            peak = ev.get("peak") if isinstance(ev.get("peak"), dict) else None
            name = clean(a.labels.get("name") or a.resource_id.rsplit("/", 1)[-1], 80)
            # The first pass that no longer found it (recovering_since; resolved_at if it never
            # recovered first): what the agent knows of "now".
            clear = a.recovering_since or a.resolved_at
            since = f"clear since {utc_time(clear)}" if clear else ""
            if peak is None:
                when = f" at {utc_time(a.last_seen)}" if a.last_seen else ""
                if not clear and a.kind == "finding":  # a resolved alert has resolved_at: clear
                    # Still found as the incident ended: supporting evidence (an `unusual` episode)
                    # outliving the rules it supported, said so lest "last alerted" read as over.
                    role = ", supporting only" if a.detector in SUPPORTING and ruled else ""
                    out.append(f"still seen{when}{role}: {clean(a.title, 300)}")
                    continue
                out.append(", ".join(x for x in (since, f"last alerted{when}: {clean(a.title, 300)}") if x))
                continue
            series = str(peak.get("series", ""))
            unit = unit_of(ev, series)
            what = f"{name} {_label(clean(series, 60), unit)}"
            line = f"{what} peaked at {human(peak['value'], unit)} at {utc_time(peak['at'])}"
            if "limit" in ev:
                line += f" (limit {human(ev['limit'], unit_of(ev, 'limit'))})"
            points = (ev.get("series") or {}).get(series) or []
            last = points[-1] if points else None
            if last is not None and last[0] > peak["at"]:
                line += f"; latest {human(last[1], unit)} at {utc_time(last[0])}"
            out.append(line + (f"; {since}" if since else ""))
        return out


# A series named for its unit (init_ms, age_seconds) is told without it: human() writes the value
# in the unit that reads best ("init 2.98 s", not "init ms 2.98 s").
_TIME_SUFFIXES = ("_seconds", "_ms", "_us", "_s")


def _label(name: str, unit: str) -> str:
    if unit in ("s", "ms", "us"):
        for suffix in _TIME_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name.replace("_", " ")


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return clean(v, 40)
    return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"


# -- Slack -------------------------------------------------------------------------------------


def slack_message(n: Notice, reply: bool = False) -> dict[str, Any]:
    """The incident's message. `reply`: the shorter form posted in its thread, where it differs
    (an acknowledgement is one line there; the top message still shows everything)."""
    inc = n.incident
    if reply and n.kind == "acknowledged":
        return slack_ack_reply(n)
    ended = n.kind == "resolved"
    text = mrkdwn_escape(clean(n.headline, TEXT_MAX))
    lines = n.evidence_lines()
    if ended and lines:
        # Not the cause's last numbers, which read as current: what it peaked at, and when.
        text += "\n" + mrkdwn_escape(clean("\n".join(lines[:3]), 600))
    elif inc.cause:
        text += "\nCause: " + mrkdwn_escape(clean(inc.cause, 600))
    text = clean(text, TEXT_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _header(n), "emoji": True}},
    ]
    if n.kind == "resolved" and n.lasted:
        blocks.append(_plain(f"Resolved after {n.lasted}."))
    if n.kind == "acknowledged" and inc.acked_by:
        blocks.append(_plain(f"Acknowledged by {inc.acked_by}."))
    if inc.symptom:
        blocks.append(_plain(f"{n.symptom_label}: {inc.symptom}"))
    if inc.cause:
        blocks.append(_plain(f"{n.cause_label}: {inc.cause}"))
    if lines:
        blocks.append(_plain(f"{n.evidence_heading}:\n" + "\n".join("• " + line for line in lines)))
    if inc.fix and n.kind not in ("resolved", "absorbed"):
        blocks.append(_plain("Fix: " + inc.fix))
    if n.kind == "absorbed" and n.extra.get("into"):
        blocks.append(_plain(f"Now part of incident #{n.extra['into']}" + (f": {n.into_url}" if n.into_url else ".")))
    context = [f"incident #{inc.id}", f"state {inc.state}", f"detector {inc.labels.get('detector', '')}"]
    if inc.labels.get("service"):
        context.append(f"service {inc.labels['service']}")
    if inc.acked_by:
        context.append(f"acknowledged by {inc.acked_by}")
    blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": clean(" · ".join(context), 2000)}]})
    buttons = [_button("Open incident", n.url)]
    if n.ack_url:
        buttons.append(_button("Acknowledge", n.ack_url, style="primary"))
    if n.into_url:
        buttons.append(_button(f"Open incident #{n.extra.get('into')}", n.into_url))
    blocks.append({"type": "actions", "elements": buttons})
    return {"text": text, "blocks": blocks[:BLOCKS_MAX]}


def _header(n: Notice) -> str:
    """The header block, within Slack's 150 characters: once resolved, the title gives way so
    that "resolved after 34 min" stays in sight."""
    text = f"{n.emoji} {n.headline}"
    if n.kind != "resolved" or len(text) <= HEADER_MAX or not n.lasted:
        return clean(text, HEADER_MAX)
    head, tail = f"{n.emoji} [RESOLVED] ", f" — resolved after {n.lasted}"
    return head + cut_words(n.incident.title, HEADER_MAX - len(head) - len(tail)) + tail


def slack_ack_reply(n: Notice) -> dict[str, Any]:
    """'Acknowledged by X' in the incident's thread."""
    who = one_line(n.incident.acked_by or "someone", 200)
    line = f"{KIND_EMOJI['acknowledged']} Acknowledged by {who}"
    return {"text": mrkdwn_escape(clean(line, TEXT_MAX)), "blocks": [_plain(line)]}


def _button(text: str, url: str, style: str = "") -> dict[str, Any]:
    # Slack: button text 75 characters, url 3,000.
    out: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": clean(text, 75)}, "url": url[:3000]}
    if style:
        out["style"] = style
    return out


def sections_message(title: str, text: str, sections: list[str], url: str = "", button: str = "") -> dict[str, Any]:
    """A Block Kit message of a header and one plain_text section per part (the digest), within
    Slack's limits, with `text` as the fallback."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clean(title, HEADER_MAX)}}
    ]
    blocks += [_plain(s) for s in sections if s.strip()][: BLOCKS_MAX - 2]
    if url:
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": button}, "url": url[:3000]}],
            }
        )
    return {"text": mrkdwn_escape(clean(text, TEXT_MAX)), "blocks": blocks}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "plain_text", "text": clean(text, SECTION_MAX), "emoji": False}}


# -- mail --------------------------------------------------------------------------------------


@cache
def _env() -> Any:
    """The mail templates' environment, made at the first mail: importing jinja2 costs a process
    ~0.15 s (python -X importtime), which every `fleetwatch run` start paid before it sent any."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("alerts", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def email_message(n: Notice) -> tuple[str, str, str]:
    """(subject, text body, HTML body)."""
    view = {"n": n, "inc": n.incident, "lines": n.evidence_lines(), "clean": clean, "label": n.label}
    subject = _subject(n)
    return subject, _env().get_template("incident.txt").render(view), _env().get_template("incident.html").render(view)


def _subject(n: Notice) -> str:
    """Under 100 characters, cut at a word: the label and what ended or merged it are kept, the
    title gives way."""
    inc = n.incident
    if n.kind == "resolved":
        head, tail = "[fleetwatch] [RESOLVED] ", f" — after {n.lasted}" if n.lasted else ""
    elif n.kind == "absorbed":
        head, tail = "[fleetwatch] [MERGED] ", f" — into #{n.extra['into']}" if n.extra.get("into") else ""
    else:
        head, tail = f"[fleetwatch] [{n.label}] {inc.severity.upper()}: ", ""
    return head + cut_words(inc.title, SUBJECT_MAX - len(head) - len(tail)) + tail


def render(name: str, **view: Any) -> str:
    return _env().get_template(name).render(clean=clean, num=lambda v: "–" if v is None else _num(v), **view)
