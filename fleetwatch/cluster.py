"""Several agents on one PostgreSQL store (issue 20, stage 1): who is alive, who polls which
place, and who alone runs detection, alerting, delivery, the digest and retention.

The agent (fleetwatch.agent.loop) runs a `Cluster` when its store is PostgreSQL; with SQLite it
runs none: one agent, and it is the leader.

- **Heartbeats.** Each agent upserts its row in `agents` every cycle; an agent whose last beat
  is older than `ttl` is dead.
- **Places by rendezvous hashing.** A place (account, region) belongs to the live agent with
  the highest hash of (agent, place): every agent computes the same owner from the same list,
  and an agent joining or leaving moves only the places it gains or held.
- **Leases.** Polling a place needs its lease in `place_leases`, renewed each cycle. An agent
  takes a place only when the lease is free, its own or expired, and gives up at once a place
  it no longer owns; so no two agents ever hold one place (no double fetch), and the next
  holder resumes from the place's cursors (no gap).
- **Alerting leader.** A session advisory lock on a connection of its own: the server frees it
  when the leader's session ends, its death by SIGKILL included, and `held()` asks the server,
  so a leader cut off from the database knows it is no longer one before it sends anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

from fleetwatch.store.db import Store, StoreError

log = logging.getLogger("fleetwatch.cluster")

Place = tuple[str, str]  # (account, region)
# The alerting leader's advisory lock: pg_advisory_lock(LEADER_LOCK, hashtext(current_schema()))
# ("FWLD"), so stores in two schemas of one database have a leader each.
LEADER_LOCK = 0x46574C44
# The lock as pg_locks shows it (two int4 keys: classid, objid as unsigned oids, objsubid 2).
HELD_SQL = (
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = {p} AND objid = {p} AND objsubid = 2 "
    "AND pid = {p} AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def rendezvous_owner(place: Place, agents: Iterable[str]) -> str | None:
    """The agent a place belongs to: the highest sha256 of (agent, account, region)."""
    account, region = place
    return max(agents, key=lambda a: hashlib.sha256(f"{a}\0{account}\0{region}".encode()).digest(), default=None)


class Membership:
    """One agent's heartbeat and leases in the shared store. Every time is the caller's clock."""

    def __init__(self, store: Store, agent_id: str, *, ttl: int = 180, lease: int = 180) -> None:
        self.store, self.agent_id, self.ttl, self.lease = store, agent_id, ttl, lease

    def heartbeat(self, now: int) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO agents (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                [self.agent_id, socket.gethostname(), os.getpid(), now, now],
            )

    def live(self, now: int) -> list[str]:
        return [
            r[0]
            for r in self.store.db.execute("SELECT id FROM agents WHERE heartbeat_at > ? ORDER BY id", [now - self.ttl])
        ]

    def renew(self, places: Iterable[Place], now: int) -> set[Place]:
        """Beat, give up the places this agent no longer owns, and take or renew the leases of
        those it owns and may hold; one transaction. Returns the places it holds until
        now + lease: those, and only those, it polls this cycle."""
        self.heartbeat(now)
        live = self.live(now)
        if self.agent_id not in live:
            raise StoreError(
                f"agent {self.agent_id}'s heartbeat is older than {self.ttl} s by the store's rows; "
                "check that the agents' clocks agree"
            )
        mine = {p for p in places if rendezvous_owner(p, live) == self.agent_id}
        held: set[Place] = set()
        with self.store.transaction() as db:
            for account, region in db.execute(
                "SELECT account, region FROM place_leases WHERE agent_id = ?", [self.agent_id]
            ).fetchall():
                if (account, region) not in mine:
                    db.execute(
                        "DELETE FROM place_leases WHERE account = ? AND region = ? AND agent_id = ?",
                        [account, region, self.agent_id],
                    )
            for account, region in sorted(mine):
                got = db.execute(
                    "INSERT INTO place_leases (account, region, agent_id, expires_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (account, region) DO UPDATE SET agent_id "
                    "= excluded.agent_id, expires_at = excluded.expires_at "
                    "WHERE place_leases.agent_id = excluded.agent_id "
                    "OR place_leases.expires_at <= ? RETURNING agent_id",
                    [account, region, self.agent_id, now + self.lease, now],
                ).fetchone()
                if got:
                    held.add((account, region))
        return held

    def leave(self) -> None:
        """A clean stop: the places go to the others at their next cycle, without waiting for the lease."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM place_leases WHERE agent_id = ?", [self.agent_id])
            db.execute("DELETE FROM agents WHERE id = ?", [self.agent_id])


