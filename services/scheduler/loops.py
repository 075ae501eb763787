"""The scheduler's background loops.

- dispatch: claim runnable lane heads (the repository writes their JobDispatch into
  the outbox in the same transaction), woken by cancels and by claims that hit their
  limit, polled as a fallback (for retry backoffs); lane heads freed by status reports
  are claimed by the status loop itself, right after applying them, and those of newly
  admitted workflows by the admission's own transaction;
- outbox: publish outbox rows (dispatches and events) to JetStream with a
  Nats-Msg-Id, then mark them published: at-least-once, de-duplicated by the stream;
  each is sent in a span under the trace context stored in its row when it was written.
  Rows this process commits are handed over in memory (no read back); the table is
  read too, for rows written elsewhere or before a crash;
- status: consume JobStatus from workers and storage, apply it and claim what it
  made runnable, ack after commit;
- admission: reconcile with tenancy (admit QUEUED tenants, release ended workflows).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.common import jetstream, metrics, tracing
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.scheduler.admission_client import AdmissionClient
from services.scheduler.outcomes import JobOutcome, report_from_status
from services.scheduler.repository import OutboxMessage, WorkflowRepository

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
CLAIM_BATCH = 200
OUTBOX_BATCH = 500
STATUS_BATCH = 256
GAUGE_SECONDS = 5.0


def message_id(row: OutboxMessage) -> str:
    """The de-duplication id of an outbox message: stable across re-publishing, unique forever.

    Not the row id: published rows are deleted and SQLite hands their ids out again,
    and JetStream would then drop a new message as a duplicate of an old one.
    """
    if row.seq:  # a batch of events, numbered by its last
        return f"events-{row.workflow_id}-{row.seq}"
    return f"dispatch-{hashlib.sha256(row.payload).hexdigest()[:32]}"


class Wakeup:
    """A level-triggered nudge: set() from anywhere, wait() returns at once or after timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            pass
        self._event.clear()


