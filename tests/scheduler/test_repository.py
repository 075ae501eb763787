"""Lanes, retries, failures, cancellation and isolation, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import events_pb2, types_pb2
from services.common.errors import NotFound
from services.scheduler.models import JobRow
from services.scheduler.validation import PlannedJob, submission_topological_order

JS = types_pb2.JobState


def plan(*jobs: tuple[str, str, list[str]]) -> list[PlannedJob]:
    return submission_topological_order([PlannedJob(j, "tissue_mask", "/slides/a.svs", b, list(d)) for j, b, d in jobs])


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def running_jobs(repository, tenant_id: str) -> list[types_pb2.Job]:
    workflows, _ = await repository.list_workflows(tenant_id, 500, "")
    return [j for w in workflows for j in w.jobs if j.state == JS.JOB_STATE_RUNNING]


async def start(repository, tenant_id: str, *jobs) -> str:
    workflow_id = await repository.create_workflow(tenant_id, "wf", plan(*jobs))
    await repository.set_tenant_admitted(tenant_id)
    return workflow_id


async def test_a_lane_runs_one_job_at_a_time_in_submission_order_across_workflows(repository):
    alice = tenant()
    await start(repository, alice, ("a1", "main", []), ("a2", "main", []))
    await start(repository, alice, ("b1", "main", []), ("x1", "other", []))
    assert await repository.claim_runnable(100) == 2
    assert sorted(j.job_id for j in await running_jobs(repository, alice)) == ["a1", "x1"]
    order = []
    for _ in range(3):
        (job,) = [j for j in await running_jobs(repository, alice) if j.branch == "main"]
        order.append(job.job_id)
        assert await repository.mark_succeeded(alice, job.id, job.attempts)
        await repository.claim_runnable(100)
    assert order == ["a1", "a2", "b1"]


async def test_queued_tenants_do_not_run_and_positions_are_shown(repository):
    bob = tenant()
    workflow_id = await repository.create_workflow(bob, "wf", plan(("a", "main", [])))
    await repository.update_queue_positions({bob: 2})
    assert await repository.claim_runnable(100) == 0
    workflow, _ = await repository.get_workflow(bob, workflow_id)
    assert workflow.state == types_pb2.WORKFLOW_STATE_QUEUED and workflow.queue_position == 2
    await repository.set_tenant_admitted(bob)
    assert await repository.claim_runnable(100) == 1


async def test_transient_failures_retry_then_fail_for_good_and_dependents_become_upstream_failed(repository):
    carol = tenant()
    workflow_id = await start(repository, carol, ("a", "main", []), ("b", "other", ["a"]), ("c", "third", []))
    await repository.claim_runnable(100)
    jobs = {j.job_id: j for j in await running_jobs(repository, carol)}
    assert set(jobs) == {"a", "c"}
    assert await repository.mark_failed(carol, jobs["a"].id, 1, "worker lost", permanent=False, max_attempts=2) == "QUEUED"
    assert await repository.mark_failed(carol, jobs["a"].id, 1, "late duplicate", permanent=False, max_attempts=2) is None
    await repository.claim_runnable(100)
    retried = await repository.get_job(carol, jobs["a"].id)
    assert retried.state == JS.JOB_STATE_RUNNING and retried.attempts == 2
    assert await repository.mark_failed(carol, jobs["a"].id, 2, "worker lost", permanent=False, max_attempts=2) == "FAILED"
    workflow, _ = await repository.get_workflow(carol, workflow_id)
    states = {j.job_id: j.state for j in workflow.jobs}
    assert states["b"] == JS.JOB_STATE_UPSTREAM_FAILED
    assert workflow.state == types_pb2.WORKFLOW_STATE_RUNNING  # c, independent, still runs
    await repository.mark_succeeded(carol, jobs["c"].id, 1)
    workflow, _ = await repository.get_workflow(carol, workflow_id)
    assert workflow.state == types_pb2.WORKFLOW_STATE_FAILED and "'a' failed: worker lost" in workflow.error


async def test_a_permanent_failure_is_not_retried(repository):
    dave = tenant()
    await start(repository, dave, ("a", "main", []))
    await repository.claim_runnable(100)
    (job,) = await running_jobs(repository, dave)
    assert await repository.mark_failed(dave, job.id, 1, "unreadable slide", permanent=True, max_attempts=5) == "FAILED"
    assert (await repository.get_job(dave, job.id)).attempts == 1


async def test_cancel_is_idempotent_and_reports_running_jobs(repository):
    erin = tenant()
    workflow_id = await start(repository, erin, ("a", "main", []), ("b", "main", []))
    await repository.claim_runnable(100)
    first = await repository.cancel_workflow(erin, workflow_id)
    assert len(first.running_job_ids) == 1
    again = await repository.cancel_workflow(erin, workflow_id)
    assert again.running_job_ids == []
    workflow, _ = await repository.get_workflow(erin, workflow_id)
    assert workflow.state == types_pb2.WORKFLOW_STATE_CANCELLED
    assert {j.state for j in workflow.jobs} == {JS.JOB_STATE_CANCELLED}
    assert not await repository.mark_succeeded(erin, first.running_job_ids[0], 1)  # late result ignored


async def test_another_tenants_ids_are_not_found_everywhere(repository):
    owner, stranger = tenant(), tenant()
    workflow_id = await start(repository, owner, ("a", "main", []))
    await repository.claim_runnable(100)
    (job,) = await running_jobs(repository, owner)
    with pytest.raises(NotFound):
        await repository.get_workflow(stranger, workflow_id)
    with pytest.raises(NotFound):
        await repository.get_job(stranger, job.id)
    with pytest.raises(NotFound):
        await repository.cancel_workflow(stranger, workflow_id)
    assert await repository.list_workflows(stranger, 50, "") == ([], "")
    assert not await repository.mark_succeeded(stranger, job.id, 1)
    assert (await repository.get_job(owner, job.id)).state == JS.JOB_STATE_RUNNING


async def test_events_are_numbered_without_gaps_per_workflow(repository):
    frank = tenant()
    workflow_id = await start(repository, frank, ("a", "main", []))
    await repository.claim_runnable(100)
    (job,) = await running_jobs(repository, frank)
    await repository.record_progress(frank, job.id, 1, 3, 10)
    await repository.mark_succeeded(frank, job.id, 1)
    rows = await repository.fetch_unpublished(1000)
    events = [
        events_pb2.WorkflowEvent.FromString(r.payload) for r in rows if r.subject == f"events.{frank}.{workflow_id}"
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[-1] == "workflow_state_changed" and "job_progressed" in kinds
    dispatches = [messaging_pb2.JobDispatch.FromString(r.payload) for r in rows if r.subject == f"dispatch.{frank}.main"]
    assert [d.id for d in dispatches] == [job.id]
    await repository.mark_published([r.id for r in rows])
    assert await repository.fetch_unpublished(1000) == []


async def test_workflow_progress_never_goes_backwards(repository):
    gina = tenant()
    workflow_id = await start(repository, gina, ("a", "main", []), ("b", "other", []))
    await repository.claim_runnable(100)
    jobs = {j.job_id: j for j in await running_jobs(repository, gina)}
    ratios = []
    for job_id, done, total in (("a", 5, 10), ("b", 0, 100), ("b", 10, 100), ("a", 10, 10)):
        await repository.record_progress(gina, jobs[job_id].id, 1, done, total)
        workflow, _ = await repository.get_workflow(gina, workflow_id)
        ratios.append(workflow.progress.tiles_done / workflow.progress.tiles_total)
    assert ratios == sorted(ratios)


@st.composite
def lane_workloads(draw):
    """Several workflows of one tenant: jobs on 1-3 branches with random dependencies."""
    workflows = []
    for w in range(draw(st.integers(1, 3))):
        names = [f"w{w}j{i}" for i in range(draw(st.integers(1, 5)))]
        jobs = []
        for i, name in enumerate(names):
            deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
            jobs.append((name, draw(st.sampled_from(["main", "dev", "exp"])), deps))
        workflows.append(jobs)
    return workflows, draw(st.randoms(use_true_random=False))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=lane_workloads())
async def test_lanes_hold_over_random_dags(repository, workload):
    workflows, rnd = workload
    owner = tenant()
    for jobs in workflows:
        await start(repository, owner, *jobs)
    async with repository.sessions() as session:
        rows = (await session.execute(select(JobRow).where(JobRow.tenant_id == owner))).scalars().all()
    branch_of = {r.job_id: r.branch for r in rows}
    lane_seq = {r.job_id: r.lane_seq for r in rows}
    deps = {r.job_id: r.depends_on for r in rows}
    started: list[str] = []
    finished: set[str] = set()
    for _ in range(200):
        await repository.claim_runnable(100)
        running = await running_jobs(repository, owner)
        lanes = [branch_of[j.job_id] for j in running]
        assert len(lanes) == len(set(lanes)), "two jobs of one lane ran at once"
        for j in running:
            if j.job_id not in started:
                assert set(deps[j.job_id]) <= finished, "a job started before its dependencies succeeded"
                started.append(j.job_id)
        if not running:
            break
        done = rnd.choice(running)
        assert await repository.mark_succeeded(owner, done.id, done.attempts)
        finished.add(done.job_id)
    assert sorted(started) == sorted(branch_of), "every job eventually ran"
    for branch in set(branch_of.values()):
        in_lane = [j for j in started if branch_of[j] == branch]
        assert in_lane == sorted(in_lane, key=lane_seq.__getitem__), "a lane ran out of submission order"
