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
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from alerts.incidents import Incident
from alerts.state import Alert

# Slack's documented limits: header text 150 characters, section text 3,000, 50 blocks a message;
# `text` is truncated past 40,000 and Slack advises keeping it far shorter.
HEADER_MAX, SECTION_MAX, TEXT_MAX, BLOCKS_MAX = 150, 3000, 3000, 50
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
LABEL = {"firing": "FIRING", "changed": "UPDATED", "repeat": "STILL FIRING", "resolved": "RESOLVED",
         "absorbed": "MERGED", "nodata": "NO DATA", "error": "DETECTOR ERROR"}
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def clean(text: Any, limit: int) -> str:
    """Untrusted text made safe to show: no control or direction-changing characters, at most
    `limit` characters (cut with an ellipsis)."""
    s = _CONTROL.sub(" ", str(text or ""))
    s = re.sub(r"[ \t]{2,}", " ", s).strip()
    return s if len(s) <= limit else s[:max(0, limit - 1)].rstrip() + "…"


def one_line(text: Any, limit: int) -> str:
    """clean(), and on one line: for subjects and headers (a line break in a mail subject would
    start a header of its own)."""
    return clean(re.sub(r"[\r\n]+", " ", str(text or "")), limit)


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
    def headline(self) -> str:
        return f"[{LABEL.get(self.kind, self.kind.upper())}] {self.incident.severity.upper()}: {one_line(self.incident.title, 400)}"

    def evidence_lines(self) -> list[str]:
        """One line per alert: its title and the numbers it was held against."""
        out = []
        for a in self.alerts[:8]:
            ev = a.evidence or {}
            parts = []
            for name, points in (ev.get("series") or {}).items():
                if points:
                    parts.append(f"{name} {_num(points[-1][1])}")
            if "limit" in ev:
                parts.append(f"limit {_num(ev['limit'])}")
            if "baseline" in ev:
                parts.append(f"baseline {_num(ev['baseline'])}")
            line = clean(a.title, 300)
            if parts:
                line += " — " + clean(", ".join(parts[:6]), 300)
            out.append(line)
        return out


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return clean(v, 40)
    return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"


# -- Slack -------------------------------------------------------------------------------------

def slack_message(n: Notice) -> dict[str, Any]:
    inc = n.incident
    text = mrkdwn_escape(clean(n.headline, TEXT_MAX))
    if inc.cause:
        text += "\nCause: " + mrkdwn_escape(clean(inc.cause, 600))
    text = clean(text, TEXT_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clean(f"{EMOJI.get(inc.severity, '')} {n.headline}", HEADER_MAX),
                                    "emoji": True}},
    ]
    if inc.symptom:
        blocks.append(_plain("What users feel: " + inc.symptom))
    if inc.cause:
        blocks.append(_plain("Cause: " + inc.cause))
    lines = n.evidence_lines()
    if lines:
        blocks.append(_plain("Evidence:\n" + "\n".join("• " + line for line in lines)))
    if inc.fix and n.kind not in ("resolved", "absorbed"):
        blocks.append(_plain("Fix: " + inc.fix))
    if n.kind == "absorbed" and n.extra.get("into"):
        blocks.append(_plain(f"Now part of incident #{n.extra['into']}."))
    context = [f"incident #{inc.id}", f"state {inc.state}", f"detector {inc.labels.get('detector', '')}"]
    if inc.labels.get("service"):
        context.append(f"service {inc.labels['service']}")
    if inc.acked_by:
        context.append(f"acknowledged by {inc.acked_by}")
    blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": clean(" · ".join(context), 2000)}]})
    blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open incident"},
                                                     "url": n.url[:3000]}]})
    return {"text": text, "blocks": blocks[:BLOCKS_MAX]}


def sections_message(title: str, text: str, sections: list[str], url: str = "", button: str = "") -> dict[str, Any]:
    """A Block Kit message of a header and one plain_text section per part (the digest), within
    Slack's limits, with `text` as the fallback."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": clean(title, HEADER_MAX)}}]
    blocks += [_plain(s) for s in sections if s.strip()][:BLOCKS_MAX - 2]
    if url:
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": button},
                                                         "url": url[:3000]}]})
    return {"text": mrkdwn_escape(clean(text, TEXT_MAX)), "blocks": blocks}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "plain_text", "text": clean(text, SECTION_MAX), "emoji": False}}


# -- mail --------------------------------------------------------------------------------------

_env = Environment(loader=PackageLoader("alerts", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def email_message(n: Notice) -> tuple[str, str, str]:
    """(subject, text body, HTML body)."""
    view = {"n": n, "inc": n.incident, "lines": n.evidence_lines(), "clean": clean, "label": LABEL.get(n.kind, n.kind)}
    subject = one_line(f"[fleetwatch] {n.headline}", 200)
    return subject, _env.get_template("incident.txt").render(view), _env.get_template("incident.html").render(view)


def render(name: str, **view: Any) -> str:
    return _env.get_template(name).render(clean=clean, num=lambda v: "–" if v is None else _num(v), **view)
