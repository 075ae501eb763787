"""tissue_mask results in storage's consumer, on a real nats-server: a small result's files
are written on the event loop (no trip to a thread), a bigger one's on a thread, with the
same files and the same JobStatus either way; a write that fails leaves the message unacked
and reports nothing."""

from __future__ import annotations

import pytest

from services.common import jetstream
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.inference.planner import tissue_mask_result
from services.storage import consumer as storage_consumer
from services.storage.merge import ResultMerger
from services.storage.store import LocalDirectoryStore
from tests.slides import write_test_slide


def _result(slide, job: str) -> messaging_pb2.TissueMaskResult:  # type: ignore[no-untyped-def]
    dispatch = messaging_pb2.JobDispatch(
        tenant_id="alice", workflow_id="wf-1", id=job, job_id=job, job_type="tissue_mask", image_path=str(slide), attempt=1
    )
    return tissue_mask_result(dispatch)


async def _deliver(js, consumer, results: list[messaging_pb2.TissueMaskResult]) -> None:  # type: ignore[no-untyped-def]
    """Publish the results as the planner does, then let the consumer handle what it fetches."""
    for result in results:
        envelope = messaging_pb2.ResultEnvelope(tissue_mask=result)
        await jetstream.publish(js, jetstream.results_subject("alice", result.plan.job_id), envelope.SerializeToString())
    subscription = await jetstream.bind(js, jetstream.RESULTS)
    for message in await subscription.fetch(len(results), timeout=5):
        await consumer.handle(message)


async def test_small_results_are_written_inline_with_the_same_files_and_status(tmp_path, nats_url, monkeypatch, to_thread_calls):
    slide = write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=3).path
    store = LocalDirectoryStore(tmp_path / "results")
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        consumer = storage_consumer.ResultsConsumer(js, nc, ResultMerger(tmp_path / "spool", store))
        await _deliver(js, consumer, [_result(slide, "inline")])
        assert len(to_thread_calls) == 0, "a small result is written on the loop"
        monkeypatch.setattr(storage_consumer, "INLINE_FINALISE_BYTES", 0)
        await _deliver(js, consumer, [_result(slide, "threaded")])
        assert to_thread_calls == ["finalise_tissue_mask"]

        status_subscription = await jetstream.bind(js, jetstream.STATUS)  # the scheduler's consumer
        statuses = [messaging_pb2.JobStatus.FromString(m.data) for m in await status_subscription.fetch(2, timeout=5)]
        files = {s.job_id: list(s.succeeded.result_files) for s in statuses}
        assert set(files) == {"inline", "threaded"}
        assert len(files["inline"]) == len(files["threaded"]) == 3
        for inline_name, threaded_name in zip(files["inline"], files["threaded"], strict=True):
            if inline_name.endswith((".png", ".geojson")):  # the summary names its job; these do not
                inline = store.read(f"alice/inline/{inline_name}")
                threaded = store.read(f"alice/threaded/{threaded_name}")
                assert inline == threaded and inline
    finally:
        await nc.close()


async def test_a_failed_write_inline_reports_nothing_and_keeps_the_message(tmp_path, nats_url):
    slide = write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=3).path
    store = LocalDirectoryStore(tmp_path / "results")
    (tmp_path / "results" / "alice").write_text("a file where the tenant's directory should be")
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        consumer = storage_consumer.ResultsConsumer(js, nc, ResultMerger(tmp_path / "spool", store))
        with pytest.raises(OSError):
            await _deliver(js, consumer, [_result(slide, "job-1")])
        info = await js.consumer_info(jetstream.RESULTS.stream, jetstream.RESULTS.durable)
        assert info.num_ack_pending == 1, "not acked: redelivered once the store is writable again"
        status = await js.stream_info(jetstream.STATUS.stream)
        assert status.state.messages == 0
    finally:
        await nc.close()
