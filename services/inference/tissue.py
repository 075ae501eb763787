"""Tissue detection on a low-resolution view of a slide.

Otsu on HSV saturation: glass is bright and grey (low saturation) whatever the
scanner's white balance, stained tissue is coloured. Specks (dust, debris) and small
holes (tears, lumens inside tissue) are removed so the mask follows tissue pieces.
A blank slide (no saturation contrast) gives an empty mask and fraction 0.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import measure

from services.common.slides import SlideReader

TARGET_SIDE = 2048  # long side of the mask in pixels: enough for 512 px tiles on 100k px slides
MIN_SATURATION = 0.06  # below this nothing is tissue, even if Otsu finds a split in the noise
GLASS_MAX_SATURATION = 0.12  # Otsu's lower class is glass only below this mean (glass ~0.01-0.06, stroma ~0.15+)
MIN_TISSUE_UM2 = 10_000.0  # specks smaller than ~100 x 100 um are dust, not tissue
MIN_HOLE_UM2 = 2_500.0  # holes under ~50 x 50 um are within tissue (nuclei-free spots)
DEFAULT_MPP = 0.5  # when the slide has no pixel size, assume 20x for the size thresholds
BAND_BYTES = 16 * 2**20  # float pixels of one band read: planning memory stays flat however wide the slide
NUMPY_SPAN = 200  # outline points between a span's ends above which simplify_polygon uses numpy
SMOOTH_SIGMA = 1.0  # pixels of the Gaussian blur of saturation before Otsu
# 4-connectivity: scikit-image's disk(1) and the default connectivity of its small-object and
# small-hole removal, and ndimage's default for labelling and hole filling.
CROSS = ndi.generate_binary_structure(2, 1)


@dataclass
class TissueMask:
    mask: np.ndarray  # bool, H x W at `downsample`
    downsample: float  # level-0 pixels per mask pixel
    rgb: np.ndarray  # the low-resolution RGB view the mask was computed from (same shape)

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def to_png(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def geojson_text(self) -> str:
        """Tissue pieces as GeoJSON polygons (exterior ring + holes) in level-0 pixel coordinates."""
        features = []
        labelled, _ = ndi.label(self.mask, CROSS)
        for index, piece_slice in enumerate(ndi.find_objects(labelled), start=1):
            if piece_slice is None:
                continue
            piece = labelled[piece_slice] == index
            oy, ox = piece_slice[0].start, piece_slice[1].start
            # Its holes: the pieces of its background that do not reach the box's edge (what
            # ndi.binary_fill_holes fills), in raster order, from one labelling.
            background, parts = ndi.label(~piece, CROSS)
            is_hole = np.ones(parts + 1, bool)
            is_hole[0] = False
            is_hole[background[[0, -1]]] = False
            is_hole[background[:, [0, -1]]] = False
            rings = [self._ring(piece | is_hole[background], oy, ox)]
            # Each hole outlined within its own box: the outline's cost goes with the box.
            hole_boxes = ndi.find_objects(background)
            for hole in np.flatnonzero(is_hole).tolist():
                box = hole_boxes[hole - 1]
                rings.append(self._ring(background[box] == hole, oy + box[0].start, ox + box[1].start))
            rings = [r for r in rings if len(r) >= 4]
            if not rings:
                continue
            features.append(
                {
                    "type": "Feature",
                    "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
                    "geometry": {"type": "Polygon", "coordinates": rings},
                }
            )
        return json.dumps({"type": "FeatureCollection", "features": features})

    def _ring(self, region: np.ndarray, oy: int, ox: int) -> list[list[float]]:
        contours = measure.find_contours(np.pad(region, 1).astype(np.uint8), 0.5)
        if not contours:
            return []
        contour = simplify_polygon(max(contours, key=len), tolerance=0.75)
        # contour is (row, col) in padded mask pixels; mask pixel centres sit at (i + 0.5) * ds
        return [
            [round((c - 1 + ox + 0.5) * self.downsample, 1), round((r - 1 + oy + 0.5) * self.downsample, 1)] for r, c in contour
        ]


def simplify_polygon(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a (row, col) chain, as skimage's approximate_polygon measures it
    (a point's distance to a segment: perpendicular where it projects inside, else to
    the nearer end), keeping the first and last points.

    Points in the middle of a straight run are dropped first: a mask's outline is mostly
    such runs, and Douglas-Peucker never keeps them (distance to a segment is convex
    along a straight run, so the farthest point is a run's end). The splitting itself
    runs in plain Python on short spans, where numpy's per-call cost is most of the
    work; skimage's version took ~0.3 ms on a 64 px square and ~35 ms on a 1,400 point
    outline, more than the mask it outlines.
    """
    if len(points) < 3:
        return points
    steps = np.diff(points, axis=0)
    turns = steps[:-1, 0] * steps[1:, 1] - steps[:-1, 1] * steps[1:, 0]
    corner = np.ones(len(points), bool)
    corner[1:-1] = turns != 0
    points = points[corner]
    rows, cols = points[:, 0], points[:, 1]
    row_list, col_list = rows.tolist(), cols.tolist()
    keep = np.zeros(len(points), bool)
    keep[0] = keep[-1] = True
    spans = [(0, len(points) - 1)]
    while spans:
        start, end = spans.pop()
        if end - start < 2:
            continue
        r0, c0, r1, c1 = row_list[start], col_list[start], row_list[end], col_list[end]
        if end - start > NUMPY_SPAN:
            farthest, distance = _farthest_numpy(rows[start + 1 : end], cols[start + 1 : end], r0, c0, r1, c1)
        else:
            farthest, distance = _farthest_python(row_list[start + 1 : end], col_list[start + 1 : end], r0, c0, r1, c1)
        if distance > tolerance:
            split = start + 1 + farthest
            keep[split] = True
            spans.append((split, end))
            spans.append((start, split))
    return points[keep]


