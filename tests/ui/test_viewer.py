"""Viewer data from storage: Deep Zoom tiles of the slide and cells per region."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from services.common.errors import FailedPrecondition, InvalidArgument
from services.storage import viewer
from tests.slides import write_test_slide


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_test_slide(tmp_path_factory.mktemp("slides") / "viewer.svs", 3000, 2000, seed=5)


def test_deep_zoom_tiles_are_254_px_jpegs_with_overlap(slide):
    levels = viewer.deepzoom_levels(slide.width, slide.height)
    assert levels == 13  # ceil(log2(3000)) + 1, what OpenSeadragon computes
    top = Image.open(io.BytesIO(viewer.render_tile(str(slide.path), levels - 1, 1, 1)))
    assert top.format == "JPEG" and top.size == (256, 256)  # 254 + 1 px overlap each side
    corner = Image.open(io.BytesIO(viewer.render_tile(str(slide.path), levels - 1, 0, 0)))
    assert corner.size == (255, 255)
    last_col = Image.open(io.BytesIO(viewer.render_tile(str(slide.path), levels - 1, 11, 7)))
    assert last_col.size == (3000 - 11 * 254 + 1, 2000 - 7 * 254 + 1)
    assert Image.open(io.BytesIO(viewer.render_tile(str(slide.path), 0, 0, 0))).size == (1, 1)


def test_tile_addresses_out_of_range_name_the_field(slide):
    for (level, col, row), field in [((13, 0, 0), "level"), ((12, 12, 0), "col"), ((12, 0, 8), "row"), ((-1, 0, 0), "level")]:
        with pytest.raises(InvalidArgument) as caught:
            viewer.render_tile(str(slide.path), level, col, row)
        assert caught.value.field == field


def test_a_missing_slide_is_a_failed_precondition(tmp_path):
    with pytest.raises(FailedPrecondition):
        viewer.render_tile(str(tmp_path / "gone.svs"), 0, 0, 0)


def _document(n: int, width: int = 60000, height: int = 40000, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform((0, 0), (width, height), size=(n, 2))
    cells = [
        {
            "cell_id": i + 1,
            "label_id": i + 1,
            "polygon": [[y - 3, x - 3], [y - 3, x + 3], [y + 3, x + 3], [y + 3, x - 3]],
            "area": 36.0,
            "centroid": [x, y],
        }
        for i, (x, y) in enumerate(xy.tolist())
    ]
    return {"image": {"width": width, "height": height}, "cells": cells}, xy


def test_region_queries_match_brute_force_and_stay_fast_with_100k_cells():
    document, xy = _document(100_000)
    index = viewer.CellIndex.from_document(document)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x, y = rng.uniform(-1000, 60000), rng.uniform(-1000, 40000)
        w, h = rng.uniform(0, 8000), rng.uniform(0, 6000)
        positions = index.query(x, y, w, h)
        inside = (xy[:, 0] >= x) & (xy[:, 0] < x + w) & (xy[:, 1] >= y) & (xy[:, 1] < y + h)
        assert sorted(index.cell_ids[positions].tolist()) == sorted((np.flatnonzero(inside) + 1).tolist())
    started = time.perf_counter()
    for _ in range(100):
        viewer.list_cells(index, 20000, 10000, 3000, 2000, 5000)
    assert (time.perf_counter() - started) / 100 < 0.05


def test_polygons_when_few_centroids_when_many():
    document, _ = _document(20_000, 4000, 4000)
    index = viewer.CellIndex.from_document(document)
    few = viewer.list_cells(index, 0, 0, 500, 500, 5000)
    assert 0 < few["total"] <= 5000 and not few["centroids_only"]
    cell_id, cx, cy, polygon = few["cells"][0]
    source = document["cells"][cell_id - 1]
    assert (cx, cy) == tuple(source["centroid"])
    # the file stores [y, x] pairs; the viewer gets x0, y0, x1, y1, ...
    assert polygon[:2].tolist() == pytest.approx([source["polygon"][0][1], source["polygon"][0][0]], abs=1e-2)
    many = viewer.list_cells(index, 0, 0, 4000, 4000, 1000)
    assert many["centroids_only"] and many["total"] == 20_000
    assert all(p is None for *_, p in many["cells"])
    with pytest.raises(InvalidArgument):
        viewer.list_cells(index, 0, 0, -1, 10, 10)


async def test_the_index_is_loaded_once_per_result(tmp_path):
    document, _ = _document(1000, 2000, 2000)
    reads = []

    def read() -> bytes:
        reads.append(1)
        return json.dumps(document).encode()

    for _ in range(3):
        found = await viewer.region_cells("tenant/job-once/result.json", read, 0, 0, 2000, 2000, 5000)
    assert len(reads) == 1 and found["total"] == 1000
