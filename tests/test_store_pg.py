"""What only the PostgreSQL store does: day partitions that retention drops, refusing a database
that is not a fleetwatch store or is newer, and a database that goes away mid-write. The store's
shared behaviour is tested on both backends in test_store.py (the `store_target` fixture)."""

from __future__ import annotations

import psycopg
import pytest

from fleetwatch.store import SCHEMA_VERSION, StoreError, open_store
from tests.test_store import new_series

DAY = 86400


def partitions(store) -> list[str]:
    return [
        r[0]
        for r in store.db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'samples'::regclass ORDER BY c.relname"
        )
    ]


def test_samples_go_to_day_partitions_and_retention_drops_them(pg_server) -> None:
    base = 20_000 * DAY  # 2024-10-04 00:00 UTC
    with open_store(pg_server.new_database()) as store:
        sid = new_series(store)
        store.upsert_samples(sid, [(base + d * DAY + h * 3600, float(d)) for d in range(4) for h in (0, 12)])
        assert partitions(store) == ["samples_20241004", "samples_20241005", "samples_20241006", "samples_20241007"]
        assert store.db.execute("SELECT COUNT(*) FROM samples_20241005").fetchone()[0] == 2
        # Raw samples kept one day back from noon on the 7th: the 4th and 5th go whole, the 6th keeps its noon.
        result = store.prune(now=base + 3 * DAY + 12 * 3600, raw_retention=DAY, rollup_retention=30 * DAY)
        assert result["samples_deleted"] == 5
        assert partitions(store) == ["samples_20241006", "samples_20241007"]
        assert store.samples(sid, 0, base + 10 * DAY) == [
            (base + 2 * DAY + 12 * 3600, 2.0),
            (base + 3 * DAY, 3.0),
            (base + 3 * DAY + 12 * 3600, 3.0),
        ]
        assert [(r["ts"], r["sum"]) for r in store.rollups(sid, 0, base + 10 * DAY)] == [
            (base, 0.0),
            (base + 12 * 3600, 0.0),
            (base + DAY, 1.0),
            (base + DAY + 12 * 3600, 1.0),
            (base + 2 * DAY, 2.0),
        ]
        # A day written again after its partition was dropped gets a new one.
        store.upsert_samples(sid, [(base + 30, 7.0)])
        assert store.samples(sid, base, base + 60) == [(base + 30, 7.0)]


def test_database_with_other_tables_is_refused_untouched(pg_server) -> None:
    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'a@example.com')")
    with pytest.raises(StoreError, match="not a fleetwatch store .*users.*has not touched it"):
        open_store(url)
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert tables == ["users"]
        assert conn.execute("SELECT email FROM users").fetchall() == [("a@example.com",)]


def test_store_from_newer_fleetwatch_is_refused_untouched(pg_server) -> None:
    url = pg_server.new_database()
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO fleetwatch_migrations VALUES (%s, '9999_from_the_future', 'now')", [SCHEMA_VERSION + 1]
        )
    with pytest.raises(StoreError, match=f"newer fleetwatch \\(store schema {SCHEMA_VERSION + 1}.*store.url"):
        open_store(url)


def test_no_server_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL database fleetwatch on .*Start PostgreSQL"):
        open_store(f"postgresql://fleetwatch@/fleetwatch?host={tmp_path}")