def _farthest_python(rows: list[float], cols: list[float], r0: float, c0: float, r1: float, c1: float) -> tuple[int, float]:
    dr, dc = r1 - r0, c1 - c0
    length2 = dr * dr + dc * dc
    length = math.sqrt(length2)
    best, best_distance = 0, -1.0
    for index, (r, c) in enumerate(zip(rows, cols, strict=True)):
        along = (r - r0) * dr + (c - c0) * dc
        if 0 < along < length2:
            distance = abs((r - r0) * dc - (c - c0) * dr) / length
        else:
            distance = min(math.hypot(r - r0, c - c0), math.hypot(r - r1, c - c1))
        if distance > best_distance:
            best, best_distance = index, distance
    return best, best_distance


def _farthest_numpy(rows: np.ndarray, cols: np.ndarray, r0: float, c0: float, r1: float, c1: float) -> tuple[int, float]:
    dr, dc = r1 - r0, c1 - c0
    length2 = dr * dr + dc * dc
    from_r, from_c = rows - r0, cols - c0
    along = from_r * dr + from_c * dc
    to_ends = np.minimum(np.hypot(from_r, from_c), np.hypot(rows - r1, cols - c1))
    if length2 > 0:
        distance = np.where((along > 0) & (along < length2), np.abs(from_r * dc - from_c * dr) / math.sqrt(length2), to_ends)
    else:
        distance = to_ends
    farthest = int(np.argmax(distance))
    return farthest, float(distance[farthest])


