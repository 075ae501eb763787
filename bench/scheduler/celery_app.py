"""The Celery side of the scheduler benchmark: the same tiny tissue-mask work per task.

Each task records when it started and ended in Redis, so the dependency-to-start
latency is measured the same way as Slidelane's job timestamps.
"""

from __future__ import annotations

import os
import time

import numpy as np
import redis
import tifffile
from celery import Celery
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

BROKER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("slidelane_bench", broker=BROKER, backend=BROKER)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, result_expires=600)
_store = redis.Redis.from_url(BROKER)


def tissue_fraction(path: str) -> float:
    """Otsu on saturation, the same computation as a tissue_mask job's core."""
    image = tifffile.imread(path, level=-1) if path.endswith((".tif", ".tiff")) else np.zeros((8, 8, 3), np.uint8)
    saturation = rgb2hsv(image[..., :3])[..., 1]
    threshold = threshold_otsu(saturation) if saturation.max() > saturation.min() else 1.0
    return float((saturation > threshold).mean())


@app.task(name="bench.tissue_mask")
def tissue_mask(_previous: object, run: str, job: str, slide: str) -> float:
    started = time.time()
    fraction = tissue_fraction(slide)
    _store.hset(f"bench:{run}:{job}", mapping={"started": started, "finished": time.time()})
    return fraction
