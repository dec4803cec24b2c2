"""Run a scripted alerting timeline against a store, and kill this very process (SIGKILL) at
the Nth step of the pipeline's own work: evaluations saved, sends begun, channel sends (before
or after they reach the server) and sends recorded. Restarted, it resumes from the last step it
finished. Used by test_alert_crash.py; progress is a file next to the store.

    python -m tests.crash_driver STORE SLACK_API_URL SMTP_PORT CRASH_AT
    python -m tests.crash_driver --serve

CRASH_AT is a number (the Nth step; 0 never) or a step's name such as "after send" (the first
step of that kind this run reaches), so a test can aim a kill at each kind of step once.

With --serve it imports once, then reads one run's arguments a line (a JSON list) and runs each
in a fresh process forked for it, killed or not, answering its exit code a line (-9: killed).
The forked process is as separate as a started one (its own memory, connections and files, gone
at SIGKILL) but skips the second of imports each start cost, twenty-odd times per test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from alerts import delivery
from alerts import store as alert_store
from tests.alerting_kit import T0, World, api_errors, queue_growth, storm

STEPS = 40


def observed(step: int) -> list:
    out = []
    if 2 <= step < 16:
        out.append(api_errors())
    if 0 <= step < 20:
        out.append(storm())
    if 6 <= step < 30:
        out.append(queue_growth())
    return out


def main(argv: list[str]) -> None:
    store_path, api_url, smtp_port = Path(argv[0]), argv[1], int(argv[2])
    crash_at: int | str = int(argv[3]) if argv[3].isdigit() else argv[3]
    progress = store_path.with_suffix(".progress")
    calls = {"n": 0}

    def point(when: str) -> None:
        calls["n"] += 1
        if calls["n"] == crash_at or when == crash_at:
            with open(store_path.with_suffix(".crashes"), "a") as f:
                f.write(f"{when}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner: object, name: str, after: bool) -> None:
        original = getattr(owner, name)

        def wrapped(*args: object, **kwargs: object) -> object:
            point("before " + name)
            result = original(*args, **kwargs)
            if after:
                point("after " + name)  # the server has it; our log does not yet
            return result

        setattr(owner, name, wrapped)

    for name in ("save", "begin_send", "sent"):
        wrap(alert_store.AlertStore, name, after=False)
    wrap(delivery.SlackBot, "send", after=True)
    wrap(delivery.Smtp, "send", after=True)

    class Slack:  # the stand-in runs in the test process; this process only needs its address
        def __init__(self, url: str) -> None:
            self.api_url = url

    class Smtp:
        def __init__(self, port: int) -> None:
            self.port = port

    start = int(progress.read_text()) if progress.exists() else 0
    world = World(store_path.parent, Slack(api_url), Smtp(smtp_port))
    for step in range(start, STEPS):
        world.clock._now = float(T0 + step * 60)  # noqa: SLF001 - resume the scripted time after a restart
        world.tick(*observed(step))
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(str(step + 1))
        os.replace(tmp, progress)
    world.close()


def serve() -> None:
    for line in sys.stdin:
        pid = os.fork()  # this process runs no thread of its own: the child starts clean
        if pid == 0:
            code = 1
            try:
                main(json.loads(line))
                code = 0
            except BaseException:  # noqa: BLE001 - reported on stderr, as a started process would
                import traceback

                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:])
