"""Watch streams: one NATS subscription per tenant, fanned out to bounded queues.

The gateway subscribes to `events.<tenant>.>` only for tenants that have a watcher
(isolation by construction: a watcher's queue is fed from its own tenant's subject).
A resumed watch (after_seq > 0) first replays the missed events from the EVENTS
stream, then continues live, skipping what it already sent. Each message carries the
events of one scheduler transaction (a WorkflowEventBatch), each with its own seq. A watcher whose queue
fills is sent WatchLagged and dropped, so it never slows anyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.common import jetstream, metrics
from services.common.api.slidelane.internal.v1 import messaging_pb2, scheduler_pb2
from services.common.api.slidelane.v1 import (
    events_pb2,
    progress_service_pb2,
    progress_service_pb2_grpc,
    types_pb2,
    workflow_service_pb2,
)
from services.common.auth import tenant_of
from services.gateway.clients import InternalClients

log = logging.getLogger(__name__)
QUEUE_SIZE = 1024
REPLAY_IDLE_SECONDS = 0.5
TERMINAL = {
    types_pb2.WORKFLOW_STATE_SUCCEEDED,
    types_pb2.WORKFLOW_STATE_FAILED,
    types_pb2.WORKFLOW_STATE_CANCELLED,
}
_LAGGED = object()


class Watcher:
    def __init__(self, workflow_id: str | None) -> None:
        self.workflow_id = workflow_id
        self.queue: asyncio.Queue[events_pb2.WorkflowEvent | object] = asyncio.Queue(QUEUE_SIZE)
        self.lagged = False

    def offer(self, event: events_pb2.WorkflowEvent) -> None:
        if self.lagged or (self.workflow_id and event.workflow_id != self.workflow_id):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(_LAGGED)


class WatchHub:
    def __init__(self, nats: Nats, clients: InternalClients) -> None:
        self.nats = nats
        self.clients = clients
        self._watchers: dict[str, set[Watcher]] = defaultdict(set)
        self._subscriptions: dict[str, Subscription] = {}

    @asynccontextmanager
    async def watch(self, tenant: str, workflow_id: str | None) -> AsyncIterator[Watcher]:
        watcher = Watcher(workflow_id)
        self._watchers[tenant].add(watcher)
        metrics.WATCHERS.inc()
        if tenant not in self._subscriptions:
            self._subscriptions[tenant] = await self.nats.subscribe(jetstream.events_subject(tenant, ">"), cb=self._deliver)
        try:
            yield watcher
        finally:
            metrics.WATCHERS.dec()
            self._watchers[tenant].discard(watcher)
            if not self._watchers[tenant]:
                del self._watchers[tenant]
                subscription = self._subscriptions.pop(tenant, None)
                if subscription is not None:
                    await subscription.unsubscribe()

    async def _deliver(self, message: Msg) -> None:
        tenant = message.subject.split(".")[1]
        watchers = list(self._watchers.get(tenant, ()))
        for event in messaging_pb2.WorkflowEventBatch.FromString(message.data).events:
            for watcher in watchers:
                watcher.offer(event)

    async def replay(self, tenant: str, workflow_id: str, after_seq: int) -> list[events_pb2.WorkflowEvent]:
        """Events of one workflow with seq > after_seq, from the EVENTS stream."""
        js = self.nats.jetstream()
        subscription = await js.subscribe(
            jetstream.events_subject(tenant, workflow_id),
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[events_pb2.WorkflowEvent] = []
        try:
            while True:
                pending = subscription.pending_msgs
                try:
                    message = await subscription.next_msg(timeout=REPLAY_IDLE_SECONDS)
                except TimeoutError:
                    break
                found += [e for e in messaging_pb2.WorkflowEventBatch.FromString(message.data).events if e.seq > after_seq]
                if pending == 0 and message.metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
        return sorted(found, key=lambda e: e.seq)


def is_terminal(event: events_pb2.WorkflowEvent) -> bool:
    if event.HasField("snapshot"):
        return event.snapshot.workflow.state in TERMINAL
    return event.HasField("workflow_state_changed") and event.workflow_state_changed.state in TERMINAL


async def watch_workflow(
    hub: WatchHub, tenant: str, workflow_id: str, after_seq: int
) -> AsyncIterator[workflow_service_pb2.WatchWorkflowResponse]:
    async with hub.watch(tenant, workflow_id) as watcher:
        # Subscribed before reading state, so nothing published after the read is missed.
        current = await hub.clients.scheduler.GetWorkflow(
            scheduler_pb2.GetWorkflowRequest(tenant_id=tenant, workflow_id=workflow_id)
        )
        if after_seq <= 0:
            first = [
                events_pb2.WorkflowEvent(
                    workflow_id=workflow_id,
                    seq=current.last_event_seq,
                    snapshot=events_pb2.WorkflowSnapshot(workflow=current.workflow),
                )
            ]
            cursor = current.last_event_seq
        else:
            first = await hub.replay(tenant, workflow_id, after_seq)
            cursor = after_seq
        for event in first:
            if event.seq < cursor or (event.seq == cursor and not event.HasField("snapshot")):
                continue
            cursor = event.seq
            yield workflow_service_pb2.WatchWorkflowResponse(event=event)
            if is_terminal(event):
                return
        while True:
            item = await watcher.queue.get()
            if item is _LAGGED:
                lagged = events_pb2.WorkflowEvent(
                    workflow_id=workflow_id, watch_lagged=events_pb2.WatchLagged(last_delivered_seq=cursor)
                )
                yield workflow_service_pb2.WatchWorkflowResponse(event=lagged)
                return
            assert isinstance(item, events_pb2.WorkflowEvent)
            if item.seq <= cursor:
                continue
            cursor = item.seq
            yield workflow_service_pb2.WatchWorkflowResponse(event=item)
            if is_terminal(item):
                return


class ProgressServicer(progress_service_pb2_grpc.ProgressServiceServicer):
    def __init__(self, hub: WatchHub) -> None:
        self.hub = hub

    async def Watch(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        async with self.hub.watch(tenant, None) as watcher:
            while True:
                item = await watcher.queue.get()
                if item is _LAGGED:
                    yield progress_service_pb2.WatchResponse(
                        event=events_pb2.WorkflowEvent(watch_lagged=events_pb2.WatchLagged())
                    )
                    return
                assert isinstance(item, events_pb2.WorkflowEvent)
                yield progress_service_pb2.WatchResponse(event=item)
