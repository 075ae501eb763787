"""Cluster init step: create or update every JetStream stream and durable consumer.

    python /app/deploy/docker/init_jetstream.py [--replicas N] [--timeout SECONDS]

Runs services.common.jetstream.ensure_streams (what the launcher does locally) once
per deploy, with every stream created or updated at N replicas (default
$SLIDELANE_STREAM_REPLICAS or 1), so a 3-node NATS cluster keeps every stream through
the loss of one node. Idempotent: a rerun leaves R3 streams at R3 (never through R1).
Waits for NATS (and the cluster's JetStream meta leader) to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from services.common.jetstream import EVENTS_STREAM, WORK_QUEUES, ensure_streams
from services.common.settings import Settings


class ReplicatedStreams:
    """A JetStreamContext whose add_stream/update_stream set num_replicas: ensure_streams
    leaves it unset, and the server reads unset as 1 (an update would shrink R3 to R1)."""

    def __init__(self, js: JetStreamContext, replicas: int) -> None:
        self._js = js
        self._replicas = replicas

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def add_stream(self, config: StreamConfig) -> Any:
        config.num_replicas = self._replicas
        return await self._js.add_stream(config)

    async def update_stream(self, config: StreamConfig) -> Any:
        config.num_replicas = self._replicas
        return await self._js.update_stream(config)


async def init(url: str, replicas: int, wait_seconds: float) -> list[str]:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            nc = await nats.connect(url, connect_timeout=3, allow_reconnect=False, name="slidelane-init-jetstream")
            try:
                js = nc.jetstream()
                await ensure_streams(ReplicatedStreams(js, replicas))  # type: ignore[arg-type]
                done = []
                for name in [queue.stream for queue in WORK_QUEUES] + [EVENTS_STREAM]:
                    info = await js.stream_info(name)
                    done.append(f"{name}(R{info.config.num_replicas or 1})")
                return done
            finally:
                await nc.close()
        except (OSError, NatsError) as error:
            # NATS or its JetStream meta leader is not up yet: a cluster elects one after boot.
            if time.monotonic() > deadline:
                raise SystemExit(f"init-jetstream: NATS at {url} not ready after {wait_seconds:.0f}s: {error}") from None
            await asyncio.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("SLIDELANE_STREAM_REPLICAS") or 1))
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    url = Settings.from_env().nats_url
    done = asyncio.run(init(url, args.replicas, args.timeout))
    print(f"init-jetstream: {', '.join(done)} on {url}", file=sys.stderr)


if __name__ == "__main__":
    main()
