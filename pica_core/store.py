"""The dashboard's own database (SQLModel): SQLite by default, PostgreSQL through DATABASE_URL.

Tables
- `user_connections`: the seed guide's table (id, user_id, platform, connection_key unique,
  environment, state, created_at, updated_at), extended with identity type, Pica's connection
  id, tags, active, first/last seen (and what first saw it), when the current state began and the
  last sync that saw it. No foreign key from user_id: a connection must be storable for any identity.
- `connection_transitions`: append-only; one row each time a state really changes. The first
  sighting is the connection's own row (`transitions()` puts it first), so a first sync of 50,000
  connections writes 50,000 rows, not 100,000.
- `sync_runs`: one row per fleet sync: its progress, written with each batch of rows, and the pages a resume
  must fetch (not yet stored while it runs; those that failed or were never fetched once it ended).
- `passthrough_calls`: console history (redacted, bodies truncated).
- `audit_events`: who did what to which target, and how it went.

All times are timezone-aware UTC (SQLModel stores them as UTC on both databases).
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

try:
    import fcntl
except ImportError:  # Windows: syncs exclude each other within one process only
    fcntl = None
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import JSON, Column, Index, Text, and_, case, event, func, or_, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from pydantic_core import from_json, to_json
from sqlmodel import Field, Session, SQLModel, create_engine, select

from .errors import ConfigError
from .health import first_sighting_may_be_late
from .models import STATES, Connection, ConnectionRow, connection_row, row_defaults

SCHEMA_VERSION = 6
_ROOM_FOR_UPDATES = 50  # PostgreSQL fillfactor of user_connections (see UserConnection)

# What brings a database from version N-1 to N (create_all makes new tables, never changes existing ones). A
# (dialect, statement) pair runs on that dialect only.
MIGRATIONS: dict[int, tuple[str | tuple[str, str], ...]] = {
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
    # How many connections Pica listed when a run began: pages are offsets into that list, so a resume whose
    # first page counts otherwise must fetch every page again.
    3: ("ALTER TABLE sync_runs ADD COLUMN rows_total INTEGER NOT NULL DEFAULT 0",),
    # Room on each page for a re-sync's new row versions (see UserConnection): applies to pages written from now on.
    4: (("postgresql", f"ALTER TABLE user_connections SET (fillfactor = {_ROOM_FOR_UPDATES})"),),
    # What Pica sends is stored at whatever length it comes (see UserConnection); SQLite never checked. A change
    # of catalog only on PostgreSQL: dropping a VARCHAR's length rewrites no table and rebuilds no index.
    5: (("postgresql", "ALTER TABLE user_connections ALTER COLUMN user_id TYPE VARCHAR, ALTER COLUMN platform TYPE "
         "VARCHAR, ALTER COLUMN connection_key TYPE VARCHAR, ALTER COLUMN environment TYPE VARCHAR, ALTER COLUMN "
         "state TYPE VARCHAR, ALTER COLUMN identity_type TYPE VARCHAR, ALTER COLUMN pica_id TYPE VARCHAR"),
        ("postgresql", "ALTER TABLE connection_transitions ALTER COLUMN connection_key TYPE VARCHAR, ALTER COLUMN "
         "user_id TYPE VARCHAR, ALTER COLUMN platform TYPE VARCHAR, ALTER COLUMN from_state TYPE VARCHAR, ALTER "
         "COLUMN to_state TYPE VARCHAR"),
        # A row Pica sent without its environment was filed as test whatever its key (see _environment): the key's,
        # now. Its fingerprint leaves the environment out, so no later sync would have mended it.
        *(f"UPDATE user_connections SET environment = '{env}' WHERE substr(connection_key, 1, 6) = '{env}::' "
          f"AND environment <> '{env}'" for env in ("live", "test"))),
    # When the rate limit a run met lifts, for whoever reads the run: only the session that ran it knew, so a
    # colleague's Resume (or the same reader's after a reload) looked ready while the limit still held.
    6: (("sqlite", "ALTER TABLE sync_runs ADD COLUMN retry_at DATETIME"),
        ("postgresql", "ALTER TABLE sync_runs ADD COLUMN retry_at TIMESTAMP WITH TIME ZONE")),
}


_ROLLED_BACK_TO_RETRY = {"40P01", "40001"}  # PostgreSQL's deadlock_detected, serialization_failure


class SyncBusy(Exception):
    """Another fleet sync of this database and environment is running."""


class SyncLockLost(Exception):
    """The session holding a PostgreSQL sync's lock ended under it (a server restart, idle_session_timeout, a
    pooler): another sync may take the lock, so this one stops."""


@dataclass(frozen=True)
class HeldLock:
    """A sync lock held (`Store.sync_lock`): its environment, and on PostgreSQL the backend pid of its session."""
    environment: str
    pid: int | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


class UserConnection(SQLModel, table=True):
    __tablename__ = "user_connections"
    # A sync touches every row (last_seen_at). PostgreSQL writes a new version of each: with room on its page and no
    # indexed column changed, a heap-only one that adds no index entry (HOT). Full pages made a 50,000-row re-sync's
    # touch 60 % slower, and slower with each re-sync as the index grew (bench/fleet_sync.py).
    __table_args__ = {"postgresql_with": {"fillfactor": _ROOM_FOR_UPDATES}}

    # Pica's fields have no length here: a value longer than the contract's (a state Pica adds, say) failed its
    # batch on PostgreSQL, and every resume of it, and stopped the sync at that page for good.
    id: int | None = Field(default=None, primary_key=True)
    user_id: str | None = None  # the Pica identity (looked up at Pica, not here)
    platform: str  # aggregated by GROUP BY over the fleet: an index would only slow writes
    connection_key: str = Field(unique=True)
    environment: str
    state: str
    created_at: datetime
    updated_at: datetime
    identity_type: str | None = None
    pica_id: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    active: bool = True
    first_seen_at: datetime
    first_seen_by: str | None = Field(default=None, max_length=16)  # sync | lookup | connect | refresh
    last_seen_at: datetime
    state_since: datetime
    last_sync_id: int | None = None
    fingerprint: str | None = Field(default=None, max_length=16)  # of Pica's fields: unchanged rows are only touched

    @property
    def since_is_lower_bound(self) -> bool:
        """In this state since it was first seen, so it may have been so before (health.first_sighting_may_be_late)."""
        return self.state_since <= self.first_seen_at and first_sighting_may_be_late(self.first_seen_by)


class ConnectionTransition(SQLModel, table=True):
    __tablename__ = "connection_transitions"
    __table_args__ = (Index("ix_transitions_key_at", "connection_key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    connection_key: str  # Pica's fields: no length, as in UserConnection
    user_id: str | None = None
    platform: str
    from_state: str | None = None  # None: the first sighting (see Store.transitions)
    to_state: str
    at: datetime = Field(index=True)
    source: str = Field(max_length=16)  # sync | lookup | connect | refresh
    sync_id: int | None = None


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field(default="running", max_length=16)  # running | complete | partial | failed | interrupted
    environment: str = Field(default="test", max_length=8)
    page_size: int = 0
    pages_total: int = 0
    rows_total: int = 0
    pages_done: int = 0
    rows_seen: int = 0
    # The pages a resume must fetch: while running, those not yet stored; once ended, those not stored.
    failed_pages: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    error: str | None = None
    resumed_from: int | None = None
    retry_at: datetime | None = None  # when the rate limit the run met lifts, if Pica said: a resume before meets it


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
    outcome: str = Field(max_length=16)  # ok | error | refused | unknown (no answer, and Pica did not confirm it)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class RemovedConnection(SQLModel, table=True):
    """When the dashboard last forgot a connection Pica deleted: an answer from before that (a sync's page that
    waited for the writer, a cached lookup) does not store it again."""
    __tablename__ = "removed_connections"

    connection_key: str = Field(primary_key=True)
    removed_at: datetime


class SchemaInfo(SQLModel, table=True):
    __tablename__ = "schema_info"

    id: int = Field(default=1, primary_key=True)
    version: int


# --- the sync lock --------------------------------------------------------------------------------------
_PROCESS_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def _sync_lock(engine: Engine, environment: str) -> Iterator[int | None]:
    """A lock its holder's end releases: PostgreSQL's session advisory lock (per schema; it yields the session's
    backend pid, to check that the lock is still held), flock on a file beside a SQLite database; for an in-memory
    database, a lock in this process (no other can open it)."""
    name = f"pica-sync:{environment}"
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            lock = {"name": name}
            got = connection.scalar(text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :name))"), lock)
            pid = connection.scalar(text("SELECT pg_backend_pid()"))
            connection.commit()  # the lock outlives the transaction; an open one would hold back vacuum
            if not got:
                raise SyncBusy(name)
            try:
                yield pid
            finally:
                try:
                    connection.scalar(text("SELECT pg_advisory_unlock(hashtext(current_schema() || :name))"), lock)
                    connection.commit()
                except DBAPIError:  # the session is gone, and its lock with it: the sync's own outcome stands
                    connection.invalidate()
        return
    database = engine.url.database
    if database and database != ":memory:" and fcntl is not None:
        with _lock_file(f"{database}-sync-{environment}") as handle:  # closing it (or dying) releases it
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SyncBusy(name) from None
            yield
        return
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault((str(engine.url), environment), threading.Lock())
    if not lock.acquire(blocking=False):
        raise SyncBusy(name)
    try:
        yield
    finally:
        lock.release()


def _lock_file(name: str) -> IO:
    """The lock file `name`.lock beside a SQLite database, opened; ConfigError when it cannot be (a read-only
    folder, no permission), which failed the page and the sync command with a traceback."""
    try:
        return open(f"{name}.lock", "a")
    except OSError as exc:
        raise ConfigError(f"Cannot write {name}.lock beside the database ({exc.strerror or exc}): the dashboard needs "
                          "to write in the database's folder; set DATABASE_URL to a place it may write.") from None


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Any]:
    """A transaction that only one process at a time holds: under PostgreSQL's transaction advisory lock (per
    schema; its DDL is transactional), or flock on a file beside a SQLite database."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || 'pica-schema'))"))
            yield connection
        return
    database = engine.url.database
    with ExitStack() as stack:
        if database and database != ":memory:" and fcntl is not None:
            handle = stack.enter_context(_lock_file(f"{database}-schema"))
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits for the other process; closing the file releases it
        yield stack.enter_context(engine.begin())


