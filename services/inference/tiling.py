"""Tile planning at the model's pixel size, and slide-wide normalisation.

Geometry (all rectangles in level-0 pixels):
- core: a cell of a regular grid; a nucleus belongs to the tile whose core holds its
  centroid, so every nucleus is reported exactly once and whole (no IoU merging);
- read: the core grown by `overlap` model pixels on each side and clipped to the
  slide. The overlap must exceed the largest nucleus diameter plus the model's
  receptive-field margin, so a nucleus centred in the core is never cut by the read
  edge. 64 model px at 0.5 um/px = 32 um, vs nuclei of <= ~20 um.
The model sees read at `tile_size` model pixels (core = tile_size - 2*overlap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.common.slides import SlideReader
from services.inference.tissue import TissueMask, saturation

NORM_PERCENTILES = (0.1, 99.9)  # what InstanSeg's percentile_normalize uses
NORM_PATCHES = 24
NORM_PATCH_SIDE = 256


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    def clip(self, width: int, height: int) -> Box:
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.width, width), min(self.y + self.height, height)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


@dataclass(frozen=True)
class PlannedTile:
    read: Box
    core: Box
    level: int
    scale: float  # model px per level-0 px


def model_level(slide: SlideReader, slide_mpp: float, model_mpp: float) -> int:
    """Highest (coarsest) level whose pixels are still no larger than the model's: we only downsample."""
    best = 0
    for index, ds in enumerate(slide.level_downsamples):
        if slide_mpp * ds <= model_mpp * 1.01:
            best = index
    return best


def plan_tiles(
    slide: SlideReader,
    tissue: TissueMask,
    slide_mpp: float,
    model_mpp: float,
    tile_size: int = 512,
    overlap: int = 64,
) -> list[PlannedTile]:
    if slide_mpp <= 0 or model_mpp <= 0:
        raise ValueError(f"pixel sizes must be positive (slide {slide_mpp}, model {model_mpp})")
    if tile_size <= 2 * overlap:
        raise ValueError(f"tile_size {tile_size} leaves no core with overlap {overlap}")
    scale = slide_mpp / model_mpp
    core_side = max(1, int(round((tile_size - 2 * overlap) / scale)))  # level-0 px
    margin = int(math.ceil(overlap / scale))
    level = model_level(slide, slide_mpp, model_mpp)
    tiles: list[PlannedTile] = []
    for y in range(0, slide.height, core_side):
        for x in range(0, slide.width, core_side):
            core = Box(x, y, core_side, core_side).clip(slide.width, slide.height)
            if not _touches_tissue(tissue, core):
                continue
            read = Box(core.x - margin, core.y - margin, core.width + 2 * margin, core.height + 2 * margin)
            tiles.append(PlannedTile(read.clip(slide.width, slide.height), core, level, scale))
    return tiles


def _touches_tissue(tissue: TissueMask, box: Box) -> bool:
    ds = tissue.downsample
    h, w = tissue.mask.shape
    # Mask pixels whose footprint intersects the box (floor/ceil: err towards keeping tiles).
    r0, c0 = int(box.y // ds), int(box.x // ds)
    r1, c1 = int(math.ceil((box.y + box.height) / ds)), int(math.ceil((box.x + box.width) / ds))
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
    return r1 > r0 and c1 > c0 and bool(tissue.mask[r0:r1, c0:c1].any())


def slide_normalisation(slide: SlideReader, tissue: TissueMask, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel 0.1 / 99.9 percentiles for the whole slide, computed once.

    Per-tile normalisation would give each tile its own contrast and make seams. The
    pixels come from tissue, not glass. Low-resolution pixels average nuclei into the
    stroma and squash the dark tail, so the sample is a few patches read at (near)
    full resolution at random tissue positions (fixed seed: same plan every time),
    falling back to the low-resolution view when that finds nothing.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(tissue.mask)
    samples: list[np.ndarray] = []
    if len(rows):
        level = slide.best_level_for_downsample(2.0)
        ds = slide.level_downsamples[level]
        for i in rng.choice(len(rows), size=min(NORM_PATCHES, len(rows)), replace=False):
            cx, cy = (cols[i] + 0.5) * tissue.downsample, (rows[i] + 0.5) * tissue.downsample
            side = NORM_PATCH_SIDE
            x0 = int(np.clip(cx - side * ds / 2, 0, max(0, slide.width - side * ds)))
            y0 = int(np.clip(cy - side * ds / 2, 0, max(0, slide.height - side * ds)))
            w = min(side, slide.level_dimensions[level][0])
            h = min(side, slide.level_dimensions[level][1])
            patch = slide.read_region(level, x0, y0, w, h).reshape(-1, 3)
            keep = saturation(patch)[0] > 0.06  # drop glass inside the patch
            samples.append(patch[keep] if keep.sum() > 100 else patch)
    if not samples or sum(len(s) for s in samples) < 100:
        pixels = tissue.rgb[tissue.mask] if tissue.mask.any() else tissue.rgb.reshape(-1, 3)
        samples = [pixels.reshape(-1, 3)]
    pixels = np.concatenate(samples).astype(np.float32)
    low = np.percentile(pixels, NORM_PERCENTILES[0], axis=0)
    high = np.percentile(pixels, NORM_PERCENTILES[1], axis=0)
    high = np.maximum(high, low + 1.0)  # flat images must not divide by zero later
    return [float(v) for v in low], [float(v) for v in high]
