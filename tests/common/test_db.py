"""services.common.db on both databases: in_values selects what an IN list would (on
PostgreSQL a list bound as one array, one statement text whatever its length); a pooled
PostgreSQL connection that died while idle is replaced, not handed out; and on PostgreSQL a
read-only session runs outside any transaction (no BEGIN and ROLLBACK round trips, none left
open between its statements)."""

from __future__ import annotations

import re

import asyncpg
import pytest
from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, delete, select, text, update

from services.common import db
from tests.databases import POSTGRES, fresh_database, postgres_available

metadata = MetaData()
items = Table("items", metadata, Column("id", String(36), primary_key=True), Column("rank", BigInteger, nullable=False))


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request, tmp_path):
    if request.param == "postgresql" and (reason := await postgres_available()):
        pytest.skip(reason)
    async with fresh_database(request.param, tmp_path) as url:
        engine = db.create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.execute(items.insert(), [{"id": f"item-{i}", "rank": i} for i in range(10)])
        yield engine
        await engine.dispose()


async def test_in_values_selects_the_listed_rows_whatever_the_length(engine):
    query = select(items.c.id).where(db.in_values(items.c.id, "ids")).order_by(items.c.rank)
    async with engine.connect() as connection:
        for wanted in (["item-1"], ["item-7", "item-2", "no-such-item"], [f"item-{i}" for i in range(10)], []):
            found = (await connection.execute(query, {"ids": wanted})).scalars().all()
            assert found == sorted(set(wanted) & {f"item-{i}" for i in range(10)}, key=lambda i: int(i.split("-")[1]))
    if engine.dialect.name == "postgresql":  # one text for every length: one prepared statement
        assert "= ANY(" in str(query.compile(dialect=engine.dialect))


async def test_in_values_on_integers_and_in_a_delete(engine):
    async with engine.begin() as connection:
        deleted = await connection.execute(delete(items).where(db.in_values(items.c.rank, "ranks")), {"ranks": [0, 3, 99]})
        assert deleted.rowcount == 2
        left = (await connection.execute(select(items.c.rank).order_by(items.c.rank))).scalars().all()
    assert left == [1, 2, 4, 5, 6, 7, 8, 9]


async def test_a_read_only_session_on_postgresql_runs_outside_a_transaction(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's read sessions keep one snapshot (BEGIN, under WAL)")
    reads, writes = db.session_factory(engine, read_only=True), db.session_factory(engine)
    async with reads() as session:
        assert await session.scalar(select(items.c.rank).where(items.c.id == "item-3")) == 3
        async with writes.begin() as writer:
            await writer.execute(update(items).where(items.c.id == "item-3").values(rank=30))
        # Each statement is its own transaction: a setting local to the transaction is gone
        # by the next statement, and a commit made since the session's first read shows.
        await session.execute(text("SELECT set_config('slidelane.probe', 'set', true)"))
        assert await session.scalar(text("SELECT current_setting('slidelane.probe', true)")) in ("", None)
        assert await session.scalar(select(items.c.rank).where(items.c.id == "item-3")) == 30
    async with writes.begin() as writer:  # its pooled connection went back usable for transactions
        await writer.execute(update(items).where(items.c.id == "item-3").values(rank=3))
        await writer.execute(text("SELECT set_config('slidelane.probe', 'set', true)"))
        assert await writer.scalar(text("SELECT current_setting('slidelane.probe', true)")) == "set"


async def test_a_connection_killed_while_idle_is_replaced(engine, monkeypatch):
    if engine.dialect.name != "postgresql":
        pytest.skip("the idle ping is PostgreSQL's (SQLite has no server to lose)")
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every checkout counts as idle
    async with engine.connect() as connection:
        first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    admin = await asyncpg.connect(f"postgresql://{POSTGRES}/test")
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    async with engine.connect() as connection:  # the ping finds it dead: a new one, no error
        second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert second != first


async def test_an_unselective_condition_leaves_the_listed_ids_to_pick_the_rows(tmp_path):
    """SQLite plans without statistics: told nothing, it walks every job of an indexed state
    (every waiting job) to find the few dependents of the listed jobs; told the state is
    unselective, it looks the dependents up by id (the scheduler's queue_dependents)."""
    plans_metadata = MetaData()
    jobs = Table(
        "jobs",
        plans_metadata,
        Column("id", String(36), primary_key=True),
        Column("state", String(16), nullable=False),
        Index("ix_jobs_state", "state"),
    )
    edges = Table(
        "edges",
        plans_metadata,
        Column("job_id", String(36), primary_key=True),
        Column("depends_on_id", String(36), primary_key=True),
        Index("ix_edges_depends_on", "depends_on_id"),
    )
    dependents = select(edges.c.job_id).where(db.in_values(edges.c.depends_on_id, "ids"))
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(plans_metadata.create_all)

            async def plan(condition) -> str:  # type: ignore[no-untyped-def]
                query = update(jobs).where(condition, jobs.c.id.in_(dependents)).values(state="QUEUED")
                sql = re.sub(r"\(__\[POSTCOMPILE_ids\]\)", "(?, ?)", str(query.compile(dialect=engine.dialect)))
                explained = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("QUEUED", "PENDING", "a", "b"))
                return " ".join(row[-1] for row in explained)

            assert "ix_jobs_state" in await plan(jobs.c.state == "PENDING")
            looked_up = await plan(db.unselective(jobs.c.state == "PENDING"))
            assert "ix_jobs_state" not in looked_up and "(id=?)" in looked_up
    finally:
        await engine.dispose()
