"""Storage, reads, isolation and the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from services.common import db
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.errors import InvalidArgument, NotFound
from services.scheduler.models import JobRow, LaneSeqRow, OutboxRow, WorkflowRow
from services.scheduler.repository import WorkflowRepository
from services.scheduler.validation import PlannedJob
from tests.databases import fresh_database, postgres_available
from tests.scheduler.conftest import MIGRATIONS
from tests.scheduler.workloads import JS, WS, events_in, jobs_of, new_tenant, running, start


async def test_migrations_create_the_tables_and_can_run_again(database_url):
    await db.migrate(database_url, MIGRATIONS, "scheduler")  # already at head: nothing to do
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    assert {"workflows", "jobs", "job_dependencies", "outbox", "lane_seq", "alembic_version_scheduler"} <= tables


async def test_a_workflow_is_stored_with_its_plan(repository):
    alice = new_tenant()
    workflow_id = await start(repository, alice, ("mask", "main", []), ("cells", "seg", ["mask"]))
    workflow, last_seq = await repository.get_workflow(alice, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_RUNNING and workflow.HasField("started_at")
    assert [j.job_id for j in workflow.jobs] == ["mask", "cells"]
    cells = workflow.jobs[1]
    assert cells.depends_on == ["mask"] and cells.branch == "seg" and cells.workflow_id == workflow_id
    assert cells.image_path == "/slides/a.svs" and cells.state == JS.JOB_STATE_PENDING
    assert (await repository.get_job(alice, cells.id)).job_id == "cells"
    assert last_seq == 2  # workflow RUNNING, mask QUEUED


async def test_a_failed_insert_stores_nothing(repository):
    bob = new_tenant()
    duplicate = [PlannedJob("a", "tissue_mask", "/s.svs", "main", []), PlannedJob("a", "tissue_mask", "/s.svs", "main", [])]
    with pytest.raises(IntegrityError):  # unique (workflow_id, job_id); validation refuses this earlier
        await repository.create_workflow(bob, "wf", duplicate, admitted=True)
    async with repository.sessions() as session:
        for table in (WorkflowRow, JobRow, OutboxRow):
            assert await session.scalar(select(func.count()).select_from(table)) == 0
        assert await session.scalar(select(LaneSeqRow.value)) == 0


async def test_on_postgresql_submissions_wait_only_for_their_own_tenants(repository):
    """A tenant's submissions take their lane_seq values one at a time, in commit order (a
    job never lands ahead of a lane-mate already claimed); other tenants' do not wait."""
    if repository.dialect != "postgresql":
        pytest.skip("SQLite has one writer: every submission waits its turn")
    held, other = new_tenant(), new_tenant()
    async with repository.sessions.begin() as session:
        # An unfinished submission of `held`: its lane_seq taken, its commit still to come.
        (taken,) = await repository._take_lane_seqs(session, held, 1)
        later = asyncio.create_task(start(repository, held, ("a", "main", [])))
        other_id = await asyncio.wait_for(start(repository, other, ("a", "main", [])), timeout=10)
        await asyncio.sleep(0.3)
        assert not later.done(), "the same tenant's next submission waits for the first to commit"
    later_id = await asyncio.wait_for(later, timeout=10)
    assert (await jobs_of(repository, other_id, other))["a"].state == JS.JOB_STATE_QUEUED
    async with repository.read_sessions() as session:
        (later_seq,) = (await session.execute(select(JobRow.lane_seq).where(JobRow.workflow_id == later_id))).scalars()
    assert later_seq > taken


async def test_on_postgresql_the_migration_carries_lane_seq_on_from_the_counter(tmp_path):
    if reason := await postgres_available():
        pytest.skip(reason)
    async with fresh_database("postgresql", tmp_path) as url:
        await db.migrate(url, MIGRATIONS, "scheduler", revision="0002")
        engine = db.create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(LaneSeqRow.__table__.update().values(value=41))
            await db.migrate(url, MIGRATIONS, "scheduler")
            repository = WorkflowRepository(db.session_factory(engine), dialect="postgresql")
            workflow_id = await start(repository, new_tenant(), ("a", "main", []), ("b", "main", ["a"]))
            async with engine.connect() as connection:
                seqs = (await connection.execute(select(JobRow.lane_seq).where(JobRow.workflow_id == workflow_id))).scalars()
                assert sorted(seqs) == [42, 43]
        finally:
            await engine.dispose()


async def test_another_tenants_ids_are_not_found_everywhere(repository):
    owner, stranger = new_tenant(), new_tenant()
    workflow_id = await start(repository, owner, ("a", "main", []))
    (job,) = await repository.claim_runnable(100)
    with pytest.raises(NotFound):
        await repository.get_workflow(stranger, workflow_id)
    with pytest.raises(NotFound):
        await repository.get_job(stranger, job.id)
    with pytest.raises(NotFound):
        await repository.cancel_workflow(stranger, workflow_id)
    assert await repository.list_workflows(stranger, 50, "") == ([], "")
    assert await repository.lane_stats(stranger) == []
    await repository.record_progress(stranger, job.id, 1, 5, 10)
    assert not (await repository.mark_failed(stranger, job.id, 1, "x", permanent=True, max_attempts=1)).applied
    assert not (await repository.mark_succeeded(stranger, job.id, 1)).applied
    await repository.mark_released(stranger, workflow_id)
    assert await repository.set_tenant_admitted(stranger) == []
    mine = await repository.get_job(owner, job.id)
    assert mine.state == JS.JOB_STATE_RUNNING and mine.progress.tiles_total == 0
    assert await repository.finished_unreleased_workflows() == []


