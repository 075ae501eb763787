"""tissue_mask jobs in the planner, on a real nats-server: a tiny slide's mask is made on the
event loop (no trip to a thread), a bigger one's on a thread, with the same result either
way; a broken tiny file fails for good, as a broken big one does; the wait for a planner is
measured."""

from __future__ import annotations

import asyncio

import pytest

from services.common import jetstream, metrics
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.slides import SlideError
from services.inference import planner
from tests.slides import write_test_slide


def _dispatch(path, job="job-1") -> messaging_pb2.JobDispatch:  # type: ignore[no-untyped-def]
    return messaging_pb2.JobDispatch(
        tenant_id="alice", workflow_id="wf-1", id=job, job_id=job, job_type="tissue_mask", image_path=str(path), attempt=1
    )


def test_only_small_files_count_as_tiny(tmp_path):
    tiny = write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=1).path
    bigger = write_test_slide(tmp_path / "bigger.tif", 512, 512, seed=1).path
    assert planner._tiny_file(str(tiny))
    assert not planner._tiny_file(str(bigger))
    assert not planner._tiny_file(str(tmp_path / "missing.tif"))  # the thread's path reports it


async def test_a_mask_inline_or_on_a_thread_is_the_same_result(tmp_path, nats_url, monkeypatch, to_thread_calls):
    slide = write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=3).path
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        worker = planner.Planner(js, nc, model_pixel_size=0.5, model_label="test")
        await worker._run_job(_dispatch(slide, "inline"))
        assert len(to_thread_calls) == 0, "a tiny slide's mask stays on the loop"
        monkeypatch.setattr(planner, "INLINE_MASK_BYTES", 0)
        await worker._run_job(_dispatch(slide, "threaded"))
        assert to_thread_calls == ["tissue_mask_result"]

        subscription = await jetstream.bind(js, jetstream.RESULTS)  # storage's consumer
        messages = await subscription.fetch(2, timeout=5)
        results = {m.subject.rsplit(".", 1)[1]: messaging_pb2.ResultEnvelope.FromString(m.data) for m in messages}
        inline, threaded = results["inline"].tissue_mask, results["threaded"].tissue_mask
        assert inline.mask_png == threaded.mask_png and inline.geojson == threaded.geojson
        assert inline.plan.tissue_fraction > 0
    finally:
        await nc.close()


async def test_a_broken_tiny_file_fails_for_good(tmp_path, nats_url):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    assert planner._tiny_file(str(broken))
    nc = await jetstream.connect(nats_url, "tests")
    try:
        worker = planner.Planner(nc.jetstream(), nc, model_pixel_size=0.5, model_label="test")
        with pytest.raises(SlideError) as caught:
            await worker._run_job(_dispatch(broken))
        assert caught.value.permanent
    finally:
        await nc.close()


async def test_the_wait_for_a_planner_is_measured(tmp_path, nats_url):
    """job_dispatch_wait_seconds: a dispatch that sat in the stream for 0.4 s counts 0.4 s."""
    slide = write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=3).path
    waits = metrics.JOB_DISPATCH_WAIT.labels("tissue_mask")
    count_before, sum_before = _histogram(waits)
    nc = await jetstream.connect(nats_url, "tests")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        await js.publish(jetstream.dispatch_subject("alice", "main"), _dispatch(slide, "waited").SerializeToString())
        await asyncio.sleep(0.4)
        running = asyncio.create_task(planner.Planner(js, nc, model_pixel_size=0.5, model_label="test").run())
        try:
            results = await jetstream.bind(js, jetstream.RESULTS)
            [message] = await results.fetch(1, timeout=10)
            assert message.subject.endswith(".waited")
        finally:
            running.cancel()
    finally:
        await nc.close()
    count, total = _histogram(waits)
    assert count == count_before + 1
    assert 0.4 <= total - sum_before < 5, "the wait runs from the publish to the planner taking the job up"


def _histogram(child) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = {s.name: s.value for metric in child.collect() for s in metric.samples}
    return samples["job_dispatch_wait_seconds_count"], samples["job_dispatch_wait_seconds_sum"]