class SchedulerLoops:
    def __init__(
        self,
        repository: WorkflowRepository,
        js: JetStreamContext,
        admission: AdmissionClient,
        max_attempts: int,
    ) -> None:
        self.repository = repository
        self.js = js
        self.admission = admission
        self.max_attempts = max_attempts
        self.dispatch_wakeup = Wakeup()
        self.outbox_wakeup = Wakeup()
        self.admission_wakeup = Wakeup()
        repository.on_written = self.outbox_wakeup.set
        repository.on_claim_full = self.dispatch_wakeup.set

    def wake(self) -> None:
        """After an API call changed workflows in a way only the loops follow up (a cancel may
        free lanes and end a workflow; its outbox rows are handed over on commit)."""
        self.dispatch_wakeup.set()
        self.admission_wakeup.set()

    async def dispatch(self) -> None:
        while True:
            claimed = await self.repository.claim_runnable(CLAIM_BATCH)
            # A short batch took every runnable head: look again only when woken (a change
            # during the claim has set the wakeup already) or at the next poll.
            if len(claimed) < CLAIM_BATCH:
                await self.dispatch_wakeup.wait(POLL_SECONDS)

    async def outbox(self) -> None:
        """Publish what this process committed, handed over in memory; read the table itself
        at start and whenever it has not for POLL_SECONDS, for rows that were not (another
        replica's, a crashed run's), and again at once after a full page.

        A row read from the table may also be in memory still, and so sent twice: harmless,
        JetStream drops the second copy by its Nats-Msg-Id."""
        last_read, full_page = -POLL_SECONDS, False
        while True:
            rows: Sequence[OutboxMessage] = self.repository.take_written()
            now = time.monotonic()
            if not rows and (full_page or now - last_read >= POLL_SECONDS):
                last_read = now
                rows = await self.repository.fetch_unpublished(OUTBOX_BATCH)
                full_page = len(rows) == OUTBOX_BATCH  # more may wait
            if rows:
                acks = [
                    await jetstream.publish_async(
                        self.js,
                        row.subject,
                        row.payload,
                        {**(row.headers or {}), "Nats-Msg-Id": message_id(row)},
                        parent=tracing.extract(row.headers),
                    )
                    for row in rows
                ]
                await asyncio.gather(*acks)
                self.repository.mark_published([row.id for row in rows])
                continue
            await self.outbox_wakeup.wait(POLL_SECONDS)

    async def admission_reconciler(self) -> None:
        while True:
            try:
                await self.admission.reconcile()
            except Exception:  # tenancy down: keep trying, the state is in the DB
                log.warning("admission reconcile failed; retrying", exc_info=True)
            await self.admission_wakeup.wait(POLL_SECONDS * 4)

    async def gauges(self) -> None:
        """Queue depth per lane and JetStream consumer backlog, every few seconds."""
        reported: set[tuple[str, str]] = set()
        while True:
            depths = await self.repository.all_lane_depths()
            for lane in reported - depths.keys():
                metrics.QUEUE_DEPTH.labels(*lane).set(0)
            for lane, depth in depths.items():
                metrics.QUEUE_DEPTH.labels(*lane).set(depth)
            reported = set(depths)
            for queue in jetstream.WORK_QUEUES:
                info = await self.js.consumer_info(queue.stream, queue.durable)
                metrics.CONSUMER_PENDING.labels(queue.stream).set(info.num_pending or 0)
                metrics.CONSUMER_REDELIVERED.labels(queue.stream).set(info.num_redelivered or 0)
            await asyncio.sleep(GAUGE_SECONDS)

    async def status(self) -> None:
        async with jetstream.pulling(self.js, jetstream.STATUS) as puller:
            while True:
                messages = await puller.fetch(STATUS_BATCH)
                if not messages:
                    continue
                with tracing.consuming_each(messages):
                    outcomes = await self.apply_status_batch(messages)
                if outcomes is None:  # applied one by one: nothing claimed yet
                    self.dispatch_wakeup.set()
                # Admission changes only when a workflow ends (its tenant may be released).
                if outcomes is None or any(o.workflow_ended for o in outcomes):
                    self.admission_wakeup.set()

    async def apply_status_batch(self, messages: list[Msg]) -> list[JobOutcome] | None:
        """Apply and ack a batch, starting the lane heads it freed at once (a dependency's end
        to its dependent's start is the latency users wait on); the outcomes, or None when the
        batch failed and was applied one by one."""
        reports = [r for m in messages if (r := report_from_status(messaging_pb2.JobStatus.FromString(m.data)))]
        outcomes: list[JobOutcome] | None = None
        try:
            # One transaction for the whole batch: per-report transactions cap throughput.
            outcomes, _ = await self.repository.apply_reports_and_claim(reports, self.max_attempts, CLAIM_BATCH)
        except Exception:
            log.warning("batch of %d reports failed; applying one by one", len(reports), exc_info=True)
            for message in messages:
                await self.apply_status(messaging_pb2.JobStatus.FromString(message.data))
        # Acked only after the changes are committed: a crash before this replays them,
        # and applying a status twice is harmless (stale or repeated attempts are ignored).
        await asyncio.gather(*(message.ack() for message in messages))
        return outcomes

    async def apply_status(self, status: messaging_pb2.JobStatus) -> None:
        kind = status.WhichOneof("kind")
        tenant, job_id, attempt = status.tenant_id, status.job_id, status.attempt
        if kind == "planned":
            await self.repository.record_progress(tenant, job_id, attempt, 0, status.planned.tiles_total)
        elif kind == "progress":
            await self.repository.record_progress(
                tenant, job_id, attempt, status.progress.tiles_done, status.progress.tiles_total
            )
        elif kind == "succeeded":
            await self.repository.mark_succeeded(tenant, job_id, attempt)
        elif kind == "failed":
            await self.repository.mark_failed(
                tenant, job_id, attempt, status.failed.message, status.failed.permanent, self.max_attempts
            )