async def test_events_are_numbered_without_gaps_and_published_rows_go(repository):
    carol = new_tenant()
    workflow_id = await start(repository, carol, ("a", "main", []))
    (job,) = await repository.claim_runnable(100)
    await repository.record_progress(carol, job.id, 1, 3, 10)
    await repository.record_progress(carol, job.id, 1, 3, 10)  # unchanged: no event
    await repository.mark_succeeded(carol, job.id, 1)
    rows = await repository.fetch_unpublished(1000)
    event_rows = [r for r in rows if r.subject == f"events.{carol}.{workflow_id}"]
    parsed = events_in(event_rows)
    assert [e.seq for e in parsed] == list(range(1, len(parsed) + 1))
    # One message per transaction, numbered by its last event.
    assert [r.seq for r in event_rows] == [e.seq for e in parsed if e.seq in {r.seq for r in event_rows}]
    assert len(event_rows) == 4  # created+admitted, claimed, progressed, succeeded
    assert {r.tenant_id for r in rows} == {carol} and {r.workflow_id for r in rows} == {workflow_id}
    kinds = [e.WhichOneof("kind") for e in parsed]
    assert kinds == ["workflow_state_changed", "job_state_changed", "job_state_changed", "job_progressed"] + [
        "job_state_changed",
        "workflow_state_changed",
    ]
    assert parsed[-1].workflow_state_changed.state == WS.WORKFLOW_STATE_SUCCEEDED
    (dispatch_row,) = [r for r in rows if r.subject == f"dispatch.{carol}.main"]
    dispatch = messaging_pb2.JobDispatch.FromString(dispatch_row.payload)
    assert (dispatch.id, dispatch.attempt, dispatch.image_path) == (job.id, 1, "/slides/a.svs")
    # The same rows, handed to the outbox loop in memory as each transaction committed.
    written = repository.take_written()
    assert [(w.id, w.subject, w.payload, w.seq) for w in written] == [(r.id, r.subject, r.payload, r.seq) for r in rows]
    assert repository.take_written() == []
    repository.mark_published([r.id for r in rows])
    assert await repository.fetch_unpublished(1000) == []


async def test_workflow_progress_never_goes_backwards(repository):
    dave = new_tenant()
    workflow_id = await start(repository, dave, ("a", "main", []), ("b", "other", []))
    jobs = {c.job_id: c for c in await repository.claim_runnable(100)}
    ratios = []
    for job_id, done, total in (("a", 5, 10), ("b", 0, 100), ("b", 10, 100), ("a", 10, 10)):
        await repository.record_progress(dave, jobs[job_id].id, 1, done, total)
        workflow, _ = await repository.get_workflow(dave, workflow_id)
        ratios.append(workflow.progress.tiles_done / workflow.progress.tiles_total)
    assert ratios == sorted(ratios)
    assert (await repository.get_job(dave, jobs["b"].id)).progress.tiles_done == 10


async def test_progress_in_events_is_the_progress_get_workflow_shows(repository):
    """Events count tiles in the database (GROUP BY), GetWorkflow from the job rows: one rule."""
    hana = new_tenant()
    workflow_id = await start(repository, hana, ("a", "main", []), ("b", "other", []), ("c", "third", []), ("d", "main", ["a"]))
    jobs = {c.job_id: c for c in await repository.claim_runnable(100)}
    await repository.mark_succeeded(hana, jobs["c"].id, 1)
    for job_id, done, total in (("a", 5, 10), ("b", 30, 20)):  # b reports more than it planned
        await repository.record_progress(hana, jobs[job_id].id, 1, done, total)
        last = [e for e in events_in(await repository.fetch_unpublished(1000)) if e.HasField("job_progressed")][-1]
        workflow, _ = await repository.get_workflow(hana, workflow_id)
        assert last.job_progressed.workflow_progress == workflow.progress
    # a: 5 of 10, b: 20 of 20 (capped), c: done (its estimate: the planned mean, 15), d: unplanned, 15 to do.
    assert (workflow.progress.tiles_done, workflow.progress.tiles_total) == (40, 60)


async def test_pages_list_newest_first_without_gaps_or_repeats(repository):
    erin = new_tenant()
    created = [await start(repository, erin, ("a", "main", [])) for _ in range(5)]
    page, token = await repository.list_workflows(erin, 2, "")
    seen = [w.workflow_id for w in page]
    await start(repository, erin, ("a", "main", []))  # a newer one does not shift the next pages
    while token:
        page, token = await repository.list_workflows(erin, 2, token)
        seen += [w.workflow_id for w in page]
    assert seen == created[::-1]
    with pytest.raises(InvalidArgument) as caught:
        await repository.list_workflows(erin, 2, "not-a-token")
    assert caught.value.field == "page_token"


