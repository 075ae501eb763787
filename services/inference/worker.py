"""Tile worker: pull tile tasks in batches, segment them, publish results, then ack.

A result is published before its task is acked, so a worker killed mid-batch loses
nothing: its unacked tasks are redelivered after ack_wait, and storage counts each
tile once whatever the number of deliveries. Long batches send in_progress() so a
slow CPU batch is not mistaken for a dead worker. Each tile has its own consumer span
(in its job's trace, though the batch mixes jobs), under which its result is published.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace

from services.common import jetstream, metrics, tracing
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import metrics_service_pb2
from services.common.slides import SlideCache, SlideError
from services.inference.segmentation import Segmenter

log = logging.getLogger(__name__)
IN_PROGRESS_SECONDS = 10.0
RATE_WINDOW_SECONDS = 60.0


@dataclass
class Tile:
    """A tile task being worked on: its message, its decoded task, its consumer span."""

    message: Msg
    task: messaging_pb2.TileTask
    span: trace.Span


class TileWorker:
    def __init__(self, js: JetStreamContext, nats: Nats, segmenter: Segmenter, worker_id: str, batch_size: int) -> None:
        self.js = js
        self.nats = nats
        self.segmenter = segmenter
        self.worker_id = worker_id
        self.batch_size = batch_size
        self.slides = SlideCache()
        self._cancelled: set[str] = set()
        self._done_at: deque[float] = deque()
        self._busy: deque[tuple[float, float]] = deque()

    def tiles_per_second(self) -> float:
        cutoff = time.monotonic() - RATE_WINDOW_SECONDS
        while self._done_at and self._done_at[0] < cutoff:
            self._done_at.popleft()
        return len(self._done_at) / RATE_WINDOW_SECONDS

    def busy_ratio(self) -> float:
        """Share of the last minute this replica spent segmenting."""
        now = time.monotonic()
        while self._busy and self._busy[0][1] < now - RATE_WINDOW_SECONDS:
            self._busy.popleft()
        busy = sum(end - max(start, now - RATE_WINDOW_SECONDS) for start, end in self._busy)
        return min(busy / RATE_WINDOW_SECONDS, 1.0)

    def status(self) -> metrics_service_pb2.WorkerStatus:
        status = metrics_service_pb2.WorkerStatus(
            worker_id=self.worker_id,
            device=self.segmenter.device,
            tiles_per_second=self.tiles_per_second(),
            model=self.segmenter.label,
        )
        status.last_seen.GetCurrentTime()
        return status

    async def heartbeat(self) -> None:
        while True:
            await self.nats.publish(jetstream.WORKER_HEARTBEAT_SUBJECT, self.status().SerializeToString())
            await asyncio.sleep(2.0)

    async def run(self) -> None:
        async def on_cancel(message: Msg) -> None:
            self._cancelled.add(message.subject.split(".", 2)[2])

        await self.nats.subscribe(jetstream.cancel_subject("*", "*"), cb=on_cancel)
        async with jetstream.pulling(self.js, jetstream.TILES) as puller:
            while True:
                messages = await puller.fetch(self.batch_size)
                if not messages:
                    continue
                await self.process(messages)

    async def process(self, messages: list[Msg]) -> None:
        with tracing.consuming_each(messages) as spans:
            tiles: list[Tile] = []
            for message, span in zip(messages, spans, strict=True):
                span.set_attributes({"slidelane.worker_id": self.worker_id, "slidelane.batch_size": len(messages)})
                task = messaging_pb2.TileTask.FromString(message.data)
                if task.job_id in self._cancelled:
                    span.set_attribute("slidelane.dropped", "job cancelled")
                    await message.ack()
                else:
                    tiles.append(Tile(message, task, span))
            if tiles:
                await self._process(tiles)

    async def _process(self, tiles: list[Tile]) -> None:
        keepalive = asyncio.create_task(_keep_in_progress([t.message for t in tiles]))
        started = time.monotonic()
        try:
            results = await asyncio.to_thread(self._segment, [t.task for t in tiles])
        except SlideError as error:
            keepalive.cancel()
            await self._fail_tiles(tiles, error)
            return
        except Exception as error:
            keepalive.cancel()
            for tile in tiles:
                tracing.fail_span(tile.span, error)
            log.exception("tile batch failed; redelivering", extra={"worker_id": self.worker_id})
            await asyncio.gather(*(t.message.nak(delay=2) for t in tiles))
            return
        keepalive.cancel()
        self._busy.append((started, time.monotonic()))
        metrics.BATCH_SIZE.observe(len(tiles))
        metrics.TILES_PROCESSED.labels(self.worker_id).inc(len(tiles))
        metrics.WORKER_BUSY.labels(self.worker_id).set(self.busy_ratio())
        for tile, result in zip(tiles, results, strict=True):
            task = tile.task
            tile.span.set_attributes(
                {"slidelane.cells": len(result.cells), "slidelane.inference_seconds": result.inference_seconds}
            )
            with trace.use_span(tile.span):
                await jetstream.publish(
                    self.js,
                    jetstream.results_subject(task.tenant_id, task.job_id),
                    messaging_pb2.ResultEnvelope(tile=result).SerializeToString(),
                    {"Nats-Msg-Id": f"result-{task.job_id}-{task.attempt}-{task.tile_index}"},
                )
            await tile.message.ack()
            self._done_at.append(time.monotonic())

    def _segment(self, tasks: list[messaging_pb2.TileTask]) -> list[messaging_pb2.TileResult]:
        started = time.perf_counter()
        pixels = [self.slides.read_tile(task) for task in tasks]
        cells_per_tile = self.segmenter.segment_tiles(pixels, tasks)
        seconds = (time.perf_counter() - started) / len(tasks)
        for _ in tasks:
            metrics.TILE_INFERENCE.observe(seconds)
        return [
            messaging_pb2.TileResult(
                tenant_id=task.tenant_id,
                workflow_id=task.workflow_id,
                job_id=task.job_id,
                attempt=task.attempt,
                tile_index=task.tile_index,
                tiles_total=task.tiles_total,
                cells=cells,
                model=self.segmenter.label,
                worker_id=self.worker_id,
                inference_seconds=seconds,
            )
            for task, cells in zip(tasks, cells_per_tile, strict=True)
        ]

    async def _fail_tiles(self, tiles: list[Tile], error: SlideError) -> None:
        """An unreadable region fails its job for good; retrying the tile cannot help."""
        for tile in tiles:
            task = tile.task
            tracing.fail_span(tile.span, error)
            status = messaging_pb2.JobStatus(
                tenant_id=task.tenant_id,
                workflow_id=task.workflow_id,
                job_id=task.job_id,
                attempt=task.attempt,
                failed=messaging_pb2.JobFailed(message=str(error), permanent=error.permanent),
            )
            subject = jetstream.status_subject(task.tenant_id, task.job_id)
            with trace.use_span(tile.span):
                await jetstream.publish(self.js, subject, status.SerializeToString())
            await tile.message.term()


async def _keep_in_progress(messages: list[Msg]) -> None:
    while True:
        await asyncio.sleep(IN_PROGRESS_SECONDS)
        await asyncio.gather(*(m.in_progress() for m in messages))
