"""The status loop's read-ahead (services.scheduler.loops.FetchedMessages) on a real
nats-server: reports come out in the order they were published, in batches of at most
the limit, none twice, none lost; and a failed fetch stops the loop instead of hanging it."""

from __future__ import annotations

import asyncio

import pytest

from services.common import jetstream
from services.scheduler.loops import FetchedMessages


async def test_messages_come_out_in_order_at_most_limit_at_a_time(nats_url):
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        for index in range(25):
            await js.publish(jetstream.status_subject("alice", f"job-{index}"), str(index).encode())
        fetched = FetchedMessages(limit=10)
        fill = asyncio.create_task(fetched.fill(await jetstream.bind(js, jetstream.STATUS)))
        taken: list[int] = []
        async with asyncio.timeout(15):
            while len(taken) < 25:
                batch = await fetched.take()
                assert 1 <= len(batch) <= 10
                taken += [int(message.data) for message in batch]
                await asyncio.gather(*(message.ack() for message in batch))
        assert taken == list(range(25))
        fill.cancel()
    finally:
        await nc.close()


async def test_a_failed_fetch_fails_take():
    class Broken:
        async def fetch(self, batch, **_options):
            raise ConnectionResetError("NATS went away")

    fetched = FetchedMessages(limit=10)
    fill = asyncio.create_task(fetched.fill(Broken()))  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError, match="NATS went away"):
        async with asyncio.timeout(5):
            await fetched.take()
    with pytest.raises(ConnectionResetError):
        await fill