def read_low_resolution(slide: SlideReader, target_side: int = TARGET_SIDE) -> tuple[np.ndarray, float]:
    """RGB view with long side <= target_side, and its downsample from level 0.

    Uses the pyramid level closest to that size; when the slide has no such level
    (a single-level TIFF), reads level 0 band by band and block-averages, so memory
    stays bounded by one band.
    """
    wanted = max(slide.width, slide.height) / target_side
    level = slide.best_level_for_downsample(max(1.0, wanted))
    ds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    factor = max(1, int(np.ceil(max(lw, lh) / target_side)))
    if factor == 1:
        return slide.read_region(level, 0, 0, lw, lh), ds
    out_h, out_w = int(np.ceil(lh / factor)), int(np.ceil(lw / factor))
    out = np.empty((out_h, out_w, 3), np.uint8)
    band = factor * max(1, BAND_BYTES // (lw * 3 * 4) // factor)  # rows per read, a multiple of the block factor
    for y in range(0, lh, band):
        rows = min(band, lh - y)
        pixels = slide.read_region(level, 0, int(round(y * ds)), lw, rows).astype(np.float32)
        pad_h, pad_w = (-rows) % factor, (-lw) % factor
        if pad_h or pad_w:
            pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        blocks = pixels.reshape(pixels.shape[0] // factor, factor, pixels.shape[1] // factor, factor, 3).mean(axis=(1, 3))
        out[y // factor : y // factor + blocks.shape[0]] = blocks.astype(np.uint8)
    return out, ds * factor


def saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation (float32) and value (uint8, the brightest channel) of an RGB image.

    Channel-wise maximum/minimum of the three planes: numpy's reductions over a last axis
    of length 3 are several times slower, and this runs once per tissue_mask job.
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top = np.maximum(np.maximum(red, green), blue)
    bottom = np.minimum(np.minimum(red, green), blue)
    spread = (top - bottom).astype(np.float32)
    return spread / np.maximum(top, 1).astype(np.float32), top


def compute_tissue_mask(slide: SlideReader) -> TissueMask:
    rgb, downsample = read_low_resolution(slide)
    return mask_from_rgb(rgb, downsample, slide.mpp)


def mask_from_rgb(rgb: np.ndarray, downsample: float, mpp: float | None) -> TissueMask:
    """The tissue mask of a low-resolution RGB view taken at `downsample` from level 0."""
    sat, value = saturation(rgb)
    smooth = gaussian_blur(sat)
    mask = np.zeros(sat.shape, bool)
    if float(smooth.max()) >= MIN_SATURATION and float(np.ptp(smooth)) > 1e-3:
        threshold = max(otsu_threshold(smooth), MIN_SATURATION)
        if float(smooth[smooth <= threshold].mean()) > GLASS_MAX_SATURATION:
            # Otsu always splits in two: with no glass at all (a crop, a slide covered by
            # tissue) it splits tissue into nuclei and stroma. Then all that is stained is tissue.
            threshold = MIN_SATURATION
        mask = smooth > threshold
        mask &= value > 25  # pure black (scanner borders, ink) is not tissue
        um2_per_px = ((mpp or DEFAULT_MPP) * downsample) ** 2
        mask = close_cross(mask) | mask
        mask = without_small_pieces(mask, max_size=max(1, int(MIN_TISSUE_UM2 / um2_per_px)))
        mask = ~without_small_pieces(~mask, max_size=max(1, int(MIN_HOLE_UM2 / um2_per_px)))  # small holes filled
    return TissueMask(mask=mask, downsample=float(downsample), rgb=rgb)


# The steps of mask_from_rgb, each the same as the scipy / scikit-image call it replaces
# (tests/inference/test_tissue_steps.py holds them to it) without that call's argument
# handling: on the small masks of thumbnails and tiny slides, the wrappers cost more than
# the pixels (a 64 px slide's mask: 0.51 -> 0.29 ms, bench/inference/tissue_steps.py).
_GAUSSIAN_RADIUS = int(4.0 * SMOOTH_SIGMA + 0.5)  # truncate=4.0, as skimage's gaussian
_GAUSSIAN_WEIGHTS = np.exp(-0.5 / SMOOTH_SIGMA**2 * np.arange(-_GAUSSIAN_RADIUS, _GAUSSIAN_RADIUS + 1) ** 2)
_GAUSSIAN_WEIGHTS /= _GAUSSIAN_WEIGHTS.sum()


def gaussian_blur(image: np.ndarray) -> np.ndarray:
    """ndi.gaussian_filter(image, SMOOTH_SIGMA, mode="nearest", truncate=4.0), in the image's dtype."""
    out = np.empty_like(image)
    ndi.correlate1d(image, _GAUSSIAN_WEIGHTS, axis=0, output=out, mode="nearest")
    ndi.correlate1d(out, _GAUSSIAN_WEIGHTS, axis=1, output=out, mode="nearest")
    return out


def otsu_threshold(image: np.ndarray) -> float:
    """skimage.filters.threshold_otsu (256 bins over the image's range) of a float image
    that is not constant."""
    counts, edges = np.histogram(image.ravel(), bins=256)
    centres = (edges[:-1] + edges[1:]) / 2.0
    counts = counts.astype(np.float32)
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centres) / weight1
    mean2 = (np.cumsum((counts * centres)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[np.argmax(variance12)])


def close_cross(mask: np.ndarray) -> np.ndarray:
    """ndi.binary_closing(mask, CROSS, border_value=0): dilation then erosion by the cross,
    as shifted copies (outside the image counts as background, so the edge erodes)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    closed = grown.copy()
    closed[1:] &= grown[:-1]
    closed[:-1] &= grown[1:]
    closed[:, 1:] &= grown[:, :-1]
    closed[:, :-1] &= grown[:, 1:]
    closed[[0, -1]] = False
    closed[:, [0, -1]] = False
    return closed


def without_small_pieces(mask: np.ndarray, max_size: int) -> np.ndarray:
    """morphology.remove_small_objects(mask, max_size=max_size): pieces (4-connected) of at
    most max_size pixels removed."""
    labels, _ = ndi.label(mask, CROSS)
    small = np.bincount(labels.ravel()) <= max_size
    small[0] = False  # the background stays as it is
    return mask & ~small[labels]


def warm_up() -> None:
    """Run the whole mask path once on a made-up image: scikit-image loads its
    submodules on first use (about a second of CPU), which would otherwise land on
    the first job a process gets."""
    rgb = np.full((64, 64, 3), 240, np.uint8)
    rgb[16:48, 16:48] = (180, 90, 160)
    tissue = mask_from_rgb(rgb, downsample=16.0, mpp=0.5)
    tissue.to_png()
    tissue.geojson_text()
