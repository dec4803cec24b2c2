"""What the fleet benchmarks share: the emulated fleet started in its own process (as AWS would
be, so the benchmark's own process is the agent's alone), its clock read over HTTP, and the
discovery pacer's released calls turned into figures against each documented quota
(collector/pacing.py QUOTAS, where each figure's AWS page is cited). Used by bench/collector.py
and bench/scale.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from collector.pacing import QUOTAS
from fleetwatch.clock import Clock

ROOT = Path(__file__).resolve().parents[1]
CREDS = {"aws_access_key_id": "AKIABENCHFLEETWATCH1", "aws_secret_access_key": "bench"}
START_TIMEOUT = 1800  # seconds to wait for the emulator to provision the padded fleet


class RemoteClock(Clock):
    """The emulator's fake clock, read over its control endpoint, so both sides agree on now."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def now(self) -> float:
        with urllib.request.urlopen(f"{self.endpoint}/__fleet__/clock", timeout=10) as resp:
            return float(json.loads(resp.read())["now"])

    def advance(self, seconds: float) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/__fleet__/clock", data=json.dumps({"advance": seconds}).encode(), method="POST"
        )
        urllib.request.urlopen(req, timeout=10).close()


def start_fleet(
    *,
    functions: int,
    queues: int,
    tables: int,
    databases: int,
    scenario: str = "healthy",
    timeout: float = START_TIMEOUT,
) -> tuple[subprocess.Popen[str], str]:
    """`fleetwatch emulate` on a fake clock in a child process, padded to the sizes given; returns
    (the process, its endpoint) once it serves the provisioned fleet."""
    anchor = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime())
    cmd = [
        sys.executable,
        "-m",
        "fleetwatch.cli",
        "emulate",
        "--port",
        "0",
        "--fake-clock",
        "--anchor",
        anchor,
        "--scenario",
        scenario,
        "--functions",
        str(functions),
        "--queues",
        str(queues),
        "--tables",
        str(tables),
        "--databases",
        str(databases),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"^endpoint: (http://\S+)", line)
        if match:
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the emulator did not start; run `fleetwatch emulate` with the same options to see why")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quota_use(released: list[tuple[str, float]], quiet: bool = False) -> dict[str, Any]:
    """Per quota key, from (key, release time) of every paced call: calls, the busiest hour and
    the most released within any one second, against the documented rate."""
    out: dict[str, Any] = {}
    for key in sorted({k for k, _ in released}):
        times = sorted(t for k, t in released if k == key)
        hourly = max(
            sum(1 for t in times if s <= t < s + 3600) for s in times[:: max(1, len(times) // 500)] + [times[0]]
        )
        j, peak = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - 1.0 + 1e-9:
                j += 1
            peak = max(peak, i - j + 1)
        quota = QUOTAS[key]
        out[key] = {
            "calls": len(times),
            "busiest_hour_calls": hourly,
            "peak_per_second": peak,
            "quota_per_second": quota.per_second,
            "quota_source": quota.source,
            "peak_share_of_quota": round(peak / quota.per_second, 3),
            "hour_share_of_quota": round(hourly / (quota.per_second * 3600), 3),
        }
        if not quiet:
            print(
                f"  {key}: {len(times)} calls, busiest hour {hourly} "
                f"calls ({hourly / 3600:.2f}/s), peak {peak} in one second "
                f"against a documented {quota.per_second:g}/s ({peak / quota.per_second:.0%}; {quota.source})",
                flush=True,
            )
    return out
