"""Migrate every service's tables: `python -m services.common.migrate`.

The launcher runs this before starting services; in a cluster it is the init step
(one run, not one per replica, so migrations never race).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.common.db import migrate
from services.common.settings import Settings

SERVICES_DIR = Path(__file__).resolve().parent.parent
DB_OWNERS = ("tenancy", "scheduler", "storage")


async def migrate_all(database_url: str) -> list[str]:
    done = []
    for service in DB_OWNERS:
        migrations = SERVICES_DIR / service / "migrations"
        if migrations.is_dir():
            await migrate(database_url, migrations, service)
            done.append(service)
    return done


def main() -> None:
    settings = Settings.from_env()
    done = asyncio.run(migrate_all(settings.database_url))
    print(f"migrated {', '.join(done) or 'nothing'} on {settings.database_url.split('@')[-1]}")


if __name__ == "__main__":
    main()
