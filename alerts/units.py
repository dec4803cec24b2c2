"""Numbers in the units a person reads: 0.12 as "12%", 345600 seconds as "4 d", 1234567 as
"1,234,567", 850 ms as "850 ms" and 2300 ms as "2.3 s". The unit comes with the evidence
(detectors.base.evidence puts one per series, limit and baseline); evidence stored before units
existed is read by the series' name (detectors.base.unit_for)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from detectors.base import count_text, unit_for


def human(value: Any, unit: str = "count") -> str:
    """`value` in `unit` (see detectors.base.UNITS) as text; what is not a finite number is
    returned as given, for the caller to clean."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(value)
    if unit == "ratio":
        return _percent(v * 100)
    if unit == "percent":
        return _percent(v)
    if unit == "us":
        return human(v / 1000, "ms")
    if unit == "ms":
        return f"{_sig(v)} ms" if abs(v) < 1000 else _duration(v / 1000)
    if unit == "s":
        return _duration(v)
    return _count(v)


def unit_of(evidence: dict[str, Any], name: str) -> str:
    """The unit of a series (or of "limit" / "baseline") in a finding's evidence."""
    units = evidence.get("units") or {}
    if name in units:
        return str(units[name])
    if name in ("limit", "baseline"):
        first = next(iter(evidence.get("series") or {}), None)  # the series held against them
        return unit_of(evidence, first) if first is not None else "count"
    return unit_for(name)


def _percent(p: float) -> str:
    # Two significant digits below 1 %, so 0.055 % is not shown as "0.1 %" next to a 0.1 % limit.
    if p == 0:
        return "0%"
    if abs(p) >= 10:
        return f"{p:.0f}%"
    if abs(p) >= 1:
        return f"{p:.1f}".rstrip("0").rstrip(".") + "%"
    return f"{p:.2g}%"


def _duration(s: float) -> str:
    a = abs(s)
    if a < 60:
        return f"{_sig(s)} s" if a < 10 else f"{s:.0f} s"
    if a < 3600:
        return f"{s / 60:.0f} min"
    if a < 86400:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h" if m == 0 else f"{h} h {m} min"
    d = s / 86400
    return f"{d:.0f} d" if abs(d - round(d)) < 0.05 else f"{d:.1f} d"


def _count(v: float) -> str:
    if abs(v) >= 100 or v == int(v):
        return count_text(v)
    return _sig(v)


def _sig(v: float) -> str:
    text = f"{v:.3g}"
    return text if "e" not in text else f"{v:,.0f}"


def duration_words(seconds: float) -> str:
    """How long something lasted, in words: "34 min", "2 h 5 min", "3 d"."""
    return _duration(max(0.0, seconds)) if seconds >= 60 else f"{max(0, int(seconds))} s"


def utc_time(ts: float) -> str:
    """A moment within the last day as a person reads it in a notification: "17:25 UTC"."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M UTC")
