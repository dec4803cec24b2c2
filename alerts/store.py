"""The alert pipeline's tables: alerts, incidents and their timeline, the notification log and
its failures, silences and digests. Each write is one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlite_utils

from alerts.incidents import Incident
from alerts.notify import Sent, Silence
from alerts.state import RESOLVED, Alert
from fleetwatch.config.rules import parse_matchers
from fleetwatch.store.db import Store

_ALERT_COLUMNS = (
    "fingerprint",
    "detector",
    "resource_id",
    "key",
    "kind",
    "state",
    "severity",
    "title",
    "cause",
    "fix",
    "started_at",
    "active_since",
    "firing_since",
    "recovering_since",
    "last_seen",
    "resolved_at",
    "flaps",
    "incident_id",
)
_INCIDENT_COLUMNS = (
    "id",
    "fingerprint",
    "group_key",
    "state",
    "severity",
    "title",
    "symptom",
    "cause",
    "fix",
    "version",
    "started_at",
    "firing_at",
    "updated_at",
    "resolved_at",
    "acked_by",
    "acked_at",
    "absorbed_into",
    "cause_title",
    "symptom_alert",
    "cause_alert",
)


def _alert(row: dict[str, Any]) -> Alert:
    a = Alert(**{c: row[c] for c in _ALERT_COLUMNS})
    a.evidence, a.labels = json.loads(row["evidence"] or "{}"), json.loads(row["labels"] or "{}")
    return a


KEEP_RESOLVED = 8 * 86400


def _insert_id(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    """Insert one row into a table keyed by an integer id; the id it was given."""
    pk = db.table(table).insert(row).last_pk
    assert pk is not None  # an integer primary key is always assigned
    return int(pk)


class AlertStore:
    def __init__(self, store: Store, fence: Callable[[Any], None] | None = None) -> None:
        self.store = store
        self.db = store.db
        # Called inside each notification-log write's transaction, before the write: with
        # several agents (fleetwatch.cluster), it raises unless this agent still holds the
        # alerting leader's lock, so a leader that lost it cannot begin, settle or log a send.
        self.fence = fence or (lambda db: None)

    # -- alerts ------------------------------------------------------------------------------

    def alerts(self) -> dict[str, Alert]:
        """Every alert that is not resolved."""
        sql, args = "SELECT * FROM alerts WHERE state != ?", [RESOLVED]
        return {a.fingerprint: a for a in map(_alert, self.db.query(sql, args))}

    def alert_rows(self, fingerprints: Iterable[str]) -> list[Alert]:
        fps = list(fingerprints)
        if not fps:
            return []
        rows = self.db.query(f"SELECT * FROM alerts WHERE fingerprint IN ({','.join('?' * len(fps))})", fps)
        out = [_alert(row) for row in rows]
        order = {fp: i for i, fp in enumerate(fps)}
        return sorted(out, key=lambda a: order[a.fingerprint])

    # -- incidents ---------------------------------------------------------------------------

    def incidents(self, open_only: bool = False) -> list[Incident]:
        return self._incidents("resolved_at IS NULL" if open_only else "1 = 1", [])

    def open_incidents(self) -> dict[int, Incident]:
        return {i.id: i for i in self._incidents("resolved_at IS NULL", []) if i.id is not None}

    def incidents_to_settle(self, since: int) -> list[Incident]:
        """Open incidents, and those that ended since `since` (they may still owe a resolved)."""
        return self._incidents("resolved_at IS NULL OR resolved_at >= ?", [since])

    def incident(self, incident_id: int) -> Incident | None:
        got = self._incidents("id = ?", [incident_id])
        return got[0] if got else None

    def _incidents(self, where: str, args: list[Any]) -> list[Incident]:
        out = []
        for row in self.db.query(f"SELECT * FROM incidents WHERE {where} ORDER BY id", args):
            inc = Incident(**{c: row[c] for c in _INCIDENT_COLUMNS})
            inc.labels, inc.members, inc.joinable = (
                json.loads(row["labels"]),
                json.loads(row["members"]),
                bool(row["joinable"]),
            )
            out.append(inc)
        return out

    def save(self, alerts: dict[str, Alert], incidents: Sequence[Incident], now: int) -> None:
        """Alerts and incidents of one evaluation, with the incidents' new timeline events, in one
        transaction. New incidents get their ids here, and so do the alerts that opened them.
        Fenced like the notification log: a leader whose lock session ended mid-cycle must not write
        incidents beside the next leader's (two passes over one minute would open one problem twice)."""
        with self.store.transaction() as db:
            self.fence(db)
            for inc in incidents:
                row = {c: getattr(inc, c) for c in _INCIDENT_COLUMNS if c != "id"}
                row.update(
                    labels=json.dumps(inc.labels, sort_keys=True),
                    members=json.dumps(inc.members),
                    joinable=int(inc.joinable),
                )
                if inc.id is None:
                    inc.id = _insert_id(db, "incidents", row)
                else:
                    db.table("incidents").update(inc.id, row)
                for fp in inc.live:
                    if fp in alerts:
                        alerts[fp].incident_id = inc.id
                for event, detail in inc.events:
                    db.table("incident_events").insert(
                        {"incident_id": inc.id, "ts": now, "event": event, "detail": detail}
                    )
                inc.events = []
            rows = []
            for a in alerts.values():
                row = {c: getattr(a, c) for c in _ALERT_COLUMNS}
                row.update(evidence=json.dumps(a.evidence), labels=json.dumps(a.labels, sort_keys=True), updated_at=now)
                rows.append(row)
            if rows:
                db.table("alerts").upsert_all(rows, pk="fingerprint", alter=False)
            # Resolved alerts are kept eight days, so the weekly digest counts their flaps; older
            # ones carry nothing a later pass or digest needs.
            db.execute("DELETE FROM alerts WHERE state = ? AND resolved_at < ?", [RESOLVED, now - KEEP_RESOLVED])

    def acknowledge(self, incident_id: int, who: str, now: int) -> bool:
        with self.store.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET acked_by = ?, acked_at = ? WHERE "
                "id = ? AND acked_at IS NULL AND resolved_at IS NULL",
                [who, now, incident_id],
            )
            if cur.rowcount:
                db.table("incident_events").insert(
                    {"incident_id": incident_id, "ts": now, "event": "acknowledged", "detail": who}
                )
            return bool(cur.rowcount)

    def events(self, incident_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT ts, event, detail FROM incident_events WHERE incident_id = ? ORDER BY ts, id", [incident_id]
            )
        )

    # -- the notification log ------------------------------------------------------------------

    def history(self, incident_id: int, target: str) -> list[Sent]:
        return [
            Sent(r["kind"], r["version"] or "", r["sent_at"], r["external_id"] or "", r["thread_id"] or "")
            for r in self.db.query(
                "SELECT * FROM notifications WHERE incident_id = ? AND target = ? AND status = 'sent' ORDER BY id",
                [incident_id, target],
            )
        ]

    def unknown_sends(self) -> list[dict[str, Any]]:
        """Sends that started but never finished (the agent stopped in between)."""
        return list(self.db.query("SELECT * FROM notifications WHERE status = 'sending' ORDER BY id"))

    def begin_send(self, key: str, incident_id: int, target: str, kind: str, version: str, now: int) -> None:
        with self.store.transaction() as db:
            self.fence(db)
            db.table("notifications").insert(
                {
                    "key": key,
                    "incident_id": incident_id,
                    "target": target,
                    "kind": kind,
                    "version": version,
                    "status": "sending",
                    "sent_at": now,
                },
                replace=True,
            )

    def sent(self, key: str, external_id: str, thread_id: str, now: int) -> None:
        with self.store.transaction() as db:
            self.fence(db)
            db.execute(
                "UPDATE notifications SET status = 'sent', sent_at = ?, external_id = ?, thread_id = ? WHERE key = ?",
                [now, external_id, thread_id, key],
            )

    def interrupted(self, key: str) -> None:
        """A send the agent stopped in the middle of, not found delivered: kept as 'unknown' (not in
        the history, so it is owed again) to say the target may have missed it."""
        with self.store.transaction() as db:
            self.fence(db)
            db.execute("UPDATE notifications SET status = 'unknown' WHERE key = ? AND status = 'sending'", [key])

    def was_interrupted(self, incident_id: int, target: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM notifications WHERE incident_id = ? AND target = ? AND status = 'unknown' LIMIT 1",
                [incident_id, target],
            ).fetchone()
            is not None
        )

    def failed(self, key: str, incident_id: int, target: str, kind: str, attempts: int, error: str, now: int) -> None:
        with self.store.transaction() as db:
            self.fence(db)
            db.execute("DELETE FROM notifications WHERE key = ? AND status = 'sending'", [key])
            # One row per incident, target and kind: a channel that stays down adds attempts, not rows.
            cur = db.execute(
                "UPDATE notification_failures SET attempts = attempts + ?, error = ?, failed_at = ? "
                "WHERE incident_id = ? AND target = ? AND kind = ?",
                [attempts, error[:2000], now, incident_id, target, kind],
            )
            if not cur.rowcount:
                db.table("notification_failures").insert(
                    {
                        "incident_id": incident_id,
                        "target": target,
                        "kind": kind,
                        "attempts": attempts,
                        "error": error[:2000],
                        "failed_at": now,
                    }
                )

    def last_failure(self, incident_id: int, target: str) -> int | None:
        row = self.db.execute(
            "SELECT MAX(failed_at) FROM notification_failures WHERE incident_id = ? AND target = ?",
            [incident_id, target],
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def notifications(self, incident_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT target, kind, status, sent_at FROM notifications WHERE incident_id = ? ORDER BY id",
                [incident_id],
            )
        )

    # -- silences ------------------------------------------------------------------------------

    def add_silence(self, matchers: str, starts_at: int, ends_at: int, author: str, comment: str, now: int) -> int:
        parse_matchers(matchers)  # refuse what cannot be matched, before it is stored
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        with self.store.transaction() as db:
            return _insert_id(
                db,
                "silences",
                {
                    "matchers": matchers,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "author": author,
                    "comment": comment,
                    "created_at": now,
                },
            )

    def expire_silence(self, silence_id: int, now: int) -> bool:
        with self.store.transaction() as db:
            cur = db.execute(
                "UPDATE silences SET ends_at = ?, expired_at = ? WHERE id = ? AND ends_at > ?",
                [now, now, silence_id, now],
            )
            return bool(cur.rowcount)

    def silences(self, now: int | None = None) -> list[Silence]:
        sql, args = "SELECT * FROM silences", []
        if now is not None:
            sql, args = sql + " WHERE ends_at > ?", [now]
        return [
            Silence(r["id"], parse_matchers(r["matchers"]), r["starts_at"], r["ends_at"])
            for r in self.db.query(sql, args)
        ]
