"""Several `fleetwatch run` processes on one PostgreSQL store, killed with SIGKILL (issue 20,
stage 1, "Shown by"): three agents, each its own OS process, against an emulated estate of
many accounts in two Regions (tests/estate_kit.py) while a connection storm opens and resolves
an incident that pages. One agent at a time is SIGKILLed in the middle of a cycle, collectors
and the alerting leader in turn, and a fresh process joins in its place.

Time is the emulated fleet's fake clock, which this test moves a minute at a time; the agents
run with `--follow-clock`, so each waits for the minute and runs its cycle, and the test moves
on once every live agent has recorded its cycle for that minute (agent_cycles.agent_id). A kill
lands a random fraction of a second into a minute's cycles (whatever the victim is doing then).

After the kills, the agent leading then is cut off from the database instead: every session it
holds (its leader lock's among them) is terminated on the server (pg_terminate_backend), what a
network partition or a restarted server does to a live process. It lives on: it must reconnect
and keep cycling, and it must send nothing after the cut unless it has won the lock again in a
new session.

Asserted: no place is fetched by two agents in one minute (no double fetch: the poll log's
GetMetricData calls by agent); a killed agent's places go unpolled only until its lease expires
(longer only when the next holder is killed too), then another agent takes them over; every
CloudWatch series has one sample for every minute from its first to 15 minutes before the end
(no gap: samples counted per series per minute); every notification the store holds was sent,
and reached the Slack stand-in exactly once, and the mail sink (a real SMTP server on loopback)
at most twice with one Message-ID (mail cannot be looked up after a cut mid-send); the storm's
incident paged when it opened and when it resolved.

`make test`: 2 accounts (4 places), 2 kills. `make chaos` (CHAOS_FULL=1): 12 accounts (24
places), 20 kills, one every other minute."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.delivery import message_id
from fleetwatch.store import open_store
from simulator.mail import SmtpSink
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests import chaos_kit
from tests.agent_kit import agent_env, spawn_run
from tests.conftest import ANCHOR
from tests.estate_kit import REGIONS, account_ids, role_arns

INTERVAL = 60
LEASE = 3 * INTERVAL  # fleetwatch.cluster.Cluster: lease and heartbeat TTL of 3 poll intervals
# The last minutes of a run are not checked for gaps: CloudWatch publishes some datapoints minutes
# late (the emulator up to 3 min, simulator/cloudwatch.py), and the full re-read window
# (poll.lookback, 15 min) picks them up.
SETTLED = 15 * 60
CYCLE_TIMEOUT = 120.0  # wall seconds to wait for a minute's cycles before failing with the agents' logs


class Estate:
    """The emulated estate in a process of its own (tests/estate_kit.py), on a fake clock this
    test moves through /__fleet__/clock."""

    def __init__(self, folder: Path, accounts: int, start: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.estate_kit", str(folder), str(accounts), str(start), str(ANCHOR)],
            cwd=chaos_kit.ROOT,
            stdout=subprocess.PIPE,
            stderr=(folder / "emulator.log").open("w"),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # once provisioned ("" if it died)
        assert line, f"the estate did not start: {(folder / 'emulator.log').read_text()[-1500:]}"
        self.endpoint = json.loads(line)["endpoint"]

    def set_clock(self, t: int) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/__fleet__/clock", data=json.dumps({"set": t}).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback emulator
            assert json.loads(resp.read())["now"] == t

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Fleetwatch:
    """The agent processes and what the store says of them."""

    def __init__(self, env: dict[str, str], url: str, logs: Path) -> None:
        self.env, self.url, self.logs = env, url, logs
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.db = psycopg.connect(url, autocommit=True)

    def spawn(self) -> int:
        log = (self.logs / f"agent-{len(self.procs)}.log").open("w")
        proc = spawn_run(self.env, "--follow-clock", "--no-dashboard", stderr=log)
        self.procs[proc.pid] = proc
        return proc.pid

    def live(self) -> list[int]:
        return [pid for pid, p in self.procs.items() if p.poll() is None]

    def kill(self, pid: int) -> None:
        self.procs[pid].send_signal(signal.SIGKILL)
        self.procs[pid].wait()

    def cycled(self, at: int) -> dict[int, bool]:
        """pid -> whether it led, of the agents that recorded their cycle due at `at`: ran detection
        and kept the lock to the end (a leader cut off mid-cycle records `not_leader`, and its
        fenced incident and notification writes never happened)."""
        return {
            int(pid): "detect" in json.loads(stages) and status != "not_leader"
            for pid, stages, status in self.db.execute(
                "SELECT a.pid, c.stages, c.status FROM agent_cycles c JOIN agents a ON a.id = c.agent_id "
                "WHERE c.scheduled_at = %s",
                [at],
            )
        }

    def wait(self, at: int, pids: list[int]) -> dict[int, bool]:
        # Waiting on real processes: wall-clock time is what they take (never asserted on).
        deadline = time.monotonic() + CYCLE_TIMEOUT
        while time.monotonic() < deadline:
            done = self.cycled(at)
            if set(pids) <= set(done):
                return done
            dead = [pid for pid in pids if self.procs[pid].poll() is not None]
            assert not dead, f"agent(s) {dead} exited: {self.tail(dead[0])}"
            time.sleep(0.05)
        missing = set(pids) - set(self.cycled(at))
        raise AssertionError(f"no cycle at {at} from {missing} in {CYCLE_TIMEOUT} s: {self.tail(next(iter(missing)))}")

    def cut(self, pid: int) -> int:
        """Terminate every session the agent holds on the server (fleetwatch.store.pgdb's
        session_name says whose a session is); the process itself lives on. Returns how many."""
        rows = self.db.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name LIKE %s",
            [f"fleetwatch pid {pid} on %"],
        ).fetchall()
        return len(rows)

    def log_size(self, pid: int) -> int:
        return self.log_path(pid).stat().st_size

    def sends_since(self, pid: int, offset: int) -> list[dict[str, Any]]:
        """The sends the agent logged (alerts.pipeline: "sent <kind> of incident <id> to <target>")
        from a byte offset of its JSON log on."""
        with self.log_path(pid).open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if str(r.get("message", "")).startswith("sent ")]

    def log_path(self, pid: int) -> Path:
        return self.logs / f"agent-{list(self.procs).index(pid)}.log"

    def tail(self, pid: int) -> str:
        return self.log_path(pid).read_text()[-1500:]

    def close(self) -> None:
        for pid in self.live():
            self.kill(pid)
        self.db.close()


@pytest.mark.slow
def test_agent_processes_sigkilled_one_at_a_time_no_gap_nothing_twice(pg_server: Any, tmp_path: Path) -> None:
    accounts, kills, every = chaos_kit.size((2, 2, 2), (12, 20, 2))
    rng = random.Random(2020)
    places = {(a, r) for a in account_ids(accounts) for r in REGIONS}
    storm_start, storm_end = ANCHOR - 14 * 60, ANCHOR - 8 * 60
    t0 = storm_start - 3 * 60
    # Until the storm has resolved, and long enough after the last kill and its takeover that
    # those minutes are SETTLED (late datapoints re-read) and checked for gaps.
    last_kill = 2 + (kills - 1) * every
    cut_at = last_kill + every  # the leader then is cut off from the database
    ticks = max((storm_end + 12 * 60 - t0) // INTERVAL, cut_at + (LEASE + SETTLED) // INTERVAL + 2)
    emu = Estate(tmp_path, accounts, t0)
    url = pg_server.new_database()
    open_store(url).close()  # migrated once, before the agents race to
    with SlackStandIn() as slack, SmtpSink() as smtp:
        env = agent_env(
            emu,
            url,
            FLEETWATCH_AWS_REGIONS=",".join(REGIONS),
            FLEETWATCH_AWS_ROLE_ARNS=",".join(role_arns(accounts)),
            FLEETWATCH_POLL_BACKFILL="10m",
            FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
            FLEETWATCH_SLACK_API_URL=slack.api_url,
            FLEETWATCH_SLACK_CHANNEL="C0PROCESSES",
            FLEETWATCH_EMAIL_TO="oncall@example.com",
            FLEETWATCH_SMTP_HOST="127.0.0.1",
            FLEETWATCH_SMTP_PORT=str(smtp.port),
            FLEETWATCH_SMTP_SECURITY="none",
        )
        fw = Fleetwatch(env, url, tmp_path)
        killed: list[tuple[int, int, bool]] = []  # (tick, pid, was the leader)
        leaders: list[int] = []
        cut: tuple[int, int, int, int] | None = None  # (tick, pid, its log's size then, sessions ended)
        try:
            for _ in range(3):
                fw.spawn()
            for n in range(ticks):
                now = t0 + n * INTERVAL
                emu.set_clock(now)
                pids = fw.live()
                victim = None
                if len(killed) < kills and n >= 2 and (n - 2) % every == 0:
                    # A collector first, then whoever leads (as the last minute's cycles said).
                    led = [pid for pid, lead in fw.cycled(now - INTERVAL).items() if lead and pid in pids]
                    pool = led if len(killed) % 2 else [pid for pid in pids if pid not in led]
                    victim = rng.choice(pool or pids)
                    time.sleep(rng.uniform(0.0, 0.6))  # somewhere in its cycle (or between two)
                    fw.kill(victim)
                    killed.append((n, victim, victim in led))
                    pids.remove(victim)
                if n == cut_at:
                    led = [pid for pid, lead in fw.cycled(now - INTERVAL).items() if lead and pid in pids]
                    assert led, f"no leader in the minute before the cut: {fw.cycled(now - INTERVAL)}"
                    time.sleep(rng.uniform(0.0, 0.6))  # somewhere in its cycle (or between two)
                    offset = fw.log_size(led[0])
                    cut = (n, led[0], offset, fw.cut(led[0]))
                    # Its cycle that minute may have died with its sessions: the others' must not.
                    done = fw.wait(now, [pid for pid in pids if pid != led[0]])
                else:
                    done = fw.wait(now, pids)
                if victim is not None:
                    pids.append(fw.spawn())  # a fresh agent joins at this minute
                    done = fw.wait(now, pids)
                leading = [pid for pid, lead in done.items() if lead and pid in pids]
                # At the cut, its victim may have finished the minute under its lock before the cut
                # ended it (every write done, nothing left to fence); the next leader then runs the
                # same minute after it, one after the other. Otherwise one leader a minute.
                alone = [pid for pid in leading if cut is None or n != cut[0] or pid != cut[1]]
                assert len(alone) <= 1, f"minute {n}: two leaders {leading}"
                leaders += leading
            end = t0 + (ticks - 1) * INTERVAL
            polls = list(
                fw.db.execute(
                    "SELECT p.started_at, p.account, p.region, a.pid, p.poll_id, p.status, p.samples_written, "
                    "p.finished_at, c.scheduled_at, c.started_at, p.detail, p.api_calls FROM poll_log p "
                    "JOIN agent_cycles c ON c.poll_id = p.poll_id JOIN agents a ON a.id = c.agent_id "
                    "WHERE p.source = 'cloudwatch'"
                )
            )
            stamps = list(
                fw.db.execute(
                    "SELECT s.key, m.ts FROM samples m JOIN series s ON s.id = m.series_id "
                    "WHERE s.namespace LIKE 'AWS/%%' AND s.period = 60 AND m.ts <= %s",
                    [end - SETTLED],
                )
            )
            statuses = dict(fw.db.execute("SELECT status, COUNT(*) FROM notifications GROUP BY status").fetchall())
            sent = "SELECT key FROM notifications WHERE status = 'sent' AND target LIKE %s"
            sent_keys = {k for (k,) in fw.db.execute(sent, ["slack:%"])}
            incidents = list(fw.db.execute("SELECT id, resolved_at, severity, title FROM incidents"))
            kinds = set(fw.db.execute("SELECT incident_id, kind FROM notifications WHERE status = 'sent'"))
            mail_sent = {message_id(k) for (k,) in fw.db.execute(sent, ["email:%"])}
            assert cut is not None
            # When (if ever) the agent cut off led again: it won the lock anew, in a new session.
            led_again = [
                int(at)
                for (at,) in fw.db.execute(
                    "SELECT c.scheduled_at FROM agent_cycles c JOIN agents a ON a.id = c.agent_id "
                    "WHERE a.pid = %s AND c.scheduled_at > %s AND c.stages LIKE '%%detect%%' "
                    "AND c.status <> 'not_leader' "
                    "ORDER BY 1",
                    [cut[1], t0 + cut[0] * INTERVAL],
                )
            ]
            cycled_after_cut = fw.db.execute(
                "SELECT COUNT(*) FROM agent_cycles c JOIN agents a ON a.id = c.agent_id "
                "WHERE a.pid = %s AND c.scheduled_at > %s",
                [cut[1], t0 + cut[0] * INTERVAL],
            ).fetchone()[0]
            sends_after_cut = fw.sends_since(cut[1], cut[2])
            cut_alive = fw.procs[cut[1]].poll() is None
        finally:
            fw.close()
            emu.stop()
        slack_keys = Counter(m["metadata"]["event_payload"]["key"] for m in slack.messages() if m.get("metadata"))
        mail_ids = Counter(m["Message-ID"] for _, m in smtp.messages())

    # No double fetch: one agent per place per minute.
    by_minute: dict[tuple[int, str, str], set[int]] = defaultdict(set)
    elsewhere = []
    for ts, account, region, pid, *_, detail, _calls in polls:
        calls = json.loads(detail)["calls"]
        if "cloudwatch:GetMetricData" in calls:  # a fetch
            by_minute[(int(ts) // 60 * 60, account, region)].add(pid)
        elif calls:
            elsewhere.append((ts, account, region, pid, calls))
    # An agent calls AWS only for the places it holds: its AssumeRole into an account is tallied
    # under the place that needed the credentials (collector/aws.py), not the account's first Region.
    assert not elsewhere, f"calls tallied under places not fetched that minute: {elsewhere[:5]}"
    twice = {k: v for k, v in by_minute.items() if len(v) > 1}
    assert not twice, (
        f"places polled by two agents in one minute: {twice}; kills (minute, pid, leader) "
        f"{[((t0 + n * INTERVAL), pid, lead) for n, pid, lead in killed]}; "
        f"{sorted((t, sorted(w)) for (t, a, r), w in by_minute.items() if (a, r) == next(iter(twice))[1:])}; "
        f"{[p for p in polls if (int(p[0]) // 60 * 60, p[1], p[2]) in twice]}"
    )

    # Takeover after the lease: a place goes unpolled for at most the lease plus the minute of the
    # kill, for each agent killed meanwhile (the agent about to take it over may be the next one
    # killed: then its own heartbeat has to expire first); without a kill, for at most the minute
    # a joining agent waits for the place's holder to let it go. Every place is polled in the
    # last minute or, moving between agents then (that same wait; seen once in make test under
    # load), the one before.
    kill_minutes = [t0 + n * INTERVAL for n, _, _ in killed]
    gaps: list[int] = []
    for account, region in sorted(places):
        minutes = sorted(t for (t, a, r) in by_minute if (a, r) == (account, region))
        assert minutes and minutes[0] == t0 and minutes[-1] >= end - INTERVAL, (
            account,
            region,
            minutes[:3],
            minutes[-3:],
        )
        for before, after in zip(minutes, minutes[1:], strict=False):
            gap = (after - before) // INTERVAL - 1
            during = sum(1 for k in kill_minutes if before <= k <= after)  # (killed after its fetch, too)
            assert gap <= max(1, (LEASE // INTERVAL + 1) * during), (account, region, before, after, during)
            gaps.append(gap)
    # Each victim's places (fetched by it the minute before its kill) are fetched by another
    # agent by the time its lease has expired at the latest.
    takeovers: list[int] = []
    for n, victim, _ in killed:
        at = t0 + n * INTERVAL
        held = {(a, r) for (t, a, r), who in by_minute.items() if t == at - INTERVAL and victim in who}
        for a, r in sorted(held):
            after = sorted(
                t for (t, a2, r2), who in by_minute.items() if (a2, r2) == (a, r) and t >= at and who - {victim}
            )
            meanwhile = sum(1 for k in kill_minutes if at < k <= after[0]) if after else 0
            assert after and after[0] <= at + (LEASE + INTERVAL) * (1 + meanwhile), (victim, a, r, at, after[:3])
            takeovers.append((after[0] - at) // INTERVAL)
    assert len(killed) == kills and takeovers, killed

    # No gap, nothing twice: each series has exactly one sample a minute, first to last.
    per_minute: dict[str, Counter[int]] = defaultdict(Counter)
    for key, ts in stamps:
        per_minute[key][int(ts) // 60 * 60] += 1
    assert len(per_minute) >= 4 * len(places), len(per_minute)
    holes = {}
    for key, counts in per_minute.items():
        want = range(min(counts), end - SETTLED + 1, 60)
        if any(counts[m] != 1 for m in want):
            holes[key] = [m for m in want if counts[m] != 1][:5]
    assert not holes, f"{len(holes)} series with a missing or doubled minute: {dict(list(holes.items())[:5])}"

    # Every page owed reached Slack once.
    # (other incidents, such as throttles the storm causes elsewhere in the account, may open and
    # resolve within a minute and owe no page: what is owed is what the notification log holds)
    paged = [i for i in incidents if i[2] != "info" and "orders-db" in i[3]]
    assert paged, f"the storm opened an incident that pages: {incidents}"
    assert set(statuses) == {"sent"}, f"every notification owed was sent, none left half-sent: {statuses}"
    assert all((i, "firing") in kinds for i, *_ in paged), (incidents, kinds)
    assert any(resolved for _, resolved, *_ in paged), f"the storm's incident resolved during the run: {incidents}"
    assert all((i, "resolved") in kinds for i, resolved, *_ in paged if resolved), (incidents, kinds)
    assert sent_keys and set(slack_keys) == sent_keys, set(slack_keys) ^ sent_keys
    assert max(slack_keys.values()) == 1, [k for k, v in slack_keys.items() if v > 1]
    # Mail cannot be looked up: one in flight at a cut goes again with the same Message-ID.
    assert mail_sent and mail_sent <= set(mail_ids) and max(mail_ids.values()) <= 2, mail_ids

    # The leader cut off: its sessions ended, it lived on and reconnected (it cycled again), and
    # sent nothing after the cut until it had won the lock again in a new session.
    _, cut_pid, _, sessions_ended = cut
    assert sessions_ended >= 1, "the leader held sessions on the server when it was cut off"
    assert cut_alive and cycled_after_cut >= 2, (cut_alive, cycled_after_cut, fw.tail(cut_pid))
    assert not sends_after_cut or led_again, sends_after_cut
    handovers = sum(1 for x, y in zip(leaders, leaders[1:], strict=False) if x != y)
    assert any(lead for *_, lead in killed) and handovers >= 1, (killed, leaders)
    chaos_kit.record(
        "agent processes SIGKILLed on PostgreSQL",
        faults_injected=len(killed),
        incidents_expected=1,
        detected=len(paged),
        notified=len(sent_keys),
        notifications_duplicated=sum(v - 1 for v in slack_keys.values()),
        samples_lost=sum(1 for _ in holes),
        restarts_survived=len(killed),
        agents=3,
        accounts=accounts,
        places=len(places),
        minutes=ticks,
        leader_handovers=handovers,
        leaders_killed=sum(1 for *_, lead in killed if lead),
        leader_cut_off_sessions_ended=sessions_ended,
        sends_by_cut_leader_before_leading_again=0 if led_again else len(sends_after_cut),
        mails=sum(mail_ids.values()),
        mails_resent_same_message_id=sum(v - 1 for v in mail_ids.values()),
        series_checked=len(per_minute),
        place_minutes_polled=len(by_minute),
        places_taken_over=len(takeovers),
        takeover_minutes_max=max(takeovers),
        unpolled_minutes_max=max(gaps, default=0),
    )
