"""Branch lanes, admission, isolation and bad input, end to end through Envoy."""

from __future__ import annotations

import json
import os
import signal
import time

import grpc
import httpx
import pytest

from services.common.api.slidelane.v1 import job_service_pb2, job_service_pb2_grpc, types_pb2, workflow_service_pb2
from services.common.errors import field_violations
from tests.system.helpers import as_user, create, job, seconds, slide, wait_final, workflows_stub

pytestmark = pytest.mark.timeout(900)


def test_five_tenants_two_branches_limit_three(cluster_factory):
    """Lanes serial, branches overlapping, never more than 3 tenants active (from the timestamps)."""
    cluster = cluster_factory(env={"SLIDELANE_MAX_ACTIVE_USERS": "3", "SLIDELANE_INFERENCE_WORKERS": "1"})
    image = slide(cluster.slide_root, width=2048, height=1536)
    stub = workflows_stub(cluster.channel())
    submitted = []
    for t in range(5):
        user = f"tenant{t}"
        jobs = [job(f"{b}{i}", image, branch=b) for b in ("left", "right") for i in range(2)]
        submitted.append((user, create(stub, user, *jobs).workflow_id))
    positions = [
        stub.GetWorkflow(workflow_service_pb2.GetWorkflowRequest(workflow_id=w), metadata=as_user(u)).workflow
        for u, w in submitted
    ]
    assert max(w.queue_position for w in positions) >= 1, "with 5 tenants and a limit of 3, someone must wait"
    finished = [wait_final(stub, user, wf) for user, wf in submitted]
    assert {w.state for w in finished} == {types_pb2.WORKFLOW_STATE_SUCCEEDED}

    overlapping_branches = 0
    for workflow in finished:
        lanes: dict[str, list[types_pb2.Job]] = {}
        for j in workflow.jobs:
            lanes.setdefault(j.branch, []).append(j)
        for jobs in lanes.values():
            jobs.sort(key=lambda j: seconds(j.started_at))
            assert [j.job_id for j in jobs] == sorted(j.job_id for j in jobs), "lane ran out of submission order"
            for earlier, later in zip(jobs, jobs[1:], strict=False):
                assert seconds(earlier.finished_at) <= seconds(later.started_at), "two jobs of one lane ran at once"
        left, right = lanes["left"], lanes["right"]
        if seconds(left[0].started_at) < seconds(right[-1].finished_at) and seconds(right[0].started_at) < seconds(
            left[-1].finished_at
        ):
            overlapping_branches += 1
    assert overlapping_branches >= 1, "branches of one tenant never ran in parallel"

    moments = sorted({seconds(w.started_at) for w in finished})
    for moment in moments:
        active = [w for w in finished if seconds(w.started_at) <= moment < seconds(w.finished_at)]
        assert len(active) <= 3, f"{len(active)} tenants active at once"


def test_rest_create_with_the_readme_json_and_isolation(cluster):
    image = slide(cluster.slide_root, width=512, height=512)
    body = {
        "name": "readme example",
        "jobs": [
            {"job_id": "mask", "job_type": "tissue_mask", "image_path": str(image), "branch": "main", "depends_on": []},
            {"job_id": "mask2", "job_type": "tissue_mask", "image_path": str(image), "branch": "main", "depends_on": ["mask"]},
        ],
    }
    with httpx.Client(base_url=cluster.public, timeout=30) as http:
        created = http.post("/api/workflows", json=body, headers={"X-User-ID": "restuser"})
        assert created.status_code == 200, created.text
        workflow = created.json()["workflow"]
        workflow_id = workflow["workflow_id"]
        assert [j["job_id"] for j in workflow["jobs"]] == ["mask", "mask2"]
        job_global_id = workflow["jobs"][0]["id"]

        assert http.get(f"/api/workflows/{workflow_id}", headers={"X-User-ID": "intruder"}).status_code == 404
        assert http.post(f"/api/workflows/{workflow_id}/cancel", json={}, headers={"X-User-ID": "intruder"}).status_code == 404
        assert http.get(f"/api/jobs/{job_global_id}", headers={"X-User-ID": "intruder"}).status_code == 404
        assert http.get(f"/api/jobs/{job_global_id}/results", headers={"X-User-ID": "intruder"}).status_code == 404
        assert http.get(f"/api/workflows/{workflow_id}").status_code == 401
        listing = http.get("/api/workflows", headers={"X-User-ID": "intruder"}).json()
        assert listing.get("workflows", []) == []

        stub = workflows_stub(cluster.channel())
        done = wait_final(stub, "restuser", workflow_id)
        assert done.state == types_pb2.WORKFLOW_STATE_SUCCEEDED
        result = http.get(f"/api/jobs/{job_global_id}/results", headers={"X-User-ID": "restuser"})
        assert result.status_code == 200
        document = json.loads(result.content)
        assert 0 < document["tissue_fraction"] < 1


