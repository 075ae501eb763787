"""Consume RESULTS: spool tiles, report throttled progress, finalise finished jobs.

A message is acked only after what it causes is durable (spool file written, and
for the last tile, result files written and JobStatus published), so a crash
replays it and the idempotent spool makes the replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common import jetstream, tracing
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.storage.merge import AttemptSpool, ResultMerger

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_SECONDS = 0.25
FETCH_BATCH = 64
# Tissue-mask results up to this size (mask PNG + GeoJSON) are written on the event loop.
INLINE_FINALISE_BYTES = 64 * 1024


class ResultsConsumer:
    def __init__(self, js: JetStreamContext, nats: Nats, merger: ResultMerger) -> None:
        self.js = js
        self.nats = nats
        self.merger = merger
        self._last_progress: dict[tuple[str, int], float] = {}
        self._cancelled: set[str] = set()

    async def watch_cancellations(self) -> None:
        async def on_cancel(message: Msg) -> None:
            _, tenant, job_id = message.subject.split(".", 2)
            self._cancelled.add(job_id)
            self.merger.forget(tenant, job_id)

        await self.nats.subscribe(jetstream.cancel_subject("*", "*"), cb=on_cancel)

    async def run(self) -> None:
        await self.watch_cancellations()
        async with jetstream.pulling(self.js, jetstream.RESULTS) as puller:
            while True:
                messages = await puller.fetch(FETCH_BATCH)
                if not messages:
                    continue
                # Jobs are independent: handle them side by side; one job's messages stay in order,
                # so its spool and its finalisation see them one at a time.
                by_job: dict[str, list[Msg]] = {}
                for message in messages:
                    by_job.setdefault(message.subject, []).append(message)
                await asyncio.gather(*(self._handle_in_order(group) for group in by_job.values()))

    async def _handle_in_order(self, messages: list[Msg]) -> None:
        for message in messages:
            with tracing.consuming(message):
                await self.handle(message)

    async def handle(self, message: Msg) -> None:
        envelope = messaging_pb2.ResultEnvelope.FromString(message.data)
        kind = envelope.WhichOneof("kind")
        if kind == "plan":
            await self._on_plan(envelope.plan)
        elif kind == "tile":
            await self._on_tile(envelope.tile)
        elif kind == "tissue_mask":
            await self._on_tissue_mask(envelope.tissue_mask)
        await message.ack()

    async def _on_plan(self, plan: messaging_pb2.JobPlan) -> None:
        if plan.job_id in self._cancelled:
            return
        spool = await asyncio.to_thread(self.merger.add_plan, plan)
        await self._maybe_finish(spool)

    async def _on_tile(self, tile: messaging_pb2.TileResult) -> None:
        if tile.job_id in self._cancelled:
            return
        spool, _new = await asyncio.to_thread(self.merger.add_tile, tile)
        if not await self._maybe_finish(spool):
            await self._report_progress(tile, len(spool.tiles))

    async def _on_tissue_mask(self, result: messaging_pb2.TissueMaskResult) -> None:
        plan = result.plan
        if plan.job_id in self._cancelled:
            return
        with tracing.tracer(__name__).start_as_current_span("finalise results", attributes={"slidelane.job_id": plan.job_id}):
            if len(result.mask_png) + len(result.geojson) <= INLINE_FINALISE_BYTES:
                # Four small files into the page cache (no fsync): the trip to a thread and
                # back would cost more CPU than writing them.
                succeeded = self.merger.finalise_tissue_mask(result)
            else:
                succeeded = await asyncio.to_thread(self.merger.finalise_tissue_mask, result)
        await self._publish_status(plan.tenant_id, plan.workflow_id, plan.job_id, plan.attempt, succeeded=succeeded)

    async def _maybe_finish(self, spool: AttemptSpool) -> bool:
        if not spool.complete:
            return False
        plan = spool.plan
        assert plan is not None
        with tracing.tracer(__name__).start_as_current_span("finalise results", attributes={"slidelane.job_id": plan.job_id}):
            succeeded = await asyncio.to_thread(self.merger.finalise_segmentation, spool)
        await self._publish_status(plan.tenant_id, plan.workflow_id, plan.job_id, plan.attempt, succeeded=succeeded)
        log.info(
            "job results stored",
            extra={"tenant": plan.tenant_id, "job_id": plan.job_id, "model": plan.model},
        )
        return True

    async def _report_progress(self, tile: messaging_pb2.TileResult, done: int) -> None:
        key = (tile.job_id, tile.attempt)
        now = time.monotonic()
        if now - self._last_progress.get(key, 0.0) < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_progress[key] = now
        progress = messaging_pb2.JobTileProgress(tiles_done=done, tiles_total=tile.tiles_total)
        await self._publish_status(tile.tenant_id, tile.workflow_id, tile.job_id, tile.attempt, progress=progress)

    async def _publish_status(self, tenant: str, workflow_id: str, job_id: str, attempt: int, **kind: object) -> None:
        status = messaging_pb2.JobStatus(tenant_id=tenant, workflow_id=workflow_id, job_id=job_id, attempt=attempt, **kind)
        headers = None
        if "succeeded" in kind:
            headers = {"Nats-Msg-Id": f"succeeded-{job_id}-{attempt}"}
        await jetstream.publish(self.js, jetstream.status_subject(tenant, job_id), status.SerializeToString(), headers)
