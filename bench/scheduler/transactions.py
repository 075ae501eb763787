"""The scheduler's status transactions in one process, without the rest of the system.

    python -m bench.scheduler.transactions [--workflows 30 --chain 8 --batches 1,5]

The repository's hot path as the status loop drives it: chains of jobs, each report of a
batch says "succeeded", the transaction applies it and claims the dependent, and the
outbox rows it wrote are taken and marked published. CPU per job (all threads) and wall
time per job, on SQLite through stock aiosqlite (SQLAlchemy's dialect as shipped, four
trips to the connection's thread per statement) side by side with the prefetching
connection the services use (services.common.sqlite_connection), once with every
statement sent to its thread (one trip each) and once as the services run it (statements
that cannot wait on a lock inline), then on PostgreSQL when it answers. Runs alternate,
and each configuration's median of --rounds is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from services.common import db, sqlite_connection
from services.scheduler.outcomes import JobReport
from services.scheduler.repository import WorkflowRepository
from services.scheduler.validation import PlannedJob
from tests.databases import migrated_database, postgres_available


def stock_aiosqlite(path: str, busy_timeout: float) -> Callable[[], Any]:
    """What SQLAlchemy's aiosqlite dialect connects with when given no creator."""

    async def create() -> aiosqlite.Connection:
        connection = aiosqlite.connect(path, timeout=busy_timeout, check_same_thread=False)
        connection._thread.daemon = True
        return await connection

    return create


def prefetching_on_thread(path: str, busy_timeout: float) -> Callable[[], Any]:
    """The prefetching connection with every statement sent to its thread (none inline)."""

    async def create() -> sqlite_connection.PrefetchingConnection:
        connection = await sqlite_connection.connect(path, busy_timeout)
        connection.inline = False
        return connection

    return create


async def run_once(kind: str, creator: Callable[..., Any], workflows: int, chain: int, batch: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per job."""
    sqlite_connection_creator = sqlite_connection.creator
    sqlite_connection.creator = creator
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with migrated_database(kind, Path(tmp), "scheduler") as url:
                engine = db.create_engine(url)
                try:
                    return await _drive(engine, workflows, chain, batch)
                finally:
                    await engine.dispose()
    finally:
        sqlite_connection.creator = sqlite_connection_creator


async def _drive(engine: Any, workflows: int, chain: int, batch: int) -> tuple[float, float]:
    repository = WorkflowRepository(
        db.session_factory(engine), dialect=engine.dialect.name, read_sessions=db.session_factory(engine, read_only=True)
    )
    plan = [PlannedJob(f"j{i}", "tissue_mask", "/slides/tiny.tif", "main", [f"j{i - 1}"] if i else []) for i in range(chain)]
    for index in range(workflows):
        await repository.create_workflow(f"tenant{index}", "bench", plan, admitted=True)
    repository.mark_published([row.id for row in repository.take_written()])
    cpu, wall = time.process_time(), time.perf_counter()
    running = [(j.tenant_id, j.id, j.attempt) for j in await repository.claim_runnable(1000)]
    done = 0
    while running:
        reports = [JobReport(tenant, job, attempt, "succeeded") for tenant, job, attempt in running[:batch]]
        running = running[batch:]
        _, claimed = await repository.apply_reports_and_claim(reports, 3, 1000)
        running += [(j.tenant_id, j.id, j.attempt) for j in claimed]
        repository.mark_published([row.id for row in repository.take_written()])
        done += len(reports)
    return (time.process_time() - cpu) / done * 1000, (time.perf_counter() - wall) / done * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=30)
    parser.add_argument("--chain", type=int, default=8)
    parser.add_argument("--batches", default="1,5", help="reports per transaction, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configurations = [
        ("sqlite", "stock aiosqlite", stock_aiosqlite),
        ("sqlite", "prefetch, thread", prefetching_on_thread),
        ("sqlite", "prefetch, inline", sqlite_connection.creator),
    ]
    if not await postgres_available():
        configurations.append(("postgresql", "asyncpg", sqlite_connection.creator))
    print(f"{'database':12s}{'connection':18s}{'batch':>6s}{'CPU ms/job':>12s}{'wall ms/job':>13s}")
    for batch in (int(b) for b in args.batches.split(",")):
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for kind, name, creator in configurations:
                results.setdefault((kind, name), []).append(await run_once(kind, creator, args.workflows, args.chain, batch))
        for (kind, name), runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"{kind:12s}{name:18s}{batch:6d}{cpu:12.2f}{wall:13.2f}")


if __name__ == "__main__":
    asyncio.run(main())
