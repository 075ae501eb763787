from __future__ import annotations

from pathlib import Path

import pytest

from services.common import db
from services.scheduler.repository import WorkflowRepository
from tests.databases import fresh_database, postgres_available

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scheduler" / "migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
async def repository(request, tmp_path):
    if request.param == "postgresql" and (reason := await postgres_available()):
        pytest.skip(reason)
    async with fresh_database(request.param, tmp_path) as url:
        await db.migrate(url, MIGRATIONS, "scheduler")
        engine = db.create_engine(url)
        try:
            yield WorkflowRepository(db.session_factory(engine), dialect=engine.dialect.name, backoff_base=0.0)
        finally:
            await engine.dispose()
