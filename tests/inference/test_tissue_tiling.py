"""Tissue detection against a known tissue area, and tile plans that cover all tissue."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.common.slides import open_slide
from services.inference.tiling import model_level, plan_tiles, slide_normalisation
from services.inference.tissue import compute_tissue_mask
from tests.slides import write_test_slide


def test_tissue_fraction_matches_known_area(tmp_path: Path) -> None:
    truth = write_test_slide(tmp_path / "s.tif", 4000, 3000, mpp=0.5, tissue=0.35, seed=1)
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
    assert tissue.tissue_fraction == pytest.approx(truth.tissue_fraction, abs=0.02)
    assert tissue.mask.shape[1] * tissue.downsample == pytest.approx(4000, rel=0.01)
    png = Image.open(BytesIO(tissue.to_png()))
    assert png.size == (tissue.mask.shape[1], tissue.mask.shape[0])
    features = json.loads(tissue.geojson_text())["features"]
    assert len(features) == 1
    ring = np.array(features[0]["geometry"]["coordinates"][0])
    # the polygon is in level-0 pixels and hugs the ellipse
    assert ring[:, 0].min() == pytest.approx(truth.tissue.any(axis=0).argmax(), abs=30)
    assert ring[:, 0].max() == pytest.approx(4000 - truth.tissue.any(axis=0)[::-1].argmax(), abs=30)


def test_irregular_tissue_with_hole_and_specks(tmp_path: Path) -> None:
    grid = np.zeros((60, 80), bool)
    grid[10:50, 10:40] = True
    grid[25:35, 20:30] = False  # a big hole (lumen) stays a hole
    grid[5:45, 50:75] = True  # a second piece
    truth = write_test_slide(tmp_path / "s.tif", 3200, 2400, mpp=0.5, tissue=grid, seed=2)
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
    assert tissue.tissue_fraction == pytest.approx(truth.tissue_fraction, abs=0.02)
    features = json.loads(tissue.geojson_text())["features"]
    assert len(features) == 2
    assert sorted(len(f["geometry"]["coordinates"]) for f in features) == [1, 2]  # one has a hole


def test_blank_slide_has_no_tissue(tmp_path: Path) -> None:
    truth = write_test_slide(tmp_path / "blank.tif", 1500, 1000, tissue=None, seed=3)
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        assert tissue.tissue_fraction == 0.0
        assert plan_tiles(slide, tissue, 0.5, 0.5) == []
        low, high = slide_normalisation(slide, tissue)
    assert len(low) == len(high) == 3 and all(h > lo for lo, h in zip(low, high, strict=True))
    assert json.loads(tissue.geojson_text())["features"] == []


def test_tissue_everywhere_is_all_tissue(tmp_path: Path) -> None:
    """No glass at all: Otsu would split nuclei from stroma and drop both as specks."""
    truth = write_test_slide(tmp_path / "s.tif", 2000, 1500, mpp=0.5, tissue=1.0, seed=6)
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        tiles = plan_tiles(slide, tissue, 0.5, 0.5)
    assert tissue.tissue_fraction > 0.98
    assert len(tiles) == int(np.ceil(2000 / 384)) * int(np.ceil(1500 / 384))


def test_a_real_crop_without_glass_is_all_tissue(shared_data: Path) -> None:
    crop = next(iter(sorted((shared_data / "monuseg-test").glob("*.tif"))), None)
    if crop is None:
        pytest.skip("no MoNuSeg crops in the sample data")
    with open_slide(crop) as slide:
        assert compute_tissue_mask(slide).tissue_fraction > 0.95


@pytest.mark.parametrize(("slide_mpp", "expected_level"), [(0.25, 1), (0.5, 0), (0.125, 2)])
def test_tiles_cover_all_tissue(tmp_path: Path, slide_mpp: float, expected_level: int) -> None:
    truth = write_test_slide(tmp_path / "s.tif", 3000, 2200, mpp=slide_mpp, tissue=0.3, seed=4, downsamples=(1, 2, 4))
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        tiles = plan_tiles(slide, tissue, slide_mpp=slide_mpp, model_mpp=0.5)
        assert model_level(slide, slide_mpp, 0.5) == expected_level
    assert tiles and all(t.level == expected_level for t in tiles)
    assert all(t.scale == pytest.approx(slide_mpp / 0.5) for t in tiles)
    covered = np.zeros_like(truth.tissue)
    margin = int(np.ceil(64 / tiles[0].scale))
    for t in tiles:
        covered[t.core.y : t.core.y + t.core.height, t.core.x : t.core.x + t.core.width] = True
        # read = core + overlap, clipped to the slide
        assert t.read.x == max(0, t.core.x - margin) and t.read.y == max(0, t.core.y - margin)
        assert t.read.x + t.read.width == min(3000, t.core.x + t.core.width + margin)
        # the model sees at most tile_size model pixels
        assert round(t.read.width * t.scale) <= 512 and round(t.read.height * t.scale) <= 512
    assert covered[truth.tissue].all(), "tissue outside every tile core"
    # cores do not overlap: a nucleus belongs to one tile
    counts = np.zeros(truth.tissue.shape, np.uint8)
    for t in tiles:
        counts[t.core.y : t.core.y + t.core.height, t.core.x : t.core.x + t.core.width] += 1
    assert counts.max() == 1
    # glass-only tiles are skipped: every core touches tissue (give or take one mask pixel)
    pad = int(np.ceil(tissue.downsample))
    for t in tiles:
        box = truth.tissue[
            max(0, t.core.y - pad) : t.core.y + t.core.height + pad, max(0, t.core.x - pad) : t.core.x + t.core.width + pad
        ]
        assert box.any(), f"tile {t.core} has no tissue"
    if slide_mpp == 0.5:
        grid_cells = int(np.ceil(3000 / tiles[0].core.width)) * int(np.ceil(2200 / tiles[0].core.height))
        assert len(tiles) < grid_cells


def test_slide_normalisation_uses_tissue(tmp_path: Path) -> None:
    truth = write_test_slide(tmp_path / "s.tif", 2000, 2000, mpp=0.5, tissue=0.2, seed=5)
    with open_slide(truth.path) as slide:
        tissue = compute_tissue_mask(slide)
        low, high = slide_normalisation(slide, tissue)
        again = slide_normalisation(slide, tissue)
    assert (low, high) == again  # deterministic: retried plans normalise identically
    assert max(low) < 200, "low percentiles should come from stained nuclei, not glass"
