"""At most N active tenants; the rest wait FIFO; a slot frees with a tenant's last workflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.common import db
from services.tenancy.admission import AdmissionRepository
from tests.databases import fresh_database, postgres_available

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "tenancy" / "migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
async def admission(request, tmp_path):
    if request.param == "postgresql" and (reason := await postgres_available()):
        pytest.skip(reason)
    async with fresh_database(request.param, tmp_path) as url:
        await db.migrate(url, MIGRATIONS, "tenancy")
        engine = db.create_engine(url)
        try:
            yield AdmissionRepository(db.session_factory(engine), 3, engine.dialect.name)
        finally:
            await engine.dispose()


async def test_five_tenants_with_a_limit_of_three(admission):
    results = [await admission.admit(f"u{i}", f"wf{i}") for i in range(5)]
    assert results == [(True, 0), (True, 0), (True, 0), (False, 1), (False, 2)]
    assert await admission.admit("u0", "wf0-second") == (True, 0)  # an active tenant's new work starts at once
    assert await admission.admit("u3", "wf3") == (False, 1)  # repeating is harmless

    assert await admission.release("u0", "wf0") == []  # u0 still has wf0-second
    assert await admission.release("u0", "wf0-second") == ["u3"]
    assert await admission.get("u4") == (False, 1)
    assert await admission.release("u0", "wf0-second") == []  # releasing twice is harmless
    active, waiting = await admission.summary()
    assert sorted(active) == ["u1", "u2", "u3"] and waiting == ["u4"]


async def test_a_waiting_tenant_that_gives_up_leaves_the_queue(admission):
    for i in range(5):
        await admission.admit(f"u{i}", f"wf{i}")
    assert await admission.release("u3", "wf3") == []
    assert await admission.get("u4") == (False, 1)
    assert await admission.get("u3") == (False, 0)


async def test_concurrent_admissions_never_exceed_the_limit(admission):
    await asyncio.gather(*(admission.admit(f"c{i}", f"w{i}") for i in range(8)))
    active, waiting = await admission.summary()
    assert len(active) == 3 and len(waiting) == 5