@pytest.mark.parametrize(
    ("jobs", "field"),
    [
        ([], "jobs"),
        ([{"job_id": "a", "job_type": "tissue_mask", "image_path": "IMG", "depends_on": ["a"]}], "jobs[0].depends_on"),
        ([{"job_id": "a", "job_type": "teleport", "image_path": "IMG"}], "jobs[0].job_type"),
        ([{"job_id": "a", "job_type": "tissue_mask", "image_path": "/etc/passwd"}], "jobs[0].image_path"),
        ([{"job_id": "a", "job_type": "tissue_mask", "image_path": "IMG", "branch": "x.y"}], "jobs[0].branch"),
    ],
)
def test_bad_workflows_are_refused_with_the_field_and_nothing_is_stored(cluster, jobs, field):
    image = slide(cluster.slide_root, width=512, height=512)
    user = f"bad{abs(hash(field)) % 10_000}"
    for spec in jobs:
        spec["image_path"] = spec["image_path"].replace("IMG", str(image))
    stub = workflows_stub(cluster.channel())
    request = workflow_service_pb2.CreateWorkflowRequest(name="bad")
    for spec in jobs:
        request.jobs.add(**spec)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateWorkflow(request, metadata=as_user(user))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    listed = stub.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=as_user(user))
    assert list(listed.workflows) == []


def test_a_tenant_id_that_is_not_subject_safe_is_refused(cluster):
    stub = workflows_stub(cluster.channel())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=as_user("evil.>"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_stops_work_and_is_harmless_twice(cluster):
    image = slide(cluster.slide_root, "cancel.tif", width=1024, height=1024)
    stub = workflows_stub(cluster.channel())
    workflow = create(stub, "canceller", job("a", image), job("b", image, deps=["a"]), job("c", image))
    first = stub.CancelWorkflow(
        workflow_service_pb2.CancelWorkflowRequest(workflow_id=workflow.workflow_id), metadata=as_user("canceller")
    )
    again = stub.CancelWorkflow(
        workflow_service_pb2.CancelWorkflowRequest(workflow_id=workflow.workflow_id), metadata=as_user("canceller")
    )
    assert first.workflow.state == again.workflow.state == types_pb2.WORKFLOW_STATE_CANCELLED
    final = wait_final(stub, "canceller", workflow.workflow_id)
    assert final.state == types_pb2.WORKFLOW_STATE_CANCELLED
    assert all(j.state in (types_pb2.JOB_STATE_CANCELLED, types_pb2.JOB_STATE_SUCCEEDED) for j in final.jobs)


def test_an_unreadable_slide_fails_its_job_at_once_without_retries(cluster):
    broken = cluster.slide_root / "broken.tif"
    good = slide(cluster.slide_root, "tobreak.tif", width=512, height=512)
    stub = workflows_stub(cluster.channel())
    broken.write_bytes(good.read_bytes())
    workflow = create(stub, "breaker", job("seg", broken, job_type="cell_segmentation"), job("after", good, deps=["seg"]))
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)  # now neither OpenSlide nor tifffile can read it
    final = wait_final(stub, "breaker", workflow.workflow_id)
    seg, after = sorted(final.jobs, key=lambda j: j.job_id != "seg")
    assert final.state == types_pb2.WORKFLOW_STATE_FAILED
    assert seg.state == types_pb2.JOB_STATE_FAILED and seg.attempts == 1
    assert "broken.tif" in seg.error
    assert after.state == types_pb2.JOB_STATE_UPSTREAM_FAILED


@pytest.mark.parametrize("service", ["scheduler", "tenancy", "gateway"])
def test_kill_9_mid_workflow_loses_nothing(cluster, service):
    image = slide(cluster.slide_root, "restart.tif", width=1536, height=1024)
    stub = workflows_stub(cluster.channel())
    user = f"restart{service}"
    workflow = create(stub, user, *[job(f"j{i}", image, branch=f"b{i % 2}") for i in range(6)])
    cluster.restart(service)
    final = wait_final(workflows_stub(cluster.channel()), user, workflow.workflow_id)
    assert final.state == types_pb2.WORKFLOW_STATE_SUCCEEDED
    for branch in ("b0", "b1"):
        lane = sorted((j for j in final.jobs if j.branch == branch), key=lambda j: seconds(j.started_at))
        for earlier, later in zip(lane, lane[1:], strict=False):
            assert seconds(earlier.finished_at) <= seconds(later.started_at)
    jobs = job_service_pb2_grpc.JobServiceStub(cluster.channel())
    for j in final.jobs:
        assert (
            jobs.GetJob(job_service_pb2.GetJobRequest(job_id=j.id), metadata=as_user(user)).job.state
            == types_pb2.JOB_STATE_SUCCEEDED
        )


