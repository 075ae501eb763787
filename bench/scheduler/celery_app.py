"""The Celery side of the scheduler benchmark: each task does a tissue_mask job's whole work.

The same code as Slidelane's job, not a lighter stand-in: the planner's
tissue_mask_result (open the slide, compute the mask, encode its PNG and GeoJSON) and
storage's finalisation (mask PNG, GeoJSON, summary JSON and manifest
written atomically into a results directory). Each task records when it started and
ended in Redis, so the dependency-to-start latency is measured the same way as
Slidelane's job timestamps.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery, signals

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.inference.planner import tissue_mask_result
from services.inference.tissue import warm_up
from services.storage.merge import ResultMerger
from services.storage.store import LocalDirectoryStore

BROKER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
RESULTS = Path(os.environ.get("BENCH_CELERY_RESULTS", Path(tempfile.gettempdir()) / "slidelane-bench-celery"))
app = Celery("slidelane_bench", broker=BROKER, backend=BROKER)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, result_expires=600)
_store = redis.Redis.from_url(BROKER)
_merger: ResultMerger | None = None


def merger() -> ResultMerger:
    global _merger
    if _merger is None:
        _merger = ResultMerger(RESULTS / "spool", LocalDirectoryStore(RESULTS / "results"))
    return _merger


def tissue_mask_job(run: str, job: str, path: str) -> float:
    """What a tissue_mask job costs Slidelane's planner and storage, in one call."""
    dispatch = messaging_pb2.JobDispatch(
        tenant_id=run, workflow_id=run, id=job, job_id=job, job_type="tissue_mask", image_path=path
    )
    result = tissue_mask_result(dispatch)
    merger().finalise_tissue_mask(result)
    return result.plan.tissue_fraction


@signals.worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Each pool process warms up as a Slidelane inference replica does before it serves."""
    warm_up()


@app.task(name="bench.tissue_mask")
def tissue_mask(_previous: object, run: str, job: str, slide: str) -> float:
    started = time.time()
    fraction = tissue_mask_job(run, job, slide)
    _store.hset(f"bench:{run}:{job}", mapping={"started": started, "finished": time.time()})
    return fraction
