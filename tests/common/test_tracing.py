"""Trace context crosses NATS: a consumer's span is the child of the publisher's, in one trace.

Real nats-server with JetStream; publishing and consuming through services.common's
helpers, spans read from an in-memory exporter.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text

from services.common import db, jetstream, tracing

TRACER = tracing.tracer("tests")


async def _connect(nats_url: str):  # type: ignore[no-untyped-def]
    nc = await jetstream.connect(nats_url, "tests")
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    return nc, js


async def test_the_consumer_span_is_the_child_of_the_publish_span(nats_url, spans):
    nc, js = await _connect(nats_url)
    try:
        with TRACER.start_as_current_span("submit") as submit:
            await jetstream.publish(js, jetstream.tiles_subject("alice", "main", "job1"), b"tile", {"Nats-Msg-Id": "tile-1"})
        [message] = await jetstream.fetch_batch(await jetstream.bind(js, jetstream.TILES), 1, wait_seconds=5)
        assert message.headers["Nats-Msg-Id"] == "tile-1", "the caller's own headers travel too"
        assert message.headers["traceparent"].split("-")[1] == format(submit.get_span_context().trace_id, "032x")
        with tracing.consuming(message):
            # What a handler publishes joins the trace, one hop further.
            await jetstream.publish(js, jetstream.results_subject("alice", "job1"), b"result")
        await message.ack()
        [result] = await jetstream.fetch_batch(await jetstream.bind(js, jetstream.RESULTS), 1, wait_seconds=5)
        with tracing.consuming(result):
            pass
        await result.ack()
    finally:
        await nc.close()

    root = spans.one("submit")
    publish_tiles, process_tiles = spans.one("publish tiles"), spans.one("process tiles")
    publish_results, process_results = spans.one("publish results"), spans.one("process results")
    chain = [root, publish_tiles, process_tiles, publish_results, process_results]
    assert {span.context.trace_id for span in chain} == {root.context.trace_id}, "one trace across both hops"
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id, f"{child.name} under {parent.name}"
    assert (publish_tiles.kind, process_tiles.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert process_tiles.attributes["messaging.destination.name"] == "tiles.alice.main.job1"
    assert process_tiles.attributes["messaging.message.id"] == "tile-1"


async def test_a_batch_gets_one_span_per_message_each_in_its_own_trace(nats_url, spans):
    nc, js = await _connect(nats_url)
    try:
        for name in ("alice", "bob"):
            with TRACER.start_as_current_span(f"submit {name}"):
                await jetstream.publish(js, jetstream.tiles_subject(name, "main", "job"), name.encode())
        batch = await jetstream.fetch_batch(await jetstream.bind(js, jetstream.TILES), 2, wait_seconds=5)
        assert len(batch) == 2
        try:
            with tracing.consuming_each(batch) as batch_spans:
                assert not tracing.in_span(), "a batch mixes traces: none of its spans is made current"
                assert len(batch_spans) == 2
                raise RuntimeError("model crashed")
        except RuntimeError:
            pass
        for message in batch:
            await message.ack()
    finally:
        await nc.close()

    processed = spans.named("process tiles")
    assert len(processed) == 2
    for name in ("alice", "bob"):
        submit = spans.one(f"submit {name}")
        publish = next(s for s in spans.named("publish tiles") if s.parent.span_id == submit.context.span_id)
        [mine] = [s for s in processed if s.parent.span_id == publish.context.span_id]
        assert mine.context.trace_id == submit.context.trace_id
        assert mine.status.status_code == StatusCode.ERROR, "an error in the batch marks each message's span"


async def test_sql_statements_get_spans_only_inside_a_traced_operation(tmp_path, spans):
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'spans.db'}")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))  # an idle poll: no span, no trace of its own
            assert spans.named("SELECT") == []
            with TRACER.start_as_current_span("request") as request:
                await connection.execute(text("SELECT 2"))
    finally:
        await engine.dispose()
    [select] = spans.named("SELECT")
    assert select.parent.span_id == request.get_span_context().span_id
    assert select.kind == SpanKind.CLIENT
    assert select.attributes["db.system.name"] == "sqlite"
    assert select.attributes["db.query.text"] == "SELECT 2"


async def test_sql_statements_make_no_span_while_nothing_exports(tmp_path, spans, monkeypatch):
    """Without an exporter a statement's span would be dropped unseen: none is made at all."""
    made: list[str] = []
    start_span = tracing.tracer("sqlalchemy").start_span
    spy = lambda name, **kw: made.append(name) or start_span(name, **kw)  # noqa: E731
    monkeypatch.setattr(tracing.tracer("sqlalchemy"), "start_span", spy)
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'spans.db'}")
    try:
        async with engine.connect() as connection:
            with TRACER.start_as_current_span("request"):
                await connection.execute(text("SELECT 1"))
                assert made[-1] == "SELECT"  # the session's exporter records
                before = len(made)
                monkeypatch.setattr(tracing._provider.sampler, "exporting", False)
                await connection.execute(text("SELECT 2"))
    finally:
        await engine.dispose()
    assert len(made) == before
    assert [s.attributes["db.query.text"] for s in spans.named("SELECT")] == ["SELECT 1"]


def test_with_no_exporter_spans_are_not_recorded_but_still_carry_the_trace():
    """Nothing exports (no OTEL_EXPORTER_OTLP_ENDPOINT): spans cost little, yet the logs'
    trace ids and the traceparent headers still join one trace; adding an exporter records."""
    from opentelemetry.sdk.trace import TracerProvider

    sampler = tracing.SampleWhenExported()
    tracer = TracerProvider(sampler=sampler).get_tracer("unexported")
    with tracer.start_as_current_span("submit") as root:
        assert not root.is_recording()
        headers = tracing.inject()
        assert tracing.current_trace_id() == format(root.get_span_context().trace_id, "032x") != "0" * 32
    with tracer.start_as_current_span("consume", context=tracing.extract(headers)) as child:
        assert not child.is_recording()
        assert child.get_span_context().trace_id == root.get_span_context().trace_id
    sampler.exporting = True
    with tracer.start_as_current_span("exported") as span:
        assert span.is_recording()
