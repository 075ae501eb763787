"""What the gateway knows of inference replicas: their heartbeats on NATS.

Replicas publish slidelane.v1.WorkerStatus on WORKER_HEARTBEAT_SUBJECT every few seconds
(core NATS: a lost heartbeat is harmless, the next one replaces it).
"""

from __future__ import annotations

import time

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from services.common import jetstream
from services.common.api.slidelane.v1 import metrics_service_pb2

STALE_AFTER_SECONDS = 30.0


class WorkerRegistry:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, metrics_service_pb2.WorkerStatus]] = {}

    async def subscribe(self, nats: Nats) -> None:
        await nats.subscribe(jetstream.WORKER_HEARTBEAT_SUBJECT, cb=self._on_heartbeat)

    async def _on_heartbeat(self, message: Msg) -> None:
        status = metrics_service_pb2.WorkerStatus.FromString(message.data)
        self._seen[status.worker_id] = (time.monotonic(), status)

    def snapshot(self) -> list[metrics_service_pb2.WorkerStatus]:
        cutoff = time.monotonic() - STALE_AFTER_SECONDS
        return [status for seen, status in sorted(self._seen.values(), key=lambda s: s[1].worker_id) if seen >= cutoff]
