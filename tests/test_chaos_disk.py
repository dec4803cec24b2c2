"""The store's disk fills up under a running agent, and the store file is read-only at start.

Disk full is real to the agent: its file-size limit (RLIMIT_FSIZE, set on the running child with
prlimit) makes the kernel refuse writes past a few kilobytes, as a full disk refuses them, and
SQLite reports "database or disk is full" or a disk I/O error. The agent says so in its log, keeps
running, loses nothing, and when space returns (the limit lifted) fills the gap it could not store.

Read-only: the file's write permission is removed. The tests run as root, which ignores
permissions, so the child runs without CAP_DAC_OVERRIDE: it meets the permission as any user would."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sqlite3
import stat
from pathlib import Path
from typing import Any

from tests import chaos_kit
from tests.agent_kit import LogLines, agent_env, spawn_run
from tests.conftest import control, set_clock

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _ignore_sigxfsz() -> None:
    # Past the limit the kernel sends SIGXFSZ, which would kill the child; ignored, the write
    # fails with EFBIG instead, which SQLite reports as a full disk or an I/O error.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _as_unprivileged() -> None:
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def minutes(db: Path, metric: str) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            ts
            for (ts,) in conn.execute(
                "SELECT x.ts FROM samples x JOIN series s ON s.id = x.series_id WHERE s.metric = ? AND s.period = 60",
                [metric],
            )
        }
    finally:
        conn.close()


def test_disk_full_under_a_running_agent_a_clear_error_no_corruption_and_recovery(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = fleet.model.incident_labels()
    set_clock(fleet, int(label["start"]) // 60 * 60 - 30 * 60)
    db = tmp_path / "fw.db"
    env = agent_env(fleet, db, FLEETWATCH_SCOPE_INCLUDE_TAGS="service=orders,service=checkout")
    full_polls = chaos_kit.size(3, 10)
    proc = spawn_run(
        env, "--emulated-clock", "--no-dashboard", "--polls", str(4 + full_polls + 4), preexec_fn=_ignore_sigxfsz
    )
    try:
        lines = LogLines(proc)
        for _ in range(4):
            lines.wait_for("poll finished")
        before = minutes(db, "ConcurrentExecutions")
        full_from = int(fleet.model.clock.now())
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))  # the disk fills
        errors = [lines.wait_for("cycle failed") for _ in range(full_polls)]
        assert proc.poll() is None, "the agent kept running"
        full_until = int(fleet.model.clock.now())
        resource.prlimit(
            proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )  # space returns
        lines.wait_for("poll finished", timeout=120)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all("disk is full" in e["message"] for e in errors), [e["message"] for e in errors]
    message = errors[0]["message"]
    assert str(db) in message and "free some space" in message and "Nothing already stored was lost" in message
    assert chaos_kit.integrity(db) == "ok"
    after = minutes(db, "ConcurrentExecutions")
    assert before <= after, "samples stored before the disk filled are all still there"
    gap = set(range(full_from // 60 * 60, full_until // 60 * 60, 60))
    assert before and len(gap) >= full_polls - 1 and gap <= after, f"minutes never stored: {sorted(gap - after)[:5]}"
    conn = sqlite3.connect(db)
    statuses = [s for (s,) in conn.execute("SELECT status FROM agent_cycles ORDER BY id")]
    conn.close()
    assert statuses[-1] == "ok"
    chaos_kit.record(
        "disk full under the agent",
        faults_injected=full_polls,
        samples_lost=len(gap - after),
        failed_cycles_logged=len(errors),
        minutes_backfilled=len(gap),
    )


def test_a_read_only_store_is_refused_at_start_untouched_and_used_once_writable(fleet: Any, tmp_path: Path) -> None:
    db = tmp_path / "fw.db"
    env = agent_env(fleet, db, FLEETWATCH_SCOPE_INCLUDE_TAGS="service=orders,service=checkout")
    first = spawn_run(env, "--emulated-clock", "--no-dashboard", "--polls", "2")
    assert first.wait(timeout=120) == 0
    assert first.stdout is not None and first.stderr is not None
    first.stdout.close()
    first.stderr.close()
    data = db.read_bytes()
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        proc = spawn_run(env, "--emulated-clock", "--no-dashboard", "--polls", "1", preexec_fn=_as_unprivileged)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        assert "read-only" in err and f"chmod u+w {db}" in err and "Traceback" not in err
        assert db.read_bytes() == data, "the store was not touched"
        assert not Path(f"{db}-shm").exists(), "nothing opened it, not even read-only (that leaves a read-only -shm)"
        # The folder read-only instead: the same, naming the folder.
        db.chmod(0o644)
        tmp_path.chmod(0o555)
        proc = spawn_run(env, "--emulated-clock", "--no-dashboard", "--polls", "1", preexec_fn=_as_unprivileged)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and str(tmp_path) in err and "Traceback" not in err, err
    finally:
        tmp_path.chmod(0o755)
        db.chmod(0o644)
    assert chaos_kit.integrity(db) == "ok"
    proc = spawn_run(env, "--emulated-clock", "--no-dashboard", "--polls", "1", preexec_fn=_as_unprivileged)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    chaos_kit.record("read-only store and folder", bad_inputs_tried=2, handled=2)
