"""An aiosqlite connection whose statements cost one trip to its thread instead of four.

aiosqlite runs each sqlite3 call on the connection's own thread, and SQLAlchemy's
aiosqlite dialect makes four such calls per statement (create a cursor, execute,
fetch the rows, close the cursor). Each trip is a queue put, a thread wake-up and a
future resolved back on the event loop: with a dozen statements per scheduler
transaction on two busy cores, the trips, not the SQL, were most of a transaction's
wall time and a good part of its CPU. Here a cursor does all four in one trip
(execute, fetch every row, close) and answers fetches from what it kept.

Rows are fetched at once, so this suits what the services run (small results), not a
server-side cursor streaming millions of rows.

Most statements do not even make that one trip: those that cannot wait on a lock run
right here on the event loop, a few microseconds each. Under WAL that is every statement
of a transaction holding the write lock (BEGIN IMMEDIATE returned: readers never block
the writer), a read-only transaction's BEGIN (deferred: it takes no lock) and its
SELECTs, and the end of a read. BEGIN IMMEDIATE is tried here too, without waiting (busy
timeout 0): the write lock is free nearly always (this process queues its own writers,
services.scheduler.write_queue). A write's COMMIT runs here under WAL: with
synchronous=NORMAL (services.common.db) it appends to the WAL in the page cache and syncs
nothing, and the checkpoint SQLite would run after some commits (disk I/O, fsync) is
switched off on these connections and run on the thread every CHECKPOINT_EVERY commits
instead. What may wait still goes to the thread: a BEGIN IMMEDIATE that found the lock
held, a COMMIT outside WAL (it needs readers gone) and anything outside those
transactions. Blocking the loop there could wait on a transaction of this process that
itself waits for the loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite

BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"  # a write transaction (services.common.db issues these)
BEGIN_READ = "BEGIN"  # a read-only one
CHECKPOINT_EVERY = 100  # a connection's write commits between its WAL checkpoints (on its thread)


class PrefetchingCursor(aiosqlite.Cursor):
    def __init__(self, connection: PrefetchingConnection) -> None:
        # No sqlite3 cursor yet: each statement makes and closes its own on the thread.
        super().__init__(connection, None)  # type: ignore[arg-type]
        self._rows: list[Any] = []
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> PrefetchingCursor:
        connection: PrefetchingConnection = self._conn  # type: ignore[assignment]
        run = connection._conn
        params = parameters if parameters is not None else ()

        def execute_and_fetch() -> tuple[Any, list[Any], int, int | None]:
            cursor = run.cursor()
            try:
                cursor.execute(sql, params)
                description = cursor.description
                # Fetched before rowcount is read: for statements with RETURNING, sqlite3
                # counts the rows only once they have all been stepped through.
                rows = cursor.fetchall() if description else []
                return description, rows, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        if sql == BEGIN_IMMEDIATE and connection.inline and connection.begin_if_free():
            self._description, self._rows, self._rowcount, self._lastrowid = None, [], -1, None
        elif connection.runs_inline(sql):
            self._description, self._rows, self._rowcount, self._lastrowid = execute_and_fetch()
        else:
            self._description, self._rows, self._rowcount, self._lastrowid = await self._execute(execute_and_fetch)
        connection.began(sql)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> PrefetchingCursor:
        connection: PrefetchingConnection = self._conn  # type: ignore[assignment]
        run = connection._conn

        def execute_many() -> tuple[int, int | None]:
            cursor = run.cursor()
            try:
                cursor.executemany(sql, parameters)
                return cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        self._description, self._rows = None, []
        if connection.runs_inline(sql):
            self._rowcount, self._lastrowid = execute_many()
        else:
            self._rowcount, self._lastrowid = await self._execute(execute_many)
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self.iter_chunk_size

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self.iter_chunk_size = value


class PrefetchingConnection(aiosqlite.Connection):
    # False sends every statement to the thread (bench.scheduler.transactions compares).
    inline = True
    # The transaction open now, as its BEGIN said: BEGIN_IMMEDIATE, BEGIN_READ or "".
    _began = ""
    busy_timeout_ms = 30_000  # how long the thread's statements wait for a lock (connect sets it)
    _wal: bool | None = None  # the database's journal mode is WAL (read at the first write commit)
    _commits = 0

    def cursor(self) -> PrefetchingCursor:  # type: ignore[override]
        # Made here, not on the thread: the sqlite3 cursor comes with each statement.
        return PrefetchingCursor(self)

    def _open(self) -> str:
        """The open transaction's kind ("" if none: SQLite also ends one by itself on some errors)."""
        if not self._conn.in_transaction:
            self._began = ""
        return self._began

    def runs_inline(self, sql: str) -> bool:
        """Whether `sql` cannot wait on a lock, and so runs on the caller's thread."""
        if not self.inline:
            return False
        if sql == BEGIN_READ:
            return True
        kind = self._open()
        return kind == BEGIN_IMMEDIATE or (kind == BEGIN_READ and sql.lstrip()[:6].upper() == "SELECT")

    def begin_if_free(self) -> bool:
        """BEGIN IMMEDIATE here if the write lock is free now; False, with nothing begun, if
        another connection holds it (the caller then waits for it on the thread)."""
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            self._conn.execute(BEGIN_IMMEDIATE)
            return True
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    def began(self, sql: str) -> None:
        if sql in (BEGIN_IMMEDIATE, BEGIN_READ):
            self._began = sql

    async def commit(self) -> None:
        kind = self._open()
        if self.inline and (kind == BEGIN_READ or (kind == BEGIN_IMMEDIATE and self._in_wal())):
            self._conn.commit()
            if kind == BEGIN_IMMEDIATE:
                self._commits += 1
                if self._commits % CHECKPOINT_EVERY == 0:
                    await self._execute(self._checkpoint)
        else:
            await super().commit()
        self._began = ""

    def _in_wal(self) -> bool:
        if self._wal is None:
            self._wal = self._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return self._wal

    def _checkpoint(self) -> None:
        # PASSIVE: copies what no reader still needs, waits for nobody.
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def rollback(self) -> None:
        # The pool rolls back every connection it gets back: after a commit there is nothing
        # to roll back, and a read's end releases its snapshot only.
        kind = self._open()
        self._began = ""
        if kind == BEGIN_READ and self.inline:
            self._conn.rollback()
        elif kind:
            await super().rollback()


async def connect(path: str, busy_timeout: float) -> PrefetchingConnection:
    """An open PrefetchingConnection to the database file at `path` (as aiosqlite.connect;
    check_same_thread=False as SQLAlchemy's dialect asks, since the thread changes hands)."""

    def connector() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False)
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # PrefetchingConnection.commit checkpoints
        return connection

    connection = PrefetchingConnection(connector, iter_chunk_size=64)
    connection.busy_timeout_ms = int(busy_timeout * 1000)
    connection._thread.daemon = True  # as SQLAlchemy's dialect: never hold the process open
    return await connection


def creator(path: str, busy_timeout: float) -> Callable[[], Any]:
    """create_async_engine's async_creator for the file at `path`."""

    async def create() -> PrefetchingConnection:
        return await connect(path, busy_timeout)

    return create
