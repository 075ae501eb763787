"""Retries with backoff, permanent failures, UPSTREAM_FAILED, cancellation, and workflow ends."""

from __future__ import annotations

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.scheduler.outcomes import JobReport, WorkflowEnded, report_from_status
from tests.scheduler.workloads import JS, WS, events_in, jobs_of, new_tenant, plan, running, start


async def test_transient_failures_back_off_exponentially_then_fail_for_good(repository):
    alice = new_tenant()
    workflow_id = await start(repository, alice, ("a", "main", []), ("b", "main", []))
    (a, _) = (await jobs_of(repository, workflow_id, alice)).values()
    for attempt, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert [c.job_id for c in await repository.claim_runnable(100)] == ["a"]
        outcome = await repository.mark_failed(alice, a.id, attempt, "worker lost", permanent=False, max_attempts=4)
        assert outcome.job_state == "QUEUED" and outcome.workflow_ended is None
        repository.clock.advance(delay - 0.01)
        assert await repository.claim_runnable(100) == []  # still backing off, and "b" keeps its place behind it
        repository.clock.advance(0.02)
    assert [c.attempt for c in await repository.claim_runnable(100)] == [4]
    outcome = await repository.mark_failed(alice, a.id, 4, "worker lost", permanent=False, max_attempts=4)
    assert outcome.job_state == "FAILED"
    job = await repository.get_job(alice, a.id)
    assert job.state == JS.JOB_STATE_FAILED and job.attempts == 4 and job.error == "worker lost"


async def test_backoff_is_capped(repository):
    bob = new_tenant()
    workflow_id = await start(repository, bob, ("a", "main", []))
    a = (await jobs_of(repository, workflow_id, bob))["a"]
    retry_at = []
    for attempt in range(1, 10):
        await repository.claim_runnable(100)
        outcome = await repository.mark_failed(bob, a.id, attempt, "timeout", permanent=False, max_attempts=99)
        retry_at.append((outcome.retry_at - repository.clock.now).total_seconds())
        repository.clock.advance(120)
    assert round(retry_at[0]) == 1 and round(retry_at[-1]) == 60


async def test_a_permanent_failure_is_not_retried_and_stale_reports_are_ignored(repository):
    carol = new_tenant()
    workflow_id = await start(repository, carol, ("a", "main", []))
    a = (await jobs_of(repository, workflow_id, carol))["a"]
    await repository.claim_runnable(100)
    assert not (await repository.mark_succeeded(carol, a.id, 2)).applied  # no attempt 2 yet
    outcome = await repository.mark_failed(carol, a.id, 1, "unreadable slide", permanent=True, max_attempts=5)
    assert outcome.job_state == "FAILED"
    assert outcome.workflow_ended == WorkflowEnded(carol, workflow_id, "FAILED")
    assert not (await repository.mark_failed(carol, a.id, 1, "again", permanent=True, max_attempts=5)).applied
    assert not (await repository.mark_succeeded(carol, a.id, 1)).applied
    assert (await repository.get_job(carol, a.id)).attempts == 1


