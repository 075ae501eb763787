"""THE SEAM TEST: tiled segmentation must equal one whole-image run of the same model.

Same cells (centroids within a pixel), none cut at a tile edge, none reported twice,
none lost. This is what the overlap + "centroid in core" rule and the slide-wide
normalisation are for; it fails loudly if any of them regresses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.slides import SlideCache, open_slide
from services.inference.segmentation import Segmenter
from services.inference.tiling import plan_tiles, slide_normalisation
from services.inference.tissue import compute_tissue_mask
from tests.slides import write_test_slide


def _rect(box) -> messaging_pb2.Rect:  # type: ignore[no-untyped-def]
    return messaging_pb2.Rect(x=box.x, y=box.y, width=box.width, height=box.height)


def _centroids(cells: list[messaging_pb2.Cell]) -> np.ndarray:
    return np.array([[c.centroid_x, c.centroid_y] for c in cells]).reshape(-1, 2)


class DarkBlobLabeller(torch.nn.Module):
    """A tiny exact 'model' with InstanSeg's interface: dark blobs -> connected-component labels.

    Labels come from max-pool propagation of pixel indices, so ids are large and not
    contiguous, like InstanSeg's. It makes the seam test independent of how well the
    shipped model is trained: any difference between tiled and whole runs is then a
    geometry bug (offsets, scaling, core ownership), not model context.
    """

    def __init__(self, pixel_size: float = 0.5, threshold: float = 0.45, iterations: int = 40) -> None:
        super().__init__()
        self.pixel_size = pixel_size
        self.threshold = threshold
        self.iterations = iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = (x.mean(dim=1, keepdim=True) < self.threshold).float()
        b, _, h, w = x.shape
        index = torch.arange(1, h * w + 1, dtype=torch.float32, device=x.device).reshape(1, 1, h, w).expand(b, 1, h, w)
        labels = index * dark
        for _ in range(self.iterations):
            labels = torch.nn.functional.max_pool2d(labels, 3, 1, 1) * dark
        return labels


@pytest.fixture(scope="module", params=["stub", "shipped"])
def segmenter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    torch.set_num_threads(1)
    if request.param == "stub":
        path = tmp_path_factory.mktemp("stub") / "instanseg.pt"
        torch.jit.save(torch.jit.script(DarkBlobLabeller()), str(path))
        return Segmenter(path, "cpu", "dark-blob-stub")
    shipped_model = request.getfixturevalue("shipped_model")
    return Segmenter(shipped_model, "cpu", "slidelane_synthetic_nuclei@test")


def test_tiled_equals_whole_image(tmp_path: Path, segmenter: Segmenter) -> None:
    width, height = 1000, 840
    truth = write_test_slide(
        tmp_path / "s.tif", width, height, mpp=segmenter.pixel_size, tissue=0.7, seed=11, nuclei_per_mm2=6000
    )
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        planned = plan_tiles(slide, tissue, slide_mpp=truth.mpp, model_mpp=segmenter.pixel_size, tile_size=512, overlap=64)
        low, high = slide_normalisation(slide, tissue)
        whole_pixels = slide.read_region(0, 0, 0, width, height)
    assert len(planned) >= 4, "the slide must span several tiles for the seam test to mean anything"
    tasks = [
        messaging_pb2.TileTask(
            image_path=str(truth.path),
            tile_index=i,
            read_region=_rect(t.read),
            core_region=_rect(t.core),
            level=t.level,
            scale=t.scale,
            norm_low=low,
            norm_high=high,
        )
        for i, t in enumerate(planned)
    ]
    cache = SlideCache()
    tiled_per_tile = segmenter.segment_tiles([cache.read_tile(t) for t in tasks], tasks)
    cache.close()
    whole_rect = messaging_pb2.Rect(x=0, y=0, width=width, height=height)
    whole_task = messaging_pb2.TileTask(
        read_region=whole_rect, core_region=whole_rect, level=0, scale=1.0, norm_low=low, norm_high=high
    )
    (whole,) = segmenter.segment_tiles([whole_pixels], [whole_task])

    tiled = [c for cells in tiled_per_tile for c in cells]
    assert len(whole) > 50, "the model found too few nuclei for a meaningful comparison"
    # Only cells inside some planned core can be expected from the tiled run.
    in_cores = [
        c
        for c in whole
        if any(
            t.core.x <= c.centroid_x < t.core.x + t.core.width and t.core.y <= c.centroid_y < t.core.y + t.core.height
            for t in planned
        )
    ]
    a, b = _centroids(tiled), _centroids(in_cores)
    # none doubled: no two tiled cells at the same place
    pairs = cKDTree(a).query_pairs(r=3.0)
    assert not pairs, f"{len(pairs)} nuclei reported twice"
    # same cells: one-to-one within a pixel
    distance_ab, _ = cKDTree(b).query(a)
    distance_ba, index_ba = cKDTree(a).query(b)
    lost = int((distance_ba > 1.0).sum())
    extra = int((distance_ab > 1.0).sum())
    assert (lost, extra) == (0, 0), f"tiled run lost {lost} and added {extra} of {len(b)} nuclei"
    # none cut: same area as the whole-image nucleus, and the outline stays off the read edge
    for cell_b, j in zip(in_cores, index_ba, strict=True):
        assert tiled[j].area == pytest.approx(cell_b.area, rel=0.02, abs=2.0)
    for task, cells in zip(tasks, tiled_per_tile, strict=True):
        r = task.read_region
        for c in cells:
            xs, ys = np.array(c.polygon_x), np.array(c.polygon_y)
            assert r.x == 0 or xs.min() > r.x + 1
            assert r.y == 0 or ys.min() > r.y + 1
            assert r.x + r.width == width or xs.max() < r.x + r.width - 1
            assert r.y + r.height == height or ys.max() < r.y + r.height - 1


def test_cells_are_in_level0_coordinates_at_other_scales(tmp_path: Path, segmenter: Segmenter) -> None:
    """A 0.25 um/px slide: tiles are read at level 1 (0.5 um/px) and results map back to level 0."""
    truth = write_test_slide(tmp_path / "s.tif", 1600, 1200, mpp=0.25, tissue=0.5, seed=12, downsamples=(1, 2, 8))
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        planned = plan_tiles(slide, tissue, slide_mpp=0.25, model_mpp=segmenter.pixel_size)
        low, high = slide_normalisation(slide, tissue)
    assert planned and all(t.level == 1 for t in planned)
    tasks = [
        messaging_pb2.TileTask(
            image_path=str(truth.path),
            read_region=_rect(t.read),
            core_region=_rect(t.core),
            level=t.level,
            scale=t.scale,
            norm_low=low,
            norm_high=high,
        )
        for t in planned
    ]
    cache = SlideCache()
    cells = [c for per in segmenter.segment_tiles([cache.read_tile(t) for t in tasks], tasks) for c in per]
    cache.close()
    found = _centroids(cells)
    assert len(found) > 20
    distance, _ = cKDTree(found).query(truth.nuclei)
    recall = float((distance * truth.mpp <= 4.0).mean())  # within 4 um, as the MoNuSeg yardstick
    assert recall > 0.8, f"only {recall:.0%} of drawn nuclei found at the right level-0 place"
    areas_um2 = np.array([c.area for c in cells]) * truth.mpp**2
    assert 10 < np.median(areas_um2) < 120  # drawn nuclei are 6-9 um across (~28-64 um^2)
