"""Group commit: calls that arrive while a run is busy are served together by the next run."""

from __future__ import annotations

import asyncio

import pytest

from services.scheduler.coalesce import Coalescer


class Recorder:
    """A run that records the keys it was given and can be held open."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.runs.append(sorted(keys))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database unavailable")
        return {key: key.upper() for key in keys}


async def test_the_first_call_runs_at_once_and_the_calls_meanwhile_share_the_next_run():
    run = Recorder()
    coalescer = Coalescer(run)
    first = asyncio.create_task(coalescer("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert run.runs == [["a"]]  # no waiting for company
    later = [asyncio.create_task(coalescer(key)) for key in ("b", "c", "b")]
    await asyncio.sleep(0.01)
    assert run.runs == [["a"]]  # the first run is still busy
    run.release.set()
    assert await first == "A"
    assert [await call for call in later] == ["B", "C", "B"]
    assert run.runs == [["a"], ["b", "c"]]  # one run for the three calls, each key once


async def test_a_failed_run_fails_its_calls_only():
    run = Recorder()
    coalescer = Coalescer(run)
    run.fail_next = True
    run.release.set()
    with pytest.raises(RuntimeError, match="database unavailable"):
        await coalescer("a")
    assert await coalescer("a") == "A"


async def test_a_cancelled_call_does_not_stop_the_run_of_the_others():
    run = Recorder()
    coalescer = Coalescer(run)
    gone = asyncio.create_task(coalescer("a"))
    staying = asyncio.create_task(coalescer("b"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    run.release.set()
    assert await staying == "B"
    assert gone.cancelled()
    assert run.runs == [["a", "b"]]  # both arrived before the first run began: one run
