"""One trace from CreateWorkflow to the result file, across every service, as exported over OTLP.

The cluster's services export their spans (OTEL_EXPORTER_OTLP_ENDPOINT) to an OTLP
receiver in this test, standing in for an OpenTelemetry Collector. The workflow is
submitted with the test's own traceparent, so its trace id is known in advance.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from services.common.api.slidelane.v1 import types_pb2, workflow_service_pb2
from tests.system.helpers import as_user, job, slide, wait_final, workflows_stub

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return self.span.name


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ExportedSpan] = []

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self._spans += [ExportedSpan(attributes.get("service.name", ""), s) for s in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: bytes) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self._spans if s.span.trace_id == trace_id]


@pytest.fixture
def otlp() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


EXPECTED = {
    "slidelane-gateway": {"/slidelane.v1.WorkflowService/CreateWorkflow"},
    "slidelane-scheduler": {
        "/slidelane.internal.v1.SchedulerService/CreateWorkflow",
        "INSERT",
        "dispatch tissue_mask",
        "dispatch cell_segmentation",
        "publish dispatch",
        "process status",
    },
    "slidelane-inference": {
        "process dispatch",
        "tissue mask",
        "plan tiles",
        "publish tiles",
        "process tiles",
        "publish results",
        "publish status",
    },
    "slidelane-storage": {"process results", "finalise results", "publish status"},
}


def test_one_trace_runs_from_create_workflow_through_every_tile_to_the_results(cluster_factory, otlp):
    receiver, endpoint = otlp
    cluster = cluster_factory(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"})
    image = slide(cluster.slide_root, "traced.tif")
    trace_id, root_span_id = random.getrandbits(128), random.getrandbits(64)
    traceparent = f"00-{trace_id:032x}-{root_span_id:016x}-01"
    stub = workflows_stub(cluster.channel())
    request = workflow_service_pb2.CreateWorkflowRequest(
        name="traced", jobs=[job("mask", image), job("segment", image, job_type="cell_segmentation", deps=["mask"])]
    )
    workflow = stub.CreateWorkflow(request, metadata=(*as_user("tracer"), ("traceparent", traceparent))).workflow
    done = wait_final(stub, "tracer", workflow.workflow_id, timeout=600)
    assert done.state == types_pb2.WORKFLOW_STATE_SUCCEEDED, done
    tiles_total = next(j.progress.tiles_total for j in done.jobs if j.job_id == "segment")
    assert tiles_total > 0

    # Spans leave each process in batches (a child's batch may land before its parent's);
    # wait until the last ones have arrived. No broken links: every span's parent is in
    # the trace (or is the caller's own span).
    deadline = time.monotonic() + 30
    while True:
        spans = receiver.trace(trace_id.to_bytes(16, "big"))
        names = {(s.service, s.name) for s in spans}
        missing = {(service, name) for service, wanted in EXPECTED.items() for name in wanted} - names
        processed = [s for s in spans if s.name == "process tiles"]
        ids = {s.span.span_id for s in spans} | {root_span_id.to_bytes(8, "big")}
        orphans = [f"{s.service}: {s.name}" for s in spans if s.span.parent_span_id and s.span.parent_span_id not in ids]
        if not missing and len(processed) >= tiles_total and not orphans:
            break
        assert time.monotonic() < deadline, (
            f"missing from the trace: {sorted(missing)}; {len(processed)}/{tiles_total} tiles; parents missing: {orphans}"
        )
        time.sleep(0.5)
    by_id = {s.span.span_id: s for s in spans}
    for tile in processed:
        parent = by_id[tile.span.parent_span_id]
        assert (parent.service, parent.name) == ("slidelane-inference", "publish tiles"), "a tile's span is its task's child"
        assert tile.span.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