def _check_lock(connection, lock: HeldLock) -> None:
    """Raise SyncLockLost unless the session `lock.pid` still holds this environment's advisory lock (a pid alone
    could be another session's by now, holding another lock)."""
    held = connection.scalar(text(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
        "AND objid::text::bigint = (hashtext(current_schema() || :name)::bigint & 4294967295))"),
        {"pid": lock.pid, "name": f"pica-sync:{lock.environment}"})
    if not held:
        raise SyncLockLost(f"The sync of the {lock.environment} environment lost its lock (its database session "
                           "ended): it stopped so that no two syncs run at once. Resume it.")


# --- engine ---------------------------------------------------------------------------------------------
# The sync's upsert materializes a CTE (AS MATERIALIZED: SQLite 3.35, 2021). Python takes the system's SQLite: an
# older one failed every sync batch with a syntax error.
SQLITE_AT_LEAST = (3, 35)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if sqlite3.sqlite_version_info < SQLITE_AT_LEAST:
            raise ConfigError(f"This Python uses SQLite {sqlite3.sqlite_version}; the dashboard needs "
                              f"{'.'.join(map(str, SQLITE_AT_LEAST))} or newer: use a newer Python build, or "
                              "PostgreSQL through DATABASE_URL.")
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file in its place, a read-only disk, no permission
                raise ConfigError(f"Cannot create the database's folder {folder} ({exc.strerror or exc}): set "
                                  "DATABASE_URL to a place the dashboard may write.") from None
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # WAL: readers never block the sync's writer
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # SQLite's LIKE and lower() fold ASCII only: "ZOË" found nothing of zoë's
            dbapi_connection.create_function("casefold", 1, lambda text: text.casefold() if isinstance(text, str)
                                             else text, deterministic=True)

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
        """Create what is missing, then run the migrations this database has not had. One process at a time
        (`_schema_lock`): two starting on a new database (the dashboard and a scheduled sync on a first deploy)
        both created the same tables, and one crashed."""
        with _schema_lock(self.engine) as connection:
            SQLModel.metadata.create_all(connection)
            version = connection.scalar(select(SchemaInfo.version).where(SchemaInfo.id == 1))
            if version is None:  # a new database: create_all made the current schema
                connection.execute(SchemaInfo.__table__.insert().values(id=1, version=SCHEMA_VERSION))
                return
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    dialect, statement = statement if isinstance(statement, tuple) else (self.dialect, statement)
                    if dialect == self.dialect:
                        connection.exec_driver_sql(statement)
            if version < SCHEMA_VERSION:
                connection.execute(SchemaInfo.__table__.update().values(version=SCHEMA_VERSION))

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
                    seen_at: datetime | None = None, sync_progress: dict[str, Any] | None = None,
                    first_seen_since: datetime | None = None, locked: HeldLock | None = None) -> UpsertResult:
        """Idempotent upsert keyed by connection key; a transition row only when a stored state changes.

        A stored row seen later than `seen_at` (when Pica answered; now by default) is left as it is, though marked
        seen by sync `sync_id`: older news never overwrites a state or records a transition. Nor does it store
        again a connection removed since (`remove_connection`).
        A few set-based statements whatever the batch size, each given its rows as one JSON document: mark the
        batch's stored rows seen, learning which are new and which changed (by fingerprint); write those; append
        the transitions. A re-sync of an unchanged fleet is the touch alone. The database reads the rows out of
        the JSON itself: the only Python per row is the fingerprint (see `_UPSERT_SQL`).
        `sync_progress` (values of run `sync_id`'s row) is written in the same transaction: a run stopped at any
        point records exactly what it stored. `first_seen_since`: the state_since of connections seen for the
        first time (a sync's start, the same for all its batches, so that "broken longest" does not order a first
        sync's finds by which of its pages came first); `seen_at` or now by default. `locked`: the sync lock the
        batch is written under (`sync_lock`'s); on PostgreSQL, raises `SyncLockLost` if its session no longer
        holds it (another sync could then be running beside this one).
        """
        if not rows:
            if sync_progress:  # empty pages (an empty fleet, a list that shrank) are stored pages too
                self.update_sync(sync_id, **sync_progress)
            return UpsertResult()
        unique = {r["key"]: r for r in rows}  # last one wins if a batch repeats a key
        fingerprints = dict(zip(unique, map(_fingerprint, unique.values())))
        sql = _UPSERT_SQL[self.dialect]
        now = seen_at or utcnow()
        since = min(first_seen_since or now, now)
        marks = {"now": _sqlite_datetime(now) if self.dialect == "sqlite" else now, "sync_id": sync_id, "source": source,
                 "since": _sqlite_datetime(since) if self.dialect == "sqlite" else since}
        pairs = {**marks, "pairs": to_json(fingerprints).decode()}

        def write(connection) -> UpsertResult:
            run = connection.exec_driver_sql
            if locked is not None and locked.pid is not None:
                _check_lock(connection, locked)
            if sql.touch_update:
                # SQLite: the UPDATE first, so the batch holds the write lock before it reads (the driver begins a
                # transaction only for writes): no other writer can change a state between the read and the write.
                run(sql.touch_update, pairs)
            changed, new = map(_json_list, run(sql.touch, pairs).one())
            if changed or new:
                written = [*new, *(key for key, _ in changed)]
                run(sql.write, {**marks, **_SQL_DEFAULTS, **sql.write_documents(
                    [unique[key] for key in written], [fingerprints[key] for key in written])})
            moved = [[key, _field(unique[key], "identity"), unique[key]["platform"], state, _field(unique[key], "state")]
                     for key, state in changed if state != _field(unique[key], "state")]
            if moved:
                run(sql.transitions, {**marks, "rows": to_json(moved).decode()})
            if sync_progress:
                connection.execute(SyncRun.__table__.update().where(SyncRun.id == sync_id).values(**sync_progress))
            return UpsertResult(inserted=len(new), updated=len(unique) - len(new), transitions=len(moved))

        return self._transaction(write)

    def _transaction(self, work: Callable[[Any], Any], attempts: int = 3) -> Any:
        """`work(connection)` in a transaction, run again when PostgreSQL rolled it back to break a deadlock: a
        sync's batch and a lookup's few rows lock rows they share in whatever order their plans take them."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as connection:
                    return work(connection)
            except DBAPIError as exc:
                if attempt == attempts or getattr(exc.orig, "sqlstate", None) not in _ROLLED_BACK_TO_RETRY:
                    raise
                time.sleep(random.uniform(0, 0.05 * attempt))  # not in step with the transaction that won

    def remove_connection(self, key: str) -> None:
        """Forget a deleted connection (its transitions stay: they are history), and when (see RemovedConnection)."""
        # One statement for the marker: two sessions forgetting the same key (a 404 just after a Delete) both
        # inserted it after merge's read, and on PostgreSQL the second failed, its DELETE with it.
        insert = (postgresql_insert if self.dialect == "postgresql" else sqlite_insert)(RemovedConnection)
        now = utcnow()
        with self.session() as session:
            session.execute(UserConnection.__table__.delete().where(UserConnection.connection_key == key))
            session.execute(insert.values(connection_key=key, removed_at=now).on_conflict_do_update(
                index_elements=["connection_key"], set_={"removed_at": now}))

    def stored_connection(self, key: str) -> UserConnection | None:
        with self.session() as session:
            return session.exec(select(UserConnection).where(UserConnection.connection_key == key)).first()

    def stored_connections(self, keys: Sequence[str]) -> list[UserConnection]:
        """The stored rows of these keys (none asked, none read: not the whole fleet)."""
        if not keys:
            return []
        with self.session() as session:
            return list(session.exec(select(UserConnection).where(UserConnection.connection_key.in_(list(keys)))))

    def seen_in_run(self, keys: Sequence[str], run: SyncRun) -> set[str]:
        """Which of these keys sync `run` stored in its current pass (since its start, which a pass over every page
        again moves: what an earlier pass stored is from a list since changed)."""
        if not keys:
            return set()
        with self.session() as session:
            return set(session.exec(select(UserConnection.connection_key).where(
                UserConnection.connection_key.in_(list(keys)), UserConnection.last_sync_id == run.id,
                UserConnection.last_seen_at >= run.started_at)))

    def stored_matching(self, *, environment: str, keys: Sequence[str] = (), identity: str | None = None,
                        identity_type: str | None = None, platform: str | None = None,
                        limit: int = 200) -> list[UserConnection]:
        """What the dashboard stored of a lookup's connections (its filters, as `Lookup.filters` gives them), the
        latest seen first: all support has when Pica cannot be asked, or no longer lists them."""
        c = UserConnection
        query = select(c).where(c.environment == environment)
        if keys:
            query = query.where(c.connection_key.in_(list(keys)))
        if identity:
            query = query.where(c.user_id == identity)
        if identity_type:
            query = query.where(c.identity_type == identity_type)
        if platform:
            query = query.where(c.platform == platform)
        with self.session() as session:
            return list(session.exec(query.order_by(c.last_seen_at.desc(), c.id).limit(limit)))

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

    def transitions_since(self, since: datetime, environment: str | None = None, limit: int = 500
                          ) -> list[ConnectionTransition]:
        """State changes since then, newest first (at most `limit`; `fleet_totals` counts them all)."""
        with self.session() as session:
            return list(session.exec(self._changes(since, environment)
                                     .order_by(ConnectionTransition.at.desc(), ConnectionTransition.id.desc())
                                     .limit(limit)))

    def _changes(self, since: datetime, environment: str | None):
        query = select(ConnectionTransition).where(ConnectionTransition.at >= since,
                                                   ConnectionTransition.from_state.is_not(None))
        if environment:  # a connection key starts with its environment ("test::gmail::…")
            query = query.where(ConnectionTransition.connection_key.startswith(f"{environment}::", autoescape=True))
        return query

    # --- fleet aggregates (computed by the database) -------------------------------------------------------
    # They count the current fleet: what the latest complete sync saw, and what lookups, refreshes and connects
    # have seen since. A connection that sync did not see is gone from Pica: `not_seen` lists it.
    def _current(self, query, environment: str | None):
        if environment:
            query = query.where(UserConnection.environment == environment)
        cutoff = self._fleet_cutoff(environment)
        return query.where(or_(cutoff.is_(None), UserConnection.last_seen_at >= cutoff))

    @staticmethod
    def _fleet_cutoff(environment: str | None):
        """When the latest complete sync began (NULL before any), as a subquery each aggregate reads in its own
        statement: no extra round trip per table. (A sync that completes between two of a view's statements moves
        the later ones' cutoff; the next view reads it everywhere.)"""
        query = select(SyncRun.started_at).where(SyncRun.status == "complete")
        if environment:
            query = query.where(SyncRun.environment == environment)
        return query.order_by(SyncRun.id.desc()).limit(1).scalar_subquery()

    @staticmethod
    def _counted_state():
        """The state a count goes under: one Pica added since the contract (stored as it came) counts as unknown, as
        the Connections page counts it; the overview's four metrics and its charts left it out."""
        return case((UserConnection.state.in_(STATES), UserConnection.state), else_="unknown").label("state")

    def state_counts(self, environment: str | None = None) -> dict[str, int]:
        state = self._counted_state()
        with self.session() as session:
            query = select(state, func.count()).group_by(state)
            return dict(session.execute(self._current(query, environment)).all())

    def counts_by(self, column: str, environment: str | None = None) -> list[tuple[str | None, str, int]]:
        """(platform or identity_type, state, count) rows."""
        col = {"platform": UserConnection.platform, "identity_type": UserConnection.identity_type}[column]
        state = self._counted_state()
        with self.session() as session:
            query = select(col, state, func.count()).group_by(col, state).order_by(col)
            return [tuple(r) for r in session.execute(self._current(query, environment)).all()]

    def found_since(self, since: datetime, environment: str | None = None) -> int:
        """How many of the connections `state_counts` counts were first seen after `since` (a lookup, a Connect)."""
        with self.session() as session:
            query = select(func.count()).select_from(UserConnection).where(UserConnection.first_seen_at > since)
            return session.execute(self._current(query, environment)).scalar_one()

    def usage_by_platform(self, environment: str | None = None) -> dict[str, int]:
        with self.session() as session:
            query = select(UserConnection.platform, func.count()).group_by(UserConnection.platform)
            return dict(session.execute(self._current(query, environment)).all())

    def attention(self, environment: str | None = None, limit: int = 500) -> list[UserConnection]:
        """Failed and degraded connections, longest in that state first (at most `limit`). Many share one
        `state_since`, the first sync that found them broken: among those, failed before degraded, then the
        oldest connections (broken for longest, as far as anyone can tell)."""
        with self.session() as session:
            return list(session.exec(self._attention(environment).order_by(
                UserConnection.state_since, case((UserConnection.state == "failed", 0), else_=1),
                UserConnection.created_at, UserConnection.id).limit(limit)))

    def _attention(self, environment: str | None):
        return self._current(select(UserConnection).where(UserConnection.state.in_(("failed", "degraded"))),
                             environment)

    def not_seen(self, environment: str | None = None, limit: int = 500) -> list[UserConnection]:
        """Stored connections the latest complete sync did not see (nor anything since), longest gone first."""
        with self.session() as session:
            return list(session.exec(self._not_seen(environment)
                                     .order_by(UserConnection.last_seen_at, UserConnection.id).limit(limit)))

    def _not_seen(self, environment: str | None):
        # Before any complete sync the cutoff is NULL and nothing is known to be gone: the comparison holds for none.
        query = select(UserConnection).where(UserConnection.last_seen_at < self._fleet_cutoff(environment))
        return query.where(UserConnection.environment == environment) if environment else query

    def fleet_totals(self, since: datetime, environment: str | None = None) -> dict[str, int]:
        """How many rows `attention`, `transitions_since(since)` and `not_seen` would list without their limit."""
        queries = {"attention": self._attention(environment), "changes": self._changes(since, environment),
                   "not_seen": self._not_seen(environment)}
        with self.session() as session:
            return {name: session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
                    for name, query in queries.items()}

    # Named and ordered as the vault table's CSV (connections_view.connections_csv), so the two line up.
    EXPORT_COLUMNS = ("platform", "state", "state since", "since or earlier", "environment", "identity",
                      "identity type", "key", "tags", "active", "created", "first seen", "last seen", "id",
                      "not seen in last sync")

    def fleet_export(self, environment: str | None = None) -> list[tuple]:
        """Every stored connection as a row of `EXPORT_COLUMNS` (plain rows: no objects built for 50,000 of them).
        "since or earlier": the state was already so when first seen (`UserConnection.since_is_lower_bound`); "not
        seen in last sync": the latest complete sync did not see it (Fleet's tab of that name), NULL before any."""
        c = UserConnection
        lower_bound = and_(c.state_since <= c.first_seen_at,
                           or_(c.first_seen_by.is_(None), c.first_seen_by != "connect"))  # health.first_sighting…
        cutoff = self._fleet_cutoff(environment)
        query = select(c.platform, c.state, c.state_since, lower_bound, c.environment, c.user_id, c.identity_type,
                       c.connection_key, c.tags, c.active, c.created_at, c.first_seen_at, c.last_seen_at, c.pica_id,
                       case((cutoff.is_(None), None), else_=c.last_seen_at < cutoff))
        if environment:
            query = query.where(c.environment == environment)
        with self.engine.connect() as connection:
            # Connections with no identity last on both databases (SQLite put them first, PostgreSQL last); the
            # identities themselves sort by each database's collation.
            return list(connection.execute(query.order_by(c.user_id.asc().nulls_last(), c.platform,
                                                          c.connection_key)))

    def fleet_size(self, environment: str | None = None) -> int:
        """How many connections `fleet_export` holds."""
        query = select(func.count()).select_from(UserConnection)
        if environment:
            query = query.where(UserConnection.environment == environment)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()

    # --- syncs ---------------------------------------------------------------------------------------------
    @contextmanager
    def sync_lock(self, environment: str) -> Iterator[HeldLock]:
        """Hold the right to sync this environment: one fleet sync at a time per database, across processes (the
        dashboard's sessions and `python -m pica_core sync`). The lock ends with its holder, however it ends (a
        killed process included), so a run still 'running' once the lock is free was interrupted: it is marked so.

        Raises `SyncBusy` at once if another sync holds it.
        """
        held = ExitStack()
        try:
            pid = held.enter_context(_sync_lock(self.engine, environment))
        except SyncBusy:
            running = self.last_sync(environment, statuses=("running",))
            which = f" (#{running.id}, started {running.started_at:%H:%M:%S} UTC)" if running else ""
            raise SyncBusy(f"Another fleet sync of the {environment} environment is running{which}: wait for it to "
                           "finish, then sync or resume.") from None
        with held:
            with self.session() as session:
                for run in session.exec(select(SyncRun).where(SyncRun.environment == environment,
                                                              SyncRun.status == "running")):
                    done = run.pages_total > 0 and not run.failed_pages  # it ended after its last batch
                    run.status, run.finished_at = ("complete" if done else "interrupted"), utcnow()
                    run.error = None if done else "stopped before it finished (its process ended)"
            yield HeldLock(environment, pid)

    def sync_in_progress(self, environment: str) -> bool:
        """Whether a sync of the environment runs now. When none does, asking takes the lock for a moment, which
        marks a run that a process left 'running' when it ended (as `sync_lock` does)."""
        try:
            with self.sync_lock(environment):
                return False
        except SyncBusy:
            return True

    def start_sync(self, environment: str, page_size: int, resumed_from: int | None = None) -> SyncRun:
        with self.session() as session:
            # Page 1 is all a run knows of before it arrives: a run stopped before that resumes by starting over.
            run = SyncRun(started_at=utcnow(), environment=environment, page_size=page_size, resumed_from=resumed_from,
                          failed_pages=[1])
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

    def last_sync(self, environment: str | None = None, *,
                  statuses: Sequence[str] = ("complete", "partial", "failed", "interrupted"),
                  stored_rows: bool = False) -> SyncRun | None:
        """The latest run in one of `statuses`; with `stored_rows`, the latest that stored any."""
        with self.session() as session:
            query = select(SyncRun).where(SyncRun.status.in_(list(statuses)))
            if environment:
                query = query.where(SyncRun.environment == environment)
            if stored_rows:
                query = query.where(SyncRun.rows_seen > 0)
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

    def search_calls(self, *, platform: str | None = None, action: str | None = None,
                     status: int | tuple[int, int] | None = None,
                     text_query: str | None = None, connection_key: str | None = None,
                     limit: int = 200) -> list[PassthroughCallRecord]:
        with self.session() as session:
            query = select(PassthroughCallRecord)
            if platform:
                query = query.where(PassthroughCallRecord.platform == platform)
            if action:  # in any letter case, beyond ASCII too (`_holds`), as every text search here
                query = query.where(or_(self._holds(PassthroughCallRecord.action_title, action),
                                        self._holds(PassthroughCallRecord.action_id, action)))
            if status is not None:  # one status, or the lowest and highest of a range (4xx)
                low, high = (status, status) if isinstance(status, int) else status
                query = query.where(PassthroughCallRecord.status.between(low, high))
            if connection_key:
                query = query.where(PassthroughCallRecord.connection_key == connection_key)
            if text_query:
                # Paths are stored as sent: a variable's value percent-encoded, slashes included ("李 me/x" is there
                # as %E6%9D%8E%20me%2Fx), the template's slashes as they are (users/李 as users/%E6%9D%8E).
                encoded = [quote(text_query, safe=safe) for safe in ("", "/")]
                # The query's JSON as stored: non-ASCII and quotes escaped (李 as \u674e), so both spellings.
                stored_query = func.cast(PassthroughCallRecord.query, Text)
                # The key holds the identity ("…|usr_42"): support asks about a user's calls by it.
                query = query.where(or_(*(self._holds(column, text_query) for column in (
                    PassthroughCallRecord.request_body, PassthroughCallRecord.response_body, PassthroughCallRecord.path,
                    PassthroughCallRecord.error, PassthroughCallRecord.connection_key, stored_query)),
                    self._holds(stored_query, json.dumps(text_query)[1:-1]),
                    *(self._holds(PassthroughCallRecord.path, e) for e in encoded)))
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
                     limit: int | None = 1000) -> list[AuditEvent]:
        """Newest first; `limit` None: every match."""
        with self.session() as session:
            query = select(AuditEvent)
            if actor:  # part of a name or an email, in any case: nobody remembers local-admin's exact spelling
                query = query.where(self._holds(AuditEvent.actor, actor))
            if action:
                query = query.where(AuditEvent.action == action)
            if outcome:
                query = query.where(AuditEvent.outcome == outcome)
            if since:
                query = query.where(AuditEvent.at >= since)
            if target:  # the identity too: a key writes it slugged (rev-bob,-jr), the detail as it was typed
                query = query.where(or_(self._holds(AuditEvent.target, target),
                                        self._holds(AuditEvent.detail["identity"].as_string(), target)))
            query = query.order_by(AuditEvent.id.desc())
            return list(session.exec(query if limit is None else query.limit(limit)))

    def deletion(self, key: str) -> AuditEvent | None:
        """The last delete of connection `key` made from this dashboard, if any: "not found" is then no mystery."""
        with self.session() as session:
            return session.exec(select(AuditEvent).where(AuditEvent.action == "delete", AuditEvent.outcome == "ok",
                                                         AuditEvent.target == key)
                                .order_by(AuditEvent.id.desc()).limit(1)).first()

    def _holds(self, column: Any, text: str) -> Any:
        """`column` contains `text`, in any letter case, beyond ASCII too."""
        if self.engine.dialect.name == "sqlite":
            return func.casefold(column).like(f"%{_escape_like(text.casefold())}%", escape="\\")
        return column.ilike(f"%{_escape_like(text)}%", escape="\\")

    def count(self, model: type[SQLModel]) -> int:
        with self.session() as session:
            return session.execute(select(func.count()).select_from(model)).scalar_one()


