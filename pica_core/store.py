"""The dashboard's own database (SQLModel): SQLite by default, PostgreSQL through DATABASE_URL.

Tables
- `user_connections`: the seed guide's table (id, user_id, platform, connection_key unique,
  environment, state, created_at, updated_at), extended with identity type, Pica's connection
  id, tags, active, first/last seen, when the current state began and the last sync that saw it.
  No foreign key from user_id: a connection must be storable for any identity.
- `connection_transitions`: append-only; one row when a connection is first seen and one each
  time its state really changes.
- `sync_runs`: one row per fleet sync, with the pages that failed, so a sync can resume.
- `passthrough_calls`: console history (redacted, bodies truncated).
- `audit_events`: who did what to which target, and how it went.

All times are timezone-aware UTC (SQLModel stores them as UTC on both databases).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, TypeDecorator, event, func, or_
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Field, Session, SQLModel, create_engine, select

from .models import Connection

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class UserConnection(SQLModel, table=True):
    __tablename__ = "user_connections"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str | None = Field(default=None, index=True, max_length=128)  # the Pica identity
    platform: str = Field(max_length=120)  # aggregated by GROUP BY over the fleet: an index would only slow writes
    connection_key: str = Field(unique=True, max_length=400)
    environment: str = Field(max_length=8)
    state: str = Field(index=True, max_length=16)
    created_at: datetime
    updated_at: datetime
    identity_type: str | None = Field(default=None, max_length=16)
    pica_id: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    active: bool = True
    first_seen_at: datetime
    last_seen_at: datetime
    state_since: datetime
    last_sync_id: int | None = Field(default=None, index=True)
    fingerprint: str | None = Field(default=None, max_length=16)  # of Pica's fields: unchanged rows are only touched


class ConnectionTransition(SQLModel, table=True):
    __tablename__ = "connection_transitions"
    __table_args__ = (Index("ix_transitions_key_at", "connection_key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    connection_key: str = Field(max_length=400)
    user_id: str | None = Field(default=None, max_length=128)
    platform: str = Field(max_length=120)
    from_state: str | None = Field(default=None, max_length=16)  # None: first time the dashboard saw it
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
        SQLModel.metadata.create_all(self.engine)
        with self.session() as session:
            if session.get(SchemaInfo, 1) is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    # --- connections --------------------------------------------------------------------------------
    def upsert_connections(self, connections: Sequence[Connection], *, source: str, sync_id: int | None = None,
                           seen_at: datetime | None = None) -> UpsertResult:
        """Idempotent upsert keyed by connection key; a transition row only when the state changes.

        At most four statements whatever the batch size: read what is stored, write the new and changed rows,
        touch the unchanged ones (last seen, last sync), append the transitions.
        """
        if not connections:
            return UpsertResult()
        now = seen_at or utcnow()
        unique = {c.key: c for c in connections}  # last one wins if a batch repeats a key
        with self.session() as session:
            stored = {key: (state, fingerprint) for key, state, fingerprint in session.execute(
                select(UserConnection.connection_key, UserConnection.state, UserConnection.fingerprint)
                .where(UserConnection.connection_key.in_(list(unique)))).all()}
            fingerprints = {key: _fingerprint(c) for key, c in unique.items()}
            written = [c for key, c in unique.items() if stored.get(key, (None, None))[1] != fingerprints[key]]
            unchanged = [key for key in unique if stored.get(key, (None, None))[1] == fingerprints[key]]
            connection = session.connection()
            if written:
                bulk = self._bulk(UserConnection)
                connection.exec_driver_sql(bulk.insert_sql + _UPSERT_CONNECTION, bulk.params(len(written), {
                    "user_id": [c.identity for c in written], "platform": [c.platform for c in written],
                    "connection_key": [c.key for c in written], "environment": [c.environment for c in written],
                    "state": [c.state for c in written], "created_at": [_utc(c.created_at) or now for c in written],
                    "identity_type": [c.identity_type for c in written], "pica_id": [c.id for c in written],
                    "tags": [list(c.tags) for c in written], "active": [c.active for c in written],
                    "fingerprint": [fingerprints[c.key] for c in written],
                    "updated_at": now, "first_seen_at": now, "last_seen_at": now, "state_since": now,
                    "last_sync_id": sync_id,
                }))
            if unchanged:
                session.execute(UserConnection.__table__.update()
                                .where(UserConnection.connection_key.in_(unchanged))
                                .values(last_seen_at=now, last_sync_id=func.coalesce(sync_id, UserConnection.last_sync_id)))
            moved = [c for key, c in unique.items() if key not in stored or stored[key][0] != c.state]
            if moved:
                bulk = self._bulk(ConnectionTransition)
                connection.exec_driver_sql(bulk.insert_sql, bulk.params(len(moved), {
                    "connection_key": [c.key for c in moved], "user_id": [c.identity for c in moved],
                    "platform": [c.platform for c in moved], "to_state": [c.state for c in moved],
                    "from_state": [stored[c.key][0] if c.key in stored else None for c in moved],
                    "at": now, "source": source, "sync_id": sync_id,
                }))
        changes = sum(1 for c in moved if c.key in stored)
        return UpsertResult(inserted=len(unique) - len(stored), updated=len(stored), transitions=changes)

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
        with self.session() as session:
            return list(session.exec(
                select(ConnectionTransition).where(ConnectionTransition.connection_key == key)
                .order_by(ConnectionTransition.at, ConnectionTransition.id)))

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


def _fingerprint(c: Connection) -> str:
    """A stable digest of what Pica says about a connection (process-independent, unlike hash())."""
    text = repr((c.identity, c.identity_type, c.platform, c.environment, c.state, tuple(c.tags), c.active, c.id,
                 c.name, c.created_at.isoformat() if c.created_at else None))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=4096)
def _sqlite_datetime(value: datetime) -> str:
    # A sync stamps every row with the same few instants: convert each once.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _converter(column_type, dialect_name: str):
    base = column_type.impl if isinstance(column_type, TypeDecorator) else column_type
    if isinstance(base, DateTime):
        if dialect_name == "sqlite":  # SQLAlchemy's SQLite DATETIME text, in UTC (UTCDateTime reads it back as UTC)
            return lambda v: None if v is None else _sqlite_datetime(v)
        return None  # psycopg adapts aware datetimes to timestamptz
    if isinstance(base, JSON):
        if dialect_name == "sqlite":
            return json.dumps
        from psycopg.types.json import Json

        return Json
    if isinstance(base, Boolean) and dialect_name == "sqlite":
        return lambda v: None if v is None else int(v)
    return None


class _BulkInsert:
    def __init__(self, table, dialect) -> None:
        self.names = [c.name for c in table.columns if not c.primary_key]
        self.converters = [_converter(table.c[name].type, dialect.name) for name in self.names]
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.insert_sql = (f"INSERT INTO {table.name} ({', '.join(self.names)}) "
                           f"VALUES ({', '.join([mark] * len(self.names))})")

    def params(self, count: int, columns: Mapping[str, Any]) -> list[tuple]:
        """Rows for executemany from columns: a list of `count` values, or one value for every row."""
        converted = []
        for name, convert in zip(self.names, self.converters):
            values = columns[name]
            if isinstance(values, list):
                converted.append(values if convert is None else [convert(v) for v in values])
            else:
                converted.append(itertools.repeat(values if convert is None else convert(values), count))
        return list(zip(*converted))


_BULK: dict[tuple[type, str], _BulkInsert] = {}
