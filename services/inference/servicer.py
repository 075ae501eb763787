"""InferenceService: a replica describes itself (work arrives over NATS, not gRPC)."""

from __future__ import annotations

from services.common.api.slidelane.internal.v1 import inference_pb2, inference_pb2_grpc
from services.inference.worker import TileWorker


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, worker: TileWorker) -> None:
        self.worker = worker

    async def GetWorkerStatus(self, request, context):  # type: ignore[no-untyped-def]
        status = self.worker.status()
        return inference_pb2.GetWorkerStatusResponse(status=status, gpu_present=status.device == "cuda")