def test_a_workflow_created_while_tenancy_hangs_is_stored_queued_and_runs_once_it_answers(cluster):
    """Tenancy frozen (SIGSTOP): CreateWorkflow still answers within seconds, with the stored
    workflow QUEUED rather than an error that would invite a duplicate resubmission, and
    the workflow runs to the end once tenancy answers again."""
    image = slide(cluster.slide_root, "frozen.tif", width=512, height=512)
    stub = workflows_stub(cluster.channel())
    tenancy = cluster.pids()["tenancy"]
    os.kill(tenancy, signal.SIGSTOP)
    try:
        started = time.monotonic()
        workflow = create(stub, "frozen", job("a", image), job("b", image, deps=["a"]), name="while frozen")
        waited = time.monotonic() - started
        listed = stub.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=as_user("frozen")).workflows
    finally:
        os.kill(tenancy, signal.SIGCONT)
    assert workflow.state == types_pb2.WORKFLOW_STATE_QUEUED
    assert waited < 10, f"CreateWorkflow took {waited:.1f}s while tenancy was frozen"
    assert [w.workflow_id for w in listed] == [workflow.workflow_id]  # stored once, with its jobs
    assert [j.job_id for j in listed[0].jobs] == ["a", "b"]
    final = wait_final(stub, "frozen", workflow.workflow_id)
    assert final.state == types_pb2.WORKFLOW_STATE_SUCCEEDED
    assert all(j.state == types_pb2.JOB_STATE_SUCCEEDED and j.attempts == 1 for j in final.jobs)


def test_a_waiting_tenants_queue_position_moves_up_as_slots_free(cluster_factory):
    """Limit 1: the third tenant is 2nd in the queue, then 1st when the first tenant's
    workflow ends, then runs; positions are visible in GetWorkflow while it waits."""
    cluster = cluster_factory(env={"SLIDELANE_MAX_ACTIVE_USERS": "1", "SLIDELANE_INFERENCE_WORKERS": "1"})
    image = slide(cluster.slide_root, "queue.tif", width=1536, height=1024)
    stub = workflows_stub(cluster.channel())
    first = create(stub, "first", job("seg", image, job_type="cell_segmentation"))
    second = create(stub, "second", job("seg", image, job_type="cell_segmentation"))
    third = create(stub, "third", job("mask", image))
    assert (second.queue_position, third.queue_position) == (1, 2)
    seen: list[int] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        current = stub.GetWorkflow(
            workflow_service_pb2.GetWorkflowRequest(workflow_id=third.workflow_id), metadata=as_user("third")
        ).workflow
        if current.state != types_pb2.WORKFLOW_STATE_QUEUED:
            break
        if not seen or seen[-1] != current.queue_position:
            seen.append(current.queue_position)
        time.sleep(0.1)
    assert seen == [2, 1], f"third tenant's positions while it waited: {seen}"
    for user, workflow in (("first", first), ("second", second), ("third", third)):
        assert wait_final(stub, user, workflow.workflow_id).state == types_pb2.WORKFLOW_STATE_SUCCEEDED


def test_tiny_jobs_on_a_quiet_system_are_not_held_between_hops(cluster_factory):
    """Each hop (dispatch, result, status) takes its message up as it arrives. With nats-py's
    batch fetch, a lone message reaching an idle consumer could sit until that consumer's
    1 s pull expired: a 5 ms tissue mask then took 0.4-0.95 s, at one job or more of every
    chain of six."""
    cluster = cluster_factory(env={"SLIDELANE_INFERENCE_WORKERS": "1"})
    tiny = slide(cluster.slide_root, "tiny.tif", width=64, height=64)
    stub = workflows_stub(cluster.channel())
    durations = []
    for _ in range(3):
        time.sleep(1.5)  # every consumer idle in its pull, as on a quiet system
        chain = [job(f"j{i}", tiny, deps=[f"j{i - 1}"] if i else []) for i in range(6)]
        final = wait_final(stub, "quiet", create(stub, "quiet", *chain).workflow_id)
        assert final.state == types_pb2.WORKFLOW_STATE_SUCCEEDED
        durations += [seconds(j.finished_at) - seconds(j.started_at) for j in final.jobs]
    assert max(durations) < 0.3, f"job durations (s): {sorted(round(d, 3) for d in durations)}"
