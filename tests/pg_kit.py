"""A real PostgreSQL server for the tests: initdb into a temporary folder, listening only on a
Unix socket in another, a fresh database per test, stopped at the end of the session.

initdb and postgres refuse to run as root, so as root (CI) they run as Debian's `postgres`
user. Each pytest-xdist worker starts its own server in its own folders: nothing is shared
between workers, not even a port. When PostgreSQL is missing or cannot start, the tests that
need it fail with the fix (`make test` installs Debian's postgresql); they are never skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FIX = (
    "install Debian's postgresql (`make test` does: apt-get install postgresql), or point FLEETWATCH_PG_BINDIR "
    "at a folder holding PostgreSQL's initdb and postgres"
)


class PgUnavailable(Exception):
    pass


def bindir() -> Path:
    """Where initdb and postgres are: FLEETWATCH_PG_BINDIR, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    if os.environ.get("FLEETWATCH_PG_BINDIR"):
        given = Path(os.environ["FLEETWATCH_PG_BINDIR"])
        if not (given / "initdb").exists():
            raise PgUnavailable(f"FLEETWATCH_PG_BINDIR={given} holds no initdb: {FIX}")
        return given
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise PgUnavailable(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): {FIX}")
    return Path(found[-1]).parent


class PgServer:
    def __init__(self) -> None:
        self.bin = bindir()
        self.root = Path(tempfile.mkdtemp(prefix="fwpg-"))  # short: a socket path has ~100 bytes
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"
        self._n = itertools.count(1)
        self.as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable(
                    f"running as root, initdb needs the 'postgres' user, which does not exist: {FIX}"
                ) from None
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            for path in (self.root, self.sock):
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 60.0) -> PgServer:
        init = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "fleetwatch",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            **self.as_user,
        )
        if init.returncode:
            raise PgUnavailable(f"initdb failed ({init.stderr.strip()[-500:]}): {FIX}")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.sock),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "max_connections=60",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self.as_user,
            )
        # Waiting for a real server to come up: wall-clock time is what it takes, no test clock.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PgUnavailable(f"postgres exited at start: {self.log.read_text()[-800:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise PgUnavailable(
            f"postgres did not accept connections within {timeout:.0f} s: {self.log.read_text()[-800:]}"
        )

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def url(self, dbname: str) -> str:
        return f"postgresql://fleetwatch@/{dbname}?host={self.sock}"

    def new_database(self) -> str:
        """A fresh empty store's URL (per test): a schema of its own in the server's one
        database, found through the session's search_path (cheaper than CREATE DATABASE, which
        copies a template)."""
        import psycopg

        name = f"t{next(self._n)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return self.url("postgres") + f"&options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: end sessions, checkpoint, exit
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
