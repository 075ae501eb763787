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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite


class PrefetchingCursor(aiosqlite.Cursor):
    def __init__(self, connection: PrefetchingConnection) -> None:
        # No sqlite3 cursor yet: each statement makes and closes its own on the thread.
        super().__init__(connection, None)  # type: ignore[arg-type]
        self._rows: list[Any] = []
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> PrefetchingCursor:
        run = self._conn._conn
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

        self._description, self._rows, self._rowcount, self._lastrowid = await self._execute(execute_and_fetch)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> PrefetchingCursor:
        run = self._conn._conn

        def execute_many() -> tuple[int, int | None]:
            cursor = run.cursor()
            try:
                cursor.executemany(sql, parameters)
                return cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        self._description, self._rows = None, []
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
    def cursor(self) -> PrefetchingCursor:  # type: ignore[override]
        # Made here, not on the thread: the sqlite3 cursor comes with each statement.
        return PrefetchingCursor(self)


async def connect(path: str, busy_timeout: float) -> PrefetchingConnection:
    """An open PrefetchingConnection to the database file at `path` (as aiosqlite.connect;
    check_same_thread=False as SQLAlchemy's dialect asks, since the thread changes hands)."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False)

    connection = PrefetchingConnection(connector, iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's dialect: never hold the process open
    return await connection


def creator(path: str, busy_timeout: float) -> Callable[[], Any]:
    """create_async_engine's async_creator for the file at `path`."""

    async def create() -> PrefetchingConnection:
        return await connect(path, busy_timeout)

    return create
