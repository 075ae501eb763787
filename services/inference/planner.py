"""Job planning: one JobDispatch in, a tissue mask or paced tile tasks out.

tissue_mask jobs are done here (one low-resolution read). cell_segmentation jobs are
planned (tissue detection, tiles at the model's pixel size, slide-wide
normalisation) and their tile tasks are published a window at a time: each job
keeps at most TILE_WINDOW tiles in the TILES queue, so workers interleave the tiles
of all running jobs and every active tenant gets its share of throughput,
whatever order the jobs were planned in. The dispatch message is acked only once
every tile is published (in_progress keeps it ours meanwhile); if this replica
dies, another re-plans the job and storage's idempotent spool absorbs repeats.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common import jetstream, metrics, tracing
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.slides import SlideError, SlideReader, open_slide
from services.inference.tiling import plan_tiles, slide_normalisation
from services.inference.tissue import compute_tissue_mask

log = logging.getLogger(__name__)
TILE_WINDOW = 12
PACE_SECONDS = 0.1
HEARTBEAT_SECONDS = 15.0
MAX_CONCURRENT_JOBS = 8
# Slide files up to this size get their tissue mask on the event loop (see _tiny_file).
INLINE_MASK_BYTES = 64 * 1024


@dataclass
class PlannedJob:
    plan: messaging_pb2.JobPlan
    tasks: list[messaging_pb2.TileTask]


class Planner:
    def __init__(self, js: JetStreamContext, nats: Nats, model_pixel_size: float, model_label: str) -> None:
        self.js = js
        self.nats = nats
        self.model_pixel_size = model_pixel_size
        self.model_label = model_label
        self._cancelled: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_JOBS)

    async def run(self) -> None:
        async def on_cancel(message: Msg) -> None:
            self._cancelled.add(message.subject.split(".", 2)[2])

        await self.nats.subscribe(jetstream.cancel_subject("*", "*"), cb=on_cancel)
        async with jetstream.pulling(self.js, jetstream.DISPATCH) as puller:
            running: set[asyncio.Task[None]] = set()
            while True:
                await self._slots.acquire()
                # As many dispatches as there are free slots in one pull: one pull per job
                # costs a round trip each when many tiny jobs (tissue masks) queue up.
                free = 1
                while not self._slots.locked():
                    await self._slots.acquire()
                    free += 1
                messages = await puller.fetch(free)
                for _ in range(free - len(messages)):
                    self._slots.release()
                for message in messages:
                    task = asyncio.create_task(self._handle(message))
                    running.add(task)
                    task.add_done_callback(running.discard)

    async def _handle(self, message: Msg) -> None:
        # The span covers planning and the paced publishing of every tile of the job.
        with tracing.consuming(message) as span:
            dispatch = messaging_pb2.JobDispatch.FromString(message.data)
            # The stream stamped the message when the scheduler published it.
            waited = (datetime.now(UTC) - message.metadata.timestamp).total_seconds()
            metrics.JOB_DISPATCH_WAIT.labels(dispatch.job_type).observe(max(waited, 0.0))
            heartbeat = asyncio.create_task(_keep_in_progress(message))
            try:
                await self._run_job(dispatch)
            except SlideError as error:
                tracing.fail_span(span, error)
                await self._report_failure(dispatch, str(error), permanent=error.permanent)
            except ValueError as error:  # bad params or an unusable slide: retrying cannot help
                tracing.fail_span(span, error)
                await self._report_failure(dispatch, str(error), permanent=True)
            except Exception as error:
                tracing.fail_span(span, error)
                log.exception("planning failed", extra={"job_id": dispatch.id, "tenant": dispatch.tenant_id})
                await self._report_failure(dispatch, f"planning failed: {error}", permanent=False)
            finally:
                heartbeat.cancel()
                self._slots.release()
            await message.ack()

    async def _run_job(self, dispatch: messaging_pb2.JobDispatch) -> None:
        spans = tracing.tracer(__name__)
        if dispatch.job_type == "tissue_mask":
            with spans.start_as_current_span("tissue mask"):
                if _tiny_file(dispatch.image_path):
                    # A few milliseconds of work: the trip to a thread and back would cost
                    # about as much CPU as the mask itself.
                    result = tissue_mask_result(dispatch)
                else:
                    result = await asyncio.to_thread(tissue_mask_result, dispatch)
            envelope = messaging_pb2.ResultEnvelope(tissue_mask=result)
            await jetstream.publish(
                self.js, jetstream.results_subject(dispatch.tenant_id, dispatch.id), envelope.SerializeToString()
            )
            return
        params = json_format.MessageToDict(dispatch.params)
        with spans.start_as_current_span("plan tiles"):
            job = await asyncio.to_thread(self._plan_segmentation, dispatch, params)
        await jetstream.publish(
            self.js,
            jetstream.results_subject(dispatch.tenant_id, dispatch.id),
            messaging_pb2.ResultEnvelope(plan=job.plan).SerializeToString(),
            {"Nats-Msg-Id": f"plan-{dispatch.id}-{dispatch.attempt}"},
        )
        await self._publish_status(dispatch, planned=messaging_pb2.JobPlanned(tiles_total=job.plan.tiles_total))
        log.info(
            "job planned: %d tiles",
            job.plan.tiles_total,
            extra={"job_id": dispatch.id, "tenant": dispatch.tenant_id, "model": self.model_label},
        )
        await self._publish_paced(dispatch, job.tasks)

    def _plan_segmentation(self, dispatch: messaging_pb2.JobDispatch, params: dict) -> PlannedJob:
        with open_slide(dispatch.image_path) as slide:
            mpp = float(params.get("mpp") or slide.mpp or 0)
            if mpp <= 0:
                raise SlideError(
                    dispatch.image_path,
                    "the slide has no pixel size (mpp) in its metadata; set params.mpp (microns per pixel)",
                    permanent=True,
                )
            tissue = compute_tissue_mask(slide)
            tiles = plan_tiles(slide, tissue, slide_mpp=mpp, model_mpp=self.model_pixel_size)
            low, high = slide_normalisation(slide, tissue)
            plan = job_plan(dispatch, slide, tissue.tissue_fraction)
        plan.mpp = mpp
        plan.model = self.model_label
        plan.tiles_total = len(tiles)
        tasks = [
            messaging_pb2.TileTask(
                tenant_id=dispatch.tenant_id,
                workflow_id=dispatch.workflow_id,
                job_id=dispatch.id,
                attempt=dispatch.attempt,
                tile_index=index,
                image_path=dispatch.image_path,
                read_region=messaging_pb2.Rect(x=t.read.x, y=t.read.y, width=t.read.width, height=t.read.height),
                core_region=messaging_pb2.Rect(x=t.core.x, y=t.core.y, width=t.core.width, height=t.core.height),
                level=t.level,
                scale=t.scale,
                norm_low=low,
                norm_high=high,
                tiles_total=len(tiles),
            )
            for index, t in enumerate(tiles)
        ]
        return PlannedJob(plan, tasks)

    async def _publish_paced(self, dispatch: messaging_pb2.JobDispatch, tasks: list[messaging_pb2.TileTask]) -> None:
        subject = jetstream.tiles_subject(dispatch.tenant_id, dispatch.branch, dispatch.id)
        next_index = 0
        while next_index < len(tasks):
            if dispatch.id in self._cancelled:
                log.info("job cancelled; stopped publishing its tiles", extra={"job_id": dispatch.id})
                return
            info = await self.js.stream_info(jetstream.TILES.stream, subjects_filter=subject)
            outstanding = (info.state.subjects or {}).get(subject, 0)
            room = TILE_WINDOW - outstanding
            if room <= 0:
                await asyncio.sleep(PACE_SECONDS)
                continue
            batch = tasks[next_index : next_index + room]
            acks = [
                await jetstream.publish_async(
                    self.js,
                    subject,
                    task.SerializeToString(),
                    {"Nats-Msg-Id": f"tile-{task.job_id}-{task.attempt}-{task.tile_index}"},
                )
                for task in batch
            ]
            await asyncio.gather(*acks)
            next_index += len(batch)

    async def _report_failure(self, dispatch: messaging_pb2.JobDispatch, message: str, permanent: bool) -> None:
        log.warning("job failed: %s", message, extra={"job_id": dispatch.id, "tenant": dispatch.tenant_id})
        await self._publish_status(dispatch, failed=messaging_pb2.JobFailed(message=message, permanent=permanent))

    async def _publish_status(self, dispatch: messaging_pb2.JobDispatch, **kind: object) -> None:
        status = messaging_pb2.JobStatus(
            tenant_id=dispatch.tenant_id, workflow_id=dispatch.workflow_id, job_id=dispatch.id, attempt=dispatch.attempt, **kind
        )
        await jetstream.publish(self.js, jetstream.status_subject(dispatch.tenant_id, dispatch.id), status.SerializeToString())


def job_plan(dispatch: messaging_pb2.JobDispatch, slide: SlideReader, tissue_fraction: float) -> messaging_pb2.JobPlan:
    return messaging_pb2.JobPlan(
        tenant_id=dispatch.tenant_id,
        workflow_id=dispatch.workflow_id,
        job_id=dispatch.id,
        attempt=dispatch.attempt,
        workflow_job_id=dispatch.job_id,
        job_type=dispatch.job_type,
        slide_width=slide.width,
        slide_height=slide.height,
        mpp=slide.mpp or 0.0,
        tissue_fraction=tissue_fraction,
        image_path=dispatch.image_path,
    )


def _tiny_file(path: str) -> bool:
    """Whether the slide's file is small enough for its tissue mask to run on the event loop
    (at most INLINE_MASK_BYTES: even JPEG-compressed, well under a megapixel, milliseconds of
    mask). Anything that fails here goes the thread's way, where open_slide reports it."""
    try:
        return os.stat(path).st_size <= INLINE_MASK_BYTES
    except (OSError, ValueError):
        return False


def tissue_mask_result(dispatch: messaging_pb2.JobDispatch) -> messaging_pb2.TissueMaskResult:
    """A tissue_mask job's whole work on the worker's side: mask, PNG, GeoJSON, plan."""
    with open_slide(dispatch.image_path) as slide:
        tissue = compute_tissue_mask(slide)
        return messaging_pb2.TissueMaskResult(
            plan=job_plan(dispatch, slide, tissue.tissue_fraction),
            mask_png=tissue.to_png(),
            geojson=tissue.geojson_text(),
            mask_downsample=tissue.downsample,
        )


async def _keep_in_progress(message: Msg) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        await message.in_progress()