def failure_line(exc: BaseException) -> str:
    """One line saying why, for a person: a database error's driver line (SQLAlchemy's own text adds the statement
    and its parameters: connection keys and identities of the fleet), else the exception's first line."""
    text = str(getattr(exc, "orig", None) or exc).strip() if isinstance(exc, SQLAlchemyError) else str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def unopenable(url: str, exc: SQLAlchemyError) -> str:
    """Why the database at `url` could not be opened, its password masked, and what to check."""
    return f"Could not open the database at {make_url(url)} ({failure_line(exc)}): check DATABASE_URL and that the " \
           "database is up"


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_CONNECTION_DEFAULTS = row_defaults()


def _field(row: ConnectionRow, name: str) -> Any:
    """A field of a row, or Connection's default when Pica left it out."""
    return row.get(name, _CONNECTION_DEFAULTS.get(name))


def _fingerprint(row: ConnectionRow) -> str:
    """A stable digest (process-independent, unlike hash()) of what can change for a connection key. The key
    itself names the environment, platform and identity; id and createdAt are facts of its creation."""
    text = f"{_field(row, 'state')}\x1f{_field(row, 'active')}\x1f{_field(row, 'tags')}\x1f{_field(row, 'identityType')}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text, in UTC (read back as UTC by the models)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# --- the upsert's SQL -------------------------------------------------------------------------------------------
