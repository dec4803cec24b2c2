"""The agent killed at random points while incidents open, change and resolve: after each
restart every notification owed is delivered, and none twice."""

from __future__ import annotations

import json
import random
import select
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from simulator.mail import SmtpSink
from simulator.slack import SlackStandIn

ROOT = Path(__file__).resolve().parents[1]


def run(tmp: Path, slack: SlackStandIn, smtp: SmtpSink, crash: bool, seed: int) -> int:
    """Run the timeline to the end; with `crash`, the first runs are killed at the first step of
    each kind (a send the server has but our log does not, an evaluation not yet saved, a send
    not yet begun), then at a random one of their next ten pipeline steps, up to 20 kills in all.
    Returns how many runs were killed."""
    rng = random.Random(seed)
    killed = 0
    aimed = ["after send", "before save", "before begin_send"] if crash else []
    # Each run is a process of its own, forked by the driver from its imported self (see
    # tests/crash_driver.py --serve), and killed with SIGKILL as a started one would be.
    with (
        open(tmp / "driver.err", "w+") as err,
        subprocess.Popen(
            [sys.executable, "-m", "tests.crash_driver", "--serve"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as driver,
    ):
        assert driver.stdin and driver.stdout
        try:
            for _ in range(40):
                crash_at = (aimed.pop(0) if aimed else str(rng.randint(1, 10))) if crash and killed < 20 else "0"
                args = [str(tmp / "alerts.db"), slack.api_url, str(smtp.port), crash_at]
                driver.stdin.write(json.dumps(args) + "\n")
                driver.stdin.flush()
                ready, _, _ = select.select([driver.stdout], [], [], 120)
                assert ready, "a run took over 120 s"
                returncode = int(driver.stdout.readline())
                if returncode == 0:
                    return killed
                err.seek(0)
                assert returncode == -9, err.read()[-2000:]
                killed += 1
        finally:
            driver.stdin.close()
            driver.kill()
    raise AssertionError("the timeline never finished")


def delivered(slack: SlackStandIn, smtp: SmtpSink) -> tuple[Counter, Counter]:
    slack_keys = Counter(m["metadata"]["event_payload"]["key"] for m in slack.messages())
    mail_ids = Counter(m["Message-ID"] for _, m in smtp.messages())
    return slack_keys, mail_ids


@pytest.mark.slow(seconds=50)
def test_killed_at_random_points_nothing_lost_nothing_twice(tmp_path: Path) -> None:
    (tmp_path / "calm").mkdir()
    (tmp_path / "crashy").mkdir()
    with SlackStandIn() as slack, SmtpSink() as smtp:
        assert run(tmp_path / "calm", slack, smtp, crash=False, seed=0) == 0
        expected_slack, expected_mail = delivered(slack, smtp)
    assert len(expected_slack) >= 5 and len(expected_mail) >= 5, (
        "the timeline opens, changes and resolves several incidents"
    )
    with SlackStandIn() as slack, SmtpSink() as smtp:
        killed = run(tmp_path / "crashy", slack, smtp, crash=True, seed=7)
        got_slack, got_mail = delivered(slack, smtp)
    where = Counter((tmp_path / "crashy" / "alerts.crashes").read_text().splitlines())
    assert killed >= 12 and sum(where.values()) == killed
    assert where["after send"] >= 1 and where["before save"] >= 1 and where["before begin_send"] >= 1, where
    assert set(got_slack) == set(expected_slack), "every Slack notification owed was delivered"
    assert max(got_slack.values()) == 1, "no Slack notification twice: an interrupted send is found by its key"
    assert set(got_mail) == set(expected_mail), "every mail owed was delivered"
    # Mail cannot be looked up after a crash: one interrupted after the server took it is sent
    # again with the same Message-ID, which mail clients show once.
    assert all(n <= 2 for n in got_mail.values())
