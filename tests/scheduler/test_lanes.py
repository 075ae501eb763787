"""Branch lanes: one job at a time per (tenant, branch), in submission order, across workflows."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.scheduler.models import JobRow
from services.scheduler.outcomes import JobReport
from tests.scheduler.workloads import JS, WS, events_in, jobs_of, new_tenant, plan, running, start


async def test_a_lane_runs_one_job_at_a_time_in_submission_order_across_workflows(repository):
    alice = new_tenant()
    await start(repository, alice, ("a1", "main", []), ("a2", "main", []))
    await start(repository, alice, ("b1", "main", []), ("x1", "other", []))
    claimed = await repository.claim_runnable(100)
    assert sorted(c.job_id for c in claimed) == ["a1", "x1"]
    assert {c.attempt for c in claimed} == {1}
    order = []
    for _ in range(3):
        (job,) = [j for j in await running(repository, alice) if j.branch == "main"]
        order.append(job.job_id)
        assert (await repository.mark_succeeded(alice, job.id, job.attempts)).applied
        await repository.claim_runnable(100)
    assert order == ["a1", "a2", "b1"]


async def test_states_say_what_a_job_waits_for_and_positions_count_the_lane(repository):
    bob = new_tenant()
    workflow_id = await start(repository, bob, ("a", "main", []), ("b", "main", []), ("c", "other", ["a"]))
    jobs = await jobs_of(repository, workflow_id, bob)
    assert [jobs[j].state for j in "abc"] == [JS.JOB_STATE_QUEUED, JS.JOB_STATE_QUEUED, JS.JOB_STATE_PENDING]
    assert [jobs[j].queue_position for j in "ab"] == [0, 1]
    await repository.claim_runnable(100)
    await repository.mark_succeeded(bob, jobs["a"].id, 1)
    jobs = await jobs_of(repository, workflow_id, bob)
    assert jobs["c"].state == JS.JOB_STATE_QUEUED  # its dependency succeeded: it waits only for its lane
    assert jobs["b"].queue_position == 0


async def test_a_lane_head_waiting_for_a_dependency_blocks_its_lane(repository):
    carol = new_tenant()
    first = await start(repository, carol, ("slow", "other", []), ("needs_slow", "main", ["slow"]))
    await start(repository, carol, ("later", "main", []))
    assert [c.job_id for c in await repository.claim_runnable(100)] == ["slow"]  # "later" waits behind "needs_slow"
    slow = (await jobs_of(repository, first, carol))["slow"]
    await repository.mark_succeeded(carol, slow.id, 1)
    assert [c.job_id for c in await repository.claim_runnable(100)] == ["needs_slow"]


async def test_a_queued_tenant_runs_nothing_until_admitted(repository):
    dave = new_tenant()
    workflow_id = await repository.create_workflow(dave, "wf", plan(("a", "main", [])), queue_position=2)
    assert await repository.claim_runnable(100) == []
    workflow, _ = await repository.get_workflow(dave, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_QUEUED and workflow.queue_position == 2
    assert workflow.jobs[0].state == JS.JOB_STATE_PENDING
    await repository.update_queue_positions({dave: 1})
    assert (await repository.get_workflow(dave, workflow_id))[0].queue_position == 1
    assert await repository.set_tenant_admitted(dave) == [workflow_id]
    assert await repository.set_tenant_admitted(dave) == []  # repeating is harmless
    workflow, _ = await repository.get_workflow(dave, workflow_id)
    assert workflow.state == WS.WORKFLOW_STATE_RUNNING and workflow.queue_position == 0
    assert [c.job_id for c in await repository.claim_runnable(100)] == ["a"]


async def test_admitting_with_a_claim_starts_the_lane_heads_in_the_same_transaction(repository):
    fred = new_tenant()
    workflow_id = await repository.create_workflow(
        fred, "wf", plan(("a", "main", []), ("b", "main", []), ("c", "other", ["a"])), queue_position=1
    )
    repository.take_written()
    assert await repository.set_tenant_admitted(fred, claim_limit=100) == [workflow_id]
    workflow, last_seq = await repository.get_workflow(fred, workflow_id)
    jobs = {j.job_id: j for j in workflow.jobs}
    assert workflow.state == WS.WORKFLOW_STATE_RUNNING and workflow.queue_position == 0
    assert workflow.started_at.ToDatetime() <= jobs["a"].started_at.ToDatetime()
    # One at a time in the lane; "c" waits for its dependency.
    assert [jobs[j].state for j in "abc"] == [JS.JOB_STATE_RUNNING, JS.JOB_STATE_QUEUED, JS.JOB_STATE_PENDING]
    assert await repository.claim_runnable(100) == []  # nothing left for the dispatch loop
    written = repository.take_written()
    assert [r.subject for r in written if not r.seq] == [f"dispatch.{fred}.main"]
    # One message for the transaction's events: the admission's first, then the claim's,
    # numbered on from the workflow's last.
    assert len([r for r in written if r.seq]) == 1
    events = events_in(written)
    assert [e.seq for e in events] == list(range(events[0].seq, last_seq + 1))
    assert events[0].WhichOneof("kind") == "workflow_state_changed"
    assert events[-1].job_state_changed.state == JS.JOB_STATE_RUNNING


async def test_a_burst_of_admissions_starts_every_tenants_own_workflows(repository):
    """Admissions that arrive together are applied together (services.scheduler.coalesce):
    each call still gets its own tenant's workflows, and every lane head starts once."""
    tenants = [new_tenant() for _ in range(8)]
    workflows: dict[str, list[str]] = {}
    for index, tenant in enumerate(tenants):
        for _ in range(1 + index % 2):  # every other tenant has two workflows waiting
            workflow_id = await repository.create_workflow(
                tenant, "wf", plan(("a", "main", []), ("b", "main", ["a"])), queue_position=1
            )
            workflows.setdefault(tenant, []).append(workflow_id)
    repository.take_written()
    started = await asyncio.gather(*(repository.set_tenant_admitted(t, claim_limit=100) for t in tenants))
    assert [sorted(ids) for ids in started] == [sorted(workflows[t]) for t in tenants]
    for tenant in tenants:
        for workflow_id in workflows[tenant]:
            workflow, _ = await repository.get_workflow(tenant, workflow_id)
            assert workflow.state == WS.WORKFLOW_STATE_RUNNING and workflow.queue_position == 0
    # One lane per tenant: its first workflow's head runs, the rest waits its turn.
    dispatched = [r.subject for r in repository.take_written() if not r.seq]
    assert sorted(dispatched) == sorted(f"dispatch.{t}.main" for t in tenants)
    for tenant in tenants:
        assert [j.job_id for j in await running(repository, tenant)] == ["a"]
    assert await repository.set_tenant_admitted(tenants[0], claim_limit=100) == []  # repeating is harmless


