"""Inference replica lifecycle: load the model, NATS up, then plan jobs and segment tiles.

Every replica runs both loops: planning is light and rare, tiles are the bulk.
"""

from __future__ import annotations

import asyncio
import logging
import os

import torch

from services.common.api.slidelane.internal.v1 import inference_pb2_grpc
from services.common.server import ServiceApp
from services.inference.models import choose_model
from services.inference.planner import Planner
from services.inference.segmentation import Segmenter
from services.inference.servicer import InferenceServicer
from services.inference.tissue import warm_up
from services.inference.worker import TileWorker

log = logging.getLogger(__name__)


async def build(app: ServiceApp) -> None:
    settings = app.settings
    worker_id = os.environ.get("SLIDELANE_WORKER_ID") or f"inference-{os.getpid()}"
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    model = choose_model(settings.instanseg_model)
    segmenter = await asyncio.to_thread(Segmenter, model.path, settings.device, model.label)
    log.info(
        "model loaded on %s (%d torch threads)",
        segmenter.device,
        torch.get_num_threads(),
        extra={"model": model.label, "worker_id": worker_id},
    )
    await asyncio.to_thread(warm_up)  # before SERVING: the first tissue mask job is not slower than the rest
    js = await app.connect_nats()
    assert app.nats is not None
    worker = TileWorker(js, app.nats, segmenter, worker_id, batch_size=segmenter.batch_size)
    planner = Planner(js, app.nats, segmenter.pixel_size, model.label)
    app.add_service(
        inference_pb2_grpc.add_InferenceServiceServicer_to_server,
        InferenceServicer(worker),
        "slidelane.internal.v1.InferenceService",
    )
    for loop in (worker.run, worker.heartbeat, planner.run):
        app.add_background(loop)
