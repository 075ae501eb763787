"""SlideReader on real fixtures (OpenSlide and tifffile backends), bad files, and generated pyramids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.slides import (
    MissingMppError,
    RememberedSlideChecks,
    SlideCache,
    SlideError,
    check_readable_slide,
    open_slide,
    resolve_mpp,
    validate,
)
from tests.slides import write_test_slide

GOOD = {
    # name: (backend, width, height, level_count, mpp or None)
    "openslide-fixtures/small.svs": ("openslide", 16, 16, 1, 0.499),
    "openslide-fixtures/boxes.tiff": ("openslide", 300, 250, 4, None),
    "openslide-fixtures/boxes_0.dcm": ("openslide", 16, 16, 1, 0.499),  # a DICOM copy of small.svs
    "HE_example.tif": ("tifffile", 1380, 1484, 1, 0.5),
    "monuseg-test/TCGA-2Z-A9J9-01A-01-TS1.tif": ("tifffile", 1000, 1000, 1, None),  # 72 dpi is not a pixel size
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_reads_fixture(shared_data: Path, name: str) -> None:
    backend, width, height, levels, mpp = GOOD[name]
    path = shared_data / name
    check_readable_slide(str(path))
    with open_slide(path) as slide:
        assert slide.backend == backend
        if width is not None:
            assert (slide.width, slide.height, slide.level_count) == (width, height, levels)
        if mpp is None:
            assert slide.mpp is None
        else:
            assert slide.mpp == pytest.approx(mpp, abs=1e-3)
        region = slide.read_region(0, 0, 0, min(40, slide.width), min(30, slide.height))
        assert region.dtype == np.uint8 and region.shape == (min(30, slide.height), min(40, slide.width), 3)
        # beyond the edge reads as glass, not an error
        outside = slide.read_region(0, slide.width - 4, slide.height - 4, 8, 8)
        assert outside.shape == (8, 8, 3) and (outside[6:, 6:] == 255).all()


def test_tifffile_reader_is_lazy_and_matches_whole_image(shared_data: Path) -> None:
    import tifffile

    whole = tifffile.imread(shared_data / "HE_example.tif")
    with open_slide(shared_data / "HE_example.tif") as slide:
        region = slide.read_region(0, 300, 500, 400, 260)  # spans several 256 px tiles
    np.testing.assert_array_equal(region, whole[500:760, 300:700, :3])


def test_unreadable_svs_fails_on_read(shared_data: Path) -> None:
    path = shared_data / "openslide-fixtures/unreadable.svs"
    with open_slide(path):
        pass  # opens fine...
    with pytest.raises(SlideError) as raised:
        check_readable_slide(str(path))  # ...but pixels do not decode
    assert raised.value.permanent
    assert "unreadable.svs" in str(raised.value) and "Bogus marker length" in str(raised.value)


def test_unopenable_tiff_fails_on_open(shared_data: Path) -> None:
    path = shared_data / "openslide-fixtures/unopenable.tiff"
    with pytest.raises(SlideError) as raised:
        open_slide(path)
    assert raised.value.permanent
    assert "unopenable.tiff" in str(raised.value) and "Unsupported TIFF compression" in str(raised.value)


def test_missing_and_non_slide_files(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="no such file") as raised:
        check_readable_slide(str(tmp_path / "nope.svs"))
    assert raised.value.permanent
    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"not a slide at all" * 100)
    with pytest.raises(SlideError) as raised:
        check_readable_slide(str(junk))
    assert raised.value.permanent and "junk.svs" in str(raised.value)


def test_remembered_checks_open_a_slide_again_only_when_its_file_changed(tmp_path: Path) -> None:
    opened: list[str] = []

    def counted(path: str) -> None:
        opened.append(path)
        check_readable_slide(path)

    checks = RememberedSlideChecks(counted, capacity=2)
    first = str(write_test_slide(tmp_path / "a.tif", 64, 64, seed=1).path)
    checks(first)
    checks(first)
    assert opened == [first]
    write_test_slide(tmp_path / "a.tif", 96, 64, seed=2)  # rewritten in place: checked afresh
    checks(first)
    assert opened == [first, first]
    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"not a slide at all" * 100)
    for _ in range(2):  # a failure is not remembered: each submission hears it
        with pytest.raises(SlideError):
            checks(str(junk))
    assert opened.count(str(junk)) == 2
    with pytest.raises(SlideError, match="no such file"):
        checks(str(tmp_path / "nope.svs"))
    # Only the last `capacity` slides are remembered.
    others = [str(write_test_slide(tmp_path / f"{n}.tif", 32, 32, seed=3).path) for n in "bc"]
    for path in others:
        checks(path)
    checks(first)
    assert opened[-1] == first


def test_generated_aperio_pyramid(tmp_path: Path) -> None:
    truth = write_test_slide(tmp_path / "slide.tif", 1200, 900, mpp=0.25, tissue=0.3, seed=3, downsamples=(1, 2, 8))
    check_readable_slide(str(truth.path))
    with open_slide(truth.path) as slide:
        assert slide.backend == "openslide"
        assert slide.mpp == pytest.approx(0.25)
        assert slide.level_count == 3
        assert slide.level_dimensions[0] == (1200, 900)
        assert slide.level_downsamples[1] == pytest.approx(2.0, rel=1e-3)
        # a low level agrees with a block average of level 0
        full = slide.read_region(0, 400, 300, 64, 64).astype(float)
        low = slide.read_region(1, 400, 300, 32, 32).astype(float)
        reduced = full.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        assert np.abs(low - reduced).mean() < 2.0


def test_slide_cache_reads_tiles_at_level(tmp_path: Path) -> None:
    truth = write_test_slide(tmp_path / "slide.tif", 800, 600, mpp=0.25, tissue=0.5, seed=4, downsamples=(1, 2))
    cache = SlideCache(capacity=1)
    task = messaging_pb2.TileTask(
        image_path=str(truth.path), read_region=messaging_pb2.Rect(x=100, y=50, width=200, height=120), level=1, scale=0.5
    )
    pixels = cache.read_tile(task)
    assert pixels.shape == (60, 100, 3)  # read_region at level 1, not rescaled
    other = write_test_slide(tmp_path / "other.tif", 300, 300, seed=5)
    cache.read_tile(
        messaging_pb2.TileTask(image_path=str(other.path), read_region=messaging_pb2.Rect(x=0, y=0, width=10, height=10))
    )
    assert cache.read_tile(task).shape == (60, 100, 3)  # evicted and reopened
    cache.close()


def test_thumbnail_and_mpp_resolution(tmp_path: Path, shared_data: Path) -> None:
    truth = write_test_slide(tmp_path / "slide.tif", 1200, 900, mpp=0.25, seed=6, downsamples=(1, 4))
    validate(str(truth.path))
    with open_slide(truth.path) as slide:
        thumb = slide.thumbnail(200)
        assert thumb.dtype == np.uint8 and max(thumb.shape[:2]) <= 200 and thumb.shape[2] == 3
        assert resolve_mpp(slide) == pytest.approx(0.25)
        assert resolve_mpp(slide, override=0.3) == 0.3  # the user's value wins
    # MoNuSeg TIFFs carry a meaningless 72 dpi: no pixel size, and the error says what to do
    with open_slide(shared_data / "monuseg-test" / "TCGA-2Z-A9J9-01A-01-TS1.tif") as slide:
        with pytest.raises(MissingMppError, match="params.mpp") as raised:
            resolve_mpp(slide)
        assert raised.value.permanent and "TCGA-2Z-A9J9-01A-01-TS1.tif" in str(raised.value)
        assert resolve_mpp(slide, override=0.2527) == pytest.approx(0.2527)
