"""Group commit for calls that each would be a transaction of their own.

A burst of CreateWorkflow calls admits one tenant each; each admission takes the claim
lock (PostgreSQL) or the one writer (SQLite) and claims the tenant's first jobs. One at a
time they queued behind each other and behind every status batch: of 30 submissions at
once, the last lane started 1.4-1.6 s after the first submit (0.8-0.9 s applied
together). Here the first call runs at once, and the calls that arrive while it runs are
served together by the next run, so a burst costs a few transactions instead of one per
call, and no call waits for a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    """`await coalescer(key)`: the result for `key` of a `run(keys)` that included it.

    `run` gets the distinct keys waiting and returns a result for each. If it raises, every
    call it served raises the same error. A call that is cancelled stops waiting; the run
    that includes its key goes on for the others.
    """

    def __init__(self, run: Callable[[list[K]], Awaitable[dict[K, R]]], max_keys: int = 0) -> None:
        self._run = run
        self._max_keys = max_keys  # keys per run at most (0: no limit); the rest wait for the next
        self._waiting: dict[K, list[asyncio.Future[R]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._runner is None or self._runner.done():
            # A task of its own: a caller's cancellation must not stop a run others wait on.
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: dict[K, list[asyncio.Future[R]]] = {}
        try:
            while self._waiting:
                batch = self._take_batch()
                try:
                    results = await self._run(list(batch))
                except Exception as error:
                    for future in _waiting_on(batch):
                        future.set_exception(error)
                else:
                    for key, futures in batch.items():
                        for future in _waiting_on({key: futures}):
                            future.set_result(results[key])
        except BaseException:  # cancelled (shutdown): no caller is left waiting forever
            for future in _waiting_on(batch) + _waiting_on(self._waiting):
                future.cancel()
            raise

    def _take_batch(self) -> dict[K, list[asyncio.Future[R]]]:
        if not self._max_keys or len(self._waiting) <= self._max_keys:
            batch, self._waiting = self._waiting, {}
            return batch
        keys = list(self._waiting)[: self._max_keys]  # the longest waiting first
        return {key: self._waiting.pop(key) for key in keys}


def _waiting_on(batch: dict[K, list[asyncio.Future[R]]]) -> list[asyncio.Future[R]]:
    """The futures of the batch still unsettled (a cancelled caller's is done already)."""
    return [future for futures in batch.values() for future in futures if not future.done()]