# Each statement reads its rows from one JSON document (SQLite json_each, PostgreSQL json_array_elements): the
# driver runs it with no Python per row, and SQLite's gives up the GIL for the whole statement, so a sync's writer
# thread works on the other core while its fetching thread parses pages (bench/fleet_sync.py).
# `pairs`: {key: fingerprint, ...} of the batch, read by json_each (SQLite) and json_each_text (PostgreSQL) as
# key and value columns with nothing to extract. The rows to write are Pica's, in its wire names, with their
# fingerprints: as [[fingerprint, row], ...] for SQLite, and as two arrays that PostgreSQL zips (ROWS FROM), each
# the faster there.

@dataclass(frozen=True)
class _UpsertSQL:
    touch: str  # one row: [[key, stored state], ...] of the changed rows and [key, ...] of the new ones
    touch_update: str | None  # SQLite's touch, run first (PostgreSQL's reads and touches in one statement)
    write: str
    write_documents: Callable[[list[ConnectionRow], list[str]], dict[str, str]]  # its rows and their fingerprints
    transitions: str  # `rows`: [[key, identity, platform, from state, to state], ...]


# Defaults the SQL gives fields Pica left out (the others are NULL): Connection's, as the models would read them.
_SQL_DEFAULTS = {name: _CONNECTION_DEFAULTS[name] for name in ("environment", "state", "active")}


