"""NATS JetStream: connections, the streams and consumers of the brief, subjects.

Streams (all file storage):
  DISPATCH  dispatch.<tenant>.<branch>             work queue; one job attempt per message
  TILES     tiles.<tenant>.<branch>.<job_id>       work queue; coordinates, never pixels
  RESULTS   results.<tenant>.<job_id>              work queue; storage merges them
  STATUS    status.<tenant>.<job_id>               work queue; the scheduler consumes it
  EVENTS    events.<tenant>.<workflow_id>          limits retention (24 h), for watchers; each
                                                   message a WorkflowEventBatch (one transaction's)
Each work-queue stream has ONE durable pull consumer that every replica binds to,
so each message goes to exactly one replica (a WorkQueue stream allows no more).

Services publish to streams only through `publish` / `publish_async` here, which put
the W3C trace context into the message headers; consumers open their spans from
those headers with services.common.tracing.consuming / consuming_each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from opentelemetry.context import Context

from services.common import tracing

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class WorkQueue:
    """A work-queue stream and its one shared durable pull consumer."""

    stream: str
    subjects: str
    durable: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int


DISPATCH = WorkQueue("DISPATCH", "dispatch.>", "planners", ack_wait=60, max_deliver=10, max_ack_pending=1000)
TILES = WorkQueue("TILES", "tiles.>", "workers", ack_wait=60, max_deliver=5, max_ack_pending=10000)
RESULTS = WorkQueue("RESULTS", "results.>", "storage", ack_wait=30, max_deliver=20, max_ack_pending=20000)
STATUS = WorkQueue("STATUS", "status.>", "scheduler", ack_wait=30, max_deliver=20, max_ack_pending=20000)
WORK_QUEUES = (DISPATCH, TILES, RESULTS, STATUS)
EVENTS_STREAM = "EVENTS"
# Core NATS: inference replicas announce themselves here every few seconds.
WORKER_HEARTBEAT_SUBJECT = "workers.heartbeat"


def dispatch_subject(tenant: str, branch: str) -> str:
    return f"dispatch.{tenant}.{branch}"


def tiles_subject(tenant: str, branch: str, job_id: str) -> str:
    return f"tiles.{tenant}.{branch}.{job_id}"


def results_subject(tenant: str, job_id: str) -> str:
    return f"results.{tenant}.{job_id}"


def status_subject(tenant: str, job_id: str) -> str:
    return f"status.{tenant}.{job_id}"


def events_subject(tenant: str, workflow_id: str = "*") -> str:
    return f"events.{tenant}.{workflow_id}"


def cancel_subject(tenant: str, job_id: str = "*") -> str:
    """Core NATS (not a stream): tells planners and workers to drop a job's tiles now."""
    return f"cancel.{tenant}.{job_id}"


def max_deliveries_advisory(queue: WorkQueue) -> str:
    """Published when a message ran out of deliveries; it then stays in the stream."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{queue.stream}.{queue.durable}"


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    parent: Context | None = None,
) -> PubAck:
    """js.publish in a producer span (child of `parent`, else of the current span) whose
    traceparent travels in the message headers, beside `headers`."""
    with tracing.publishing(subject, headers, parent) as traced:
        return await js.publish(subject, payload, headers=traced)


async def publish_async(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    parent: Context | None = None,
) -> asyncio.Future[PubAck]:
    """js.publish_async likewise; await the future it returns for the stream's ack."""
    with tracing.publishing(subject, headers, parent) as traced:
        return await js.publish_async(subject, payload, headers=traced)


async def connect(
    url: str,
    name: str,
    on_connection_change: Callable[[bool], Awaitable[None]] | None = None,
) -> Client:
    """Connect with endless reconnects; on_connection_change(up) follows the link."""
    client: list[Client] = []

    async def disconnected() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            log.info("NATS connection closed")  # ours, at shutdown: nothing to warn about
        else:
            log.warning("NATS disconnected")
        if on_connection_change:
            await on_connection_change(False)

    async def reconnected() -> None:
        log.info("NATS reconnected")
        if on_connection_change:
            await on_connection_change(True)

    async def error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    client.append(
        await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
    )
    return client[0]


async def ensure_streams(js: JetStreamContext) -> None:
    """Create or update every stream and durable consumer (idempotent)."""
    for queue in WORK_QUEUES:
        await _ensure_stream(
            js,
            StreamConfig(
                name=queue.stream,
                subjects=[queue.subjects],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120,
            ),
        )
        await js.add_consumer(
            queue.stream,
            ConsumerConfig(
                durable_name=queue.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=queue.ack_wait,
                max_deliver=queue.max_deliver,
                max_ack_pending=queue.max_ack_pending,
            ),
        )
    await _ensure_stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DAY_SECONDS,
            duplicate_window=120,
        ),
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


# How long a pull for messages known to be waiting waits for the stream's answer (see
# Puller): it bounds only a race with another replica that took them first.
WAITING_PULL_SECONDS = 0.005


class Puller:
    """Batches from a work queue's consumer, each handed over as soon as it has a message.

    Not nats-py's fetch(batch) alone: when its first request comes back without messages
    (or with a status left over from an earlier pull), it makes a lingering pull and, once a
    message comes, waits for the rest of the batch until that pull expires. On a quiet
    system a job's hops (dispatch, result, status) each waited up to a second that way. So
    a batch is pulled only while the stream says messages are waiting (num_pending of the
    last one delivered); otherwise one message is awaited alone, and fetch(1) returns it
    as it arrives.
    """

    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self.subscription = subscription
        self._more_waiting = False

    async def fetch(self, batch: int, wait_seconds: float = 1.0) -> list[Msg]:
        """Up to `batch` messages; [] after `wait_seconds` with none."""
        messages: list[Msg] = []
        if self._more_waiting and batch > 1:
            messages = await self._pull(batch, WAITING_PULL_SECONDS)
        if not messages:
            messages = await self._pull(1, wait_seconds)
            waiting = min(batch - 1, messages[0].metadata.num_pending) if messages else 0
            if waiting > 0:
                messages += await self._pull(waiting, WAITING_PULL_SECONDS)
        self._more_waiting = bool(messages) and messages[-1].metadata.num_pending > 0
        return messages

    async def _pull(self, batch: int, seconds: float) -> list[Msg]:
        # nats-py signals "nothing yet" with either its own TimeoutError or asyncio's.
        try:
            return await self.subscription.fetch(batch, timeout=seconds)
        except (NatsTimeoutError, TimeoutError):
            return []


async def fetch_batch(subscription: JetStreamContext.PullSubscription, batch: int, wait_seconds: float = 1.0) -> list[Msg]:
    """One batch from a subscription (a Puller's first), for a single pull."""
    return await Puller(subscription).fetch(batch, wait_seconds)


async def bind(js: JetStreamContext, queue: WorkQueue) -> JetStreamContext.PullSubscription:
    """Bind to a work queue's shared durable consumer."""
    return await js.pull_subscribe_bind(queue.durable, stream=queue.stream)


@contextlib.asynccontextmanager
async def pulling(js: JetStreamContext, queue: WorkQueue) -> AsyncIterator[Puller]:
    """A Puller on a work queue's shared consumer, unsubscribed when the loop using it ends.

    A pull subscription left subscribed never drains (its queue keeps items nats-py never
    marks done: expiry notices of pulls that arrive after the fetch gave up, taken off later
    without task_done), so it held every service's shutdown drain to its timeout.
    What the loop fetched and did not ack is redelivered to another replica anyway.
    """
    subscription = await bind(js, queue)
    try:
        yield Puller(subscription)
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            await subscription.unsubscribe()
