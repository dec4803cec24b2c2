"""Several agents on one store (fleetwatch.cluster): heartbeats, places by rendezvous hashing
under leases, and the alerting leader's advisory lock. The clock is the tests' own integers."""

from __future__ import annotations

from typing import Any

import psycopg

from fleetwatch.cluster import Leadership, Membership, rendezvous_owner
from fleetwatch.store import open_store

PLACES = [(f"{n:012d}", region) for n in range(1, 13) for region in ("us-east-1", "eu-west-1")]


def test_rendezvous_moves_only_the_places_of_the_agent_that_joins_or_leaves() -> None:
    two = {p: rendezvous_owner(p, ["a", "b"]) for p in PLACES}
    three = {p: rendezvous_owner(p, ["a", "b", "c"]) for p in PLACES}
    assert set(two.values()) == {"a", "b"} and set(three.values()) == {"a", "b", "c"}
    assert all(three[p] in (two[p], "c") for p in PLACES), "a join takes places only for the newcomer"
    assert {p: rendezvous_owner(p, ["b", "a"]) for p in PLACES} == two, "the order of the list does not matter"
    without_b = {p: rendezvous_owner(p, ["a", "c"]) for p in PLACES}
    assert all(without_b[p] == three[p] for p in PLACES if three[p] != "b"), "a leave moves only its places"


def test_leases_never_overlap_and_a_dead_agents_places_are_taken_after_its_lease(store_target: Any) -> None:
    with open_store(store_target) as store:
        a, b = Membership(store, "a", ttl=180, lease=180), Membership(store, "b", ttl=180, lease=180)
        t = 1_800_000_000
        assert a.renew(PLACES, t) == set(PLACES), "alone, an agent holds every place"
        b.heartbeat(t + 10)
        held_b = b.renew(PLACES, t + 10)
        assert held_b == set(), "b owns half the places now, but a's leases have not expired and a has not let go"
        held_a = a.renew(PLACES, t + 60)  # a's next cycle sees b and lets go of b's places
        held_b = b.renew(PLACES, t + 70)
        assert held_a and held_b and not held_a & held_b and held_a | held_b == set(PLACES)
        assert held_b == {p for p in PLACES if rendezvous_owner(p, ["a", "b"]) == "b"}
        # a dies (no more beats): b takes a's places once a's heartbeat and leases are both stale.
        assert b.renew(PLACES, t + 200) == held_b, "a's beat at t+60 is still live at t+200"
        assert b.renew(PLACES, t + 239) == held_b, "a's leases run to t+240 and a is dead from t+240: not before"
        assert b.renew(PLACES, t + 241) == set(PLACES)
        rows = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT agent_id) FROM place_leases").fetchone()
        assert tuple(rows) == (len(PLACES), 1)
        b.leave()
        assert store.db.execute("SELECT COUNT(*) FROM place_leases").fetchone()[0] == 0


def test_one_alerting_leader_and_a_cut_off_leader_knows_it(pg_server: Any) -> None:
    url = pg_server.new_database()
    first, second = Leadership(url), Leadership(url)
    assert first.try_lead() and first.held()
    assert not second.try_lead() and not second.held()
    with psycopg.connect(url, autocommit=True) as admin:  # the leader's session is ended by the server
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [first.conn.info.backend_pid])
    assert not first.held(), "a leader cut off from the database must not go on as leader"
    assert second.try_lead() and second.held()
    assert not first.try_lead(), "the old leader cannot take it back while the new one holds it"
    second.close()
    assert first.try_lead()
    first.close()
