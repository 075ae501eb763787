from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common import db
from services.scheduler.repository import WorkflowRepository
from tests.databases import migrated_database, migrations_dir

MIGRATIONS = migrations_dir("scheduler")


class FakeClock:
    """Time that moves only when told (and by a microsecond per reading, so rows keep their order)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    """A migrated, empty scheduler database of each kind."""
    async with migrated_database(request.param, tmp_path, "scheduler") as url:
        yield url


@pytest.fixture
async def repository(database_url):
    engine = db.create_engine(database_url)
    try:
        yield WorkflowRepository(
            db.session_factory(engine),
            dialect=engine.dialect.name,
            backoff_base=1.0,
            clock=FakeClock(),
            read_sessions=db.session_factory(engine, read_only=True),
        )
    finally:
        await engine.dispose()
