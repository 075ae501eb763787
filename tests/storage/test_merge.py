"""Storage merges tile results idempotently into the README's result format."""

from __future__ import annotations

import json
import math

import pytest

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.storage.merge import ResultMerger
from services.storage.store import LocalDirectoryStore


def _plan(tiles_total: int) -> messaging_pb2.JobPlan:
    return messaging_pb2.JobPlan(
        tenant_id="alice",
        workflow_id="wf1",
        job_id="job-global-1",
        attempt=1,
        workflow_job_id="segment",
        job_type="cell_segmentation",
        tiles_total=tiles_total,
        slide_width=1000,
        slide_height=800,
        mpp=0.5,
        model="slidelane_synthetic_nuclei@1",
    )


def _square_cell(x: float, y: float, size: float = 4.0) -> messaging_pb2.Cell:
    return messaging_pb2.Cell(
        polygon_x=[x, x + size, x + size, x],
        polygon_y=[y, y, y + size, y + size],
        area=size * size,
        centroid_x=x + size / 2,
        centroid_y=y + size / 2,
        label_id=7,
    )


def _tile(index: int, cells: list[messaging_pb2.Cell]) -> messaging_pb2.TileResult:
    return messaging_pb2.TileResult(
        tenant_id="alice", workflow_id="wf1", job_id="job-global-1", attempt=1, tile_index=index, tiles_total=2, cells=cells
    )


def test_a_redelivered_tile_is_counted_once_even_after_a_restart(tmp_path):
    store = LocalDirectoryStore(tmp_path / "results")
    merger = ResultMerger(tmp_path / "spool", store)
    merger.add_plan(_plan(tiles_total=2))
    _, new = merger.add_tile(_tile(0, [_square_cell(10, 20)]))
    assert new
    spool, new_again = merger.add_tile(_tile(0, [_square_cell(10, 20)]))
    assert not new_again and not spool.complete

    restarted = ResultMerger(tmp_path / "spool", store)
    spool, new_after_restart = restarted.add_tile(_tile(0, [_square_cell(10, 20)]))
    assert not new_after_restart and len(spool.tiles) == 1
    spool, _ = restarted.add_tile(_tile(1, [_square_cell(500, 300), _square_cell(600, 300)]))
    assert spool.complete
    succeeded = restarted.finalise_segmentation(spool)
    assert succeeded.total_cells == 3


def test_segmentation_json_and_geojson_follow_the_published_formats(tmp_path):
    store = LocalDirectoryStore(tmp_path / "results")
    merger = ResultMerger(tmp_path / "spool", store)
    merger.add_plan(_plan(tiles_total=2))
    merger.add_tile(_tile(1, [_square_cell(500, 300)]))
    spool, _ = merger.add_tile(_tile(0, [_square_cell(10, 20)]))
    merger.finalise_segmentation(spool)

    document = json.loads(store.read("alice/job-global-1/wf1_segment_segmentation.json"), parse_constant=_reject)
    assert document["total_cells"] == 2 and document["tiles_processed"] == 2
    assert document["method"] == "instanseg" and document["model"] == "slidelane_synthetic_nuclei@1"
    first = document["cells"][0]
    assert first["cell_id"] == 1 and first["label_id"] == 7
    assert first["centroid"] == [12.0, 22.0]  # [x, y], from tile 0 first
    assert first["polygon"][1] == [20.0, 14.0]  # [y, x]
    assert math.isclose(first["area"], 16.0)

    geojson = json.loads(store.read("alice/job-global-1/wf1_segment_cells.geojson"))
    assert geojson["type"] == "FeatureCollection" and len(geojson["features"]) == 2
    feature = geojson["features"][0]
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] == [10.0, 20.0]  # [x, y], closed
    assert feature["properties"]["objectType"] == "detection"
    assert feature["properties"]["classification"]["name"] == "Nucleus"
    assert feature["properties"]["measurements"]["Area um^2"] == 4.0


def test_a_slide_without_tissue_finishes_with_zero_cells(tmp_path):
    merger = ResultMerger(tmp_path / "spool", LocalDirectoryStore(tmp_path / "results"))
    spool = merger.add_plan(_plan(tiles_total=0))
    assert spool.complete
    assert merger.finalise_segmentation(spool).total_cells == 0


def test_a_cell_that_is_not_strict_json_fails_finalisation_without_a_result_file(tmp_path):
    store = LocalDirectoryStore(tmp_path / "results")
    merger = ResultMerger(tmp_path / "spool", store)
    merger.add_plan(_plan(tiles_total=2))
    merger.add_tile(_tile(0, [_square_cell(10, 20)]))
    broken = _square_cell(500, 300)
    broken.centroid_x = math.nan
    spool, _ = merger.add_tile(_tile(1, [broken]))
    with pytest.raises(ValueError):
        merger.finalise_segmentation(spool)
    assert list((tmp_path / "results" / "alice" / "job-global-1").iterdir()) == []  # not half a file, no temporary one


def _reject(name: str) -> None:
    raise AssertionError(f"result JSON holds {name}, which strict JSON forbids")
