"""SQLite through SQLAlchemy on the prefetching aiosqlite connection (services.common.sqlite_connection):
what SQLAlchemy reads of a cursor still answers right, errors keep their types and roll
back, only what may wait goes to the connection's thread (a write's BEGIN when another
connection holds the write lock, the WAL checkpoints), the WAL stays small, and writers of
one process never wait on each other forever."""

from __future__ import annotations

import asyncio

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


@pytest.fixture
def trips(monkeypatch):
    """Counts trips to connections' threads, by what each runs (its function's name)."""
    made: list[str] = []
    original = sqlite_connection.PrefetchingConnection._execute

    async def counted(self, fn, *args, **kwargs):
        made.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite_connection.PrefetchingConnection, "_execute", counted)
    return made


async def test_a_read_makes_no_trip_and_a_write_in_it_goes_to_the_thread(engine, trips):
    async with engine.begin() as connection:
        await connection.execute(insert(items), [{"name": n} for n in "pqr"])
    trips.clear()
    async with db.session_factory(engine, read_only=True)() as session:
        for _ in range(3):
            rows = (await session.execute(select(items.c.name).order_by(items.c.name))).scalars().all()
        assert rows == ["p", "q", "r"]
        assert trips == []  # BEGIN (deferred, no lock), the SELECTs and the end: on the loop
        # A read-only session must not write; if it does, its write may wait for the lock,
        # so it waits on the connection's thread, not on the loop.
        await session.execute(insert(items).values(name="s"))
        assert trips == ["execute_and_fetch"]
        await session.commit()


async def test_inside_a_write_transaction_statements_make_no_trip(engine, trips):
    async with db.session_factory(engine).begin() as session:
        for name in "pqr":
            await session.execute(insert(items).values(name=name))
        rows = (await session.execute(select(items.c.name).order_by(items.c.name))).scalars().all()
        assert rows == ["p", "q", "r"]
        assert trips == []  # the write lock was free: even the BEGIN IMMEDIATE ran here
    # The commit ran here too (WAL, synchronous=NORMAL: no sync, no checkpoint); the pool's
    # rollback on the returned connection found no transaction open and made no trip.
    assert trips == []
    async with db.session_factory(engine, read_only=True)() as session:
        assert (await session.execute(select(items.c.name).order_by(items.c.name))).scalars().all() == ["p", "q", "r"]


async def test_the_wal_is_checkpointed_on_the_thread_and_stays_small(engine, trips, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_connection, "CHECKPOINT_EVERY", 5)
    blob = "x" * 64 * 1024
    for index in range(40):  # 2.5 MiB of rows: the WAL would hold them all without checkpoints
        async with db.session_factory(engine).begin() as session:
            await session.execute(insert(items).values(name=f"{index}-{blob}"))
    assert trips.count("_checkpoint") == 8 and set(trips) == {"_checkpoint"}
    assert (tmp_path / "items.db-wal").stat().st_size < 1024 * 1024
    async with db.session_factory(engine, read_only=True)() as session:
        assert len((await session.execute(select(items.c.id))).all()) == 40


async def test_a_begin_that_finds_the_write_lock_held_waits_on_the_thread(engine, trips, tmp_path):
    other = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'items.db'}")
    try:
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_the_lock() -> None:
            async with db.session_factory(other).begin() as session:
                await session.execute(insert(items).values(name="first"))
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_lock())
        await holding.wait()
        trips.clear()

        async def write_second() -> None:
            async with db.session_factory(engine).begin() as session:
                await session.execute(insert(items).values(name="second"))

        second = asyncio.create_task(write_second())
        await asyncio.sleep(0.2)
        assert not second.done(), "the second writer waits for the lock (the busy timeout is back in force)"
        assert trips == ["execute_and_fetch"], "its BEGIN IMMEDIATE waits on the thread, not on the loop"
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, second), timeout=10)
        async with db.session_factory(engine, read_only=True)() as session:
            assert sorted((await session.execute(select(items.c.name))).scalars().all()) == ["first", "second"]
    finally:
        await other.dispose()


async def test_writers_on_two_engines_of_one_process_take_turns(engine, tmp_path):
    """The second writer's BEGIN IMMEDIATE waits for the lock on its own thread, never on the
    event loop, where it would block the first writer's commit (a deadlock)."""
    other = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'items.db'}")
    try:

        async def write(engine_, name: str) -> None:
            async with db.session_factory(engine_).begin() as session:
                await session.execute(insert(items).values(name=name))
                await asyncio.sleep(0.01)  # hold the write lock across a wait on the loop
                await session.execute(update(items).where(items.c.name == name).values(name=name + "!"))

        async def read() -> int:
            async with db.session_factory(other, read_only=True)() as session:
                return len((await session.execute(select(items))).all())

        names = [f"w{i}" for i in range(12)]
        await asyncio.wait_for(
            asyncio.gather(*(write(engine if i % 2 else other, n) for i, n in enumerate(names)), *(read() for _ in range(6))),
            timeout=30,
        )
        async with db.session_factory(engine, read_only=True)() as session:
            stored = (await session.execute(select(items.c.name))).scalars().all()
        assert sorted(stored) == sorted(n + "!" for n in names)
    finally:
        await other.dispose()
