"""SQLite's one writer, handed over in turn, transactions that start work first.

A burst of CreateWorkflow calls queues one insert transaction per workflow; behind them
in a plain FIFO, the transactions that start work (admitting a workflow and claiming its
first jobs, applying a job's end and starting its dependents) would wait for every
insert, and the workers idle meanwhile. Here they go ahead of the waiting inserts
("deferrable" turns); within each kind, turns come in arrival order. Deferrable turns
cannot starve: work-starting transactions come one at a time from the status loop, and
from the calls whose own insert already ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class WriteQueue:
    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._deferrable: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, deferrable: bool = False) -> AsyncIterator[None]:
        """Hold the writer for the block; deferrable turns wait while urgent ones are queued."""
        if self._held or self._urgent or self._deferrable:
            waiters = self._deferrable if deferrable else self._urgent
            handed = asyncio.get_running_loop().create_future()
            waiters.append(handed)
            try:
                await handed
            except BaseException:
                if handed.done() and not handed.cancelled():
                    self._hand_over()  # handed the writer, then cancelled: pass it on
                else:  # cancelled while waiting: leave the queue (unless handing over skipped it)
                    with contextlib.suppress(ValueError):
                        waiters.remove(handed)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        for waiters in (self._urgent, self._deferrable):
            while waiters:
                handed = waiters.popleft()
                if not handed.done():
                    handed.set_result(None)  # still held: it passes to the waiter
                    return
        self._held = False