def test_connection_lost_mid_write_rolls_back_and_reconnects(pg_server) -> None:
    """The server ends the store's session (as a restart or failover does) while a write is
    under way: that write fails with the fix and is rolled back whole; the next one reconnects."""
    url = pg_server.new_database()
    with open_store(url) as store:
        sid = new_series(store)
        store.upsert_samples(sid, [(60, 1.0)])
        pid = store.db.raw.info.backend_pid
        with pytest.raises(StoreError, match="cannot reach the PostgreSQL database .*rolled back.*Start PostgreSQL"):
            with store.transaction() as db:
                db.execute("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)", [sid, 120, 2.0])
                with psycopg.connect(url, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
                db.execute("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)", [sid, 180, 3.0])
        store.upsert_samples(sid, [(240, 4.0)])
        assert store.samples(sid, 0, 1000) == [(60, 1.0), (240, 4.0)]


def test_store_copy_moves_every_row_and_the_dashboard_answers_the_same(web_copy, pg_server, capsys) -> None:
    """`fleetwatch store copy --to URL` moves the session's dashboard store (an emulated storm,
    its incidents, notifications and samples) into PostgreSQL: every table holds the same rows,
    new rows get fresh ids, PagerDuty's installation id is unchanged, and the dashboard's API and
    its overview's reads give the same answers from either store."""
    import sqlite3

    from fastapi.testclient import TestClient

    from alerts.pagerduty import installation_id
    from fleetwatch.cli import main
    from fleetwatch.clock import FakeClock
    from tests.web_kit import web_config
    from web import data
    from web.app import create_app

    url = pg_server.new_database()
    assert main(["store", "copy", "--to", url], environ={"FLEETWATCH_STORE_PATH": str(web_copy["path"])}) == 0
    assert "samples:" in capsys.readouterr().out
    with open_store(web_copy["path"]) as lite, open_store(url) as pg:
        for table in lite.db.table_names():
            cols = ", ".join(c.name for c in lite.db[table].columns)
            want = sorted(map(tuple, lite.db.execute(f"SELECT {cols} FROM {table}").fetchall()), key=repr)
            got = sorted(map(tuple, pg.db.execute(f"SELECT {cols} FROM {table}").fetchall()), key=repr)
            assert got == want, table
        assert pg.db["samples"].count > 1000 and partitions(pg)
        assert installation_id(pg, "https://fw.example") == installation_id(lite, "https://fw.example")
        top = pg.db.execute("SELECT MAX(id) FROM incident_events").fetchone()[0]
        made = pg.db["incident_events"].insert(
            {"incident_id": web_copy["storm"], "ts": web_copy["now"], "event": "note", "detail": "x"}
        )
        assert made.last_pk == top + 1
        pg.db.execute("DELETE FROM incident_events WHERE id = ?", [top + 1])

    clients = [
        TestClient(
            create_app(web_config(web_copy["path"]), where, FakeClock(web_copy["now"]), cache_ttl=0),
            base_url="http://127.0.0.1:8000",
        )
        for where in (web_copy["path"], url)
    ]
    db_id = "rds/123456789012/us-east-1/orders-db"
    paths = [
        "/api/incidents",
        "/api/incidents?state=open",
        "/api/incidents?detector=outcomes&severity=critical",
        "/api/incidents?service=checkout",
        f"/api/incidents/{web_copy['storm']}",
        f"/api/incidents/{web_copy['hostile']}",
        "/api/findings",
        "/api/resources",
        "/api/resources?kind=rds",
        "/api/resources?q=ORDERS",
        f"/api/resources/{db_id}",
        f"/api/series?resource={db_id}&metric=DatabaseConnections",
        "/api/silences",
    ]
    for path in paths:
        lite_json, pg_json = (
            c.get(path, headers={"Authorization": f"Bearer {web_config(url)['web.token']}"}).json() for c in clients
        )
        assert pg_json == lite_json, path
    assert clients[0].get("/api/resources?q=ORDERS").json()["total"] >= 1, "a name search ignores case"
    lite_conn = sqlite3.connect(web_copy["path"])
    lite_conn.row_factory = sqlite3.Row
    pg_conn = data.Reader(url).conn()
    now = web_copy["now"]
    for read in (
        lambda c: data.headroom(c, now),
        lambda c: data.incident_facets(c),
        lambda c: data.agent_health(c, now),
        lambda c: data.entries(c, now, data.incidents(c, {"state": "open"})),
        lambda c: data.last_digest(c),
    ):
        assert read(pg_conn) == read(lite_conn)
    lite_conn.close()
    pg_conn.close()


def test_store_copy_refuses_a_database_that_holds_data(tmp_path, pg_server) -> None:
    from fleetwatch.store.copy import copy_store

    url = pg_server.new_database()
    with open_store(url) as pg:
        sid = new_series(pg)
        pg.upsert_samples(sid, [(60, 1.0)])
    with open_store(tmp_path / "s.db") as lite, open_store(url) as pg:
        new_series(lite)
        with pytest.raises(StoreError, match="already holds data .*nothing was copied"):
            copy_store(lite, pg)
        assert pg.samples(sid, 0, 100) == [(60, 1.0)]


def test_agents_share_the_database_and_a_command_needing_it_alone_is_refused(pg_server) -> None:
    """`fleetwatch run` holds the database's advisory lock shared: several agents run on one
    database (fleetwatch.cluster shares the work), while `fleetwatch collect`, which needs the
    store to itself, is refused and told who holds it; the lock goes with its holders' sessions."""
    from fleetwatch.lock import LockHeld, store_lock

    url = pg_server.new_database()
    first = store_lock(url, "fleetwatch run", shared=True).acquire()
    second = store_lock(url, "fleetwatch run", shared=True).acquire()
    with pytest.raises(LockHeld, match=r"in use by process \d+ on .*give this one its own store.url"):
        store_lock(url, "fleetwatch collect").acquire()
    first.release()
    second.release()
    alone = store_lock(url, "fleetwatch collect").acquire()
    with pytest.raises(LockHeld):
        store_lock(url, "fleetwatch run", shared=True).acquire()
    alone.release()
    store_lock(url, "fleetwatch run", shared=True).acquire().release()


def test_dashboard_reader_is_read_only_and_reconnects(pg_server) -> None:
    """The dashboard's per-thread session can only read, and after the server ends it (a restart,
    a failover) the next read opens a new one, read-only again."""
    from web import data

    url = pg_server.new_database()
    with open_store(url) as store:
        new_series(store)
        reader = data.Reader(url)
        conn = reader.conn()
        assert data.resource_kinds(conn) == {"lambda": 1}
        pid = conn.raw.info.backend_pid
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        assert data.resource_kinds(conn) == {"lambda": 1}  # asked again on a new session
        assert conn.raw.info.backend_pid != pid
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM resources")
        assert store.resources()[0]["name"] == "orders-fn"


def test_a_partition_dropped_by_another_store_is_made_again(pg_server) -> None:
    """The agent's retention drops a day that the OTLP receiver's store (another session on the
    same database) still remembers; that store's next write to the day still lands."""
    url = pg_server.new_database()
    day = 20_000 * DAY
    with open_store(url) as agent, open_store(url) as receiver:
        sid = new_series(agent)
        receiver.upsert_samples(sid, [(day + 60, 1.0)])  # the receiver makes (and remembers) the day
        agent.prune(now=day + 10 * DAY, raw_retention=DAY, rollup_retention=400 * DAY)
        assert partitions(agent) == []
        receiver.upsert_samples(sid, [(day + 120, 2.0)])
        assert receiver.samples(sid, day, day + DAY) == [(day + 120, 2.0)]
