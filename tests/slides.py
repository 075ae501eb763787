"""Synthetic whole-slide images for tests: pyramidal tiled TIFFs that OpenSlide reads.

write_test_slide() writes an Aperio-like TIFF (tifffile): page 0's description starts
with "Aperio Image Library" and carries "MPP = ...", and every level is tiled, which
is what OpenSlide needs to report the pixel size. Tissue is an H&E-like pink field
with dark purple nuclei (Beer-Lambert colour); glass is near-white. The returned
SyntheticSlide knows the true tissue mask and nucleus centres, so tests can check
tissue fraction and detection against ground truth.

Deflate compression keeps it free of optional codecs (imagecodecs).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.07, 0.99, 0.11])


def _aperio_page(index: int, width: int, height: int, level_w: int, level_h: int, tile: int, mpp: float) -> dict:
    """tifffile.write arguments for pyramid page `index`: what OpenSlide needs to read it as Aperio with an mpp."""
    if index == 0:
        description = (
            f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) "
            f"RAW|AppMag = {10.0 / mpp:g}|MPP = {mpp}"
        )
    else:
        description = f"Aperio Image Library v12.0.15 \r\n{level_w}x{level_h}"
    return {
        "tile": (tile, tile),
        "photometric": "rgb",
        "compression": "zlib",
        "description": description,
        "metadata": None,
        "subfiletype": 0 if index == 0 else 1,
    }


@dataclass
class SyntheticSlide:
    path: Path
    width: int
    height: int
    mpp: float
    tissue: np.ndarray  # bool, height x width (level 0)
    nuclei: np.ndarray  # N x 2 (x, y) level-0 centres of nuclei drawn
    downsamples: tuple[int, ...]

    @property
    def tissue_fraction(self) -> float:
        return float(self.tissue.mean())


def _tissue_mask(width: int, height: int, tissue: float | np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """float = fraction of the slide covered by one central ellipse; array = mask resized (nearest)."""
    if tissue is None:
        return np.zeros((height, width), bool)
    if isinstance(tissue, np.ndarray):
        rows = (np.arange(height) * tissue.shape[0] // height).clip(0, tissue.shape[0] - 1)
        cols = (np.arange(width) * tissue.shape[1] // width).clip(0, tissue.shape[1] - 1)
        return tissue.astype(bool)[rows[:, None], cols[None, :]]
    fraction = float(tissue)
    if fraction <= 0:
        return np.zeros((height, width), bool)
    if fraction >= 1:
        return np.ones((height, width), bool)
    # ellipse area = pi*a*b = fraction*W*H with a/b = W/H; capped by the slide so keep fraction <= 0.75
    a = np.sqrt(fraction * width * height * (width / height) / np.pi)
    b = a * height / width
    yy, xx = np.ogrid[:height, :width]
    return ((xx - width / 2 + 0.5) / a) ** 2 + ((yy - height / 2 + 0.5) / b) ** 2 <= 1.0


def render_he(
    tissue: np.ndarray, mpp: float, rng: np.random.Generator, nuclei_per_mm2: float = 3000.0
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 H&E-like image over a tissue mask, and the (x, y) centres of its nuclei."""
    height, width = tissue.shape
    od_e = tissue * (0.35 + 0.08 * ndi.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), 6) * 6)
    od_h = tissue * np.float32(0.06)
    area_mm2 = tissue.sum() * (mpp / 1000.0) ** 2
    count = rng.poisson(nuclei_per_mm2 * area_mm2)
    ys, xs = np.nonzero(tissue)
    centres = np.zeros((0, 2))
    if count and len(ys):
        pick = rng.choice(len(ys), size=int(count), replace=True)
        centres = np.stack([xs[pick], ys[pick]], 1).astype(float) + rng.uniform(-0.5, 0.5, (int(count), 2))
        # Keep nuclei apart (>= 12 um) so their centres are unambiguous ground truth.
        keep: list[int] = []
        grid: dict[tuple[int, int], list[int]] = {}
        cell = 12.0 / mpp
        for i, (x, y) in enumerate(centres):
            gx, gy = int(x // cell), int(y // cell)
            near = [j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in grid.get((gx + dx, gy + dy), [])]
            if all((centres[j, 0] - x) ** 2 + (centres[j, 1] - y) ** 2 >= cell**2 for j in near):
                keep.append(i)
                grid.setdefault((gx, gy), []).append(i)
        centres = centres[keep]
        for x, y in centres:
            r = rng.uniform(3.0, 4.5) / mpp  # 6-9 um diameter nuclei
            ry = r * rng.uniform(0.7, 1.0)
            angle = rng.uniform(0, np.pi)
            y0, y1 = int(max(0, y - r - 2)), int(min(height, y + r + 3))
            x0, x1 = int(max(0, x - r - 2)), int(min(width, x + r + 3))
            yy, xx = np.mgrid[y0:y1, x0:x1]
            dx, dy = xx - x, yy - y
            u = (dx * np.cos(angle) + dy * np.sin(angle)) / r
            v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
            inside = np.clip(1.5 * (1.0 - np.sqrt(u * u + v * v)) * r, 0, 1)  # ~1 px soft edge
            od_h[y0:y1, x0:x1] += inside * rng.uniform(0.9, 1.4)
            od_e[y0:y1, x0:x1] *= 1 - 0.5 * inside
    od = od_h[..., None] * _H + od_e[..., None] * _E
    rgb = 242.0 * np.exp(-od) + rng.normal(0, 2.0, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), centres


def write_test_slide(
    path: str | Path,
    width: int,
    height: int,
    mpp: float = 0.5,
    tissue: float | np.ndarray | None = 0.4,
    seed: int = 0,
    downsamples: tuple[int, ...] = (1, 4, 16),
    tile: int = 256,
    nuclei_per_mm2: float = 3000.0,
) -> SyntheticSlide:
    """Write a pyramidal tiled Aperio-like TIFF at `path` and describe what is in it.

    tissue: fraction of the slide (one central ellipse), a bool mask of any shape
    (resized to the slide), or None / 0 for a blank slide.
    """
    import tifffile

    rng = np.random.default_rng(seed)
    mask = _tissue_mask(width, height, tissue, rng)
    rgb, centres = render_he(mask, mpp, rng, nuclei_per_mm2)
    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as writer:
        for index, ds in enumerate(downsamples):
            if index == 0:
                level = rgb
            else:
                h, w = height // ds, width // ds
                if min(h, w) < 1:
                    break
                level = rgb[: h * ds, : w * ds].reshape(h, ds, w, ds, 3).mean(axis=(1, 3)).astype(np.uint8)
            writer.write(level, **_aperio_page(index, width, height, level.shape[1], level.shape[0], tile, mpp))
    return SyntheticSlide(path, width, height, mpp, mask, centres, downsamples)


@dataclass
class SparseSlide:
    path: Path
    width: int
    height: int
    mpp: float
    nuclei: np.ndarray  # N x 2 (x, y) level-0 centres of nuclei drawn

    @property
    def decoded_bytes(self) -> int:
        """What level 0 would take in RAM as RGB: what a worker must never hold."""
        return self.width * self.height * 3


def write_sparse_slide(
    path: str | Path,
    width: int,
    height: int,
    corners: list[tuple[int, int]],
    patch: int = 512,
    mpp: float = 0.5,
    seed: int = 0,
    downsamples: tuple[int, ...] = (1, 4, 16, 64),
    tile: int = 256,
) -> SparseSlide:
    """A large, mostly-glass slide with square H&E patches at `corners` (level-0 top-left).

    Written tile by tile, so the slide never exists whole in memory: glass tiles are
    one constant (zlib makes them tiny), so even a 20k x 20k slide takes seconds.
    Levels are block means of the patches (corners and patch should be multiples of
    the largest downsample so every level lines up exactly).
    """
    import tifffile

    rng = np.random.default_rng(seed)
    patches: list[tuple[int, int, np.ndarray]] = []
    centres = []
    for x, y in corners:
        rgb, nuclei = render_he(np.ones((patch, patch), bool), mpp, rng)
        patches.append((x, y, rgb))
        centres.append(nuclei + (x, y))
    glass = zlib.compress(np.full((tile, tile, 3), 242, np.uint8).tobytes())  # render_he's glass, without noise

    def tiles(ds: int, level_w: int, level_h: int):  # type: ignore[no-untyped-def]
        """Deflated tiles in TIFF order; the glass one compressed once, the rest as they come."""
        scaled = [
            (x // ds, y // ds, rgb.reshape(patch // ds, ds, patch // ds, ds, 3).mean(axis=(1, 3)).astype(np.uint8))
            for x, y, rgb in patches
        ]
        for ty in range(0, level_h, tile):
            for tx in range(0, level_w, tile):
                out = None
                for px, py, rgb in scaled:
                    x0, y0 = max(tx, px), max(ty, py)
                    x1, y1 = min(tx + tile, px + rgb.shape[1]), min(ty + tile, py + rgb.shape[0])
                    if x1 > x0 and y1 > y0:
                        out = np.full((tile, tile, 3), 242, np.uint8) if out is None else out
                        out[y0 - ty : y1 - ty, x0 - tx : x1 - tx] = rgb[y0 - py : y1 - py, x0 - px : x1 - px]
                yield glass if out is None else zlib.compress(out.tobytes())

    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as writer:
        for index, ds in enumerate(downsamples):
            level_w, level_h = width // ds, height // ds
            writer.write(
                tiles(ds, level_w, level_h),
                shape=(level_h, level_w, 3),
                dtype=np.uint8,
                **_aperio_page(index, width, height, level_w, level_h, tile, mpp),
            )
    return SparseSlide(path, width, height, mpp, np.concatenate(centres) if centres else np.zeros((0, 2)))
