"""The small languages of the alerting configuration, parsed with errors that say what to write.

- Matchers, as in Alertmanager: `service="checkout"`, `severity!=info`, `detector=~"queues|outcomes"`,
  `name!~"staging-.*"`, separated by commas or spaces. Used by routes, silences and maintenance.
- Routes: `MATCHERS -> TARGETS`, e.g. `severity=critical service=checkout -> slack:#checkout-oncall
  email:payments@example.com`. `*` matches everything.
- Maintenance windows: `DAYS HH:MM-HH:MM ZONE [MATCHERS]`, e.g. `sun 02:00-04:00 Europe/London
  service=orders`; DAYS is `daily`, a day (`mon`), a range (`mon-fri`) or a list (`sat,sun`).
- Wiring: `CAUSE -> EFFECT`, each a resource as `kind:name` or a bare name, e.g.
  `rds:orders-db -> api:checkout-api`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|\s|$)')
# The labels incidents carry, and so what routes, silences and maintenance windows may match;
# any tag is there too as tag_<key> (service is also a label of its own).
LABELS = ("severity", "service", "account", "region", "detector", "kind", "name", "resource", "state")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """`a="x", b!=y` -> matchers; `*` or an empty string matches everything."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if body in ("", "*"):
        return ()
    out, pos = [], 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if not m or m.end() == pos:
            raise ValueError(
                f"cannot read a matcher at {body[pos : pos + 30]!r}: write label=value, label!=value, "
                'label=~regex or label!~regex, e.g. service="checkout"'
            )
        name, op, raw = m.groups()
        if name not in LABELS and not name.startswith("tag_"):
            raise ValueError(f"unknown label {name!r}: match on {', '.join(LABELS)} or a tag as tag_<key>")
        value = _unquote(raw[1:-1]) if raw.startswith('"') else raw
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{name}{op}{raw}: not a valid regular expression ({exc})") from None
        out.append(Matcher(name, op, value))
        pos = m.end()
    return tuple(out)


def _unquote(body: str) -> str:
    """A quoted value's escapes (\\, \", \n); any other character, non-ASCII included, as written."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), body)


def quote(value: str) -> str:
    """A label value as a quoted matcher value that parse_matchers reads back unchanged."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


# -- routes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    matchers: tuple[Matcher, ...]
    targets: tuple[str, ...]  # "slack:#channel", "email:someone@example.com"


def parse_route(text: str) -> Route:
    if "->" not in text:
        raise ValueError(f"{text!r} has no '->': write MATCHERS -> TARGETS, e.g. 'severity=critical -> slack:#oncall'")
    left, right = text.split("->", 1)
    targets = tuple(t for t in re.split(r"[\s,]+", right.strip()) if t)
    if not targets:
        raise ValueError(f"{text!r} names no target after '->': add slack:#channel or email:address")
    for t in targets:
        check_target(t)
    return Route(parse_matchers(left), targets)


def check_target(target: str) -> None:
    kind, _, where = target.partition(":")
    if kind == "slack" and re.fullmatch(r"#?[\w.-]{1,80}", where):
        return
    if kind == "email" and re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", where):
        return
    if kind in ("pagerduty", "webhook") and re.fullmatch(r"[\w.-]{1,80}", where):
        return
    raise ValueError(
        f"target {target!r} is none of slack:#channel, email:address@example.com, pagerduty:default, webhook:NAME"
    )


# -- maintenance windows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after local midnight
    end: int  # may be <= start: the window crosses midnight
    zone: str
    matchers: tuple[Matcher, ...]

    def active(self, t: float) -> bool:
        local = datetime.fromtimestamp(t, ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= minute < self.end
        # Across midnight: the late part belongs to today, the early part to yesterday's window.
        yesterday = (local - timedelta(days=1)).weekday()
        return (local.weekday() in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)


def _days(text: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(
                f"days {text!r}: write daily, a day such as mon, a range such as mon-fri, or a list such as sat,sun"
            )
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def _minutes(text: str) -> int:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not m:
        if text == "24:00":
            return 24 * 60
        raise ValueError(f"time {text!r}: write HH:MM in 24-hour time, e.g. 02:00")
    return int(m.group(1)) * 60 + int(m.group(2))


def check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {zone!r} is unknown: use an IANA name such as 'UTC' or 'Europe/London'") from None
    return zone


def parse_window(text: str) -> Window:
    parts = text.split(None, 3)
    if len(parts) < 3:
        raise ValueError(f"{text!r}: write DAYS HH:MM-HH:MM ZONE [MATCHERS], e.g. 'sun 02:00-04:00 UTC service=orders'")
    days, span, zone = parts[0].lower(), parts[1], parts[2]
    start, sep, end = span.partition("-")
    if not sep:
        raise ValueError(f"{span!r}: write the window as HH:MM-HH:MM")
    a, b = _minutes(start), _minutes(end)
    if a == b:
        raise ValueError(f"{span!r} is empty: the start and end are the same")
    return Window(_days(days), a, b, check_zone(zone), parse_matchers(parts[3] if len(parts) > 3 else ""))


# -- wiring -------------------------------------------------------------------------------------


def parse_wire(text: str) -> tuple[str, str]:
    cause, sep, effect = text.partition("->")
    cause, effect = cause.strip(), effect.strip()
    if not sep or not cause or not effect or " " in cause or " " in effect:
        raise ValueError(
            f"{text!r}: write CAUSE -> EFFECT, each kind:name or a name, e.g. 'rds:orders-db -> api:checkout-api'"
        )
    return cause, effect
