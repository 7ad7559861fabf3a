"""The dashboard's own database (SQLModel): SQLite by default, PostgreSQL through DATABASE_URL.

Tables
- `user_connections`: the seed guide's table (id, user_id, platform, connection_key unique,
  environment, state, created_at, updated_at), extended with identity type, Pica's connection
  id, tags, active, first/last seen (and what first saw it), when the current state began and the
  last sync that saw it. No foreign key from user_id: a connection must be storable for any identity.
- `connection_transitions`: append-only; one row each time a state really changes. The first
  sighting is the connection's own row (`transitions()` puts it first), so a first sync of 50,000
  connections writes 50,000 rows, not 100,000.
- `sync_runs`: one row per fleet sync, with the pages that failed, so a sync can resume.
- `passthrough_calls`: console history (redacted, bodies truncated).
- `audit_events`: who did what to which target, and how it went.

All times are timezone-aware UTC (SQLModel stores them as UTC on both databases).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import JSON, Column, DateTime, Index, event, func, or_
from sqlalchemy.engine import Engine, make_url
from pydantic_core import from_json, to_json
from sqlmodel import Field, Session, SQLModel, create_engine, select

from .models import Connection, ConnectionRow, connection_row, row_defaults

SCHEMA_VERSION = 2

# What brings a database from version N-1 to N (create_all makes new tables, never changes existing ones).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Indexes no query used (identities are looked up at Pica; `last_sync_id != n` cannot use one; the state
    # filter reads a scan's worth anyway), which every row a fleet sync inserted or touched paid for.
    # The first sighting moved from a transition row to the connection's row (first_seen_by): the fleet sync's
    # first run wrote every connection twice. A removed connection's first sighting stays: it is all there is.
    2: ("DROP INDEX IF EXISTS ix_user_connections_state", "DROP INDEX IF EXISTS ix_user_connections_last_sync_id",
        "DROP INDEX IF EXISTS ix_user_connections_user_id",
        "ALTER TABLE user_connections ADD COLUMN first_seen_by VARCHAR(16)",
        "UPDATE user_connections SET first_seen_by = (SELECT t.source FROM connection_transitions t WHERE "
        "t.connection_key = user_connections.connection_key AND t.from_state IS NULL ORDER BY t.at LIMIT 1)",
        "DELETE FROM connection_transitions WHERE from_state IS NULL AND connection_key IN "
        "(SELECT connection_key FROM user_connections)"),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class UserConnection(SQLModel, table=True):
    __tablename__ = "user_connections"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str | None = Field(default=None, max_length=128)  # the Pica identity (looked up at Pica, not here)
    platform: str = Field(max_length=120)  # aggregated by GROUP BY over the fleet: an index would only slow writes
    connection_key: str = Field(unique=True, max_length=400)
    environment: str = Field(max_length=8)
    state: str = Field(max_length=16)
    created_at: datetime
    updated_at: datetime
    identity_type: str | None = Field(default=None, max_length=16)
    pica_id: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    active: bool = True
    first_seen_at: datetime
    first_seen_by: str | None = Field(default=None, max_length=16)  # sync | lookup | connect | refresh
    last_seen_at: datetime
    state_since: datetime
    last_sync_id: int | None = None
    fingerprint: str | None = Field(default=None, max_length=16)  # of Pica's fields: unchanged rows are only touched


class ConnectionTransition(SQLModel, table=True):
    __tablename__ = "connection_transitions"
    __table_args__ = (Index("ix_transitions_key_at", "connection_key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    connection_key: str = Field(max_length=400)
    user_id: str | None = Field(default=None, max_length=128)
    platform: str = Field(max_length=120)
    from_state: str | None = Field(default=None, max_length=16)  # None: the first sighting (see Store.transitions)
    to_state: str = Field(max_length=16)
    at: datetime = Field(index=True)
    source: str = Field(max_length=16)  # sync | lookup | connect | refresh
    sync_id: int | None = None


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field(default="running", max_length=16)  # running | complete | partial | failed
    environment: str = Field(default="test", max_length=8)
    page_size: int = 0
    pages_total: int = 0
    pages_done: int = 0
    rows_seen: int = 0
    failed_pages: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    error: str | None = None
    resumed_from: int | None = None


class PassthroughCallRecord(SQLModel, table=True):
    __tablename__ = "passthrough_calls"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=200)
    environment: str = Field(max_length=8)
    connection_key: str = Field(index=True, max_length=400)
    platform: str = Field(index=True, max_length=120)
    action_id: str = Field(max_length=200)
    action_title: str | None = Field(default=None, max_length=300)
    method: str = Field(max_length=8)
    path: str = Field(max_length=2000)
    query: list[list[str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    request_headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    body_kind: str = Field(default="none", max_length=16)  # none | json | form | multipart | raw
    request_body: str | None = None
    request_truncated: bool = False
    status: int | None = Field(default=None, index=True)
    response_headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    response_body: str | None = None
    response_truncated: bool = False
    response_size: int = 0
    elapsed_ms: float | None = None
    error: str | None = None


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(index=True, max_length=200)
    action: str = Field(index=True, max_length=40)
    target: str = Field(max_length=400)
    outcome: str = Field(max_length=16)  # ok | error | refused
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class SchemaInfo(SQLModel, table=True):
    __tablename__ = "schema_info"

    id: int = Field(default=1, primary_key=True)
    version: int


# --- engine ---------------------------------------------------------------------------------------------
def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # WAL: readers never block the sync's writer
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    transitions: int = 0  # real state changes (first sightings are counted in `inserted`)


class Store:
    """Every query the dashboard makes of its database, in one place."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str) -> Store:
        store = cls(make_engine(url))
        store.create_schema()
        return store

    def create_schema(self) -> None:
        """Create what is missing, then run the migrations this database has not had."""
        SQLModel.metadata.create_all(self.engine)
        with self.session() as session:
            info = session.get(SchemaInfo, 1)
            if info is None:  # a new database: create_all made the current schema
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
                return
            for version in range(info.version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    session.connection().exec_driver_sql(statement)
                info.version = version
            session.add(info)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    # --- connections --------------------------------------------------------------------------------
    def upsert_connections(self, connections: Sequence[Connection], *, source: str, sync_id: int | None = None,
                           seen_at: datetime | None = None) -> UpsertResult:
        """Store what a lookup, a refresh or the Connect page learnt (see `upsert_rows`)."""
        return self.upsert_rows([connection_row(c) for c in connections], source=source, sync_id=sync_id,
                                seen_at=seen_at)

    def upsert_rows(self, rows: Sequence[ConnectionRow], *, source: str, sync_id: int | None = None,
                    seen_at: datetime | None = None) -> UpsertResult:
        """Idempotent upsert keyed by connection key; a transition row only when a stored state changes.

        A few set-based statements whatever the batch size, each given the batch as one JSON document: read
        the stored rows' state and fingerprint while touching them (last seen, last sync), write the new and
        changed rows, append the transitions. A re-sync of an unchanged fleet is the touch alone.
        """
        if not rows:
            return UpsertResult()
        now = seen_at or utcnow()
        unique = {r["key"]: r for r in rows}  # last one wins if a batch repeats a key
        fingerprints = {key: _fingerprint(r) for key, r in unique.items()}
        with self.engine.begin() as connection:
            stored = {key: (state, fingerprint) for key, state, fingerprint in self._touch(connection, list(unique),
                                                                                          now, sync_id)}
            # Sorted by key: neighbouring inserts land on the same index pages (about 15 % less work on SQLite).
            written = sorted((r for key, r in unique.items() if stored.get(key, (None, None))[1] != fingerprints[key]),
                             key=lambda r: r["key"])
            if written:
                bulk = self._bulk(UserConnection)
                bulk.execute(connection, {
                    "connection_key": [r["key"] for r in written], "pica_id": [r["id"] for r in written],
                    "platform": [r["platform"] for r in written],
                    "user_id": [_field(r, "identity") for r in written],
                    "identity_type": [_field(r, "identityType") for r in written],
                    "environment": [_field(r, "environment") for r in written],
                    "state": [_field(r, "state") for r in written], "tags": [_field(r, "tags") for r in written],
                    "active": [_field(r, "active") for r in written],
                    "created_at": [_utc(_field(r, "createdAt")) or now for r in written],
                    "fingerprint": [fingerprints[r["key"]] for r in written],
                    "updated_at": now, "first_seen_at": now, "first_seen_by": source, "last_seen_at": now,
                    "state_since": now, "last_sync_id": sync_id,
                }, _UPSERT_CONNECTION)
            moved = [r for key, r in unique.items() if key in stored and stored[key][0] != _field(r, "state")]
            if moved:
                bulk = self._bulk(ConnectionTransition)
                bulk.execute(connection, {
                    "connection_key": [r["key"] for r in moved], "user_id": [_field(r, "identity") for r in moved],
                    "platform": [r["platform"] for r in moved],
                    "to_state": [_field(r, "state") for r in moved],
                    "from_state": [stored[r["key"]][0] for r in moved],
                    "at": now, "source": source, "sync_id": sync_id,
                })
        return UpsertResult(inserted=len(unique) - len(stored), updated=len(stored), transitions=len(moved))

    def _touch(self, connection, keys: list[str], now: datetime, sync_id: int | None) -> list[tuple]:
        """Mark these keys seen now; (key, state, fingerprint) of those already stored."""
        keys_json = to_json(keys).decode()
        if self.dialect == "sqlite":
            # One statement each and one row back: the driver gives up the GIL for the whole statement, not
            # once per row, so the writer thread works while the fetching thread parses.
            found = connection.exec_driver_sql(
                "SELECT json_group_array(json_array(connection_key, state, fingerprint)) FROM user_connections "
                "WHERE connection_key IN (SELECT value FROM json_each(?))", (keys_json,)).scalar_one()
            connection.exec_driver_sql(
                "UPDATE user_connections SET last_seen_at = ?, last_sync_id = COALESCE(?, last_sync_id) "
                "WHERE connection_key IN (SELECT value FROM json_each(?))", (_sqlite_datetime(now), sync_id, keys_json))
            return [tuple(row) for row in from_json(found)]
        return connection.exec_driver_sql(
            "UPDATE user_connections AS c SET last_seen_at = %s, last_sync_id = COALESCE(%s, c.last_sync_id) "
            "FROM json_array_elements_text(%s::json) AS k(key) WHERE c.connection_key = k.key "
            "RETURNING c.connection_key, c.state, c.fingerprint", (now, sync_id, keys_json)).all()

    def _bulk(self, model: type[SQLModel]) -> _BulkInsert:
        key = (model, self.dialect)
        if key not in _BULK:
            _BULK[key] = _BulkInsert(model.__table__, self.engine.dialect)
        return _BULK[key]

    def remove_connection(self, key: str) -> None:
        """Forget a deleted connection (its transitions stay: they are history)."""
        with self.session() as session:
            session.execute(UserConnection.__table__.delete().where(UserConnection.connection_key == key))

    def stored_connection(self, key: str) -> UserConnection | None:
        with self.session() as session:
            return session.exec(select(UserConnection).where(UserConnection.connection_key == key)).first()

    def stored_connections(self, keys: Sequence[str]) -> list[UserConnection]:
        """The stored rows of these keys (none asked, none read: not the whole fleet)."""
        if not keys:
            return []
        with self.session() as session:
            return list(session.exec(select(UserConnection).where(UserConnection.connection_key.in_(list(keys)))))

    def transitions(self, key: str) -> list[ConnectionTransition]:
        """State history, oldest first: the first sighting (from the connection's row), then every change."""
        with self.session() as session:
            changes = list(session.exec(
                select(ConnectionTransition).where(ConnectionTransition.connection_key == key)
                .order_by(ConnectionTransition.at, ConnectionTransition.id)))
            row = session.exec(select(UserConnection).where(UserConnection.connection_key == key)).first()
        if row is None or (changes and changes[0].from_state is None):  # removed, or stored before version 2
            return changes
        first = ConnectionTransition(connection_key=key, user_id=row.user_id, platform=row.platform, from_state=None,
                                     to_state=changes[0].from_state if changes else row.state, at=row.first_seen_at,
                                     source=row.first_seen_by or "sync")
        return [first, *changes]

    def transitions_since(self, since: datetime, limit: int = 500) -> list[ConnectionTransition]:
        with self.session() as session:
            return list(session.exec(
                select(ConnectionTransition).where(ConnectionTransition.at >= since,
                                                   ConnectionTransition.from_state.is_not(None))
                .order_by(ConnectionTransition.at.desc(), ConnectionTransition.id.desc()).limit(limit)))

    # --- fleet aggregates (computed by the database) -------------------------------------------------------
    def state_counts(self, environment: str | None = None) -> dict[str, int]:
        with self.session() as session:
            query = select(UserConnection.state, func.count()).group_by(UserConnection.state)
            if environment:
                query = query.where(UserConnection.environment == environment)
            return dict(session.execute(query).all())

    def counts_by(self, column: str, environment: str | None = None) -> list[tuple[str | None, str, int]]:
        """(platform or identity_type, state, count) rows."""
        col = {"platform": UserConnection.platform, "identity_type": UserConnection.identity_type}[column]
        with self.session() as session:
            query = select(col, UserConnection.state, func.count()).group_by(col, UserConnection.state).order_by(col)
            if environment:
                query = query.where(UserConnection.environment == environment)
            return [tuple(r) for r in session.execute(query).all()]

    def usage_by_platform(self, environment: str | None = None) -> dict[str, int]:
        with self.session() as session:
            query = select(UserConnection.platform, func.count()).group_by(UserConnection.platform)
            if environment:
                query = query.where(UserConnection.environment == environment)
            return dict(session.execute(query).all())

    def attention(self, environment: str | None = None, limit: int = 500) -> list[UserConnection]:
        """Failed and degraded connections, longest in that state first."""
        with self.session() as session:
            query = select(UserConnection).where(UserConnection.state.in_(("failed", "degraded")))
            if environment:
                query = query.where(UserConnection.environment == environment)
            return list(session.exec(query.order_by(UserConnection.state_since, UserConnection.id).limit(limit)))

    def not_seen_in(self, sync_id: int, environment: str | None = None, limit: int = 500) -> list[UserConnection]:
        with self.session() as session:
            query = select(UserConnection).where(
                or_(UserConnection.last_sync_id.is_(None), UserConnection.last_sync_id != sync_id))
            if environment:
                query = query.where(UserConnection.environment == environment)
            return list(session.exec(query.order_by(UserConnection.last_seen_at).limit(limit)))

    def fleet_rows(self, environment: str | None = None) -> list[UserConnection]:
        with self.session() as session:
            query = select(UserConnection)
            if environment:
                query = query.where(UserConnection.environment == environment)
            return list(session.exec(query.order_by(UserConnection.user_id, UserConnection.platform)))

    # --- syncs ---------------------------------------------------------------------------------------------
    def start_sync(self, environment: str, page_size: int, resumed_from: int | None = None) -> SyncRun:
        with self.session() as session:
            run = SyncRun(started_at=utcnow(), environment=environment, page_size=page_size, resumed_from=resumed_from)
            session.add(run)
            session.flush()
            return run

    def update_sync(self, sync_id: int, **values: Any) -> SyncRun:
        with self.session() as session:
            run = session.get(SyncRun, sync_id)
            for name, value in values.items():
                setattr(run, name, value)
            session.add(run)
            return run

    def sync_run(self, sync_id: int) -> SyncRun | None:
        with self.session() as session:
            return session.get(SyncRun, sync_id)

    def last_sync(self, environment: str | None = None, *, statuses: Sequence[str] = ("complete", "partial")
                  ) -> SyncRun | None:
        with self.session() as session:
            query = select(SyncRun).where(SyncRun.status.in_(list(statuses)))
            if environment:
                query = query.where(SyncRun.environment == environment)
            return session.exec(query.order_by(SyncRun.id.desc()).limit(1)).first()

    # --- console history ------------------------------------------------------------------------------------
    def record_call(self, record: PassthroughCallRecord) -> PassthroughCallRecord:
        with self.session() as session:
            session.add(record)
            session.flush()
            return record

    def call(self, call_id: int) -> PassthroughCallRecord | None:
        with self.session() as session:
            return session.get(PassthroughCallRecord, call_id)

    def search_calls(self, *, platform: str | None = None, action: str | None = None, status: int | None = None,
                     text_query: str | None = None, connection_key: str | None = None,
                     limit: int = 200) -> list[PassthroughCallRecord]:
        with self.session() as session:
            query = select(PassthroughCallRecord)
            if platform:
                query = query.where(PassthroughCallRecord.platform == platform)
            if action:
                like = f"%{_escape_like(action)}%"
                query = query.where(or_(PassthroughCallRecord.action_title.ilike(like, escape="\\"),
                                        PassthroughCallRecord.action_id.ilike(like, escape="\\")))
            if status is not None:
                query = query.where(PassthroughCallRecord.status == status)
            if connection_key:
                query = query.where(PassthroughCallRecord.connection_key == connection_key)
            if text_query:
                like = f"%{_escape_like(text_query)}%"
                query = query.where(or_(PassthroughCallRecord.request_body.ilike(like, escape="\\"),
                                        PassthroughCallRecord.response_body.ilike(like, escape="\\"),
                                        PassthroughCallRecord.path.ilike(like, escape="\\")))
            return list(session.exec(query.order_by(PassthroughCallRecord.id.desc()).limit(limit)))

    def call_platforms(self) -> list[str]:
        """Platforms that have calls in history (for the console's filter)."""
        with self.session() as session:
            return list(session.exec(select(PassthroughCallRecord.platform).distinct()
                                     .order_by(PassthroughCallRecord.platform)))

    # --- audit ----------------------------------------------------------------------------------------------
    def audit(self, *, actor: str, action: str, target: str, outcome: str, **detail: Any) -> AuditEvent:
        event_ = AuditEvent(at=utcnow(), actor=actor, action=action, target=target, outcome=outcome,
                            detail=json.loads(json.dumps(detail, default=str)))
        with self.session() as session:
            session.add(event_)
            session.flush()
            return event_

    def audit_events(self, *, actor: str | None = None, action: str | None = None, outcome: str | None = None,
                     since: datetime | None = None, target: str | None = None,
                     limit: int = 1000) -> list[AuditEvent]:
        with self.session() as session:
            query = select(AuditEvent)
            if actor:
                query = query.where(AuditEvent.actor == actor)
            if action:
                query = query.where(AuditEvent.action == action)
            if outcome:
                query = query.where(AuditEvent.outcome == outcome)
            if since:
                query = query.where(AuditEvent.at >= since)
            if target:
                query = query.where(AuditEvent.target.ilike(f"%{_escape_like(target)}%", escape="\\"))
            return list(session.exec(query.order_by(AuditEvent.id.desc()).limit(limit)))

    def count(self, model: type[SQLModel]) -> int:
        with self.session() as session:
            return session.execute(select(func.count()).select_from(model)).scalar_one()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- bulk writes ------------------------------------------------------------------------------------------------
# A fleet sync writes tens of thousands of rows. Through SQLAlchemy's executemany every value passes its type's
# bind processors in Python, about 13 times the database's own work for a 300-row page (bench/fleet_sync.py);
# here each column gets one converter to what the driver takes, and the driver's executemany does the rest.
# The values stored are the ones SQLAlchemy would store: reads go through the models as usual.

_UPSERT_CONNECTION = """
 ON CONFLICT (connection_key) DO UPDATE SET
  user_id = excluded.user_id, platform = excluded.platform, environment = excluded.environment,
  state = excluded.state, identity_type = excluded.identity_type, pica_id = excluded.pica_id,
  tags = excluded.tags, active = excluded.active, created_at = excluded.created_at,
  last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at, fingerprint = excluded.fingerprint,
  state_since = CASE WHEN user_connections.state <> excluded.state THEN excluded.state_since
                     ELSE user_connections.state_since END,
  last_sync_id = COALESCE(excluded.last_sync_id, user_connections.last_sync_id)"""


_ROW_DEFAULTS = row_defaults()


def _field(row: ConnectionRow, name: str) -> Any:
    """A field of a row, or Connection's default when Pica left it out."""
    return row.get(name, _ROW_DEFAULTS.get(name))


def _fingerprint(row: ConnectionRow) -> str:
    """A stable digest (process-independent, unlike hash()) of what can change for a connection key. The key
    itself names the environment, platform and identity; id and createdAt are facts of its creation."""
    text = f"{_field(row, 'state')}\x1f{_field(row, 'active')}\x1f{_field(row, 'tags')}\x1f{_field(row, 'identityType')}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text, in UTC (read back as UTC by the models)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class _BulkInsert:
    """INSERT of many rows given as columns (a list of values, or one value for every row), as one statement
    whose rows come from one JSON document serialised by pydantic-core: SQLite reads it with json_each, and
    PostgreSQL with json_populate_recordset (typed by the server). Against the drivers' executemany: a third of
    the CPU in Python, and SQLite's driver gives up the GIL once per batch instead of once per row, so the
    sync's writer thread and its fetching thread really run side by side (bench/fleet_sync.py)."""

    def __init__(self, table, dialect) -> None:
        self.table = table.name
        self.names = [c.name for c in table.columns if not c.primary_key]
        self.dialect = dialect.name
        self.sql_types = {name: table.c[name].type.compile(dialect=dialect) for name in self.names}
        # SQLite keeps datetimes as SQLAlchemy's text, in UTC (the models read them back as UTC).
        self.texts = {name for name in self.names if isinstance(table.c[name].type, DateTime)} if self.dialect == "sqlite" else set()

    def execute(self, connection, columns: Mapping[str, Any], suffix: str = "") -> None:
        def stored(name: str, value: Any) -> Any:
            return _sqlite_datetime(value) if name in self.texts and value is not None else value

        varying = [name for name in self.names if isinstance(columns[name], list)]
        values = [[stored(name, v) for v in columns[name]] for name in varying]
        scalars = {name: stored(name, columns[name]) for name in self.names if name not in varying}
        if self.dialect == "sqlite":
            position = {name: i for i, name in enumerate(varying)}
            select = [f"json_extract(value, '$[{position[name]}]')" if name in position else f":{name}"
                      for name in self.names]
            source, document = "json_each(:rows) WHERE true", to_json(list(zip(*values))).decode()
        else:
            select = [f"u.{name}" if name in varying else f"%({name})s::{self.sql_types[name]}" for name in self.names]
            source = f"json_populate_recordset(NULL::{self.table}, %(rows)s) AS u"
            document = to_json([dict(zip(varying, row)) for row in zip(*values)]).decode()
        connection.exec_driver_sql(f"INSERT INTO {self.table} ({', '.join(self.names)}) SELECT {', '.join(select)} "
                                   f"FROM {source}{suffix}", {**scalars, "rows": document})


_BULK: dict[tuple[type, str], _BulkInsert] = {}
