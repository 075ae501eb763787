"""The one DB layer: SQLAlchemy async over SQLite (aiosqlite) or PostgreSQL (asyncpg).

Each service owns its tables and its Alembic migrations (services/<name>/migrations,
version table alembic_version_<name>); `migrate` runs them programmatically, and
every migrations/env.py is just a call to `run_alembic_env`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Dialect, String, TypeDecorator, bindparam, event, exc, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import MetaData
from sqlalchemy.sql.visitors import InternalTraversal

from services.common import sqlite_connection
from services.common.tracing import trace_queries

# Execution option of the read-only sessions (session_factory(read_only=True)).
READ_ONLY = "slidelane_read_only"


class _ValueList(TypeDecorator[list[Any]]):
    """A list bound as one parameter: a PostgreSQL array."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: Any) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item_type))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return list(value)


class InValues(ColumnElement[bool]):
    """`column IN (the list bound as name)`; on PostgreSQL `= ANY(array)`, one statement
    text whatever the list's length.

    An expanding IN renders a new statement for every length, so PostgreSQL prepared
    (a round trip and a plan) one per length on each pooled connection: more misses than
    hits in the scheduler's hot path. SQLite keeps the expanding IN (see _in_values).
    """

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison already: SQLite's WHERE needs no "= 1" after it
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement), ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.values = bindparam(name, type_=_ValueList(column.type))


@compiles(InValues, "postgresql")
def _in_values_postgresql(element: InValues, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"


@compiles(InValues)
def _in_values(element: InValues, compiler: Any, **kw: Any) -> str:
    # SQLite prepares in-process (cheap), and plans a literal list well: it picks the index
    # for the listed values, where json_each's unknown row count led it to scan others.
    listed = bindparam(element.values.key, expanding=True, type_=element.column.type)
    return compiler.process(element.column.in_(listed), **kw)


def in_values(column: ColumnElement[Any], name: str) -> InValues:
    """`column IN (...)` over a list bound at execution as `name` (see InValues)."""
    return InValues(column, name)


class Unselective(ColumnElement[bool]):
    """A condition most rows meet, so that the planner does not pick its index: SQLite plans
    without statistics and takes any indexed equality as selective (`state = 'PENDING'` over
    every waiting job, where the ids beside it name a few). PostgreSQL has statistics (kept
    fresh after bursts of new jobs: services.scheduler.repository, _note_created)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True
    _traverse_internals = [("condition", InternalTraversal.dp_clauseelement)]

    def __init__(self, condition: ColumnElement[bool]) -> None:
        self.condition = condition


@compiles(Unselective, "sqlite")
def _unselective_sqlite(element: Unselective, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.condition, **kw)}, 0.9)"


@compiles(Unselective)
def _unselective(element: Unselective, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.condition, **kw)


def unselective(condition: ColumnElement[bool]) -> Unselective:
    """`condition`, marked as true for most rows (see Unselective)."""
    return Unselective(condition)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str) -> AsyncEngine:
    engine = _create_engine(url)
    trace_queries(engine.sync_engine)
    return engine


def _create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        path = make_url(url).database or ":memory:"
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Still aiosqlite under SQLAlchemy's aiosqlite dialect; only its cursors differ.
        engine = create_async_engine(url, async_creator=sqlite_connection.creator(path, busy_timeout=30))

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # We issue BEGIN ourselves (below); WAL lets readers run beside the single writer.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection):  # type: ignore[no-untyped-def]
            # SQLite's single writer: take the write lock at BEGIN, so a transaction that
            # reads then writes never fails to upgrade (SQLITE_BUSY) midway. Read-only
            # sessions take no lock: under WAL they read a snapshot beside the writer
            # instead of queueing behind it.
            read_only = connection.get_execution_options().get(READ_ONLY)
            connection.exec_driver_sql(sqlite_connection.BEGIN_READ if read_only else sqlite_connection.BEGIN_IMMEDIATE)

        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_use_lifo=True)
    _ping_when_idle(engine)
    return engine


# A pooled connection used less than this long ago is taken as alive, unpinged.
IDLE_PING_SECONDS = 1.0
_RETURNED = "slidelane_returned_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping for connections idle over IDLE_PING_SECONDS only.

    pre_ping costs a round trip per transaction, most of them on a connection used a few
    milliseconds before. A connection broken since its last use (the server restarted)
    fails its next statement instead; SQLAlchemy then discards it and every older pooled
    connection, and the callers retry as after any failed transaction.
    LIFO checkout keeps the busy connections few and warm (their prepared statements too).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        if time.monotonic() - record.info.get(_RETURNED, 0.0) > IDLE_PING_SECONDS:
            try:
                dbapi_connection.ping()
            except Exception as error:
                raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


def session_factory(engine: AsyncEngine, read_only: bool = False) -> async_sessionmaker[AsyncSession]:
    """Sessions on the engine; read_only=True ones must not write (on SQLite they hold no write
    lock; on PostgreSQL they run outside a transaction)."""
    if read_only:
        options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            # Under READ COMMITTED every statement reads its own snapshot anyway: a read's
            # BEGIN and ROLLBACK were two round trips that bought nothing.
            options["isolation_level"] = "AUTOCOMMIT"
        engine = engine.execution_options(**options)
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def _alembic_config(url: str, migrations_dir: Path, service: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["version_table"] = f"alembic_version_{service}"
    return config


async def migrate(url: str, migrations_dir: Path, service: str, revision: str = "head") -> None:
    """Upgrade the service's tables to `revision` (idempotent)."""
    from alembic import command

    config = _alembic_config(url, migrations_dir, service)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:

            def upgrade(sync_connection: Connection) -> None:
                config.attributes["connection"] = sync_connection
                command.upgrade(config, revision)

            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()


def run_alembic_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    from alembic import context

    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    connection = config.attributes.get("connection")

    def run(sync_connection: Connection) -> None:
        context.configure(
            connection=sync_connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=sync_connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    if connection is not None:
        run(connection)
        return

    async def standalone() -> None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        async with engine.begin() as conn:
            await conn.run_sync(run)
        await engine.dispose()

    asyncio.run(standalone())