class Leadership:
    """The alerting leader's advisory lock, on a session of its own (PostgreSQL only)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None
        self.key = 0  # hashtext(current_schema()) of the store's schema

    def try_lead(self) -> bool:
        """Take the lock if it is free; True while this agent holds it."""
        import psycopg

        from fleetwatch.store.pgdb import connect, explain

        if self.held():
            return True
        try:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.url)
                self.key = int(self.conn.execute("SELECT hashtext(current_schema())").fetchone()[0])
            return bool(self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [LEADER_LOCK, self.key]).fetchone()[0])
        except psycopg.Error as exc:
            self.close()
            raise explain(self.url, exc) from exc

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's session (None before the first try_lead)."""
        return None if self.conn is None or self.conn.closed else self.conn.info.backend_pid

    def held(self) -> bool:
        """Asks the server whether this session still holds the lock: False once the session is
        gone (terminated, or the network cut), whatever this process last believed."""
        import psycopg

        if self.conn is None or self.conn.closed:
            return False
        try:
            return (
                self.conn.execute(HELD_SQL.format(p="%s"), self.lock_args(self.conn.info.backend_pid)).fetchone()
                is not None
            )
        except psycopg.Error:
            self.close()
            return False

    def lock_args(self, pid: int) -> list[int]:
        return [LEADER_LOCK, self.key & 0xFFFFFFFF, pid]

    def close(self) -> None:
        """Give the lock up and end the session. The unlock is explicit because the server frees
        a closed session's locks only once its backend has read the goodbye, a moment after
        close() returns; another agent asking in that moment would find the lock still held."""
        import psycopg

        if self.conn is not None:
            if not self.conn.closed:
                try:
                    self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", [LEADER_LOCK, self.key])
                except psycopg.Error:
                    pass  # the session is already gone, and its locks with it
            self.conn.close()
            self.conn = None


class NotLeader(StoreError):
    """A leader's write refused: its lock's session is gone (terminated, cut off, or taken over)."""


class Cluster:
    """One agent's part in several agents on one PostgreSQL store: every cycle it beats and
    renews the leases of the places it owns (`own`), and asks to be the alerting leader (`lead`).
    The leader's notification-log writes pass `fence` in their own transaction.

    The heartbeat's TTL and the leases run for `lease_cycles` poll intervals: an agent that
    misses that many cycles is dead to the others, who take its places over from their cursors."""

    def __init__(
        self, store: Store, url: str, interval: float, *, agent_id: str | None = None, lease_cycles: int = 3
    ) -> None:
        span = int(interval * lease_cycles)
        self.agent_id = agent_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.membership = Membership(store, self.agent_id, ttl=span, lease=span)
        self.leadership = Leadership(url)
        self.held: set[Place] = set()
        self.leading = False

    def own(self, places: Iterable[Place], now: int) -> set[Place]:
        """Renew this agent's leases: the places it polls this cycle."""
        held = self.membership.renew(places, now)
        if held != self.held:
            log.info("agent %s polls %d place(s)", self.agent_id, len(held), extra={"agent_id": self.agent_id})
        self.held = held
        return held

    def lead(self) -> bool:
        """True while this agent is the alerting leader (takes the lock when it is free)."""
        leading = self.leadership.try_lead()
        if leading != self.leading:
            log.info(
                "agent %s %s the alerting leader",
                self.agent_id,
                "is now" if leading else "is no longer",
                extra={"agent_id": self.agent_id},
            )
        self.leading = leading
        return leading

    def fence(self, db: Any) -> None:
        """Inside a write's transaction: raise NotLeader unless the leader lock is granted to
        this agent's lock session right now (the server's pg_locks, not this process's belief)."""
        pid = self.leadership.backend_pid
        row = None if pid is None else db.execute(HELD_SQL.format(p="?"), self.leadership.lock_args(pid)).fetchone()
        if row is None:
            self.leading = False
            raise NotLeader(
                f"agent {self.agent_id} is no longer the alerting leader (its lock's session ended); "
                "nothing is sent, and the next leader recovers what was in flight"
            )

    def close(self, *, leave: bool = True) -> None:
        """A clean stop: give the places and the lock up at once (a killed agent's go when its
        lease runs out and the server ends its session)."""
        try:
            if leave:
                self.membership.leave()
        finally:
            self.leadership.close()
