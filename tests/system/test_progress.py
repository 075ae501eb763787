"""Live progress: WatchWorkflow (snapshot, live, resume), tenant isolation, REST streaming, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import httpx
import pytest

from services.common.api.slidelane.v1 import (
    progress_service_pb2,
    progress_service_pb2_grpc,
    types_pb2,
    workflow_service_pb2,
)
from tests.system.helpers import ROOT_DIR, as_user, create, job, seconds, slide, wait_final, workflows_stub

pytestmark = pytest.mark.timeout(900)


def _segmentation_workflow(cluster, stub, user: str):
    image = slide(cluster.slide_root, "progress.tif", width=2048, height=1536)
    return create(stub, user, job("segment", image, job_type="cell_segmentation"), job("mask", image, deps=["segment"]))


def test_a_watcher_sees_progress_then_the_end_and_can_resume_exactly(cluster):
    stub = workflows_stub(cluster.channel())
    workflow = _segmentation_workflow(cluster, stub, "watcher")
    events = [
        r.event
        for r in stub.WatchWorkflow(
            workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow.workflow_id), metadata=as_user("watcher"), timeout=600
        )
    ]
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "snapshot"
    assert "job_progressed" in kinds
    assert events[-1].workflow_state_changed.state == types_pb2.WORKFLOW_STATE_SUCCEEDED
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "events out of order or repeated"
    done = [e.job_progressed.job_progress.tiles_done for e in events if e.HasField("job_progressed")]
    assert done == sorted(done) and done[-1] > 0

    # A reconnect after event k gets exactly the events after it, in order, and ends.
    live = [e for e in events if not e.HasField("snapshot")]
    k = len(live) // 2
    resumed = [
        r.event
        for r in stub.WatchWorkflow(
            workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow.workflow_id, after_seq=live[k].seq),
            metadata=as_user("watcher"),
            timeout=60,
        )
    ]
    assert [e.seq for e in resumed] == [e.seq for e in live[k + 1 :]]
    assert [e.SerializeToString() for e in resumed] == [e.SerializeToString() for e in live[k + 1 :]]


def test_another_tenant_sees_nothing(cluster):
    stub = workflows_stub(cluster.channel())
    seen: list[object] = []
    progress = progress_service_pb2_grpc.ProgressServiceStub(cluster.channel())
    stream = progress.Watch(progress_service_pb2.WatchRequest(), metadata=as_user("onlooker"), timeout=20)

    def collect() -> None:
        try:
            for response in stream:
                seen.append(response)
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)

    reader = threading.Thread(target=collect)
    reader.start()
    workflow = _segmentation_workflow(cluster, stub, "private")
    with pytest.raises(grpc.RpcError) as caught:
        list(
            stub.WatchWorkflow(
                workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow.workflow_id), metadata=as_user("onlooker")
            )
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    wait_final(stub, "private", workflow.workflow_id)
    stream.cancel()
    reader.join(30)
    assert seen == []


def test_the_rest_stream_delivers_events_before_the_job_ends(cluster):
    stub = workflows_stub(cluster.channel())
    workflow = _segmentation_workflow(cluster, stub, "restwatcher")
    first_chunk_at = None
    body = b""
    with httpx.Client(base_url=cluster.public, timeout=600) as http:
        with http.stream(
            "GET", f"/api/workflows/{workflow.workflow_id}/events", headers={"X-User-ID": "restwatcher"}
        ) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                if first_chunk_at is None and chunk.strip():
                    first_chunk_at = time.time()
                body += chunk
    events = json.loads(body)
    assert events[0]["event"]["snapshot"]["workflow"]["workflow_id"] == workflow.workflow_id
    final = wait_final(stub, "restwatcher", workflow.workflow_id)
    segment = next(j for j in final.jobs if j.job_id == "segment")
    assert first_chunk_at is not None and first_chunk_at < seconds(segment.finished_at), (
        "REST events came in one burst at the end"
    )


def test_the_cli_submits_and_watches_to_completion(cluster, tmp_path):
    image = slide(cluster.slide_root, "cli.tif", width=1024, height=768)
    spec = tmp_path / "workflow.yaml"
    spec.write_text(
        "name: from the cli\n"
        "jobs:\n"
        f"  - {{job_id: mask, job_type: tissue_mask, image_path: {image}}}\n"
        f"  - {{job_id: segment, job_type: cell_segmentation, image_path: {image}, depends_on: [mask]}}\n"
    )
    command = [sys.executable, "-m", "services.cli", "--server", cluster.grpc_target, "--user", "cliuser"]
    done = subprocess.run([*command, "submit", str(spec), "--watch"], cwd=ROOT_DIR, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout
    bad = subprocess.run([*command, "get", "no-such-workflow"], cwd=ROOT_DIR, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: NOT_FOUND") and len(bad.stderr.strip().splitlines()) == 1
    workflow_id = done.stdout.split()[0]
    job_id = next(line.split("id=")[1].split()[0] for line in done.stdout.splitlines() if "segment" in line and "id=" in line)
    out = tmp_path / "results"
    fetched = subprocess.run(
        [*command, "results", job_id, "--out", str(out)], cwd=ROOT_DIR, capture_output=True, text=True, timeout=120
    )
    assert fetched.returncode == 0, fetched.stderr
    segmentation = json.loads((out / f"{workflow_id}_segment_segmentation.json").read_text())
    assert segmentation["tiles_processed"] > 0 and "slidelane_synthetic_nuclei" in segmentation["model"]
    assert json.loads((out / f"{workflow_id}_segment_cells.geojson").read_text())["type"] == "FeatureCollection"