async def test_lane_stats_count_waiting_and_running_jobs_per_branch(repository):
    frank = new_tenant()
    await start(repository, frank, ("a", "main", []), ("b", "main", []), ("c", "dev", ["a"]))
    await repository.claim_runnable(100)
    stats = {lane.branch: (lane.queued, lane.running) for lane in await repository.lane_stats(frank)}
    assert stats == {"main": (1, 1), "dev": (1, 0)}
    depths = await repository.all_lane_depths()
    assert depths[(frank, "main")] == 1 and depths[(frank, "dev")] == 1
    assert [j.job_id for j in await running(repository, frank)] == ["a"]


async def test_a_restarted_repository_carries_on_from_the_database(repository, database_url):
    gina = new_tenant()
    workflow_id = await start(repository, gina, ("a", "main", []), ("b", "main", ["a"]))
    (job,) = await repository.claim_runnable(100)
    engine = db.create_engine(database_url)
    try:
        restarted = type(repository)(db.session_factory(engine), dialect=engine.dialect.name, clock=repository.clock)
        assert await restarted.claim_runnable(100) == []  # "a" is still RUNNING: its lane stays busy
        assert (await restarted.mark_succeeded(gina, job.id, 1)).applied  # the worker's report still lands
        assert [c.job_id for c in await restarted.claim_runnable(100)] == ["b"]
    finally:
        await engine.dispose()
    assert (await jobs_of(repository, workflow_id, gina))["b"].state == JS.JOB_STATE_RUNNING


async def test_reads_do_not_wait_for_a_writer(repository):
    """A long write transaction (SQLite: the one write lock) must not hold up GetWorkflow."""
    gina = new_tenant()
    workflow_id = await start(repository, gina, ("a", "main", []))
    async with repository.sessions.begin() as writer:
        await writer.execute(select(func.count()).select_from(WorkflowRow))
        await writer.execute(LaneSeqRow.__table__.update().values(value=LaneSeqRow.value))
        workflow, _ = await asyncio.wait_for(repository.get_workflow(gina, workflow_id), timeout=5)
    assert workflow.workflow_id == workflow_id


async def test_the_next_write_deletes_what_was_published_and_keeps_what_it_writes(repository):
    ivy = new_tenant()
    await start(repository, ivy, ("a", "main", []), ("b", "main", ["a"]))
    published = repository.take_written()
    repository.mark_published([r.id for r in published])
    # Both in one transaction (on PostgreSQL in one statement): the claim's dispatch and events
    # are written, the published rows deleted.
    (claimed,) = await repository.claim_runnable(10)
    written = repository.take_written()
    async with repository.read_sessions() as session:
        left = set((await session.execute(select(OutboxRow.id))).scalars())
    assert left == {r.id for r in written}
    assert [r for r in written if r.subject.startswith("dispatch.")], "the claim's dispatch is in the outbox"
    assert claimed.job_id == "a"


async def test_a_rolled_back_transaction_hands_nothing_over_and_still_deletes_what_was_published(repository):
    dave = new_tenant()
    await start(repository, dave, ("a", "main", []))
    published = repository.take_written()
    assert published, "the workflow's events are handed to the outbox loop"
    repository.mark_published([r.id for r in published])
    # A write transaction that fails: its rows are not handed over, and the deletion of
    # the published rows it carried is rolled back with it but not forgotten.
    duplicate = [PlannedJob("x", "tissue_mask", "/s.svs", "main", []), PlannedJob("x", "tissue_mask", "/s.svs", "main", [])]
    with pytest.raises(IntegrityError):
        await repository.create_workflow(dave, "wf", duplicate, admitted=True)
    assert repository.take_written() == []
    assert await repository.fetch_unpublished(1000) == []


async def test_on_postgresql_a_burst_of_new_jobs_gets_the_jobs_tables_analysed(repository, monkeypatch):
    """Without it the planner takes a burst of new jobs for a handful until autovacuum comes
    (up to a minute), and queueing a job's dependents scans every waiting job."""
    from sqlalchemy import text

    from services.scheduler import repository as repository_module

    if repository.dialect != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    monkeypatch.setattr(repository_module, "ANALYZE_AFTER_JOBS", 20)
    plan = [PlannedJob(f"j{i}", "tissue_mask", "/s.svs", "main", [f"j{i - 1}"] if i else []) for i in range(10)]

    async def estimated_jobs() -> float:
        async with repository.sessions() as session:
            return float(await session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass")))

    await repository.create_workflow("alice", "first", plan)
    assert repository._analyzing is None and await estimated_jobs() < 0  # never analysed yet
    await repository.create_workflow("alice", "second", plan)
    assert repository._analyzing is not None
    await repository._analyzing
    assert await estimated_jobs() == 20
    # The next analysis waits for the next 20 jobs (or a fifth of the table, if more).
    await repository.create_workflow("alice", "third", plan)
    assert repository._analyzing.done() and repository._created_since_analyze == 10
