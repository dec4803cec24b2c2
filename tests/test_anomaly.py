"""The generic anomaly layer and `fleetwatch replay`: causal scores, seasonality, blips that are
not alarms, and clear errors for bad CSV."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from detectors.anomaly import Scorer, score_series
from fleetwatch import cli
from fleetwatch.replay import ReplayError, replay

T0 = 1_700_000_000 // 3600 * 3600


def daily(hours: int, jump_at: int | None = None, jump: float = 0.0) -> list[tuple[int, float]]:
    """Hourly points of a daily cycle between 100 and 300, with a level jump from `jump_at`."""
    out = []
    for h in range(hours):
        v = 200 + 100 * math.sin(2 * math.pi * h / 24) + (h * 7 % 5)
        if jump_at is not None and h >= jump_at:
            v += jump
        out.append((T0 + h * 3600, v))
    return out


def test_the_daily_cycle_is_learnt_and_a_jump_is_flagged() -> None:
    quiet = score_series(daily(24 * 10))
    assert not any(a for _, a in quiet[24 * 5:])  # after a few days the cycle itself is normal
    flagged = score_series(daily(24 * 10, jump_at=24 * 8 + 5, jump=400))
    first = next(i for i, (_, a) in enumerate(flagged) if a)
    assert first == 24 * 8 + 5


def test_isolated_blips_in_a_count_series_are_not_alarms() -> None:
    points = [(T0 + i * 60, 1.0 if i % 97 == 0 else 0.0) for i in range(3000)]
    assert not any(a for _, a in score_series(points))
    burst = [(t, 40.0 if 2000 <= i < 2010 else v) for i, (t, v) in enumerate(points)]
    flags = [a for _, a in score_series(burst)]
    assert any(flags[2000:2010]) and not any(flags[:2000])


def test_each_decision_uses_only_the_rows_before_it() -> None:
    points = daily(24 * 6, jump_at=24 * 5, jump=300)
    whole = score_series(points)
    for cut in (24 * 3, 24 * 5 + 2, len(points) - 1):
        assert score_series(points[:cut]) == whole[:cut]


def test_missing_values_score_nothing_and_break_a_streak() -> None:
    scorer = Scorer(60)
    for i in range(100):
        scorer.update(10.0 + (i % 3))
    assert scorer.update(None) == (None, False)
    assert scorer.update(float("nan")) == (None, False)


def csv_rows(text: str) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(text)))


def test_replay_reads_iso_or_epoch_and_writes_score_and_anomaly() -> None:
    iso = "timestamp,value\n" + "".join(f"2026-01-01T{h // 60:02d}:{h % 60:02d}:00Z,{10 + h % 2}\n" for h in range(120))
    epoch = "t,v\n" + "".join(f"{1767225600 + h * 60},{10 + h % 2}\n" for h in range(120))
    a, b = list(replay(csv_rows(iso))), list(replay(csv_rows(epoch)))
    assert a[0] == b[0] == ["timestamp", "value", "score", "anomaly"]
    assert [r[1:] for r in a] == [r[1:] for r in b] and len(a) == 121
    assert {r[3] for r in a[1:]} == {"0"} and a[-1][2] != ""


def test_replay_gaps_are_missing_not_zero() -> None:
    rows = "timestamp,value\n" + "".join(f"{1767225600 + h * 60},10\n" for h in list(range(60)) + list(range(90, 150)))
    out = list(replay(csv_rows(rows)))
    assert len(out) == 121 and {r[3] for r in out[1:]} == {"0"}


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("1767225600,10\n1767225660,11\n", "must be a header"),
    ("t,v\n1767225600,10\n1767225660,ten\n", "line 3: value 'ten' is not a number"),
    ("t,v\nyesterday,10\n1767225660,11\n", "line 2: 'yesterday' is neither"),
    ("t,v\n1767225660,10\n1767225600,11\n", "earlier than the row before it"),
    ("t,v\n1767225600,10\n1767225610,11\n1767225620,12\n", "replay handles a regular step from 60 s to 1 day"),
    ("t,v\n1767225600,10\n", "at least two rows"),
])
def test_replay_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        list(replay(csv_rows(text)))


def test_replay_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "series.csv"
    f.write_text("timestamp,value\n" + "".join(f"{1767225600 + h * 3600},{100 + (h % 24)}\n" for h in range(24 * 8))
                 + "".join(f"{1767225600 + h * 3600},900\n" for h in range(24 * 8, 24 * 8 + 3)))
    assert cli.main(["replay", str(f)], environ={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timestamp,value,score,anomaly" and lines[-1].endswith(",1") and len(lines) == 24 * 8 + 4
    assert cli.main(["replay", str(f), "--detector", "dip"], environ={}) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(",0")  # a rise is not a dip
    assert cli.main(["replay", str(tmp_path / "none.csv")], environ={}) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["replay", str(f), "--detector", "magic"], environ={}) == 2
    assert "choose one of anomaly, spike, dip" in capsys.readouterr().err