async def test_failure_marks_dependents_upstream_failed_and_independent_jobs_finish_first(repository):
    dave = new_tenant()
    workflow_id = await start(
        repository, dave, ("a", "main", []), ("b", "other", ["a"]), ("c", "third", ["b"]), ("d", "fourth", [])
    )
    jobs = await jobs_of(repository, workflow_id, dave)
    assert sorted(c.job_id for c in await repository.claim_runnable(100)) == ["a", "d"]
    outcome = await repository.mark_failed(dave, jobs["a"].id, 1, "bad params", permanent=True, max_attempts=3)
    assert outcome.workflow_ended is None  # d still runs
    workflow, _ = await repository.get_workflow(dave, workflow_id)
    states = {j.job_id: j.state for j in workflow.jobs}
    assert states == {
        "a": JS.JOB_STATE_FAILED,
        "b": JS.JOB_STATE_UPSTREAM_FAILED,
        "c": JS.JOB_STATE_UPSTREAM_FAILED,
        "d": JS.JOB_STATE_RUNNING,
    }
    assert workflow.state == WS.WORKFLOW_STATE_RUNNING and "'a' failed: bad params" in workflow.error
    outcome = await repository.mark_succeeded(dave, jobs["d"].id, 1)
    assert outcome.workflow_ended == WorkflowEnded(dave, workflow_id, "FAILED")
    workflow, _ = await repository.get_workflow(dave, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_FAILED and workflow.HasField("finished_at")
    assert await repository.finished_unreleased_workflows() == [(dave, workflow_id)]
    await repository.mark_released(dave, workflow_id)
    assert await repository.finished_unreleased_workflows() == []
    (failure,) = await repository.recent_failures(dave, 10)
    assert failure.job_id == "a" and failure.error == "bad params"


async def test_the_last_success_ends_the_workflow(repository):
    erin = new_tenant()
    workflow_id = await start(repository, erin, ("a", "main", []), ("b", "main", ["a"]))
    jobs = await jobs_of(repository, workflow_id, erin)
    await repository.claim_runnable(100)
    assert (await repository.mark_succeeded(erin, jobs["a"].id, 1)).workflow_ended is None
    await repository.claim_runnable(100)
    outcome = await repository.mark_succeeded(erin, jobs["b"].id, 1)
    assert outcome.workflow_ended == WorkflowEnded(erin, workflow_id, "SUCCEEDED")


async def test_cancel_is_idempotent_reports_running_jobs_and_frees_the_lane(repository):
    frank = new_tenant()
    workflow_id = await start(repository, frank, ("a", "main", []), ("b", "main", []))
    other_id = await start(repository, frank, ("later", "main", []))
    await repository.claim_runnable(100)
    first = await repository.cancel_workflow(frank, workflow_id)
    assert len(first.running_job_ids) == 1
    assert first.workflow_ended == WorkflowEnded(frank, workflow_id, "CANCELLED")
    again = await repository.cancel_workflow(frank, workflow_id)
    assert again.running_job_ids == [] and again.workflow_ended is None
    workflow, _ = await repository.get_workflow(frank, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_CANCELLED
    assert {j.state for j in workflow.jobs} == {JS.JOB_STATE_CANCELLED}
    assert not (await repository.mark_succeeded(frank, first.running_job_ids[0], 1)).applied  # late result ignored
    assert [c.workflow_id for c in await repository.claim_runnable(100)] == [other_id]


async def test_cancelling_a_finished_workflow_changes_nothing(repository):
    gina = new_tenant()
    workflow_id = await start(repository, gina, ("a", "main", []))
    (job,) = await repository.claim_runnable(100)
    await repository.mark_succeeded(gina, job.id, 1)
    _, seq_before = await repository.get_workflow(gina, workflow_id)
    assert (await repository.cancel_workflow(gina, workflow_id)).running_job_ids == []
    workflow, seq_after = await repository.get_workflow(gina, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_SUCCEEDED and seq_after == seq_before


async def test_a_queued_workflow_can_be_cancelled(repository):
    hal = new_tenant()
    workflow_id = await repository.create_workflow(hal, "wf", plan(("a", "main", [])), queue_position=1)
    outcome = await repository.cancel_workflow(hal, workflow_id)
    assert outcome.workflow_ended == WorkflowEnded(hal, workflow_id, "CANCELLED")
    await repository.set_tenant_admitted(hal)
    assert await repository.claim_runnable(100) == []
    assert await running(repository, hal) == []


async def test_a_batch_of_reports_applies_in_order_in_one_transaction(repository):
    ivy = new_tenant()
    workflow_id = await start(repository, ivy, ("a", "main", []), ("b", "other", []), ("c", "main", ["a", "b"]))
    claimed = {c.job_id: c for c in await repository.claim_runnable(100)}
    a, b = claimed["a"], claimed["b"]
    outcomes = await repository.apply_reports(
        [
            JobReport(ivy, a.id, 1, "progress", tiles_done=2, tiles_total=4),
            JobReport(ivy, a.id, 1, "succeeded"),
            JobReport(ivy, a.id, 1, "succeeded"),  # repeated: ignored
            JobReport(ivy, b.id, 2, "succeeded"),  # stale attempt: ignored
            JobReport(new_tenant(), b.id, 1, "succeeded"),  # another tenant's job: ignored
            JobReport(ivy, b.id, 1, "failed", message="worker lost"),
        ],
        max_attempts=3,
    )
    assert [o.applied for o in outcomes] == [True, True, False, False, False, True]
    assert outcomes[5].job_state == "QUEUED" and outcomes[5].retry_at is not None
    jobs = await jobs_of(repository, workflow_id, ivy)
    assert jobs["a"].state == JS.JOB_STATE_SUCCEEDED and jobs["a"].progress.tiles_done == 4
    assert jobs["c"].state == JS.JOB_STATE_PENDING  # b has not succeeded yet
    repository.clock.advance(2)
    (retried,) = await repository.claim_runnable(100)
    outcomes = await repository.apply_reports([JobReport(ivy, retried.id, 2, "succeeded")], max_attempts=3)
    assert (await jobs_of(repository, workflow_id, ivy))["c"].state == JS.JOB_STATE_QUEUED
    (c,) = await repository.claim_runnable(100)
    outcomes = await repository.apply_reports(
        [JobReport(ivy, c.id, 1, "progress", tiles_done=1, tiles_total=1), JobReport(ivy, c.id, 1, "succeeded")], max_attempts=3
    )
    assert outcomes[0].workflow_ended is None
    assert outcomes[1].workflow_ended == WorkflowEnded(ivy, workflow_id, "SUCCEEDED")
    events = events_in(await repository.fetch_unpublished(1000))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_status_messages_become_reports():
    status = messaging_pb2.JobStatus(tenant_id="t", job_id="j", attempt=2)
    assert report_from_status(status) is None
    status.planned.tiles_total = 9
    assert report_from_status(status) == JobReport("t", "j", 2, "progress", tiles_done=0, tiles_total=9)
    status.progress.tiles_done, status.progress.tiles_total = 3, 9
    assert report_from_status(status) == JobReport("t", "j", 2, "progress", tiles_done=3, tiles_total=9)
    status.failed.message, status.failed.permanent = "unreadable slide", True
    assert report_from_status(status) == JobReport("t", "j", 2, "failed", message="unreadable slide", permanent=True)
    status.succeeded.SetInParent()
    assert report_from_status(status) == JobReport("t", "j", 2, "succeeded")