def _environment(field: str, key: str, default: str) -> str:
    """A row's environment: Pica's field, or as Connection reads it when Pica left it out, its key's (`live::…`)."""
    return f"coalesce({field}, CASE substr({key}, 1, 6) WHEN 'live::' THEN 'live' WHEN 'test::' THEN 'test' END, {default})"


def _json_list(value: str | list | None) -> list:
    """A JSON array the database built: text (SQLite), decoded by the driver (psycopg), or NULL (json_agg of none)."""
    return from_json(value) if isinstance(value, str) else value or []

# Sorted by key: neighbouring inserts land on the same index pages (about 15 % less work on SQLite).
_WRITE = """INSERT INTO user_connections (connection_key, pica_id, platform, user_id, identity_type, environment,
  state, tags, active, created_at, fingerprint, updated_at, first_seen_at, first_seen_by, last_seen_at, state_since,
  last_sync_id)
SELECT key, pica_id, platform, identity, identity_type, environment, state, tags, active, coalesce(created_at, {now}),
  fingerprint, {now}, {now}, {source}, {now},
  -- a connection created after the pass began was not in any state before it was made
  CASE WHEN created_at > {since} AND created_at <= {now} THEN created_at ELSE {since} END, {sync_id}
FROM ({rows}) AS b ORDER BY key
ON CONFLICT (connection_key) DO UPDATE SET
  user_id = excluded.user_id, platform = excluded.platform, environment = excluded.environment,
  state = excluded.state, identity_type = excluded.identity_type, pica_id = excluded.pica_id,
  tags = excluded.tags, active = excluded.active,
  -- A row without createdAt was given {now} (as first_seen_at) to insert with: a stored one keeps its own.
  created_at = CASE WHEN excluded.created_at = excluded.first_seen_at THEN user_connections.created_at
                    ELSE excluded.created_at END,
  last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at, fingerprint = excluded.fingerprint,
  state_since = CASE WHEN user_connections.state <> excluded.state THEN {now}
                     ELSE user_connections.state_since END,
  last_sync_id = coalesce(excluded.last_sync_id, user_connections.last_sync_id)
WHERE user_connections.last_seen_at <= excluded.last_seen_at"""

