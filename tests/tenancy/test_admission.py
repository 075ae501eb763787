"""At most N active tenants; the rest wait FIFO; a slot frees with a tenant's last workflow."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect

from services.common import db
from services.tenancy.admission import AdmissionRepository
from tests.databases import migrated_database, migrations_dir

MIGRATIONS = migrations_dir("tenancy")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    async with migrated_database(request.param, tmp_path, "tenancy") as url:
        yield url


@pytest.fixture
async def engine(database_url):
    engine = db.create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def admission(engine):
    return AdmissionRepository(db.session_factory(engine), 3, engine.dialect.name)


async def test_migrations_create_the_tables_and_can_run_again(database_url, engine):
    await db.migrate(database_url, MIGRATIONS, "tenancy")
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert {"tenant_workflows", "admissions", "alembic_version_tenancy"} <= tables


async def test_five_tenants_with_a_limit_of_three(admission):
    results = [await admission.admit(f"u{i}", f"wf{i}") for i in range(5)]
    assert results == [(True, 0), (True, 0), (True, 0), (False, 1), (False, 2)]
    assert await admission.admit("u0", "wf0-second") == (True, 0)  # an active tenant's new work starts at once
    assert await admission.admit("u3", "wf3") == (False, 1)  # repeating is harmless
    assert await admission.admit("u4", "wf4-second") == (False, 2)  # more work does not jump the queue

    assert await admission.release("u0", "wf0") == []  # u0 still has wf0-second
    assert await admission.release("u0", "wf0-second") == ["u3"]
    assert await admission.get("u3") == (True, 0)
    assert await admission.get("u4") == (False, 1)
    assert await admission.release("u0", "wf0-second") == []  # releasing twice is harmless
    active, waiting = await admission.summary()
    assert sorted(active) == ["u1", "u2", "u3"] and waiting == ["u4"]

    assert await admission.release("u1", "wf1") == ["u4"]
    assert await admission.release("u4", "wf4") == []  # u4 still has wf4-second
    assert await admission.get("u4") == (True, 0)


async def test_a_waiting_tenant_that_gives_up_leaves_the_queue(admission):
    for i in range(5):
        await admission.admit(f"u{i}", f"wf{i}")
    assert await admission.release("u3", "wf3") == []
    assert await admission.get("u4") == (False, 1)
    assert await admission.get("u3") == (False, 0)


async def test_a_released_workflow_cannot_make_its_tenant_active_again(admission):
    await admission.admit("u0", "wf0")
    await admission.release("u0", "wf0")
    assert await admission.admit("u0", "wf0") == (False, 0)  # a late, repeated Admit
    assert await admission.summary() == ([], [])
    assert await admission.release("u9", "never-admitted") == []
    assert await admission.admit("u9", "never-admitted") == (False, 0)


async def test_admission_survives_a_restart_and_a_larger_limit_admits_the_queue_in_order(admission, engine):
    for i in range(5):
        await admission.admit(f"u{i}", f"wf{i}")
    restarted = AdmissionRepository(db.session_factory(engine), 3, engine.dialect.name)
    assert await restarted.get("u4") == (False, 2)
    larger = AdmissionRepository(db.session_factory(engine), 4, engine.dialect.name)
    assert await larger.admit("u5", "wf5") == (False, 2)  # u3 takes the new slot first
    active, waiting = await larger.summary()
    assert sorted(active) == ["u0", "u1", "u2", "u3"] and waiting == ["u4", "u5"]


async def test_concurrent_admissions_and_releases_never_exceed_the_limit(admission):
    await asyncio.gather(*(admission.admit(f"c{i}", f"w{i}") for i in range(8)))
    active, waiting = await admission.summary()
    assert len(active) == 3 and len(waiting) == 5
    promoted = await asyncio.gather(*(admission.release(tenant, f"w{tenant[1:]}") for tenant in active))
    assert sorted(t for batch in promoted for t in batch) == sorted(waiting[:3])
    active, waiting = await admission.summary()
    assert len(active) == 3 and len(waiting) == 2