async def test_concurrent_claims_never_run_two_jobs_of_one_lane(repository):
    erin = new_tenant()
    for w in range(4):
        await start(repository, erin, *[(f"w{w}j{i}", f"b{i % 5}", []) for i in range(10)])
    for _ in range(6):
        batches = await asyncio.gather(*(repository.claim_runnable(3) for _ in range(4)))
        claimed = [c for batch in batches for c in batch]
        assert len({c.id for c in claimed}) == len(claimed), "a job was claimed twice"
        lanes = [j.branch for j in await running(repository, erin)]
        assert len(lanes) == len(set(lanes)), "two jobs of one lane ran at once"
        for job in await running(repository, erin):
            await repository.mark_succeeded(erin, job.id, job.attempts)


async def test_a_status_batch_starts_what_it_freed_in_the_same_step(repository):
    fay = new_tenant()
    workflow_id = await start(repository, fay, ("a", "main", []), ("b", "main", []), ("c", "other", ["a"]))
    (a,) = await repository.claim_runnable(100)
    stale = JobReport(fay, a.id, a.attempt + 1, "succeeded")  # another attempt's report: ignored
    outcomes, claimed = await repository.apply_reports_and_claim(
        [JobReport(fay, a.id, a.attempt, "succeeded"), stale], max_attempts=3, claim_limit=100
    )
    assert [o.applied for o in outcomes] == [True, False]
    assert sorted(c.job_id for c in claimed) == ["b", "c"]  # b: its lane is free; c: its dependency succeeded
    jobs = await jobs_of(repository, workflow_id, fay)
    assert jobs["b"].state == jobs["c"].state == JS.JOB_STATE_RUNNING
    finished = jobs["a"].finished_at.ToDatetime()
    assert jobs["b"].started_at.ToDatetime() >= finished and jobs["c"].started_at.ToDatetime() >= finished
    rows = await repository.fetch_unpublished(1000)
    dispatched = {r.subject for r in rows if r.subject.startswith("dispatch.")}
    assert dispatched == {f"dispatch.{fay}.main", f"dispatch.{fay}.other"}
    # The batch's events come before the claim's, numbered on: a ends, c is queued, then b and c start.
    events = [e for e in events_in(rows) if e.workflow_id == workflow_id]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    changes = [(e.job_state_changed.job_id, e.job_state_changed.state) for e in events if e.HasField("job_state_changed")]
    ended = changes.index(("a", JS.JOB_STATE_SUCCEEDED))
    assert changes[ended : ended + 2] == [("a", JS.JOB_STATE_SUCCEEDED), ("c", JS.JOB_STATE_QUEUED)]
    assert sorted(changes[ended + 2 :]) == [("b", JS.JOB_STATE_RUNNING), ("c", JS.JOB_STATE_RUNNING)]


