"""The scheduler's SQLite writer queue: one holder, work-starting turns ahead of deferrable ones."""

from __future__ import annotations

import asyncio

import pytest

from services.scheduler.write_queue import WriteQueue


async def _take(queue: WriteQueue, name: str, order: list[str], deferrable: bool = False, hold: float = 0.0) -> None:
    async with queue.turn(deferrable=deferrable):
        order.append(name)
        await asyncio.sleep(hold)
        order.append(f"/{name}")


async def test_one_holder_at_a_time_urgent_turns_first_each_kind_in_order():
    queue, order = WriteQueue(), []
    first = asyncio.create_task(_take(queue, "first", order, hold=0.05))
    await asyncio.sleep(0.01)  # "first" holds the writer while the others queue
    waiting = [
        asyncio.create_task(_take(queue, name, order, deferrable=name.startswith("insert")))
        for name in ("insert1", "status1", "insert2", "admit1")
    ]
    await asyncio.gather(first, *waiting)
    assert order == ["first", "/first", "status1", "/status1", "admit1", "/admit1", "insert1", "/insert1", "insert2", "/insert2"]


async def test_a_free_writer_is_taken_at_once_whatever_the_kind():
    queue, order = WriteQueue(), []
    await asyncio.wait_for(_take(queue, "insert", order, deferrable=True), timeout=1)
    assert order == ["insert", "/insert"]


@pytest.mark.parametrize("handed_first", [False, True])
async def test_a_cancelled_waiter_never_keeps_the_writer(handed_first):
    queue, order = WriteQueue(), []
    waiters: list[asyncio.Task[None]] = []

    async def holder() -> None:
        async with queue.turn():
            await asyncio.sleep(0.05)
            if not handed_first:
                waiters[0].cancel()  # cancelled while it waits in the queue
        if handed_first:
            waiters[0].cancel()  # handed the writer just now, cancelled before it ran: it must pass it on

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    waiters += [asyncio.create_task(_take(queue, name, order)) for name in ("cancelled", "later")]
    await asyncio.wait_for(asyncio.gather(holding, waiters[1]), timeout=1)
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
    assert order == ["later", "/later"]
    await asyncio.wait_for(_take(queue, "after", order), timeout=1)  # and the writer is free again
