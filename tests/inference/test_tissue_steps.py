"""The tissue mask's own steps give exactly what the scipy / scikit-image calls they
replace give (services.inference.tissue: the same pixels, thresholds and polygons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage import filters, morphology

from services.common.slides import open_slide
from services.inference import tissue
from services.inference.tissue import (
    TissueMask,
    close_cross,
    gaussian_blur,
    mask_from_rgb,
    otsu_threshold,
    read_low_resolution,
    without_small_pieces,
)
from tests.inference.tissue_reference import library_geojson, library_mask
from tests.slides import write_test_slide

shapes = st.tuples(st.integers(1, 48), st.integers(1, 48))


def random_mask(shape: tuple[int, int], density: float, seed: int) -> np.ndarray:
    """Speckle smoothed a little: pieces of many sizes, with holes, touching the edges."""
    rng = np.random.default_rng(seed)
    return ndi.uniform_filter(rng.random(shape), 3) < density


def random_saturation(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32) * rng.uniform(0.01, 1.0)
    image[: shape[0] // 2] += np.float32(rng.uniform(0, 0.5))  # two populations, as glass and tissue
    return image


@settings(max_examples=200, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_blur_is_scipys_gaussian(shape: tuple[int, int], seed: int) -> None:
    image = random_saturation(shape, seed)
    expected = ndi.gaussian_filter(image, sigma=tissue.SMOOTH_SIGMA, mode="nearest", truncate=4.0)
    assert gaussian_blur(image).dtype == np.float32
    np.testing.assert_array_equal(gaussian_blur(image), expected)


@settings(max_examples=200, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_otsu_is_scikit_images(shape: tuple[int, int], seed: int) -> None:
    image = random_saturation(shape, seed)
    if np.ptp(image) == 0:
        return  # mask_from_rgb never thresholds a flat image
    assert otsu_threshold(image) == float(filters.threshold_otsu(image))


def test_otsu_splits_two_populations() -> None:
    image = np.full((20, 20), 0.02, np.float32)
    image[5:15, 5:15] = 0.4
    threshold = otsu_threshold(image)
    assert 0.02 < threshold < 0.4


@settings(max_examples=200, deadline=None)
@given(shape=shapes, density=st.floats(0.3, 0.7), seed=st.integers(0, 2**32 - 1))
def test_closing_is_scipys(shape: tuple[int, int], density: float, seed: int) -> None:
    mask = random_mask(shape, density, seed)
    expected = ndi.binary_closing(mask, structure=morphology.disk(1), border_value=0)
    np.testing.assert_array_equal(close_cross(mask), expected)


def test_closing_fills_a_one_pixel_gap_and_erodes_the_edge() -> None:
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    assert close_cross(mask)[3, 3]
    assert not close_cross(np.ones((3, 3), bool))[0].any()  # outside the image is background


@settings(max_examples=200, deadline=None)
@given(shape=shapes, density=st.floats(0.3, 0.7), max_size=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_small_pieces_and_holes_go_as_with_scikit_image(shape: tuple[int, int], density: float, max_size: int, seed: int) -> None:
    mask = random_mask(shape, density, seed)
    np.testing.assert_array_equal(without_small_pieces(mask, max_size), morphology.remove_small_objects(mask, max_size=max_size))
    np.testing.assert_array_equal(~without_small_pieces(~mask, max_size), morphology.remove_small_holes(mask, max_size=max_size))


def test_a_piece_of_max_size_goes_and_a_bigger_one_stays() -> None:
    mask = np.zeros((10, 10), bool)
    mask[0, :3] = True  # 3 pixels
    mask[5:7, 5:7] = True  # 4 pixels
    kept = without_small_pieces(mask, max_size=3)
    assert not kept[0].any() and kept[5:7, 5:7].all()


@settings(max_examples=100, deadline=None)
@given(shape=shapes, density=st.floats(0.3, 0.7), seed=st.integers(0, 2**32 - 1))
def test_geojson_holes_are_scipys(shape: tuple[int, int], density: float, seed: int) -> None:
    mask = TissueMask(mask=random_mask(shape, density, seed), downsample=4.0, rgb=np.zeros((*shape, 3), np.uint8))
    assert mask.geojson_text() == library_geojson(mask)


def test_a_ring_of_tissue_has_its_hole() -> None:
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    mask[4:8, 4:8] = False
    (feature,) = json.loads(TissueMask(mask=mask, downsample=1.0, rgb=np.zeros((12, 12, 3), np.uint8)).geojson_text())["features"]
    exterior, hole = feature["geometry"]["coordinates"]
    assert len(exterior) >= 5 and len(hole) >= 5


def test_masks_of_generated_slides_are_the_librarys(tmp_path: Path) -> None:
    grid = np.random.default_rng(7).random((24, 32)) < 0.45  # ragged pieces with holes
    slides = [
        write_test_slide(tmp_path / "tiny.tif", 64, 64, seed=1).path,
        write_test_slide(tmp_path / "smooth.tif", 4096, 3072, mpp=0.5, tissue=0.35, seed=1).path,
        write_test_slide(tmp_path / "ragged.tif", 4096, 3072, mpp=0.5, tissue=grid, seed=2).path,
    ]
    for path in slides:
        with open_slide(path) as slide:
            rgb, downsample = read_low_resolution(slide)
            mpp = slide.mpp
        ours = mask_from_rgb(rgb, downsample, mpp)
        assert ours.mask.any()
        np.testing.assert_array_equal(ours.mask, library_mask(rgb, downsample, mpp))
        assert ours.geojson_text() == library_geojson(ours)
