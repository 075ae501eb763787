"""SQLite through SQLAlchemy on the prefetching aiosqlite connection (services.common.sqlite_connection):
what SQLAlchemy reads of a cursor still answers right, errors keep their types and roll
back, and a statement costs one trip to the connection's thread."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from services.common import db, sqlite_connection

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


@pytest.fixture
async def engine(tmp_path):
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'items.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_rows_counts_and_ids_come_back(engine):
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        inserted = await session.execute(insert(items).values(name="a"))
        assert inserted.inserted_primary_key == (1,)
        many = await session.execute(insert(items), [{"name": n} for n in "bcdef"])
        assert many.rowcount == 5
        renamed = await session.execute(
            update(items).where(items.c.id > 3).values(name=items.c.name + "!").returning(items.c.id, items.c.name)
        )
        assert sorted(renamed.tuples()) == [(4, "d!"), (5, "e!"), (6, "f!")]
        assert (await session.execute(update(items).where(items.c.id < 3).values(name="z" + items.c.name))).rowcount == 2
    async with sessions() as session:
        names = (await session.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
        assert names == ["za", "zb", "c", "d!", "e!", "f!"]
        # Results larger than one fetch chunk, and streamed ones, arrive whole.
        numbers = text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) SELECT i FROM n")
        assert len((await session.execute(numbers)).all()) == 500
        streamed = await session.stream(select(items.c.id).order_by(items.c.id))
        assert [row.id async for row in streamed] == [1, 2, 3, 4, 5, 6]


async def test_an_error_keeps_its_type_and_nothing_of_the_transaction_stays(engine):
    sessions = db.session_factory(engine)
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with sessions.begin() as session:
            await session.execute(insert(items).values(name="x"))
            await session.execute(insert(items).values(name="x"))
    async with sessions() as session:
        assert (await session.execute(select(items))).all() == []
    with pytest.raises(Exception, match="no such table"):
        async with sessions() as session:
            await session.execute(text("SELECT * FROM missing"))


async def test_a_statement_is_one_trip_to_the_connections_thread(engine, monkeypatch):
    trips = 0
    original = sqlite_connection.PrefetchingConnection._execute

    async def counted(self, fn, *args, **kwargs):
        nonlocal trips
        trips += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite_connection.PrefetchingConnection, "_execute", counted)
    async with engine.connect() as connection:
        await connection.execute(select(items))  # the connection's first use: its BEGIN and pragmas
        before = trips
        for name in "pqr":
            await connection.execute(insert(items).values(name=name))
        rows = (await connection.execute(select(items.c.name).order_by(items.c.name))).scalars().all()
        assert rows == ["p", "q", "r"]
        assert trips - before == 4  # stock aiosqlite: 4 trips a statement (cursor, execute, fetch, close)
