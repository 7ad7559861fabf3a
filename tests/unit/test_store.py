"""The store on SQLite and PostgreSQL: idempotent upserts, real transitions only, aggregates in SQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from pica_core.models import Connection, ConnectionRow, connection_row
from pica_core.store import (MIGRATIONS, _schema_lock, SCHEMA_VERSION, ConnectionTransition, PassthroughCallRecord, SchemaInfo, Store,
                              SyncLockLost, UpsertResult, UserConnection, make_engine, utcnow)


def conn(n: int, state: str = "operational", identity: str = "u-1", platform: str = "gmail", **extra) -> Connection:
    return Connection(id=f"id-{n}", key=f"test::{platform}::default::{n:032x}|{identity}", platform=platform,
                      identity=identity, identity_type="user", state=state, **extra)


@pytest.fixture
def store(database_url):
    s = Store.from_url(database_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def statements(store):
    """Counts SQL statements sent to the database."""
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_upsert_is_idempotent_and_keyed_by_connection_key(store):
    first = store.upsert_connections([conn(1), conn(2)], source="sync")
    again = store.upsert_connections([conn(1), conn(2)], source="sync")
    assert (first.inserted, first.updated) == (2, 0) and (again.inserted, again.updated) == (0, 2)
    assert store.count(UserConnection) == 2
    assert store.count(ConnectionTransition) == 0  # a first sighting is the connection's own row…
    assert [(t.from_state, t.to_state, t.source) for t in store.transitions(conn(1).key)] == [(None, "operational", "sync")]


def test_transition_only_when_state_really_changes(store):
    store.upsert_connections([conn(1)], source="sync")
    store.upsert_connections([conn(1)], source="sync")
    result = store.upsert_connections([conn(1, "failed")], source="sync")
    store.upsert_connections([conn(1, "failed")], source="sync")
    store.upsert_connections([conn(1, "operational")], source="lookup")
    assert result.transitions == 1
    history = [(t.from_state, t.to_state, t.source) for t in store.transitions(conn(1).key)]
    assert history == [(None, "operational", "sync"), ("operational", "failed", "sync"),
                       ("failed", "operational", "lookup")]


def test_state_since_moves_only_on_change(store):
    t0 = utcnow() - timedelta(hours=5)
    store.upsert_connections([conn(1, "failed")], source="sync", seen_at=t0)
    store.upsert_connections([conn(1, "failed")], source="sync", seen_at=t0 + timedelta(hours=1))
    row = store.stored_connection(conn(1).key)
    assert row.state_since == t0 and row.last_seen_at == t0 + timedelta(hours=1) and row.first_seen_at == t0
    store.upsert_connections([conn(1, "operational")], source="sync", seen_at=t0 + timedelta(hours=2))
    assert store.stored_connection(conn(1).key).state_since == t0 + timedelta(hours=2)


def test_any_identity_is_storable_without_a_users_table(store):
    odd = conn(3, identity="org_ünïcode:with spaces")
    store.upsert_connections([odd, conn(4, identity=None)], source="connect")
    assert store.stored_connection(odd.key).user_id == "org_ünïcode:with spaces"
    assert store.stored_connection(conn(4, identity=None).key).user_id is None


def test_extended_columns_round_trip(store):
    created = utcnow() - timedelta(days=40)
    store.upsert_connections([conn(5, tags=["vip", "eu"], created_at=created, active=True)], source="sync", sync_id=7)
    row = store.stored_connection(conn(5).key)
    assert (row.tags, row.identity_type, row.pica_id, row.active, row.last_sync_id) == (["vip", "eu"], "user", "id-5", True, 7)
    assert row.created_at == created and row.environment == "test"


def _in_tokyo(dbapi_connection, _record) -> None:
    dbapi_connection.execute("SET TIME ZONE 'Asia/Tokyo'")
    dbapi_connection.commit()


def test_rows_with_fields_left_out_take_the_models_defaults(store):
    """A fleet sync stores rows, not models: absent fields, offsets and whole seconds must read as the models do."""
    plus_two = timezone(timedelta(hours=2))
    rows = [ConnectionRow(id="id-a", key="test::gmail::default::a|u", platform="gmail"),
            ConnectionRow(id="id-b", key="test::gmail::default::b|u", platform="gmail", identity="u", identityType="user",
                          environment="live", state="failed", tags=["x"], active=False,
                          createdAt=datetime(2026, 3, 1, 12, 0, 0, tzinfo=plus_two)),
            ConnectionRow(id="id-c", key="test::gmail::default::c|u", platform="gmail",
                          createdAt=datetime(2026, 3, 1, 12, 0, 0, 120, tzinfo=plus_two)),
            ConnectionRow(id="id-d", key="test::gmail::default::d|u", platform="gmail",
                          createdAt=datetime(2026, 3, 1, 12, 0, 0, 120))]  # no offset: UTC
    if store.dialect == "postgresql":  # a server away from UTC must not shift a time that has no offset
        store.engine.dispose()
        event.listen(store.engine, "connect", _in_tokyo)
    seen = utcnow()
    store.upsert_rows(rows, source="sync", seen_at=seen)
    a, b, c, d = (store.stored_connection(r["key"]) for r in rows)
    model = Connection(id="id-a", key="k", platform="gmail")
    assert (a.environment, a.state, a.tags, a.active, a.user_id, a.identity_type) == (
        model.environment, model.state, model.tags, model.active, None, None)
    assert a.created_at == seen  # Pica did not say: when the dashboard first saw it
    assert (b.environment, b.state, b.tags, b.active, b.user_id, b.identity_type) == ("live", "failed", ["x"], False, "u", "user")
    assert b.created_at == datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    assert c.created_at == datetime(2026, 3, 1, 10, 0, 0, 120, tzinfo=UTC)
    assert d.created_at == datetime(2026, 3, 1, 12, 0, 0, 120, tzinfo=UTC)


def test_a_batch_that_repeats_a_key_keeps_the_last_and_counts_new_rows_once(store):
    store.upsert_connections([conn(1)], source="sync")
    result = store.upsert_connections([conn(1, "failed"), conn(2), conn(2, "degraded"), conn(3)], source="sync")
    assert (result.inserted, result.updated, result.transitions) == (2, 1, 1)
    assert [store.stored_connection(conn(n).key).state for n in (1, 2, 3)] == ["failed", "degraded", "operational"]


def test_updated_at_moves_only_when_pica_changed_the_connection(store):
    t0 = utcnow() - timedelta(hours=5)
    store.upsert_connections([conn(1, tags=["a", "b"])], source="sync", seen_at=t0)
    store.upsert_connections([conn(1, tags=["a", "b"])], source="sync", seen_at=t0 + timedelta(hours=1))
    row = store.stored_connection(conn(1).key)
    assert (row.updated_at, row.last_seen_at) == (t0, t0 + timedelta(hours=1))
    store.upsert_connections([conn(1, tags=["a"])], source="sync", seen_at=t0 + timedelta(hours=2))
    row = store.stored_connection(conn(1).key)
    assert (row.updated_at, row.tags, row.state_since) == (t0 + timedelta(hours=2), ["a"], t0)


@pytest.mark.parametrize("size", [300, 2500])
def test_a_batch_is_a_few_statements_whatever_its_size(store, statements, size):
    store.upsert_connections([conn(n, "failed" if n % 3 else "operational") for n in range(size)], source="sync")
    statements.clear()
    result = store.upsert_connections([conn(n, "degraded") for n in range(size)], source="sync")
    writes = [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))]
    # read-and-touch (SQLite: a read and a touch), the changed rows, the transitions
    assert len(writes) == (4 if store.dialect == "sqlite" else 3), writes
    assert (result.updated, result.transitions) == (size, size)


def test_aggregates_are_computed_by_the_database(store, statements):
    store.upsert_connections([conn(n, state, platform=p) for n, (state, p) in enumerate(
        [("operational", "gmail"), ("failed", "gmail"), ("degraded", "slack"), ("failed", "slack"), ("unknown", "notion")])],
        source="sync")
    statements.clear()
    assert store.state_counts() == {"operational": 1, "failed": 2, "degraded": 1, "unknown": 1}
    assert ("gmail", "failed", 1) in store.counts_by("platform")
    assert store.usage_by_platform() == {"gmail": 2, "slack": 2, "notion": 1}
    assert [r.state for r in store.attention()] == ["failed", "failed", "degraded"]  # same age: failed first
    store.not_seen()
    store.fleet_totals(utcnow() - timedelta(days=1))
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len([s for s in queries if "GROUP BY" in s.upper()]) == 3
    # One statement per table or figure: the latest complete sync is a subquery of each, not a query of its own.
    assert len(queries) == 4 + 1 + 3, queries


def test_attention_found_broken_together_puts_failed_then_the_oldest_connections_first(store):
    t0 = utcnow() - timedelta(days=40)
    store.upsert_connections([conn(1, "degraded", created_at=t0), conn(2, "failed", created_at=t0 + timedelta(days=9)),
                              conn(3, "failed", created_at=t0 + timedelta(days=2))], source="sync")
    assert [r.connection_key for r in store.attention()] == [conn(3).key, conn(2).key, conn(1).key]


def test_attention_is_oldest_first_and_not_seen(store):
    t0 = utcnow() - timedelta(days=3)
    store.upsert_connections([conn(1, "failed")], source="sync", seen_at=t0)
    store.upsert_connections([conn(2, "degraded")], source="sync", seen_at=t0 + timedelta(days=1))
    assert [r.connection_key for r in store.attention()] == [conn(1).key, conn(2).key]
    assert store.not_seen() == []  # no complete sync yet: nothing is known to be gone


def test_the_fleet_is_what_the_last_complete_sync_saw_and_what_was_seen_since(store):
    t0 = utcnow() - timedelta(days=3)
    store.upsert_connections([conn(1, "failed"), conn(2, "degraded")], source="sync", seen_at=t0)
    run = store.start_sync("test", 300)
    store.upsert_connections([conn(2, "degraded"), conn(3, "operational")], source="sync", sync_id=run.id)
    store.update_sync(run.id, status="complete")
    store.upsert_connections([conn(4, "failed")], source="lookup")  # seen since: current
    unfinished = store.start_sync("test", 300)  # not complete: the fleet is still the last complete one's
    store.upsert_connections([conn(2, "degraded")], source="sync", sync_id=unfinished.id)
    store.update_sync(unfinished.id, status="interrupted")
    assert [r.connection_key for r in store.not_seen("test")] == [conn(1).key]  # gone from Pica
    assert store.state_counts("test") == {"degraded": 1, "operational": 1, "failed": 1}
    assert [r.connection_key for r in store.attention("test")] == [conn(2).key, conn(4).key]
    assert store.usage_by_platform("test") == {"gmail": 3}
    assert sum(n for _, _, n in store.counts_by("platform", "test")) == 3
    assert store.not_seen("live") == [] and store.state_counts("live") == {}


def test_transitions_since_lists_changes_not_first_sightings(store):
    store.upsert_connections([conn(1), conn(2)], source="sync")
    store.upsert_connections([conn(1, "failed")], source="sync")
    changes = store.transitions_since(utcnow() - timedelta(hours=24))
    assert [(c.connection_key, c.from_state, c.to_state) for c in changes] == [(conn(1).key, "operational", "failed")]
    live = conn(3, environment="live")
    live = live.model_copy(update={"key": live.key.replace("test::", "live::")})
    store.upsert_connections([live], source="sync")
    store.upsert_connections([live.model_copy(update={"state": "degraded"})], source="sync")
    assert [c.connection_key for c in store.transitions_since(utcnow() - timedelta(hours=24), "live")] == [live.key]
    assert [c.connection_key for c in store.transitions_since(utcnow() - timedelta(hours=24), "test")] == [conn(1).key]


def test_fleet_totals_count_what_the_limited_lists_leave_out(store):
    day_ago = utcnow() - timedelta(hours=24)
    assert store.fleet_totals(day_ago, "test") == {"attention": 0, "changes": 0, "not_seen": 0}
    t0 = utcnow() - timedelta(days=3)
    store.upsert_connections([conn(n, "failed" if n % 2 else "degraded") for n in range(7)] + [conn(7)], source="sync",
                             seen_at=t0)
    store.upsert_connections([conn(n, "operational") for n in range(3)], source="lookup")  # 3 recoveries…
    run = store.start_sync("test", 300)
    store.upsert_connections([conn(2), *(conn(n, "failed" if n % 2 else "degraded") for n in range(3, 7)), conn(7)],
                             source="sync", sync_id=run.id)  # …and 0, 1 gone from Pica
    store.update_sync(run.id, status="complete")
    assert len(store.attention("test", limit=2)) == 2 and len(store.not_seen("test", limit=1)) == 1
    assert len(store.transitions_since(day_ago, "test", limit=1)) == 1
    assert store.fleet_totals(day_ago, "test") == {"attention": 4, "changes": 3, "not_seen": 2}
    assert store.fleet_totals(utcnow(), "test")["changes"] == 0
    assert store.fleet_totals(day_ago, "live") == {"attention": 0, "changes": 0, "not_seen": 0}


def test_the_fleet_export_holds_every_stored_connection_of_the_environment(store):
    from pica_core.connections_view import connection_rows, connections_csv, fleet_csv
    import csv
    import io

    live = conn(9, environment="live")
    live = live.model_copy(update={"key": live.key.replace("test::", "live::")})
    store.upsert_connections([conn(1, "failed", tags=["vip", "eu"]), conn(2, identity="a,\"b\"\nc"), live],
                             source="sync")
    assert store.fleet_size("test") == 2 and store.fleet_size() == 3
    rows = list(csv.DictReader(io.StringIO(fleet_csv(store.fleet_export("test")))))
    assert [(r["key"], r["identity"], r["state"], r["tags"], r["active"]) for r in rows] == [
        (conn(2, identity="a,\"b\"\nc").key, "a,\"b\"\nc", "operational", "", "True"),
        (conn(1).key, "u-1", "failed", "vip,eu", "True")]  # by identity, then platform
    header = ["platform", "platform name", "state", "state since", "since or earlier", "environment", "identity",
              "identity type", "key", "tags", "active", "created", "first seen", "last seen", "id",
              "not seen in last sync"]
    assert list(rows[0]) == header
    stored = store.stored_connection(conn(1).key)
    assert datetime.fromisoformat(rows[1]["first seen"]) == stored.first_seen_at
    # Found failed at first sight: it may have been so before (the page says "or earlier"); no sync yet, so nobody
    # knows what is gone.
    assert (rows[1]["since or earlier"], rows[1]["not seen in last sync"], rows[1]["id"]) == ("True", "", conn(1).id)
    assert fleet_csv([]) == ",".join(header) + "\n"
    # The Connections CSV has the same columns, bar Fleet's last.
    table = connection_rows([conn(1)], {conn(1).key: stored}, {"gmail": "Gmail"}, {})
    assert list(next(csv.DictReader(io.StringIO(connections_csv(table, [conn(1)], {conn(1).key: stored}))))) == \
        header[:-1]
    # After a complete sync that did not see it, a connection is "not seen in last sync".
    run = store.start_sync("test", 300)
    store.upsert_connections([conn(1, "failed", tags=["vip", "eu"])], source="sync", sync_id=run.id)
    store.update_sync(run.id, status="complete")
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(fleet_csv(store.fleet_export("test"))))}
    assert rows[conn(1).key]["not seen in last sync"] == "False"
    assert rows[conn(2, identity="a,\"b\"\nc").key]["not seen in last sync"] == "True"


def test_the_fleet_export_lists_connections_without_an_identity_last_on_both_databases(store):
    """SQLite listed them first and PostgreSQL last: the same CSV came out in two orders."""
    store.upsert_connections([conn(1, identity="b-1"), conn(2, identity="a-1"),
                              conn(3, identity="b-1").model_copy(update={"identity": None})], source="sync")
    assert [row[Store.EXPORT_COLUMNS.index("identity")] for row in store.fleet_export("test")] == ["a-1", "b-1", None]


def test_found_since_counts_the_current_connections_first_seen_after_a_time(store):
    run = store.start_sync("test", 300)
    store.upsert_connections([conn(1), conn(2)], source="sync", sync_id=run.id)
    store.update_sync(run.id, status="complete", finished_at=utcnow())
    ended = store.last_sync("test", statuses=("complete",)).finished_at
    store.upsert_connections([conn(3)], source="lookup")
    assert store.found_since(ended, "test") == 1 and store.found_since(ended, "live") == 0
    assert sum(store.state_counts("test").values()) == 3


def test_a_batch_of_empty_pages_still_records_the_run_s_progress(store):
    run = store.start_sync("test", 100)
    store.upsert_rows([], source="sync", sync_id=run.id, sync_progress={"pages_done": 1, "failed_pages": []})
    assert (store.sync_run(run.id).pages_done, store.sync_run(run.id).failed_pages) == (1, [])


def test_sync_runs(store):
    run = store.start_sync("test", 300)
    store.update_sync(run.id, status="partial", failed_pages=[3, 5], pages_total=5)
    assert store.sync_run(run.id).failed_pages == [3, 5]
    assert store.last_sync("test").id == run.id and store.last_sync("live") is None


def test_history_search_and_audit(store):
    for n, (status, body) in enumerate([(200, '{"messages": []}'), (401, '{"error": "invalid_token"}')]):
        store.record_call(PassthroughCallRecord(
            at=utcnow(), actor="a@x.io", environment="test", connection_key=conn(n).key, platform="gmail",
            action_id=f"conn_mod_def::{n}", action_title="List Messages", method="GET", path="gmail/v1/users/me/messages",
            status=status, response_body=body))
    assert [c.status for c in store.search_calls(text_query="INVALID_token")] == [401]
    assert len(store.search_calls(platform="gmail", action="list")) == 2
    assert store.search_calls(text_query="100%_") == []  # LIKE wildcards are escaped
    store.record_call(PassthroughCallRecord(
        at=utcnow(), actor="a@x.io", environment="test", connection_key=conn(3).key, platform="gmail", action_id="x",
        method="GET", path="/gmail/v1/users/%E6%9D%8E%20me%2Fx/messages", status=None, error="Rate limit exceeded"))
    for text in ("李", "me/x", "李 me", "rate LIMIT", "users/李"):  # the path as typed (it is stored encoded), and the error
        assert [c.path for c in store.search_calls(text_query=text)] == ["/gmail/v1/users/%E6%9D%8E%20me%2Fx/messages"]
    # Its query and its connection key (whose identity support asks by) are searched too: they were not.
    store.record_call(PassthroughCallRecord(
        at=utcnow(), actor="a@x.io", environment="test", connection_key=conn(4, identity="usr_ava_77").key,
        platform="gmail", action_id="x", method="GET", path="/p", query=[["pageToken", "tok-Zeta-9"]], status=200))
    assert [c.connection_key for c in store.search_calls(text_query="tok-zeta-9")] == [conn(4, identity="usr_ava_77").key]
    assert [c.query for c in store.search_calls(text_query="USR_AVA_77")] == [[["pageToken", "tok-Zeta-9"]]]
    store.record_call(PassthroughCallRecord(  # stored as JSON, 李 and quotes escaped: found as typed all the same
        at=utcnow(), actor="a@x.io", environment="test", connection_key=conn(5).key, platform="gmail", action_id="x",
        method="GET", path="/p", query=[["q", 'subject:"李 report"']], status=200))
    for text in ("李", 'subject:"李', '"李 report"'):  # (李 finds the call with it in its path too)
        assert [["q", 'subject:"李 report"']] in [c.query for c in store.search_calls(text_query=text)], text
    # In any letter case beyond ASCII, on SQLite too (its LIKE folds ASCII only): "ZOË" found nothing of zoë's
    store.record_call(PassthroughCallRecord(
        at=utcnow(), actor="a@x.io", environment="test", connection_key=conn(6, identity="zoë").key,
        platform="gmail", action_id="x", action_title="Envoyer un e-mail à Zoë", method="GET", path="/p", status=200))
    for text in ("ZOË", "zoë"):
        assert [c.connection_key for c in store.search_calls(text_query=text)] == [conn(6, identity="zoë").key], text
    assert [c.action_title for c in store.search_calls(action="À ZOË")] == ["Envoyer un e-mail à Zoë"]
    store.audit(actor="a@x.io", action="delete", target="key-1", outcome="ok", platform="gmail")
    events = store.audit_events(action="delete")
    assert events[0].actor == "a@x.io" and events[0].detail == {"platform": "gmail"}



def test_audit_filters_find_a_name_in_any_case_and_an_identity_in_the_detail(store):
    """"local" found nothing of local-admin, nor "rev bob, jr" its connect (the key slugs it rev-bob,-jr)."""
    key = "test::gmail::default::" + "a" * 32 + "|rev-bob,-jr"
    store.audit(actor="local-admin", action="connect", target=key, outcome="ok", identity="rev bob, jr")
    store.audit(actor="ops@acme.io", action="delete", target="test::slack::x", outcome="ok", identity="someone")
    assert [e.target for e in store.audit_events(actor="LOCAL")] == [key]
    assert [e.target for e in store.audit_events(target="rev bob, jr")] == [key]
    assert [e.target for e in store.audit_events(target="REV-BOB")] == [key]
    assert store.audit_events(actor="%") == []  # LIKE wildcards are escaped
    # The identity's value, not the detail's JSON text: no field names, letters beyond ASCII as typed.
    assert store.audit_events(target="identity") == [] and store.audit_events(target='"') == []
    store.audit(actor="a", action="connect", target="test::gmail::default::" + "b" * 32 + "|Zoë-Smith", outcome="ok",
                identity="Zoë Smith")
    assert [e.detail["identity"] for e in store.audit_events(target="zoë smith")] == ["Zoë Smith"]
    # beyond ASCII in any case too (SQLite's LIKE folds ASCII alone: "ZOË" found nothing)
    assert [e.detail["identity"] for e in store.audit_events(target="ZOË SMITH")] == ["Zoë Smith"]
    store.audit(actor="zoë@acme.io", action="delete", target="test::x", outcome="ok")
    assert [e.actor for e in store.audit_events(actor="ZOË")] == ["zoë@acme.io"]


def test_stored_connections_reads_only_the_keys_asked(store):
    store.upsert_connections([conn(1), conn(2)], source="sync")
    assert [r.connection_key for r in store.stored_connections([conn(2).key])] == [conn(2).key]
    assert store.stored_connections([]) == []  # an empty filter must not mean the whole fleet


def _as_version_1(store: Store) -> None:
    """The database as version 1 left it: two more indexes, first sightings as transitions, runs without a total."""
    store.upsert_connections([conn(1), conn(2)], source="lookup")
    store.update_sync(store.start_sync("test", 300).id, status="partial", failed_pages=[2], pages_total=3)
    with store.session() as session:
        sql = session.connection().exec_driver_sql
        sql("ALTER TABLE sync_runs DROP COLUMN rows_total")
        sql("ALTER TABLE sync_runs DROP COLUMN retry_at")
        sql("CREATE INDEX ix_user_connections_state ON user_connections (state)")
        sql("CREATE INDEX ix_user_connections_user_id ON user_connections (user_id)")
        sql("ALTER TABLE user_connections DROP COLUMN first_seen_by")
        if store.dialect == "postgresql":
            sql("ALTER TABLE user_connections RESET (fillfactor)")
        for key, source in ((conn(1).key, "connect"), (conn(2).key, "sync"), ("test::gone::default::1", "sync")):
            session.add(ConnectionTransition(connection_key=key, platform="gmail", from_state=None, to_state="operational",
                                             at=utcnow(), source=source))
        session.get(SchemaInfo, 1).version = 1


def test_a_version_1_database_is_migrated(store):
    from sqlalchemy import inspect

    _as_version_1(store)
    store.create_schema()
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("user_connections")}
    assert not indexes & {"ix_user_connections_state", "ix_user_connections_user_id"}
    assert store.stored_connection(conn(1).key).first_seen_by == "connect"
    assert [(t.from_state, t.source) for t in store.transitions(conn(1).key)] == [(None, "connect")]
    assert [t.source for t in store.transitions("test::gone::default::1")] == ["sync"]  # a removed one's history stays
    assert store.count(ConnectionTransition) == 1
    assert store.sync_run(1).rows_total == 0 and store.sync_run(1).failed_pages == [2]  # a resume fetches every page
    assert _room_for_updates(store) == _room_expected(store)  # PostgreSQL's HOT updates for a sync's touch
    with store.session() as session:
        assert session.get(SchemaInfo, 1).version == SCHEMA_VERSION
    store.create_schema()  # nothing left to run


def test_a_version_4_database_stores_what_pica_sends_at_any_length(store):
    """VARCHAR(16) state: a state Pica adds (`reauthorization_required`) failed its batch on PostgreSQL, for good."""
    from sqlalchemy import inspect

    live = Connection(id="id-9", key=f"live::gmail::default::{9:032x}|u-9", platform="gmail", identity="u-9")
    store.upsert_connections([live], source="sync")
    with store.session() as session:
        if store.dialect == "postgresql":
            session.connection().exec_driver_sql(
                "ALTER TABLE user_connections ALTER COLUMN state TYPE VARCHAR(16), ALTER COLUMN user_id TYPE "
                "VARCHAR(128); ALTER TABLE connection_transitions ALTER COLUMN to_state TYPE VARCHAR(16)")
        # Filed as test by version 4 (Pica left its environment out); no later sync mended it
        session.connection().exec_driver_sql("UPDATE user_connections SET environment = 'test'")
        session.connection().exec_driver_sql("ALTER TABLE sync_runs DROP COLUMN retry_at")
        session.get(SchemaInfo, 1).version = 4
    store.create_schema()
    assert store.stored_connection(live.key).environment == "live"
    lengths = {c["name"]: getattr(c["type"], "length", None) for c in inspect(store.engine).get_columns("user_connections")}
    assert lengths["state"] is None and lengths["user_id"] is None and lengths["connection_key"] is None
    store.upsert_connections([conn(1)], source="sync")
    long = conn(1).model_copy(update={"state": "reauthorization_required", "identity": "u" * 300})
    assert store.upsert_connections([long], source="sync").transitions == 1
    assert store.stored_connection(long.key).state == "reauthorization_required"
    assert [t.to_state for t in store.transitions(long.key)][-1] == "reauthorization_required"


def test_a_removed_connection_is_stored_again_only_from_an_answer_after_its_removal(store):
    from datetime import timedelta

    store.upsert_connections([conn(1)], source="sync")
    before = utcnow()
    store.remove_connection(conn(1).key)
    assert store.upsert_connections([conn(1)], source="lookup", seen_at=before).inserted == 0  # older news
    assert store.stored_connection(conn(1).key) is None
    store.remove_connection(conn(1).key)  # forgotten twice (a 404 after a delete): the later time stands
    assert store.upsert_connections([conn(1)], source="connect", seen_at=utcnow() + timedelta(seconds=1)).inserted == 1
    assert store.stored_connection(conn(1).key).first_seen_by == "connect"


def test_two_processes_migrating_at_once_run_the_migrations_once(store, database_url):
    """The second waits for the first, then finds nothing to run (it used to fail on the column just added)."""
    if store.dialect != "postgresql":
        pytest.skip("the same statement on SQLite, but only PostgreSQL shows from outside that a session is waiting")
    _as_version_1(store)
    holding = _schema_lock(store.engine)  # the first process, midway through its migration
    first = holding.__enter__()
    for statement in MIGRATIONS[2]:
        first.exec_driver_sql(statement)
    first.exec_driver_sql("UPDATE schema_info SET version = 2 WHERE id = 1")
    second = Store(make_engine(database_url))
    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            second.create_schema()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=migrate)
    thread.start()
    deadline = time.monotonic() + 30
    while not _waiting_for_a_lock(store) and thread.is_alive():  # the second process is blocked on the first
        assert time.monotonic() < deadline, "the second migration never waited for the first"
        time.sleep(0.02)
    holding.__exit__(None, None, None)  # commits
    thread.join(30)
    second.engine.dispose()
    assert outcome == [None]
    with store.session() as session:
        assert session.get(SchemaInfo, 1).version == SCHEMA_VERSION


def test_processes_opening_a_new_database_at_once_all_start(database_url):
    """The dashboard and a scheduled sync starting together on a first deploy both created the same tables, and one
    crashed (PostgreSQL: a duplicate pg_type; SQLite: table already exists, or schema_info's row twice)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    opening = f"from pica_core.store import Store; Store.from_url({database_url!r}).engine.dispose()"
    processes = [subprocess.Popen([sys.executable, "-c", opening], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    failures = [p.communicate(timeout=60)[1] for p in processes if p.wait(timeout=60) != 0]
    assert failures == []
    store = Store.from_url(database_url)
    with store.session() as session:
        assert session.get(SchemaInfo, 1).version == SCHEMA_VERSION
    store.engine.dispose()


def _room_for_updates(store: Store) -> list[str] | None:
    """user_connections' storage options: PostgreSQL's reloptions, None where it has none (always on SQLite)."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE oid = 'user_connections'::regclass").scalar_one()


def _room_expected(store: Store) -> list[str] | None:
    return ["fillfactor=50"] if store.dialect == "postgresql" else None


def test_an_sqlite_too_old_for_the_sync_is_one_line_at_start(tmp_path, monkeypatch):
    import sqlite3

    from pica_core.errors import ConfigError

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ConfigError, match="uses SQLite 3.34.1; the dashboard needs 3.35 or newer"):
        make_engine(f"sqlite:///{tmp_path / 'old.db'}")


def test_a_new_postgresql_table_leaves_room_on_its_pages_for_a_sync(store):
    assert _room_for_updates(store) == _room_expected(store)


def _waiting_for_a_lock(store: Store) -> bool:
    with store.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar_one() > 0


def test_a_batch_postgresql_rolls_back_to_break_a_deadlock_runs_again(store):
    """A lookup's transaction holds one row of a sync's batch, the batch locks the others and waits for it, then
    the lookup wants one the batch holds: PostgreSQL rolls one back (the batch here: it waited longest)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no deadlock between two")
    rows = [conn(n) for n in range(50)]
    store.upsert_connections(rows, source="sync")

    def deadlocks() -> int:
        with store.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT deadlocks FROM pg_stat_database "
                                              "WHERE datname = current_database()").scalar_one()

    before = deadlocks()
    lookup = store.engine.connect()
    lookup.exec_driver_sql("SET deadlock_timeout = '20s'")  # the batch's session finds the deadlock first
    touch = "UPDATE user_connections SET last_seen_at = last_seen_at WHERE connection_key = %(key)s"
    lookup.exec_driver_sql(touch, {"key": rows[-1].key})
    outcome: list = []

    def batch() -> None:
        try:
            outcome.append(store.upsert_connections([r.model_copy(update={"state": "failed"}) for r in rows],
                                                    source="sync"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=batch)
    thread.start()
    deadline = time.monotonic() + 30
    while not _waiting_for_a_lock(store):  # the batch holds the other rows and waits for the last
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.02)
    lookup.exec_driver_sql(touch, {"key": rows[0].key})  # waits for the batch, until the batch is rolled back
    lookup.commit()
    lookup.close()
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], UpsertResult), outcome
    assert outcome[0].transitions == 50  # run again whole: nothing half-written, nothing twice
    assert store.count(ConnectionTransition) == 50
    deadline = time.monotonic() + 10
    while deadlocks() == before:  # PostgreSQL's statistics arrive within a second or so
        assert time.monotonic() < deadline, "no deadlock happened: the test did not test the retry"
        time.sleep(0.1)


