"""The outbox keeps a workflow's trace: the context stored with a row is the one its message carries.

A job starts long after CreateWorkflow, in the dispatch loop, outside any request;
its dispatch must still join the CreateWorkflow trace. SQLite and PostgreSQL, and a
real nats-server with JetStream.
"""

from __future__ import annotations

import asyncio

from services.common import jetstream, tracing
from services.scheduler.loops import SchedulerLoops
from tests.scheduler.workloads import new_tenant, start

TRACER = tracing.tracer("tests")


def _ids(headers: dict[str, str] | None) -> tuple[int, int]:
    """(trace id, span id) of a traceparent header."""
    assert headers and "traceparent" in headers, headers
    _version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    return int(trace_id, 16), int(span_id, 16)


async def _publish_outbox(loops: SchedulerLoops) -> None:
    """Run the outbox loop until every row is published (15 s at most)."""
    task = asyncio.create_task(loops.outbox())
    try:
        async with asyncio.timeout(15):
            while await loops.repository.fetch_unpublished(1):
                assert not task.done(), task
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_dispatch_joins_the_trace_of_its_create_workflow_call(repository, nats_url, spans):
    alice = new_tenant()
    with TRACER.start_as_current_span("CreateWorkflow") as create:
        workflow_id = await start(repository, alice, ("mask", "main", []))
    trace_id = create.get_span_context().trace_id
    (claimed,) = await repository.claim_runnable(10)  # the dispatch loop: no span is current

    rows = await repository.fetch_unpublished(100)
    [dispatch_row] = [r for r in rows if r.subject.startswith("dispatch.")]
    decided = spans.one("dispatch tissue_mask")
    assert decided.parent.span_id == create.get_span_context().span_id
    assert _ids(dispatch_row.headers) == (trace_id, decided.context.span_id), "the row stores the dispatch span"
    event_rows = [r for r in rows if r.seq]
    assert event_rows and all(_ids(r.headers)[0] == trace_id for r in event_rows)

    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        # The outbox loop never asks tenancy, so it gets no admission client.
        loops = SchedulerLoops(repository, js, admission=None, max_attempts=3)  # type: ignore[arg-type]
        await _publish_outbox(loops)

        [message] = await jetstream.fetch_batch(await jetstream.bind(js, jetstream.DISPATCH), 1, wait_seconds=5)
        with tracing.consuming(message):
            pass
        await message.ack()
        published = spans.one("publish dispatch")
        assert published.parent.span_id == decided.context.span_id
        assert _ids(message.headers) == (trace_id, published.context.span_id)
        assert message.headers["Nats-Msg-Id"].startswith("dispatch-")
        processed = spans.one("process dispatch")
        assert processed.parent.span_id == published.context.span_id
        assert processed.context.trace_id == trace_id

        # A status report applied outside any span (the status loop's batch) writes events
        # that still carry the workflow's trace: the context stored with the workflow.
        await repository.mark_succeeded(alice, claimed.id, claimed.attempt)
        later = [r for r in await repository.fetch_unpublished(100) if r.seq]
        assert later and all(_ids(r.headers)[0] == trace_id for r in later)
        await _publish_outbox(loops)
        events = await js.pull_subscribe(jetstream.events_subject(alice, workflow_id), stream=jetstream.EVENTS_STREAM)
        delivered = await jetstream.fetch_batch(events, 100, wait_seconds=2)
        assert len(delivered) == len(event_rows) + len(later)
        assert all(_ids(m.headers)[0] == trace_id for m in delivered)
    finally:
        await nc.close()
