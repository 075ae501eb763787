"""Fresh databases for DB tests: SQLite in a temp dir, and PostgreSQL when one answers.

PostgreSQL: a throw-away database per use, created through the `test` database at
SLIDELANE_TEST_POSTGRES (default 127.0.0.1:5432, trust auth), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

SERVICES_DIR = Path(__file__).resolve().parents[1] / "services"
POSTGRES = os.environ.get("SLIDELANE_TEST_POSTGRES", "postgres@127.0.0.1:5432")


async def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        connection = await asyncpg.connect(f"postgresql://{POSTGRES}/test", timeout=3)
    except Exception as error:  # any failure means: skip, and say why
        return f"PostgreSQL at {POSTGRES} does not answer ({error.__class__.__name__}: {error})"
    await connection.close()
    return None


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """Yields a SQLAlchemy URL of an empty database of the given kind."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        return
    name = f"slidelane_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"postgresql://{POSTGRES}/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://{POSTGRES}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def migrations_dir(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


@asynccontextmanager
async def migrated_database(kind: str, tmp_path: Path, service: str) -> AsyncIterator[str]:
    """A fresh database of the kind with one service's migrations applied (skips without PostgreSQL)."""
    import pytest

    from services.common import db

    if kind == "postgresql" and (reason := await postgres_available()):
        pytest.skip(reason)
    async with fresh_database(kind, tmp_path) as url:
        await db.migrate(url, migrations_dir(service), service)
        yield url
