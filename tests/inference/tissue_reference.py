"""The tissue mask as scipy and scikit-image calls make it: what services.inference.tissue's
own steps must equal (tests/inference/test_tissue_steps.py) and are timed against
(bench/inference/tissue_steps.py)."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology

from services.inference import tissue
from services.inference.tissue import TissueMask


def library_mask(rgb: np.ndarray, downsample: float, mpp: float | None) -> np.ndarray:
    """mask_from_rgb's mask, step by step with the library calls."""
    sat, value = tissue.saturation(rgb)
    smooth = ndi.gaussian_filter(sat, sigma=tissue.SMOOTH_SIGMA, mode="nearest", truncate=4.0)
    if float(smooth.max()) < tissue.MIN_SATURATION or float(np.ptp(smooth)) <= 1e-3:
        return np.zeros(sat.shape, bool)
    threshold = max(float(filters.threshold_otsu(smooth)), tissue.MIN_SATURATION)
    if float(smooth[smooth <= threshold].mean()) > tissue.GLASS_MAX_SATURATION:
        threshold = tissue.MIN_SATURATION
    mask = (smooth > threshold) & (value > 25)
    um2_per_px = ((mpp or tissue.DEFAULT_MPP) * downsample) ** 2
    mask = ndi.binary_closing(mask, structure=morphology.disk(1), border_value=0) | mask
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(tissue.MIN_TISSUE_UM2 / um2_per_px)))
    return morphology.remove_small_holes(mask, max_size=max(1, int(tissue.MIN_HOLE_UM2 / um2_per_px)))


def library_geojson(mask: TissueMask) -> str:
    """geojson_text, with ndi.binary_fill_holes and a second labelling for the holes."""
    features = []
    labelled, _ = ndi.label(mask.mask)
    for index, piece_slice in enumerate(ndi.find_objects(labelled), start=1):
        if piece_slice is None:
            continue
        piece = labelled[piece_slice] == index
        oy, ox = piece_slice[0].start, piece_slice[1].start
        filled = ndi.binary_fill_holes(piece)
        rings = [mask._ring(filled, oy, ox)]
        holes, hole_count = ndi.label(filled & ~piece)
        rings += [mask._ring(holes == hole, oy, ox) for hole in range(1, hole_count + 1)]
        rings = [r for r in rings if len(r) >= 4]
        if rings:
            features.append(
                {
                    "type": "Feature",
                    "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
                    "geometry": {"type": "Polygon", "coordinates": rings},
                }
            )
    return json.dumps({"type": "FeatureCollection", "features": features})
