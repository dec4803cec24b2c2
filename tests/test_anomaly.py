"""The generic anomaly layer and `fleetwatch replay`: causal, calibrated scores, episodes reported
once, seasonality only where there is one, and clear errors for bad CSV. The tests named after
issue 18's failure causes each failed on the layer before it (a robust z-score on a rigid
seasonal median, every row of an episode flagged, 3 rows in a row needed)."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import pytest

from detectors.anomaly import MAX_SCORE, REOPEN_WITHIN, Episodes, Scorer, score_series
from fleetwatch import cli
from fleetwatch.cli.replay import ReplayError, replay

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
    assert not any(a for _, a in quiet[24 * 5 :])  # after a few days the cycle itself is normal
    flagged = score_series(daily(24 * 10, jump_at=24 * 8 + 5, jump=400))
    first = next(i for i, (_, a) in enumerate(flagged) if a)
    assert first == 24 * 8 + 5


def test_isolated_blips_in_a_count_series_are_not_alarms() -> None:
    points = [(T0 + i * 60, 1.0 if i % 97 == 0 else 0.0) for i in range(3000)]
    assert not any(a for _, a in score_series(points))
    burst = [(t, 40.0 if 2000 <= i < 2010 else v) for i, (t, v) in enumerate(points)]
    flags = [a for _, a in score_series(burst)]
    assert flags[2000] and sum(flags) == 1


def onsets(points: list[tuple[int, float]]) -> list[int]:
    return [i for i, (_, onset) in enumerate(score_series(points)) if onset]


def noisy(n: int, level: float, sd: float, seed: int) -> list[float]:
    r = random.Random(seed)
    return [level + r.gauss(0, sd) for _ in range(n)]


def test_a_step_between_two_low_levels_is_one_quantum_not_a_storm() -> None:
    # A rate of a few events in fifteen: it moves by 1/15 now and then, then sits one 1/15 higher.
    r = random.Random(1)
    values = [1 / 15 if r.random() < 0.9 else 2 / 15 for _ in range(600)] + [2 / 15] * 60
    points = [(T0 + i * 300, v) for i, v in enumerate(values)]
    assert onsets(points) == []
    assert max(s or 0.0 for s, _ in score_series(points)) < 2  # the old scale floor made this 20
    jump = points[:600] + [(T0 + i * 300, 10 / 15) for i in range(600, 660)]
    assert onsets(jump) == [600]


def test_a_burst_from_zero_scores_on_the_same_scale_as_any_other() -> None:
    r = random.Random(2)
    values = [0.0 if r.random() < 0.97 else float(r.randint(1, 3)) for _ in range(600)]
    values[500:506] = [5e6, 8e6, 7e6, 9e6, 6e6, 4e6]
    scores = score_series([(T0 + i * 60, v) for i, v in enumerate(values)])
    assert max(s or 0.0 for s, _ in scores) <= MAX_SCORE  # the old ratio to a 1e-9 floor gave 9e6
    assert [i for i, (_, a) in enumerate(scores) if a] == [500]


def test_an_hour_long_episode_is_reported_once() -> None:
    values = noisy(2000, 100, 5, 3)  # minute points: the episode comes after the first day
    for i in range(1600, 1660):
        values[i] += 60
    points = [(T0 + i * 60, v) for i, v in enumerate(values)]
    assert onsets(points) == [1600]  # not 60 alarms, not one per row
    scorer = Scorer(60)
    for _, v in points:
        scorer.update(v)
    (episode,) = scorer.finish()
    # It ends once the new level is no longer news (about SUSTAIN points), and going back is not a new one.
    assert episode.onset == 1600 and 1600 <= episode.peak <= episode.end < 1660
    assert episode.direction == 1


def test_a_single_point_spike_is_flagged_and_the_next_row_is_not_a_dip() -> None:
    values = noisy(1000, 100, 5, 4)
    values[800] = 180
    points = [(T0 + i * 60, v) for i, v in enumerate(values)]
    assert onsets(points) == [800]  # the old 3-in-a-row rule dropped it
    assert (score_series(points)[801][0] or 0.0) < 1


def test_a_spike_the_series_makes_routinely_is_flagged_once() -> None:
    # The same spike every 150 points. The tail fit clips each excess (one outlier must not flatten
    # it), so it keeps calling such a spike "one in 10^12" (the layer before flagged 800 and 1100);
    # the series' own count of them says one in a few hundred points after the first.
    values = noisy(3000, 100, 5, 4)
    for i in range(800, 3000, 150):
        values[i] = 180
    points = [(T0 + i * 60, v) for i, v in enumerate(values)]
    assert onsets(points) == [800]


def test_a_quiet_hour_after_a_busy_one_yesterday_is_not_news() -> None:
    r = random.Random(5)
    day = 288  # five-minute points
    values = []
    for i in range(day * 4):
        busy = i // day == 1 and 120 <= i % day < 132  # an hour's burst on the second day only
        values.append(100 + 50 * math.sin(2 * math.pi * (i % day) / day) + r.gauss(0, 3) + (150 if busy else 0))
    found = onsets([(T0 + i * 300, v) for i, v in enumerate(values)])
    assert found == [day + 120]  # the burst itself, once; not the same quiet hour the next days


def test_a_series_with_no_daily_cycle_is_not_held_to_one() -> None:
    # 30 minutes busy every 7 hours: a rhythm, but not a daily one.
    r = random.Random(8)
    values = [100 + r.gauss(0, 4) + (200 if i % 84 < 6 else 0) for i in range(288 * 6)]
    assert onsets([(T0 + i * 300, v) for i, v in enumerate(values)]) == []


def test_each_decision_uses_only_the_rows_before_it() -> None:
    points = daily(24 * 6, jump_at=24 * 5, jump=300)
    whole = score_series(points)
    for cut in (24 * 3, 24 * 5 + 2, len(points) - 1):
        assert score_series(points[:cut]) == whole[:cut]


def test_missing_values_score_nothing() -> None:
    scorer = Scorer(60)
    for i in range(300):
        scorer.update(10.0 + (i % 3))
    assert scorer.update(None) == (None, False, 0)
    assert scorer.update(float("nan")) == (None, False, 0)
    assert scorer.model.n == 302  # the slot of the day moved on


def csv_rows(text: str) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(text)))


def test_replay_reads_iso_or_epoch_and_writes_score_and_anomaly() -> None:
    iso = "timestamp,value\n" + "".join(f"2026-01-01T{h // 60:02d}:{h % 60:02d}:00Z,{10 + h % 2}\n" for h in range(120))
    epoch = "t,v\n" + "".join(f"{1767225600 + h * 60},{10 + h % 2}\n" for h in range(120))
    epoch = "t,v\n" + "".join(f"{1767225600 + h * 60},{10 + h % 2}\n" for h in range(300))
    iso = "timestamp,value\n" + "".join(f"2026-01-01T{h // 60:02d}:{h % 60:02d}:00Z,{10 + h % 2}\n" for h in range(300))
    a, b = list(replay(csv_rows(iso))), list(replay(csv_rows(epoch)))
    assert a[0] == b[0] == ["timestamp", "value", "score", "anomaly", "episode"]
    assert [r[1:] for r in a] == [r[1:] for r in b] and len(a) == 301
    assert {r[3] for r in a[1:]} == {"0"} and a[-1][2] != ""


def test_replay_gaps_are_missing_not_zero() -> None:
    rows = "timestamp,value\n" + "".join(f"{1767225600 + h * 60},10\n" for h in list(range(60)) + list(range(90, 150)))
    out = list(replay(csv_rows(rows)))
    assert len(out) == 121 and {r[3] for r in out[1:]} == {"0"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("1767225600,10\n1767225660,11\n", "must be a header"),
        ("t,v\n1767225600,10\n1767225660,ten\n", "line 3: value 'ten' is not a number"),
        ("t,v\nyesterday,10\n1767225660,11\n", "line 2: 'yesterday' is neither"),
        ("t,v\n1767225660,10\n1767225600,11\n", "earlier than the row before it"),
        ("t,v\n1767225600,10\n1767225610,11\n1767225620,12\n", "replay handles a regular step from 60 s to 1 day"),
        ("t,v\n1767225600,10\n", "at least two rows"),
        (
            "t,v\n" + "".join(f"{1767225600 + i * 60 + (i % 3) * 17},1\n" for i in range(50)),
            "the step is irregular: 16 of 49 gaps are not a whole number of 77 s steps",
        ),
    ],
)
def test_replay_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        list(replay(csv_rows(text)))


def test_replay_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "series.csv"
    r = random.Random(9)
    f.write_text(
        "timestamp,value\n"
        + "".join(f"{1767225600 + h * 3600},{100 + (h % 24) + r.random():.2f}\n" for h in range(24 * 8))
        + "".join(f"{1767225600 + h * 3600},900\n" for h in range(24 * 8, 24 * 8 + 3))
        + f"{1767225600 + (24 * 8 + 3) * 3600 + 1800},120\n"
    )  # one row off the hourly grid
    assert cli.main(["replay", str(f)], environ={}) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "timestamp,value,score,anomaly,episode" and len(lines) == 24 * 8 + 5
    assert [row.split(",")[3] for row in lines[-4:]] == ["1", "0", "0", "0"]  # the onset only
    assert [row.split(",")[4] for row in lines[-4:]] == ["1", "1", "1", "1"]  # its rows (the fall too), numbered
    assert captured.err.strip() == (
        "fleetwatch replay: 196 points, step 3600 s, 1 gap(s) not a whole number of steps; "
        "1 episode(s), 4 point(s) flagged at threshold 3"
    )
    assert cli.main(["replay", str(f), "--detector", "dip"], environ={}) == 0
    captured = capsys.readouterr()
    assert all(row.split(",")[3] == "0" for row in captured.out.splitlines()[1:])  # a rise is not a dip
    assert "0 episode(s)" in captured.err
    assert cli.main(["replay", str(f), "--profile", "low-fp"], environ={}) == 0
    assert "at threshold 3.5\n" in capsys.readouterr().err
    assert cli.main(["replay", str(f), "--profile", "low-fn", "--threshold", "13"], environ={}) == 2
    assert "--threshold 13 is out of range" in capsys.readouterr().err
    assert cli.main(["replay", str(tmp_path / "none.csv")], environ={}) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["replay", str(f), "--detector", "magic"], environ={}) == 2
    assert "choose one of anomaly, spike, dip" in capsys.readouterr().err


def test_routine_bursts_are_not_news_and_a_bigger_one_is() -> None:
    # Twitter-volume-like: a busy count that doubles for 15 minutes every one to three hours; the
    # layer before alarmed on the routine bursts (each was rare for a tail learnt over 200 points).
    r = random.Random(11)
    values = [float(max(0, round(r.gauss(200, 10)))) for _ in range(288 * 5)]
    i = 160
    while i < len(values) - 10:
        for j in range(i, i + 3):
            values[j] *= 2
        i += r.randint(15, 40)
    values[288 * 4 + 100] = 200 * 6  # three times the routine burst
    found = onsets([(T0 + i * 300, v) for i, v in enumerate(values)])
    # A routine burst that happens to be a new high (of plain noise on top) may be news once;
    # the layer before flagged five of them (in its first day, before it had seen a burst).
    assert found[-1] == 288 * 4 + 100 and len(found) <= 2


def test_an_afternoon_at_the_nights_level_is_a_new_departure_from_the_day() -> None:
    # Five-minute points of a daily cycle from 100 (night) to 300 (afternoon). On the sixth day the
    # afternoon falls to 130: a value the series shows every night (never beyond its range) and a
    # mean it passes every evening, but a departure from the day larger than any so far.
    r = random.Random(12)
    day = 288
    values = [200 - 100 * math.cos(2 * math.pi * (i % day) / day) + r.gauss(0, 4) for i in range(day * 7)]
    quiet = onsets([(T0 + i * 300, v) for i, v in enumerate(values)])
    assert quiet == []
    drop = 5 * day + 130
    for i in range(drop, drop + 24):
        values[i] = 130 + r.gauss(0, 4)
    found = onsets([(T0 + i * 300, v) for i, v in enumerate(values)])
    assert len(found) == 1 and drop <= found[0] < drop + 6, found


def test_an_episode_flapping_the_same_way_needs_more_to_reopen() -> None:
    eps = Episodes(threshold=3.0, quiet=2)
    assert eps.feed(0, 4.0, 1) == (True, None)
    eps.feed(1, 0.0, 0)
    assert eps.feed(2, 0.0, 0)[1] is not None  # closed after 2 quiet points
    assert eps.feed(10, 4.0, 1)[0] is False  # the same way soon after: not news at 4 (< 2 x 3)
    assert eps.feed(11, 4.0, -1)[0] is True  # the other way is
    for i in range(12, 14):
        eps.feed(i, 0.0, 0)
    assert eps.feed(20, 7.0, -1)[0] is True  # the same way, twice the threshold
    for i in range(21, 23):
        eps.feed(i, 0.0, 0)
    for i in range(23, 23 + REOPEN_WITHIN):
        eps.feed(i, 0.0, 0)
    assert eps.feed(23 + REOPEN_WITHIN, 4.0, -1)[0] is True  # after a longer calm, the usual threshold