def test_a_sqlite_batch_holds_the_write_lock_before_it_reads_the_states(tmp_path):
    """Another writer cannot change a state between the batch's read and its write (it would be recorded twice)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    url = f"sqlite:///{tmp_path / 'lock.db'}"
    store = Store.from_url(url)
    store.upsert_connections([conn(1)], source="sync")
    other = Store(create_engine(url, connect_args={"timeout": 0.05}))  # gives up at once when the file is locked
    attempts: list[str] = []

    def another_writer(_conn, _cursor, statement, *_args) -> None:
        if not attempts and "user_connections" in statement:  # after the batch's first statement
            try:
                other.upsert_connections([conn(1, "failed")], source="lookup")
                attempts.append("written")
            except OperationalError:
                attempts.append("locked")

    event.listen(store.engine, "after_cursor_execute", another_writer)
    store.upsert_connections([conn(1, "failed")], source="sync")
    assert attempts == ["locked"]
    assert [(t.from_state, t.to_state) for t in store.transitions(conn(1).key)] == [(None, "operational"),
                                                                                ("operational", "failed")]
    other.engine.dispose()
    store.engine.dispose()


def test_a_created_at_whose_offset_has_seconds_is_stored_exactly(store):
    created = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=15)))
    store.upsert_connections([conn(1, created_at=created)], source="lookup")
    assert store.stored_connection(conn(1).key).created_at == created  # JSON would keep +05:30 only


def test_a_lost_postgresql_session_leaves_the_sync_its_own_outcome(store):
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL's advisory lock lives in a session that can be lost")
    from sqlalchemy import text

    # The holder's session ends under it, as a server restart or idle_session_timeout ends it.
    with store.sync_lock("test") as lock, store.engine.connect() as other:
        store.upsert_connections([conn(1)], source="sync")
        store.upsert_rows([connection_row(conn(1))], source="sync", locked=lock)  # held: the batch goes in
        holders = other.scalars(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            # this schema's lock only: another run's sync may hold its own in the same database
            "AND objid::text::bigint = (hashtext(current_schema() || 'pica-sync:test')::bigint & 4294967295)")).all()
        assert holders == [lock.pid]
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holders[0]})
        deadline = time.monotonic() + 10  # the session ends a moment after it is told to
        while other.scalar(text("SELECT count(*) FROM pg_locks WHERE pid = :pid"), {"pid": lock.pid}):
            assert time.monotonic() < deadline, "the terminated session kept its lock"
            time.sleep(0.02)
        # Another sync takes the lock now, in this process as the dashboard's threads would: the first one's next
        # batch stops it, writing nothing, and the new holder's batches go in.
        with store.sync_lock("test") as second:
            with pytest.raises(SyncLockLost, match="lost its lock"):
                store.upsert_rows([connection_row(conn(2))], source="sync", locked=lock)
            assert store.stored_connection(conn(2).key) is None
            store.upsert_rows([connection_row(conn(3))], source="sync", locked=second)
        assert store.stored_connection(conn(3).key) is not None
    with store.sync_lock("test"):  # leaving did not raise, and the lock can be taken again
        pass


def test_sync_in_progress_asks_the_lock_and_settles_a_run_whose_process_ended(store, database_url):
    other = Store.from_url(database_url)  # as another process would hold it
    try:
        with other.sync_lock("test"):
            run = other.start_sync("test", 300)
            assert store.sync_in_progress("test") and not store.sync_in_progress("live")
            assert store.sync_run(run.id).status == "running"
        assert not store.sync_in_progress("test")  # the holder is gone: its run stopped before it finished
        assert store.sync_run(run.id).status == "interrupted"
        with store.sync_lock("test"):  # asking left the lock free
            pass
    finally:
        other.engine.dispose()


def test_older_news_never_overwrites_a_row_seen_later(store):
    """A lookup's cached answer (fetched before a sync) is stored after it: it must not undo what the sync saw."""
    synced = utcnow()
    store.upsert_connections([conn(1, "operational")], source="sync", seen_at=synced - timedelta(minutes=5))
    store.upsert_connections([conn(1, "failed")], source="sync", seen_at=synced)
    cached = synced - timedelta(seconds=50)  # fetched then, stored now: still 'operational', and news of conn(2)
    result = store.upsert_connections([conn(1, "operational"), conn(2, "degraded")], source="lookup", seen_at=cached)
    row = store.stored_connection(conn(1).key)
    assert (row.state, row.last_seen_at, row.state_since) == ("failed", synced, synced)
    assert [(t.from_state, t.to_state) for t in store.transitions(conn(1).key)] == [
        (None, "operational"), ("operational", "failed")]
    assert result.transitions == 0 and result.inserted == 1
    assert store.stored_connection(conn(2).key).state == "degraded"  # what only the lookup knew is kept
    later = store.upsert_connections([conn(1, "operational")], source="lookup", seen_at=synced + timedelta(seconds=1))
    assert later.transitions == 1 and store.stored_connection(conn(1).key).state == "operational"  # newer news is stored


def test_a_row_without_created_at_keeps_the_stored_one(store):
    created = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    store.upsert_connections([conn(1, created_at=created)], source="sync")
    store.upsert_connections([conn(1, "failed")], source="sync")  # changed, and Pica left createdAt out
    assert store.stored_connection(conn(1).key).created_at == created
    store.upsert_connections([conn(2)], source="sync")  # new without it: when first seen
    fresh = store.stored_connection(conn(2).key)
    assert fresh.created_at == fresh.first_seen_at


def test_a_first_sighting_dates_from_the_pass_start_but_never_before_its_creation(store):
    """A connection made while a long sync ran read "failed since <before it existed> or earlier"."""
    began = utcnow() - timedelta(minutes=10)
    created = utcnow() - timedelta(minutes=2)
    store.upsert_rows([connection_row(conn(1, "failed", created_at=created)), connection_row(conn(2, "failed"))],
                      source="sync", first_seen_since=began)
    assert store.stored_connection(conn(1).key).state_since == created
    assert store.stored_connection(conn(2).key).state_since == began  # no createdAt: the pass's start