async def test_a_join_waits_for_every_dependency_whether_they_end_in_one_batch_or_two(repository):
    """PostgreSQL writes a batch's job changes and queues the freed dependents in one
    statement: a dependent is queued only when its last dependency has succeeded, the
    others in the same batch or before it, and never while one still runs or failed."""
    gus = new_tenant()
    jobs = (("a", "x", []), ("b", "y", []), ("c", "z", []), ("ab", "x", ["a", "b"]), ("bc", "y", ["b", "c"]))
    workflow_id = await start(repository, gus, *jobs)
    started = {c.job_id: c for c in await repository.claim_runnable(100)}
    assert sorted(started) == ["a", "b", "c"]
    done = lambda name: JobReport(gus, started[name].id, started[name].attempt, "succeeded")  # noqa: E731
    # a alone: ab still waits for b
    _, claimed = await repository.apply_reports_and_claim([done("a")], max_attempts=1, claim_limit=100)
    assert claimed == []
    assert (await jobs_of(repository, workflow_id, gus))["ab"].state == JS.JOB_STATE_PENDING
    # b and c fail/succeed together: ab (a before, b now) starts; bc does not (c failed)
    failed_c = JobReport(gus, started["c"].id, started["c"].attempt, "failed", message="broken", permanent=True)
    _, claimed = await repository.apply_reports_and_claim([done("b"), failed_c], max_attempts=1, claim_limit=100)
    assert [c.job_id for c in claimed] == ["ab"]
    states = {name: job.state for name, job in (await jobs_of(repository, workflow_id, gus)).items()}
    assert states["ab"] == JS.JOB_STATE_RUNNING and states["bc"] == JS.JOB_STATE_UPSTREAM_FAILED


async def test_dependencies_ending_in_the_same_batch_start_their_join(repository):
    hal = new_tenant()
    workflow_id = await start(repository, hal, ("a", "x", []), ("b", "y", []), ("ab", "z", ["a", "b"]))
    started = await repository.claim_runnable(100)
    reports = [JobReport(hal, c.id, c.attempt, "succeeded") for c in started]
    _, claimed = await repository.apply_reports_and_claim(reports, max_attempts=1, claim_limit=100)
    assert [c.job_id for c in claimed] == ["ab"]
    assert (await jobs_of(repository, workflow_id, hal))["ab"].state == JS.JOB_STATE_RUNNING


@st.composite
def lane_workloads(draw):
    """Workflows of two tenants: jobs on 1-3 branches with random dependencies (crossing lanes)."""
    workflows = []
    for w in range(draw(st.integers(1, 4))):
        names = [f"w{w}j{i}" for i in range(draw(st.integers(1, 5)))]
        jobs = []
        for i, name in enumerate(names):
            deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
            jobs.append((name, draw(st.sampled_from(["main", "dev", "exp"])), deps))
        workflows.append((draw(st.sampled_from([0, 1])), jobs))
    return workflows, draw(st.randoms(use_true_random=False))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=lane_workloads())
async def test_lanes_hold_over_random_dags(repository, workload):
    workflows, rnd = workload
    tenants = [new_tenant(), new_tenant()]
    job_info = {}  # global id -> (lane, submission index, dependency ids)
    submitted = 0
    for owner, jobs in workflows:
        workflow_id = await start(repository, tenants[owner], *jobs)
        by_name = await jobs_of(repository, workflow_id, tenants[owner])
        for name, branch, deps in jobs:
            job_info[by_name[name].id] = ((owner, branch), submitted, {by_name[d].id for d in deps})
            submitted += 1
    started: list[str] = []
    succeeded: set[str] = set()
    for _ in range(100):
        await repository.claim_runnable(100)
        async with repository.sessions() as session:
            query = select(JobRow).where(JobRow.tenant_id.in_(tenants), JobRow.state == "RUNNING")
            now_running = list((await session.execute(query)).scalars())
        lanes = [job_info[j.id][0] for j in now_running]
        assert len(lanes) == len(set(lanes)), "two jobs of one lane ran at once"
        for job in now_running:
            if job.id not in started:
                assert job_info[job.id][2] <= succeeded, "a job started before its dependencies succeeded"
                started.append(job.id)
        if not now_running:
            break
        # A random batch of reports: each finished job succeeds or, on its first two
        # attempts, may fail transiently (it retries later, keeping its place in its lane).
        finished = rnd.sample(now_running, rnd.randint(1, len(now_running)))
        reports = []
        for job in finished:
            kind = "failed" if job.attempts < 3 and rnd.random() < 0.2 else "succeeded"
            reports.append(JobReport(job.tenant_id, job.id, job.attempts, kind, message="worker lost"))
        if rnd.random() < 0.5:
            outcomes = await repository.apply_reports(reports, max_attempts=99)
        else:  # the status loop's path: what the reports freed starts at once
            outcomes, _ = await repository.apply_reports_and_claim(reports, max_attempts=99, claim_limit=100)
        assert all(o.applied for o in outcomes)
        succeeded |= {r.job_id for r in reports if r.kind == "succeeded"}
        repository.clock.advance(61)
    assert sorted(started) == sorted(job_info), "every job eventually ran"
    for lane in {info[0] for info in job_info.values()}:
        in_lane = [j for j in started if job_info[j][0] == lane]
        assert in_lane == sorted(in_lane, key=lambda j: job_info[j][1]), "a lane ran out of submission order"