_TRANSITIONS = """INSERT INTO connection_transitions (connection_key, user_id, platform, from_state, to_state, at, source,
                                    sync_id)
SELECT {moved}, {now}, {source}, {sync_id} FROM {rows}"""


def _sqlite_row(field: str) -> str:
    return f"json_extract(value, '$[1].{field}')"


_SQLITE_MARKS = {"now": ":now", "source": ":source", "sync_id": ":sync_id", "since": ":since"}
_SQLITE_CREATED = _sqlite_row("createdAt")
_SQLITE_UPSERT = _UpsertSQL(
    touch="""SELECT json_group_array(json_array(c.connection_key, c.state))
         FILTER (WHERE c.id IS NOT NULL AND c.fingerprint IS NOT p.value AND c.last_seen_at <= :now),
       json_group_array(p.key) FILTER (WHERE c.id IS NULL AND NOT EXISTS (SELECT 1 FROM removed_connections AS r
                                                                     WHERE r.connection_key = p.key AND r.removed_at >= :now))
FROM json_each(:pairs) AS p LEFT JOIN user_connections AS c ON c.connection_key = p.key""",
    # Seen by this sync even when a lookup saw it later: a resume checks by last_sync_id what its pass stored.
    touch_update="""UPDATE user_connections SET last_seen_at = max(last_seen_at, :now),
  last_sync_id = coalesce(:sync_id, last_sync_id)
WHERE connection_key IN (SELECT key FROM json_each(:pairs))""",
    # Each element's text rendered once: json_each renders it again for every json_extract that reads `value`.
    write=_WRITE.format(**_SQLITE_MARKS, rows=f"""WITH d AS MATERIALIZED (SELECT value FROM json_each(:rows))
SELECT {_sqlite_row('key')} AS key, {_sqlite_row('id')} AS pica_id,
  {_sqlite_row('platform')} AS platform, {_sqlite_row('identity')} AS identity,
  {_sqlite_row('identityType')} AS identity_type,
  {_environment(_sqlite_row('environment'), _sqlite_row('key'), ':environment')} AS environment,
  coalesce({_sqlite_row('state')}, :state) AS state, coalesce({_sqlite_row('tags')}, '[]') AS tags,
  coalesce({_sqlite_row('active')}, :active) AS active,
  -- SQLAlchemy's SQLite DATETIME text in UTC, from pydantic's ISO 8601 (an offset; no decimals, or six)
  strftime('%Y-%m-%d %H:%M:%S', {_SQLITE_CREATED}) || CASE WHEN substr({_SQLITE_CREATED}, 20, 1) = '.'
    THEN substr({_SQLITE_CREATED}, 20, 7) ELSE '.000000' END AS created_at,
  json_extract(value, '$[0]') AS fingerprint
FROM d"""),
    write_documents=lambda rows, fingerprints: {"rows": to_json(list(map(list, zip(fingerprints, rows)))).decode()},
    transitions=_TRANSITIONS.format(**_SQLITE_MARKS, moved=", ".join(f"json_extract(value, '$[{i}]')" for i in range(5)),
                                    rows="json_each(:rows)"),
)

