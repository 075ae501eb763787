"""Small helpers for tests that drive the whole system through Envoy."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from services.common.api.slidelane.v1 import types_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from tests.slides import write_test_slide

ROOT_DIR = Path(__file__).resolve().parents[2]
FINAL = {types_pb2.WORKFLOW_STATE_SUCCEEDED, types_pb2.WORKFLOW_STATE_FAILED, types_pb2.WORKFLOW_STATE_CANCELLED}


def as_user(user: str) -> tuple[tuple[str, str], ...]:
    return (("x-user-id", user),)


def slide(root: Path, name: str = "slide.tif", **kwargs) -> Path:
    path = root / name
    if not path.exists():
        kwargs.setdefault("width", 1024)
        kwargs.setdefault("height", 768)
        write_test_slide(path, **kwargs)
    return path


def job(job_id: str, image: Path, job_type: str = "tissue_mask", branch: str = "main", deps=()) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(job_id=job_id, job_type=job_type, image_path=str(image), branch=branch, depends_on=list(deps))


def workflows_stub(channel: grpc.Channel) -> workflow_service_pb2_grpc.WorkflowServiceStub:
    return workflow_service_pb2_grpc.WorkflowServiceStub(channel)


def create(stub, user: str, *jobs: types_pb2.JobSpec, name: str = "wf") -> types_pb2.Workflow:
    request = workflow_service_pb2.CreateWorkflowRequest(name=name, jobs=list(jobs))
    return stub.CreateWorkflow(request, metadata=as_user(user)).workflow


def wait_final(stub, user: str, workflow_id: str, timeout: float = 180.0) -> types_pb2.Workflow:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workflow = stub.GetWorkflow(
            workflow_service_pb2.GetWorkflowRequest(workflow_id=workflow_id), metadata=as_user(user)
        ).workflow
        if workflow.state in FINAL:
            return workflow
        time.sleep(0.2)
    raise AssertionError(f"workflow {workflow_id} did not finish in {timeout:.0f}s: {workflow}")


def seconds(stamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
