"""One agent per store. Two agents polling into one store would poll twice, detect twice and
notify twice, so the second refuses to start and names the process that holds the store.

The lock is an advisory `flock` on `<store>.lock`, so the kernel drops it when its holder dies,
even by SIGKILL: there is never a stale lock to clean up by hand. The file records who holds it
(pid, host, command, since when) only so the refusal can say so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from fleetwatch.store.errors import LockHeld

__all__ = ["LockHeld", "StoreLock", "holder", "store_lock"]


class StoreLock:
    """Hold with `with StoreLock(store_path, "fleetwatch run"):`; raises LockHeld if taken."""

    def __init__(self, store_path: str | Path, command: str = "") -> None:
        self.path = Path(f"{store_path}.lock")
        self.command = command or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "since": int(time.time())}
        ).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays: unlinking it would let a third process lock a fresh inode while a
        # second still waits on the old one. Emptying it says nobody holds it.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def store_lock(target: str | Path, command: str = "", shared: bool = False) -> Any:
    """The lock of a store: this file lock beside a SQLite file, or for a PostgreSQL store
    (store.url) an advisory lock in its database (fleetwatch.store.pg.PgStoreLock), which
    `shared` takes shared: several `fleetwatch run` on one PostgreSQL store (a SQLite store has
    one agent, and its lock is always exclusive)."""
    from fleetwatch.store.dialect import is_url

    if is_url(target):
        from fleetwatch.store.pg import PgStoreLock

        return PgStoreLock(str(target), command, shared=shared)
    return StoreLock(target, command)


def holder(store_path: str | Path) -> dict[str, Any] | None:
    """Who holds the store's lock, or None if nobody does."""
    path = Path(f"{store_path}.lock")
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}