_POSTGRES_MARKS = {"now": "%(now)s", "source": "%(source)s", "sync_id": "%(sync_id)s::integer", "since": "%(since)s"}
_POSTGRES_UPSERT = _UpsertSQL(
    # The new keys are those the touch did not find (it finds every stored one) and not removed since.
    touch="""WITH p AS MATERIALIZED (SELECT key, value AS fingerprint FROM json_each_text(%(pairs)s::json)),
  -- Seen by this sync even when a lookup saw it later (see SQLite's); changed only if this answer is the newer.
  touched AS (UPDATE user_connections AS c
              SET last_seen_at = greatest(c.last_seen_at, %(now)s),
                  last_sync_id = coalesce(%(sync_id)s::integer, c.last_sync_id)
              FROM p WHERE c.connection_key = p.key
              RETURNING c.connection_key, c.state,
                        c.last_seen_at <= %(now)s AND c.fingerprint IS DISTINCT FROM p.fingerprint AS changed)
SELECT (SELECT json_agg(json_build_array(connection_key, state)) FROM touched WHERE changed),
       (SELECT json_agg(p.key) FROM p LEFT JOIN touched AS t ON t.connection_key = p.key WHERE t.connection_key IS NULL
          AND NOT EXISTS (SELECT 1 FROM removed_connections AS r WHERE r.connection_key = p.key
                                                                   AND r.removed_at >= %(now)s))""",
    touch_update=None,
    write=_WRITE.format(**_POSTGRES_MARKS, rows=f"""SELECT r.key, r.id AS pica_id, r.platform, r.identity,
  r."identityType" AS identity_type, {_environment('r.environment', 'r.key', '%(environment)s')} AS environment,
  coalesce(r.state, %(state)s) AS state, coalesce(r.tags, '[]') AS tags, coalesce(r.active, %(active)s) AS active,
  CASE WHEN r."createdAt" ~ '(Z|[+-][0-9:]+)$' THEN r."createdAt"::timestamptz  -- no offset: UTC, as on SQLite
       ELSE r."createdAt"::timestamp AT TIME ZONE 'UTC' END AS created_at, r.fingerprint
FROM ROWS FROM (json_to_recordset(%(rows)s::json) AS (key text, id text, platform text, identity text,
                  "identityType" text, environment text, state text, tags json, active boolean, "createdAt" text),
                json_array_elements_text(%(fingerprints)s::json))
  AS r(key, id, platform, identity, "identityType", environment, state, tags, active, "createdAt", fingerprint)"""),
    write_documents=lambda rows, fingerprints: {"rows": to_json(rows).decode(),
                                                "fingerprints": to_json(fingerprints).decode()},
    transitions=_TRANSITIONS.format(**_POSTGRES_MARKS, moved=", ".join(f"v->>{i}" for i in range(5)),
                                    rows="json_array_elements(%(rows)s::json) AS e(v)"),
)

_UPSERT_SQL = {"sqlite": _SQLITE_UPSERT, "postgresql": _POSTGRES_UPSERT}
