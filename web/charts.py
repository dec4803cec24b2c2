"""Line charts as inline SVG, drawn on the server: no JavaScript library, no CDN, nothing copied.
A chart is a dict the template turns into <svg>: the line's path, the limit or baseline drawn
as a dashed line, and axis labels. Long series are cut to at most MAX_POINTS by keeping each
bucket's highest value, so a spike is never smoothed away."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 56, 22, 10
MAX_POINTS = 320


def downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    pts = [(float(t), float(v)) for t, v in points if v is not None and math.isfinite(float(v))]
    if len(pts) <= limit:
        return pts
    size = math.ceil(len(pts) / limit)
    return [max(pts[i:i + size], key=lambda p: p[1]) for i in range(0, len(pts), size)]


def _label(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def chart(title: str, points: Sequence[tuple[float, float]], limit: float | None = None,
          baseline: float | None = None) -> dict[str, Any]:
    pts = downsample(points)
    out: dict[str, Any] = {"title": title, "width": WIDTH, "height": HEIGHT, "empty": not pts, "path": "", "lines": [],
                           "ticks": [], "xlabels": [], "last": pts[-1][1] if pts else None}
    if not pts:
        return out
    marks = [m for m in (limit, baseline) if m is not None and math.isfinite(m)]
    lo = min(0.0, min(v for _, v in pts))
    hi = max([v for _, v in pts] + marks) or 1.0
    hi = hi * 1.08 if hi > 0 else 1.0
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0) or 1.0
    inner_w, inner_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP

    def x(t: float) -> float:
        return round(PAD_LEFT + (t - t0) / span * inner_w, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + (1 - (v - lo) / ((hi - lo) or 1.0)) * inner_h, 1)

    out["path"] = "M" + " L".join(f"{x(t)},{y(v)}" for t, v in pts)
    for name, value in (("limit", limit), ("baseline", baseline)):
        if value is not None and math.isfinite(value):
            out["lines"].append({"name": name, "y": y(value), "label": f"{name} {_label(value)}"})
    out["ticks"] = [{"y": y(v), "label": _label(v)} for v in (lo, (lo + hi) / 2, hi)]
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    out["xlabels"] = [{"x": x(t), "label": datetime.fromtimestamp(t, timezone.utc).strftime(fmt)} for t in (t0, t0 + span / 2, t1)]
    out["x0"], out["x1"], out["y0"] = PAD_LEFT, WIDTH - 8, HEIGHT - PAD_BOTTOM
    return out


def evidence_charts(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """One chart per series in a finding's evidence, with its limit or baseline drawn. Evidence
    names one limit and one baseline for all its series, so each is drawn only on the series
    of its own scale (within a factor of 20 of the series' peak): a 10 s init limit belongs on
    the init-duration chart, not on the count of cold starts."""
    limit, baseline = _num(evidence.get("limit")), _num(evidence.get("baseline"))
    out = []
    for name, points in (evidence.get("series") or {}).items():
        try:
            pts = [(float(p[0]), float(p[1])) for p in points]
        except (TypeError, ValueError, IndexError):
            continue
        peak = max((abs(v) for _, v in pts), default=0.0)
        out.append(chart(str(name), pts, limit=_fits(limit, peak), baseline=_fits(baseline, peak)))
    return out


def _fits(mark: float | None, peak: float) -> float | None:
    if mark is None or not math.isfinite(mark):
        return None
    if peak == 0:
        return mark
    return mark if peak / 20 <= abs(mark) <= peak * 20 else None


def _num(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
