"""jetstream.Puller on a real nats-server: a message that arrives while a consumer waits
is handed over at once (not held until a batch fills or the pull expires), what is
waiting comes in batches, and an idle wait ends empty after its time."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common import jetstream

WAIT_SECONDS = 3.0


@pytest.fixture
async def results(nats_url):  # type: ignore[no-untyped-def]
    """(JetStream context, the RESULTS work queue's consumer), on an empty server."""
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        yield js, jetstream.Puller(await jetstream.bind(js, jetstream.RESULTS))
    finally:
        await nc.close()


async def test_a_lone_message_is_handed_over_as_it_arrives(results):
    js, puller = results

    async def publish_later() -> None:
        await asyncio.sleep(0.3)
        await js.publish(jetstream.results_subject("alice", "job-1"), b"lone")

    publishing = asyncio.create_task(publish_later())
    started = time.monotonic()
    messages = await puller.fetch(8, wait_seconds=WAIT_SECONDS)
    waited = time.monotonic() - started
    await publishing
    assert [m.data for m in messages] == [b"lone"]
    # nats-py's own fetch(8) held it until the pull expired (the full WAIT_SECONDS).
    assert 0.3 <= waited < 1.0, f"the message waited {waited:.2f} s in the consumer"


async def test_waiting_messages_come_as_one_batch(results):
    js, puller = results
    for index in range(5):
        await js.publish(jetstream.results_subject("alice", f"job-{index}"), b"%d" % index)
    started = time.monotonic()
    messages = await puller.fetch(8, wait_seconds=WAIT_SECONDS)
    assert [m.data for m in messages] == [b"0", b"1", b"2", b"3", b"4"]
    assert time.monotonic() - started < 1.0
    for index in range(5, 15):
        await js.publish(jetstream.results_subject("alice", f"job-{index}"), b"%d" % index)
    first = await puller.fetch(8, WAIT_SECONDS)
    second = await puller.fetch(8, WAIT_SECONDS)
    assert [m.data for m in first + second] == [b"%d" % i for i in range(5, 15)]
    assert (len(first), len(second)) == (8, 2)


async def test_an_idle_wait_ends_empty_after_its_time(results):
    _, puller = results
    started = time.monotonic()
    assert await puller.fetch(8, wait_seconds=0.5) == []
    assert 0.5 <= time.monotonic() - started < 2.0


async def test_a_connection_drains_at_once_after_pulling_ends(nats_url):
    """A pull subscription's queue keeps items nats-py never marks done (expiry notices that
    arrive after a fetch gave up, taken off later without task_done), so a connection with
    it still open never drained: every service's shutdown waited out its drain timeout.
    pulling() unsubscribes when its loop ends."""
    nc = await jetstream.connect(nats_url, "tests")
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    for index in range(3):
        await js.publish(jetstream.results_subject("alice", f"job-{index}"), b"x")
    async with jetstream.pulling(js, jetstream.RESULTS) as puller:
        fetched = await puller.fetch(8, WAIT_SECONDS)
        await asyncio.gather(*(m.ack() for m in fetched))
        for _ in range(2):  # idle pulls: their expiry notices arrive after the fetch gave up
            assert await puller.fetch(8, wait_seconds=0.3) == []
            await asyncio.sleep(0.2)
    assert len(fetched) == 3
    started = time.monotonic()
    await asyncio.wait_for(nc.drain(), 2.0)
    assert time.monotonic() - started < 1.0
