"""Named, ordered migrations. Each runs in its own transaction together with the row that
records it and the schema version in the file header, so a crash leaves either the old schema
or the new one, never half of it.

Append only: never edit or reorder a migration that has shipped.

Every migration runs on both backends: `db` is a sqlite_utils Database, or for PostgreSQL a
fleetwatch.store.pgdb.PgDatabase that answers the same `db.table(name).create / add_column /
create_index / drop` calls and `db.execute` with SQLite-style `?` SQL. Write new migrations with
those calls, or SQL both understand; branch on `is_postgres(db)` only for what cannot be shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

# PRAGMA application_id marks the file as ours ("FWAT"), so we can refuse files that are not.
APPLICATION_ID = 0x46574154


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def is_postgres(db: object) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgresql"


def _initial(db: sqlite_utils.Database) -> None:
    db.table("resources").create(
        {
            "id": str,
            "account": str,
            "region": str,
            "kind": str,
            "name": str,
            "arn": str,
            "facts": str,
            "tags": str,
            "first_seen": int,
            "last_seen": int,
            "gone_at": int,
        },
        pk="id",
        not_null={"account", "region", "kind", "name", "first_seen", "last_seen"},
        defaults={"facts": "{}", "tags": "{}"},
    )
    db.table("resources").create_index(["kind"])
    db.table("resources").create_index(["account", "region"])
    db.table("series").create(
        {
            "id": int,
            "key": str,
            "resource_id": str,
            "namespace": str,
            "metric": str,
            "dimensions": str,
            "stat": str,
            "period": int,
            "unit": str,
        },
        pk="id",
        not_null={"key", "namespace", "metric", "stat", "period"},
        foreign_keys=[("resource_id", "resources", "id")],
    )
    db.table("series").create_index(["key"], unique=True)
    db.table("series").create_index(["resource_id"])
    # Keyed by (series, timestamp) so re-reading a window upserts instead of duplicating.
    if is_postgres(db):
        # One partition per UTC day (fleetwatch.store.pg makes them as samples arrive), so
        # retention drops whole partitions instead of deleting rows.
        db.execute(
            "CREATE TABLE samples (series_id BIGINT NOT NULL REFERENCES series(id), ts BIGINT NOT NULL, "
            "value DOUBLE PRECISION NOT NULL, PRIMARY KEY (series_id, ts)) PARTITION BY RANGE (ts)"
        )
    else:
        db.execute(
            "CREATE TABLE samples (series_id INTEGER NOT NULL REFERENCES series(id), ts INTEGER NOT NULL, "
            "value REAL NOT NULL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
        )
    db.execute("CREATE INDEX samples_ts ON samples(ts)")
    db.table("poll_log").create(
        {
            "id": int,
            "started_at": int,
            "finished_at": int,
            "source": str,
            "account": str,
            "region": str,
            "status": str,
            "error": str,
            "api_calls": int,
            "metrics_requested": int,
            "cost_usd": float,
            "samples_written": int,
        },
        pk="id",
        not_null={"started_at", "source", "status"},
        defaults={"api_calls": 0, "metrics_requested": 0, "cost_usd": 0.0, "samples_written": 0},
    )
    db.table("poll_log").create_index(["started_at"])


def _alerting(db: sqlite_utils.Database) -> None:
    db.table("findings").create(
        {
            "id": int,
            "ts": int,
            "detector": str,
            "resource_id": str,
            "severity": str,
            "title": str,
            "fingerprint": str,
            "evidence": str,
            "labels": str,
        },
        pk="id",
        not_null={"ts", "detector", "severity", "title", "fingerprint"},
        defaults={"evidence": "{}", "labels": "{}"},
    )
    db.table("findings").create_index(["fingerprint", "ts"])
    db.table("incidents").create(
        {
            "id": int,
            "fingerprint": str,
            "state": str,
            "severity": str,
            "title": str,
            "cause": str,
            "labels": str,
            "started_at": int,
            "updated_at": int,
            "resolved_at": int,
            "acked_by": str,
            "acked_at": int,
        },
        pk="id",
        not_null={"fingerprint", "state", "severity", "title", "started_at", "updated_at"},
        defaults={"labels": "{}"},
    )
    db.table("incidents").create_index(["fingerprint"], unique=True)
    db.table("incidents").create_index(["state"])
    # The notification log: a row is written only after a send succeeded.
    db.table("notifications").create(
        {
            "id": int,
            "incident_id": int,
            "channel": str,
            "kind": str,
            "sent_at": int,
            "digest": str,
            "external_id": str,
        },
        pk="id",
        not_null={"incident_id", "channel", "kind", "sent_at"},
        foreign_keys=[("incident_id", "incidents", "id")],
    )
    db.table("notifications").create_index(["incident_id", "channel"])
    db.table("silences").create(
        {
            "id": int,
            "matchers": str,
            "starts_at": int,
            "ends_at": int,
            "author": str,
            "comment": str,
            "created_at": int,
            "expired_at": int,
        },
        pk="id",
        not_null={"matchers", "starts_at", "ends_at", "author", "created_at"},
    )


def _rollups(db: sqlite_utils.Database) -> None:
    pg = is_postgres(db)
    integer, real = ("BIGINT", "DOUBLE PRECISION") if pg else ("INTEGER", "REAL")
    db.execute(
        f"CREATE TABLE rollups (series_id {integer} NOT NULL REFERENCES series(id), ts {integer} NOT NULL, "
        f"count {integer} NOT NULL, sum {real} NOT NULL, min {real} NOT NULL, max {real} NOT NULL, "
        f"PRIMARY KEY (series_id, ts)){'' if pg else ' WITHOUT ROWID'}"
    )
    db.execute("CREATE INDEX rollups_ts ON rollups(ts)")


def _cursors(db: sqlite_utils.Database) -> None:
    # How far each place's tier is collected: the next start resumes here, without a gap and
    # without fetching again what is stored. A backfill chunk and its cursor commit together.
    db.table("cursors").create(
        {"account": str, "region": str, "tier": str, "covered_until": int, "updated_at": int},
        pk=("account", "region", "tier"),
        not_null={"covered_until", "updated_at"},
    )
    db.table("poll_log").add_column("detail", str)
    db.table("poll_log").add_column("poll_id", str)
    db.table("poll_log").create_index(["poll_id"])


def _detector_runs(db: sqlite_utils.Database) -> None:
    db.table("findings").add_column("started_at", int)
    db.table("findings").add_column("cause", str)
    db.table("findings").add_column("fix", str)
    db.table("findings").add_column("pass_id", str)
    # One row per detector and pass: ok or errored (with the message), and its NoData resources.
    db.table("detector_runs").create(
        {
            "id": int,
            "pass_id": str,
            "ts": int,
            "detector": str,
            "status": str,
            "error": str,
            "findings": int,
            "nodata": str,
            "seconds": float,
        },
        pk="id",
        not_null={"pass_id", "ts", "detector", "status"},
        defaults={"findings": 0, "nodata": "[]"},
    )
    db.table("detector_runs").create_index(["ts"])


def _incidents(db: sqlite_utils.Database) -> None:
    # 0002 sketched incidents and notifications before anything wrote them; they are empty, and
    # replaced here by the shapes the alert pipeline uses.
    for table in ("notifications", "incidents"):
        db.table(table).drop(ignore=True)
    # One row per alert: a finding's identity (detector, resource, key) and its state machine.
    db.table("alerts").create(
        {
            "fingerprint": str,
            "detector": str,
            "resource_id": str,
            "key": str,
            "kind": str,
            "labels": str,
            "state": str,
            "severity": str,
            "title": str,
            "cause": str,
            "fix": str,
            "evidence": str,
            "started_at": int,
            "active_since": int,
            "firing_since": int,
            "recovering_since": int,
            "last_seen": int,
            "resolved_at": int,
            "flaps": int,
            "incident_id": int,
            "updated_at": int,
        },
        pk="fingerprint",
        not_null={"detector", "state", "severity", "title", "updated_at"},
        defaults={"labels": "{}", "evidence": "{}", "flaps": 0, "kind": "finding"},
    )
    db.table("alerts").create_index(["state"])
    # One row per incident episode; its fingerprint is the hash of its group's labels, and only
    # one episode per fingerprint is open at a time.
    db.table("incidents").create(
        {
            "id": int,
            "fingerprint": str,
            "group_key": str,
            "state": str,
            "severity": str,
            "title": str,
            "symptom": str,
            "cause": str,
            "fix": str,
            "labels": str,
            "members": str,
            "version": str,
            "started_at": int,
            "firing_at": int,
            "updated_at": int,
            "resolved_at": int,
            "acked_by": str,
            "acked_at": int,
            "absorbed_into": int,
            "joinable": int,
        },
        pk="id",
        not_null={"fingerprint", "group_key", "state", "severity", "title", "started_at", "updated_at"},
        defaults={"labels": "{}", "members": "[]", "joinable": 0},
    )
    db.execute("CREATE UNIQUE INDEX incidents_open ON incidents(fingerprint) WHERE resolved_at IS NULL")
    db.table("incidents").create_index(["state"])
    db.table("incidents").create_index(["resolved_at"])
    db.table("incident_events").create(
        {"id": int, "incident_id": int, "ts": int, "event": str, "detail": str},
        pk="id",
        not_null={"incident_id", "ts", "event"},
        foreign_keys=[("incident_id", "incidents", "id")],
    )
    db.table("incident_events").create_index(["incident_id", "ts"])
    # The notification log. A row is written as 'sending' just before a send and becomes 'sent'
    # only after the send succeeded; a failed send deletes it. What is owed is computed from the
    # incidents and the 'sent' rows, so a restart neither repeats nor drops anything.
    db.table("notifications").create(
        {
            "id": int,
            "key": str,
            "incident_id": int,
            "target": str,
            "kind": str,
            "version": str,
            "status": str,
            "sent_at": int,
            "external_id": str,
            "thread_id": str,
        },
        pk="id",
        not_null={"key", "incident_id", "target", "kind", "status", "sent_at"},
        foreign_keys=[("incident_id", "incidents", "id")],
    )
    db.table("notifications").create_index(["key"], unique=True)
    db.table("notifications").create_index(["incident_id", "target"])
    db.table("notification_failures").create(
        {"id": int, "incident_id": int, "target": str, "kind": str, "attempts": int, "error": str, "failed_at": int},
        pk="id",
        not_null={"target", "kind", "attempts", "error", "failed_at"},
    )
    db.table("notification_failures").create_index(["failed_at"])
    db.table("silences").create_index(["ends_at"])
    db.table("digests").create(
        {"id": int, "period": str, "due_at": int, "sent_at": int, "targets": str, "status": str, "error": str},
        pk="id",
        not_null={"period", "due_at", "status"},
    )
    db.table("digests").create_index(["period"], unique=True)


def _agent_cycles(db: sqlite_utils.Database) -> None:
    # One row per cycle of `fleetwatch run` (poll, detect, alert): when it was due, when it ran,
    # how it ended, and whether it overran its interval (the next one then starts late).
    db.table("agent_cycles").create(
        {
            "id": int,
            "poll_id": str,
            "scheduled_at": int,
            "started_at": int,
            "finished_at": int,
            "status": str,
            "error": str,
            "lag": float,
            "seconds": float,
            "overrun": float,
            "skipped": int,
            "findings": int,
            "sent": int,
            "failed": int,
        },
        pk="id",
        not_null={"scheduled_at", "started_at", "status"},
        defaults={"overrun": 0.0, "skipped": 0},
    )
    db.table("agent_cycles").create_index(["scheduled_at"])


def _incident_lead(db: sqlite_utils.Database) -> None:
    # What the incident's title said of its cause, kept once that cause has ended, so the
    # incident goes on naming it (its symptom's is kept in `symptom` already).
    db.table("incidents").add_column("cause_title", str, not_null_default="")
    # Which alerts the title names (so it keeps naming them while they are live).
    db.table("incidents").add_column("symptom_alert", str, not_null_default="")
    db.table("incidents").add_column("cause_alert", str, not_null_default="")


def _agents(db: sqlite_utils.Database) -> None:
    # Several agents on one (PostgreSQL) store, fleetwatch.cluster: each live agent's heartbeat,
    # and which agent holds each place (account, region) until when.
    db.table("agents").create(
        {"id": str, "host": str, "pid": int, "started_at": int, "heartbeat_at": int},
        pk="id",
        not_null={"started_at", "heartbeat_at"},
    )
    db.table("place_leases").create(
        {"account": str, "region": str, "agent_id": str, "expires_at": int},
        pk=("account", "region"),
        not_null={"agent_id", "expires_at"},
    )


def _cycle_stages(db: sqlite_utils.Database) -> None:
    # Each cycle's stage times, JSON: {"poll": {"seconds": .., "cpu_seconds": ..}, "detect": ..}.
    db.table("agent_cycles").add_column("stages", str, not_null_default="{}")


def _anomaly_state(db: sqlite_utils.Database) -> None:
    # The `unusual` detector's state, one row per outcome series: the last 5-minute bucket fed,
    # whether an episode is open (those rows are loaded every pass), and the model as JSON text.
    # Plain SQL types, so any backend takes it.
    db.execute(
        "CREATE TABLE anomaly_state (resource_id TEXT NOT NULL, metric TEXT NOT NULL, stat TEXT NOT NULL, "
        "last_t BIGINT NOT NULL, episode_open INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, "
        "PRIMARY KEY (resource_id, metric, stat))"
    )


def _live_resources(db: sqlite_utils.Database) -> None:
    # The dashboard's resource list: a page of the resources not gone, by kind then name, with
    # their count and the count per kind. This partial index holds them in that order, so a page
    # is its first rows instead of a sort of every resource, and the counts read only the index.
    # Partial indexes are plain SQL on both backends.
    db.execute("CREATE INDEX resources_live ON resources(kind, name, id) WHERE gone_at IS NULL")


def _poll_hours(db: sqlite_utils.Database) -> None:
    # The poll log summed per UTC hour (hour = started_at // 3600 * 3600), kept by record_polls
    # and prune_history (fleetwatch/store/db.py), so the polling cost of a week that every page
    # states reads 168 rows plus the two partial hours at its edges, not every poll of the week.
    # A poll's rows share its started_at, so its hour; `polls` counts them as the log does.
    db.execute(
        "CREATE TABLE poll_hours (hour BIGINT PRIMARY KEY, cost_usd DOUBLE PRECISION NOT NULL, "
        "api_calls BIGINT NOT NULL, polls BIGINT NOT NULL, first_at BIGINT NOT NULL)"
    )
    db.execute(
        "INSERT INTO poll_hours (hour, cost_usd, api_calls, polls, first_at) "
        "SELECT started_at / 3600 * 3600, COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), "
        "COUNT(DISTINCT COALESCE(poll_id, 'row' || id)), MIN(started_at) FROM poll_log "
        "GROUP BY started_at / 3600 * 3600"
    )
    # The last poll's end, on the overview and /healthz (MAX(finished_at)): one index read, not a
    # scan of the log.
    db.table("poll_log").create_index(["finished_at"])


def _reread_pending(db: sqlite_utils.Database) -> None:
    # The collector's series still to be read again (a GetMetricData answer that was not
    # Complete: InternalError, PartialData), from `since`, until an answer is. In the store rather
    # than in one process, so that when a place changes hands (fleetwatch.cluster: an agent
    # killed, one joining) its next owner reads them again too, and leaves no gap.
    # Plain SQL types, so any backend takes it.
    db.execute(
        "CREATE TABLE reread_pending (account TEXT NOT NULL, region TEXT NOT NULL, series_key TEXT NOT NULL, "
        "since BIGINT NOT NULL, PRIMARY KEY (account, region, series_key))"
    )


def _cycle_agent(db: sqlite_utils.Database) -> None:
    # Which agent ran each cycle (fleetwatch.cluster's agent id; empty on a SQLite store's one agent).
    db.table("agent_cycles").add_column("agent_id", str, not_null_default="")


def _poll_log_failed(db: sqlite_utils.Database) -> None:
    # The overview's errored sources (web/data.agent_health) start from the failed polls of the
    # last day: this partial index holds only those, so the read does not go through every poll
    # of the day, and it costs nothing on the polls that succeed. Partial indexes are plain SQL
    # on both backends; the query's `status != 'ok'` matches the index's condition as written.
    db.execute("CREATE INDEX poll_log_failed ON poll_log(started_at) WHERE status != 'ok'")


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_resources_series_samples_poll_log", _initial),
    Migration("0002_findings_incidents_notifications_silences", _alerting),
    Migration("0003_hourly_rollups", _rollups),
    Migration("0004_collector_cursors", _cursors),
    Migration("0005_detector_runs", _detector_runs),
    Migration("0006_alert_pipeline", _incidents),
    Migration("0007_agent_cycles", _agent_cycles),
    Migration("0008_incident_cause_title", _incident_lead),
    Migration("0009_agents_and_place_leases", _agents),
    Migration("0010_agent_cycle_stages", _cycle_stages),
    Migration("0011_anomaly_state", _anomaly_state),
    Migration("0012_live_resources_index", _live_resources),
    Migration("0013_poll_hours_and_last_poll_index", _poll_hours),
    Migration("0014_reread_pending", _reread_pending),
    Migration("0015_agent_cycle_agent", _cycle_agent),
    Migration("0016_poll_log_failed_index", _poll_log_failed),
)
SCHEMA_VERSION = len(MIGRATIONS)
